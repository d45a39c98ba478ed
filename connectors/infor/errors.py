"""Infor-specific failures, all placed in the pipeline's error tree by ONE helper, :func:`classify`.

```
pipeline.errors.ConfigError
 ├── InforAuthError        the ION API refused our credentials: the token endpoint said invalid_grant /
 │                         invalid_client, the gateway still answered 401 right after a fresh token, or
 │                         403 (principal not authorised, e.g. IMS fromLogicalId not bound to the app).
 │                         Retrying cannot help and every message would fail alike: the stage stops
 │                         (nothing committed) and the message says which .ionapi field to check.
 └── InforEndpointError    404 / 405 from the gateway, or a 412 from IMS: a wrong URL, method, tenant or
                           an inactive connection point. Configuration, not data; the stage stops.
pipeline.errors.InvalidMessage
 └── MiBusinessError       M3 answered the transaction with an error (HTTP 200 + the error quartet,
                           a partial NOK, a rejected batch order) or the gateway answered 400 to this
                           request: this payload can never succeed; it goes to the DLQ with M3's
                           errorCode/errorField/errorType/errorMessage in ``details``.
pipeline.errors.RetryableError
 └── AmbiguousWriteError        a NON-idempotent write (OIS100MI Confirm) timed out or got 502/503/504: it
                           may or may not have happened. The caller must look the order up (GetOrderNo
                           / by CUOR) before trying again, never blindly repeat it.
pipeline.errors.PipelineError
 └── UnexpectedResponseError    a 2xx whose body is not what the protocol says (HTML login page, not JSON):
                           neither the message's fault nor transient; crash loudly.
```

Everything else that is transient (429 with its ``Retry-After``, 5xx, timeouts, connection errors) is a
plain :class:`~pipeline.errors.RetryableError` carrying the HTTP status and the server's hint.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from pipeline.errors import ConfigError, InvalidMessage, PipelineError, RetryableError

SYSTEM = "infor"

MI_ERROR_REASONS: Mapping[str, str] = {
    "ServerReturnedNOK": "m3_nok",
    "MandatoryInputFieldNotFound": "m3_mandatory_field_missing",
    "InputFieldTooLong": "m3_field_too_long",
    "TransactionNotFound": "m3_transaction_not_found",
}
"""M3 ``errorType`` -> the bounded DLQ reason code; any other type becomes ``m3_error``."""


class InforAuthError(ConfigError):
    """The ION API refused the credentials or the principal; the message names what to check."""


class InforEndpointError(ConfigError):
    """The gateway does not know this path/method (404/405), or IMS refuses the connection point (412)."""


class UnexpectedResponseError(PipelineError):
    """A successful HTTP status with a body that does not follow the protocol."""


class AmbiguousWriteError(RetryableError):
    """A non-idempotent write's outcome is unknown; look it up before any retry.

    ``operation`` names the write (``OIS100MI.Confirm``); ``reference`` is what to look up with
    (the temporary batch order number), when known.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        reference: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after, status=status)
        self.operation = operation
        self.reference = reference


@dataclass(frozen=True)
class MiError:
    """The M3 error quartet of one transaction result (all strings as M3 sends them, right-trimmed)."""

    error_type: str
    error_code: str
    error_field: str
    error_message: str
    program: str = ""
    transaction: str = ""


class MiBusinessError(InvalidMessage):
    """M3 rejected the transaction; ``error`` keeps the quartet, ``details`` carries it for the DLQ."""

    def __init__(self, error: MiError, *, reason: str | None = None, message: str | None = None) -> None:
        operation = f"{error.program}.{error.transaction}".strip(".")
        text = message or (
            f"M3 {operation} refused: {error.error_message or error.error_type}"
            + (f" (field {error.error_field})" if error.error_field else "")
            + (f" [{error.error_code}]" if error.error_code else "")
        )
        super().__init__(
            reason or MI_ERROR_REASONS.get(error.error_type, "m3_error"),
            text,
            field_path=error.error_field or None,
            details={
                "errorType": error.error_type,
                "errorCode": error.error_code,
                "errorField": error.error_field,
                "errorMessage": error.error_message,
                "operation": operation,
            },
        )
        self.error = error


Failure = httpx.Response | httpx.TransportError | MiError
"""What went wrong: a non-2xx response, a transport failure, or an M3 business error."""


