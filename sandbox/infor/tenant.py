"""The tenant, its Backend Service authorized app and service account, and the ``.ionapi`` file.

A real tenant hands out a ``.ionapi`` JSON file (infor.md §1.1). The token URL is ``pu + ot`` where ``pu``
already ends in ``/{TENANT}/as/``; the API base is ``iu + "/" + ti`` where ``iu`` carries no tenant. The
sandbox writes the same file so any ION API client can use it unchanged.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _random_key(rng: random.Random, length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(length))


@dataclass
class Tenant:
    """One tenant with one authorized app (client id/secret) and its service account (saak/sask).

    ``default_cono``/``default_divi`` are the service account *user's* defaults: MI calls that omit
    ``cono``/``divi`` land there (infor.md §2.2, §7 item 4). ``ims_logical_id`` is the logical id bound
    to this app on the "IMS through ION API" connection point: IMS messages from another
    ``fromLogicalId`` are refused with 403 (§4.5).
    """

    tenant_id: str
    client_name: str
    client_id: str
    client_secret: str
    service_account_key: str
    service_account_secret: str
    default_cono: int = 100
    default_divi: str = "AAA"
    ims_logical_id: str = "lid://infor.ims.prestashop"
    extra_keys: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def generate(cls, tenant_id: str, *, seed: int | None = None) -> Tenant:
        """A tenant with credentials in the real formats (``TENANT~...`` client id, ``TENANT#...`` saak).

        A seed makes the credentials reproducible (tests, repeatable demos); without one they are random.
        """
        rng = random.Random(seed) if seed is not None else random.SystemRandom()
        return cls(
            tenant_id=tenant_id,
            client_name="PrestaShop Connector",
            client_id=f"{tenant_id}~{_random_key(rng, 40)}",
            client_secret=_random_key(rng, 64),
            service_account_key=f"{tenant_id}#{_random_key(rng, 60)}",
            service_account_secret=_random_key(rng, 64),
        )

    def ionapi(self, base_url: str) -> dict[str, Any]:
        """The ``.ionapi`` document for a gateway reachable at ``base_url`` (scheme://host:port).

        One host serves both the authorization server and the gateway, as on a single-region tenant.
        """
        base = base_url.rstrip("/")
        document: dict[str, Any] = {
            "ti": self.tenant_id,
            "cn": self.client_name,
            "dt": "12",
            "ci": self.client_id,
            "cs": self.client_secret,
            "iu": base,
            "pu": f"{base}/{self.tenant_id}/as/",
            "oa": "authorization.oauth2",
            "ot": "token.oauth2",
            "or": "revoke_token.oauth2",
            "ev": "V1480769020",
            "v": "1.0",
            "saak": self.service_account_key,
            "sask": self.service_account_secret,
        }
        document.update(self.extra_keys)
        return document

    def write_ionapi(self, path: Path, base_url: str) -> Path:
        """Write the ``.ionapi`` file (owner-readable only: the whole file is a secret, §1.1)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.ionapi(base_url), indent=2) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path
