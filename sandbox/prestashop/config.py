"""The sandbox's own configuration: one frozen object built by the CLI or a test and passed down.

It is not part of ``pipeline.settings`` on purpose: the sandbox stands in for a vendor system and is
configured like one (command-line flags, admin API), never from the pipeline's environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

SUPPORTED_VERSIONS: tuple[str, ...] = ("1.7.8.8", "8.1.7", "9.1.0")
DEFAULT_VERSION = "8.1.7"

Version = tuple[int, ...]


def parse_version(text: str) -> Version:
    """``"8.1.7"`` → ``(8, 1, 7)``; raises ``ValueError`` on anything that is not dotted integers."""
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True, slots=True)
class KeyPermissions:
    """One webservice key: active flag, the shops it may use and its resource x method grants.

    ``resources`` maps a resource name to the methods granted on it; ``None`` grants every known
    resource with every method (what "all" in the back office does).
    """

    key: str
    active: bool = True
    resources: dict[str, frozenset[str]] | None = None
    shops: frozenset[int] = frozenset({1})
    description: str = "psinfor sandbox key"


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One outbound webhook endpoint: its URL and the ``whsec_<base64>`` secrets it signs with.

    Several secrets produce several ``v1,`` signatures (rotation, reference §3.4).
    """

    url: str
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Outbound webhooks: Standard Webhooks mode (signed, async queue, retries) or ps_webhooks mode.

    ``retry_delays`` are the waits before the 2nd, 3rd, ... attempt (seconds); their count bounds the
    attempts. ``queue_size`` bounds the in-process queue: an event that finds it full is recorded as
    ``dropped`` instead of blocking the shop's request.
    """

    targets: tuple[WebhookTarget, ...] = ()
    mode: str = "standard"  # "standard" | "ps_webhooks"
    retry_delays: tuple[float, ...] = (0.5, 2.0, 5.0, 15.0, 60.0)
    timeout_seconds: float = 5.0
    queue_size: int = 10_000
    workers: int = 4
    """Deliveries in flight at once. The senders share the sandbox's one event loop with its webservice:
    on a saturated machine more of them did not deliver sooner (16 gave a webhook p50 of 22 s after the
    order at 8 orders/s, 4 gave 10 s), the loop's CPU is the limit."""
    shop_base_url: str = "http://127.0.0.1"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything that shapes one sandbox shop.

    ``version`` selects the version quirks (PATCH, JSON falsy-field filtering, 304, read-only
    customer fields). ``seed`` makes the catalogue deterministic; ``epoch`` anchors seeded dates
    (``None``: the current shop-local time). ``extra_required`` adds per-shop required fields
    (the back office "required fields" table), e.g. ``{"customers": ("birthday",)}``.
    ``order_state_ids`` re-numbers standard order states by ``PS_OS_*`` key (e.g.
    ``{"PS_OS_SHIPPING": 24}``) the way a shop upgraded from 1.6 or with custom states has them
    (reference §2.8: ids are shop data); the ids must not collide with the other states'.
    """

    version: str = DEFAULT_VERSION
    seed: int = 0
    keys: tuple[KeyPermissions, ...] = ()
    timezone: str = "Europe/Paris"
    languages: tuple[str, ...] = ("en", "fr")
    products: int = 1000
    customers: int = 500
    orders: int = 300
    epoch: datetime | None = None
    webservice_enabled: bool = True
    shop_name: str = "psinfor sandbox"
    extra_required: dict[str, tuple[str, ...]] = field(default_factory=dict)
    order_state_ids: dict[str, int] = field(default_factory=dict)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    fault_seed: int = 0

    @property
    def version_tuple(self) -> Version:
        """The configured PrestaShop version as a comparable tuple."""
        return parse_version(self.version)