def classify(
    failure: Failure,
    *,
    operation: str,
    idempotent: bool = True,
    reference: str | None = None,
    after_refresh: bool = True,
    clock: Callable[[], float] = time.time,
) -> PipelineError:
    """The pipeline error for one failed Infor call: the single place the status table lives.

    ``operation`` is the business name (``OIS100MI.AddBatchHead``, ``token``, ``IMS.v3``).
    ``idempotent`` False turns "outcome unknown" failures (504, 502, 503, timeouts after the request
    may have been sent) into :class:`AmbiguousWriteError`. ``after_refresh`` says a 401 arrived although the
    auth flow already refreshed the token once (the normal case: :class:`IonApiAuth` retries once).

    | failure                                    | error                                   |
    |--------------------------------------------|-----------------------------------------|
    | MI error quartet                           | MiBusinessError (InvalidMessage)        |
    | 400                                        | MiBusinessError reason ``infor_bad_request`` |
    | 401 (after refresh) / 403                  | InforAuthError (ConfigError)            |
    | 404 / 405 / 412                            | InforEndpointError (ConfigError)        |
    | 408 / 429 / 5xx, timeouts, connect errors  | RetryableError (``retry_after`` from Retry-After) |
    | same, non-idempotent, outcome unknown      | AmbiguousWriteError (RetryableError)         |
    | 401 before any refresh                     | RetryableError (the next attempt gets a new token) |
    | any other 4xx                              | InvalidMessage ``infor_http_<status>``  |
    """
    if isinstance(failure, MiError):
        return MiBusinessError(failure)
    if isinstance(failure, httpx.TransportError):
        return _transport_error(failure, operation=operation, idempotent=idempotent, reference=reference)
    return _status_error(
        failure,
        operation=operation,
        idempotent=idempotent,
        reference=reference,
        after_refresh=after_refresh,
        clock=clock,
    )


def _transport_error(
    exc: httpx.TransportError, *, operation: str, idempotent: bool, reference: str | None
) -> RetryableError:
    kind = type(exc).__name__
    # A connect failure or a pool timeout means the request never left: safe to repeat even for writes.
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if not idempotent and not never_sent:
        return AmbiguousWriteError(
            f"Infor {operation}: {kind} after the request was sent; outcome unknown, "
            "look it up before retrying",
            operation=operation,
            reference=reference,
        )
    return RetryableError(f"Infor {operation}: {kind}: {exc}")


def _status_error(
    response: httpx.Response,
    *,
    operation: str,
    idempotent: bool,
    reference: str | None,
    after_refresh: bool,
    clock: Callable[[], float],
) -> PipelineError:
    status = response.status_code
    where = f"Infor {operation}: HTTP {status}"
    if status == 401:
        if not after_refresh:
            return RetryableError(f"{where}: token refused; a new token will be requested", status=status)
        return InforAuthError(
            f"{where}: the gateway refused a freshly issued token; check that the .ionapi file (ti, iu) "
            "belongs to this tenant and that the authorized app may call this API"
        )
    if status == 403:
        return InforAuthError(
            f"{where}: the principal is not authorised; check the authorized app's permissions and, for "
            "IMS, that fromLogicalId is the logical id bound to this app's client id (ci)"
        )
    if status in (404, 405):
        return InforEndpointError(
            f"{where}: {'no such path' if status == 404 else 'method not allowed'} "
            f"({response.request.method} {response.request.url.path}); check iu/ti in the .ionapi file "
            "and the API suite"
        )
    if status == 412:
        return InforEndpointError(
            f"{where}: IMS refused the configuration (connection point inactive or document type not "
            "on its Documents tab)"
        )
    retry_after = parse_retry_after(response.headers.get("Retry-After"), clock=clock)
    if status in (408, 429) or status >= 500:
        # A 429 is refused by the gateway before the backend sees it; anything else may have run.
        if not idempotent and status != 429:
            return AmbiguousWriteError(
                f"{where}: outcome unknown (the gateway gave up, the backend may still have done it); "
                "look it up before retrying",
                operation=operation,
                reference=reference,
                retry_after=retry_after,
                status=status,
            )
        hint = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return RetryableError(f"{where}{hint}", retry_after=retry_after, status=status)
    if status == 400:
        return InvalidMessage(
            "infor_bad_request",
            f"{where}: the gateway rejected the request ({_short_body(response)})",
            details={"operation": operation, "status": "400", "response": _short_body(response)},
        )
    return InvalidMessage(
        f"infor_http_{status}",
        f"{where}: {_short_body(response)}",
        details={"operation": operation, "status": str(status), "response": _short_body(response)},
    )


def parse_retry_after(value: str | None, *, clock: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - clock())
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def _short_body(response: httpx.Response, limit: int = 200) -> str:
    """The first ``limit`` characters of a response body, for messages and DLQ headers (never a token)."""
    try:
        text = response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return "<unread body>"
    text = " ".join(text.split())
    return text[:limit] if text else "<empty body>"
