"""HTTP plumbing of the PrestaShop client: auth, request sending, version detection, error mapping.

Failures are classified here and nowhere else (:func:`raise_for_response` for statuses,
:meth:`Transport.send` for transport errors), into the pipeline's error tree:

```
status / condition                        raised                               reason / why
2xx, 304                                  nothing
400 (incl. 93 read-only field), 405,      InvalidMessage                       prestashop_rejected,
  other 4xx                                                                    prestashop_method_not_allowed
401, 403                                  InvalidMessage                       prestashop_auth
404 (GET: empty body)                     InvalidMessage                       prestashop_not_found
500 code 140/141 (email already used)     DuplicateEmailError(InvalidMessage)  prestashop_duplicate_email:
                                                                               the caller looks the customer
                                                                               up and links instead
500 code 133 (stock depends on stock)     InvalidMessage                       prestashop_rejected
501                                       InvalidMessage                       prestashop_unsupported
500 code 127 (XML parse error)            PrestaShopProtocolError (a bug)      see below
408, 425, 429, other 5xx, timeouts,       RetryableError                       Retry-After honoured
  connection errors
```

Why code 127 is neither invalid nor retryable: the shop could not parse the XML *we* built. The
message is fine, so dead-lettering it would blame good data and drain every message after it into
the DLQ; retrying sends the same bad bytes forever. It is a bug in this package, so it raises an
exception outside the pipeline's tree: the runner crashes, commits nothing, and the message is
processed again by the fixed release.

Every error carries the HTTP status, the PrestaShop error code(s) and message(s) and the request
line in ``details`` (never the key: auth travels in a header, not in the URL).
"""

from __future__ import annotations

import base64
import email.utils
import re
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from connectors.prestashop import json_reads
from pipeline.errors import InvalidMessage, RetryableError
from pipeline.metrics import TARGET_REQUEST_SECONDS

SYSTEM = "prestashop"
"""The ``system`` label of target-request metrics."""

VERSION_HEADER = "PSWS-Version"

DUPLICATE_EMAIL_CODES = frozenset({140, 141})
XML_PARSE_ERROR_CODE = 127
STOCK_DEPENDS_ON_STOCK_CODE = 133
READ_ONLY_FIELD_CODE = 93

_RETRYABLE_4XX = frozenset({408, 425, 429})
_XML_ERROR = re.compile(
    r"<error>\s*<code>(?:<!\[CDATA\[)?\s*(\d+)\s*(?:\]\]>)?</code>\s*"
    r"<message>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</message>",
    re.DOTALL,
)
_EXCERPT = 300


class PrestaShopProtocolError(RuntimeError):
    """The shop says our request is malformed in a way only a bug in this client can cause.

    Deliberately not a ``PipelineError``: the runner must crash (nothing committed), not dead-letter
    good data or retry the same bad bytes forever.
    """


class DuplicateEmailError(InvalidMessage):
    """PrestaShop refused a customer because the email is already used (500, codes 140/141).

    An ``InvalidMessage`` so that, unhandled, it dead-letters; callers creating a customer catch it,
    look the customer up by email and link to it instead.
    """


@dataclass(frozen=True, order=True)
class PsVersion:
    """A PrestaShop version from the ``PSWS-Version`` header, with the behaviour switches we need."""

    major: int
    minor: int = 0
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> PsVersion:
        """``"8.1.7"`` → PsVersion(8, 1, 7); raises ValueError on anything else."""
        parts = re.findall(r"\d+", text)
        if not parts:
            raise ValueError(f"not a PrestaShop version: {text!r}")
        numbers = [int(p) for p in parts[:3]] + [0, 0]
        return cls(numbers[0], numbers[1], numbers[2])

    @property
    def supports_patch(self) -> bool:
        """PATCH exists from 8.0 on; 1.7 answers 405 code 23."""
        return self >= PsVersion(8)

    @property
    def customer_secure_fields_read_only(self) -> bool:
        """From 8.1 ``secure_key``/``last_passwd_gen`` are read-only (400 code 93 if sent)."""
        return self >= PsVersion(8, 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


class WsKeyAuth(httpx.Auth):
    """The webservice key as HTTP Basic username with an empty password (the documented way)."""

    def __init__(self, ws_key: SecretStr) -> None:
        token = base64.b64encode(f"{ws_key.get_secret_value()}:".encode()).decode("ascii")
        self._header = f"Basic {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the Authorization header; no challenge round trip."""
        request.headers["Authorization"] = self._header
        yield request


@dataclass(frozen=True)
class PsErrorSummary:
    """What an error response said: PrestaShop codes and messages, or a body excerpt."""

    codes: tuple[int, ...]
    messages: tuple[str, ...]
    excerpt: str


def summarise_errors(response: httpx.Response) -> PsErrorSummary:
    """Error codes/messages from a JSON or XML error document; a plain-text excerpt otherwise."""
    body = response.content
    excerpt = body[:_EXCERPT].decode("utf-8", errors="replace")
    entries: list[json_reads.PsErrorEntry] = []
    try:
        entries = json_reads.extract_errors(json_reads.decode_body(body)) if body else []
    except json_reads.UnexpectedShapeError:
        # Not JSON: an XML error document (if the output format fell back), or plain text.
        text = body.decode("utf-8", errors="replace")
        entries = [json_reads.PsErrorEntry(int(c), m.strip()) for c, m in _XML_ERROR.findall(text)]
    return PsErrorSummary(
        codes=tuple(e.code for e in entries), messages=tuple(e.message for e in entries), excerpt=excerpt
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    current = now or datetime.now(UTC)
    return max(0.0, (moment - current).total_seconds())


def raise_for_response(response: httpx.Response, *, operation: str) -> None:
    """Return for a success; otherwise raise the pipeline error that fits (table in the module doc)."""
    status = response.status_code
    if status < 400:
        return
    summary = summarise_errors(response)
    request = response.request
    details = {
        "http_status": str(status),
        "operation": operation,
        "request": f"{request.method} {request.url.path}",
        "prestashop_codes": ",".join(str(c) for c in summary.codes),
        "prestashop_message": " | ".join(summary.messages)[:_EXCERPT],
    }
    if not summary.codes:
        details["response_excerpt"] = summary.excerpt
    described = " | ".join(f"code {c}: {m}" for c, m in zip(summary.codes, summary.messages, strict=True))
    text = f"PrestaShop {operation}: HTTP {status}" + (f" ({described})" if described else "")
    codes = set(summary.codes)

    if XML_PARSE_ERROR_CODE in codes:
        raise PrestaShopProtocolError(f"{text}: the shop could not parse the XML this client built")
    if codes & DUPLICATE_EMAIL_CODES:
        raise DuplicateEmailError("prestashop_duplicate_email", text, details=details)
    if STOCK_DEPENDS_ON_STOCK_CODE in codes:
        raise InvalidMessage("prestashop_rejected", text, details=details)
    if status == 501:
        raise InvalidMessage("prestashop_unsupported", text, details=details)
    if status >= 500 or status in _RETRYABLE_4XX:
        raise RetryableError(
            text, retry_after=parse_retry_after(response.headers.get("Retry-After")), status=status
        )
    if status in (401, 403):
        raise InvalidMessage("prestashop_auth", text, details=details)
    if status == 404:
        raise InvalidMessage("prestashop_not_found", text, details=details)
    if status == 405:
        raise InvalidMessage("prestashop_method_not_allowed", text, details=details)
    raise InvalidMessage("prestashop_rejected", text, details=details)


def api_root(base_url: str) -> str:
    """``https://shop.example`` or ``https://shop.example/api/`` → ``https://shop.example/api``."""
    root = base_url.rstrip("/")
    return root if root.endswith("/api") else root + "/api"


class Transport:
    """Sends webservice requests on an injected ``httpx.AsyncClient`` and classifies the outcome.

    Timeouts and connection limits are the injected client's configuration. Every response's
    ``PSWS-Version`` header updates :attr:`version`.
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str, ws_key: SecretStr) -> None:
        self._http = http
        self._root = api_root(base_url)
        self._auth = WsKeyAuth(ws_key)
        self.version: PsVersion | None = None

    def url(self, path: str, query: str = "") -> str:
        """Absolute URL of ``path`` (``orders/5``) under the api root, with an encoded query string."""
        url = f"{self._root}/{path.lstrip('/')}"
        return f"{url}?{query}" if query else url

    async def send(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        query: str = "",
        body: bytes | None = None,
    ) -> httpx.Response:
        """Send one request; return the response only if it succeeded, else raise per the table."""
        headers = {"Output-Format": "JSON"}  # exactly uppercase: "json" silently yields XML
        if body is not None:
            headers["Content-Type"] = "application/xml"
        started = time.perf_counter()
        status_label = "error"
        try:
            response = await self._http.request(
                method, self.url(path, query), content=body, headers=headers, auth=self._auth
            )
            status_label = str(response.status_code)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"PrestaShop {operation}: timeout ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise RetryableError(f"PrestaShop {operation}: {type(exc).__name__}: {exc}") from exc
        finally:
            TARGET_REQUEST_SECONDS.labels(SYSTEM, operation, status_label).observe(
                time.perf_counter() - started
            )
        self._note_version(response)
        raise_for_response(response, operation=operation)
        return response

    def _note_version(self, response: httpx.Response) -> None:
        header = response.headers.get(VERSION_HEADER)
        if header:
            try:
                self.version = PsVersion.parse(header)
            except ValueError:
                # A proxy or module mangled the header: keep what we knew rather than guess.
                return
