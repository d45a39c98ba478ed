"""M3 MI REST v2 through the ION API gateway: one transaction per GET, many per bulk POST.

The client's promises:

- Every call carries ``cono``, ``divi`` and ``maxrecs``: M3 otherwise falls back to the *service
  account user's* defaults (wrong company, silently) and to a legacy row cap (silent truncation).
- HTTP 200 is not success: a result with the error quartet (``errorMessage``/``errorType``/
  ``errorCode``/``errorField``), a terminated bulk job, failed or not-processed transaction counts
  (``nrOfSuccessfullTransactions`` - M3's spelling), or a partial NOK (records *and* an error) all
  raise :class:`~connectors.infor.errors.MiBusinessError`; a partial page is never returned.
- Transport and status failures go through :func:`connectors.infor.errors.classify`; ``idempotent=False``
  marks writes whose outcome is unknown after a timeout/504 (:class:`AmbiguousWriteError`).
- Values go out as M3 wants them (4-character field names, strings, dates ``yyyyMMdd``, decimals
  without exponent) and come back as right-trimmed strings.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from connectors.infor.errors import SYSTEM, MiError, UnexpectedResponseError, classify
from pipeline.metrics import TARGET_REQUEST_SECONDS

MiValue = str | int | Decimal | dt.date | None
"""What a transaction input may be given as; ``None`` means "do not send this field"."""

_FIELD_NAME = re.compile(r"^[A-Z0-9]{4}$")
DEFAULT_TIMEOUT = 55.0
"""Below the gateway's own 60 s limit, so our timeout fires (and is classified) rather than its 504."""


@dataclass(frozen=True)
class MiResult:
    """One transaction's outcome: its records (flat ``FIELD -> string``), or M3's error."""

    program: str
    transaction: str
    records: tuple[Mapping[str, str], ...] = ()
    error: MiError | None = None
    position_key: str | None = None

    @property
    def first(self) -> Mapping[str, str] | None:
        """The first record, or None when the transaction returned none."""
        return self.records[0] if self.records else None


@dataclass(frozen=True)
class MiTransaction:
    """One entry of a bulk request."""

    transaction: str
    record: Mapping[str, MiValue] = field(default_factory=dict)
    selected_columns: tuple[str, ...] = ()


def mi_value(value: MiValue) -> str | None:
    """The wire form of one input value (None stays None: the field is left out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("M3 has no boolean fields; send '0'/'1' explicitly")
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    if isinstance(value, dt.datetime):
        raise TypeError("M3 dates are dates; convert the datetime to the M3 company's date first")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return str(value)


def mi_record(record: Mapping[str, MiValue]) -> dict[str, str]:
    """Input fields as M3 wants them: 4-character uppercase names, string values, Nones dropped."""
    out: dict[str, str] = {}
    for name, value in record.items():
        if not _FIELD_NAME.match(name):
            raise ValueError(f"{name!r} is not an M3 field name (4 uppercase characters)")
        text = mi_value(value)
        if text is not None:
            out[name] = text
    return out


def parse_mi_response(
    payload: object, *, program: str, transaction: str = "", position_key: str | None = None
) -> tuple[MiResult, ...]:
    """The results of an MI v2 (or legacy v1) response body, each with its records or its error.

    Top-level failure signs (terminated job, failed/not-processed counts, fewer successes than
    results) are attached as an error to the results that carry none, so no caller can mistake a
    failed call for an empty success.
    """
    if not isinstance(payload, dict):
        raise UnexpectedResponseError(f"M3 {program}.{transaction}: response is not a JSON object")
    if "results" not in payload:
        return (_parse_v1(payload, program=program, transaction=transaction),)
    raw_results = payload["results"]
    if not isinstance(raw_results, list):
        raise UnexpectedResponseError(f"M3 {program}.{transaction}: 'results' is not a list")
    results = [
        _parse_result(raw, program=program, default_transaction=transaction, position_key=position_key)
        for raw in raw_results
    ]
    overall = _overall_error(payload, results, program=program, transaction=transaction)
    if overall is not None:
        results = [r if r.error else _with_error(r, overall) for r in results] or [
            MiResult(program=program, transaction=transaction, error=overall)
        ]
    return tuple(results)


def _with_error(result: MiResult, error: MiError) -> MiResult:
    return MiResult(
        program=result.program, transaction=result.transaction, records=result.records, error=error
    )


def _text(value: object) -> str:
    return "" if value is None else str(value).rstrip()


def _records(raw: object) -> tuple[Mapping[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(record, dict) for record in raw):
        raise UnexpectedResponseError("M3 'records' is not a list of objects")
    return tuple({str(k): _text(v) for k, v in record.items()} for record in raw)


def _parse_result(
    raw: object, *, program: str, default_transaction: str, position_key: str | None
) -> MiResult:
    if not isinstance(raw, dict):
        raise UnexpectedResponseError(f"M3 {program}: a result is not an object")
    transaction = _text(raw.get("transaction")) or default_transaction
    error: MiError | None = None
    if any(_text(raw.get(key)) for key in ("errorMessage", "errorType", "errorCode")):
        # Records next to an error are a partial NOK: the page is incomplete, never trust it.
        error = MiError(
            error_type=_text(raw.get("errorType")) or "ServerReturnedNOK",
            error_code=_text(raw.get("errorCode")),
            error_field=_text(raw.get("errorField")),
            error_message=_text(raw.get("errorMessage")),
            program=program,
            transaction=transaction,
        )
    return MiResult(
        program=program,
        transaction=transaction,
        records=_records(raw.get("records")),
        error=error,
        position_key=position_key,
    )


def _count(payload: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    return None


def _overall_error(
    payload: Mapping[str, Any], results: Sequence[MiResult], *, program: str, transaction: str
) -> MiError | None:
    def error(kind: str, message: str) -> MiError:
        return MiError(kind, "", "", message, program=program, transaction=transaction)

    if payload.get("wasTerminated") is True:
        return error(
            _text(payload.get("terminationErrorType")) or "Terminated",
            _text(payload.get("terminationReason")) or "M3 terminated the request",
        )
    failed = _count(payload, "nrOfFailedTransactions") or 0
    not_processed = _count(payload, "nrOfNotProcessedTransactions") or 0
    # M3 spells it "Successfull"; the correct spelling is accepted too in case a release fixes it.
    successes = _count(payload, "nrOfSuccessfullTransactions", "nrOfSuccessfulTransactions")
    explicit = any(r.error for r in results)
    if failed and not explicit:
        return error("Failed", f"M3 reported {failed} failed transaction(s) without details")
    if not_processed:
        return error("NotProcessed", f"M3 did not process {not_processed} transaction(s)")
    if successes is not None and successes < len(results) and not explicit:
        return error("Failed", f"M3 reported {successes} successful of {len(results)} transaction(s)")
    if not results:
        return error("NoResult", "M3 returned no result for the transaction")
    return None


def _parse_v1(payload: Mapping[str, Any], *, program: str, transaction: str) -> MiResult:
    """Legacy ``m3api-rest`` v1 bodies: ``MIRecord``/``NameValue`` records, ``@type``/``@code`` errors."""
    program = _text(payload.get("Program")) or program
    transaction = _text(payload.get("Transaction")) or transaction
    records: list[dict[str, str]] = []
    for row in payload.get("MIRecord") or []:
        pairs = row.get("NameValue", []) if isinstance(row, dict) else []
        records.append({_text(p.get("Name")): _text(p.get("Value")) for p in pairs if isinstance(p, dict)})
    error = None
    if _text(payload.get("@type")) or _text(payload.get("@code")) or _text(payload.get("Message")):
        error = MiError(
            error_type=_text(payload.get("@type")) or "ServerReturnedNOK",
            error_code=_text(payload.get("@code")),
            error_field=_text(payload.get("@field")),
            error_message=_text(payload.get("Message")),
            program=program,
            transaction=transaction,
        )
    elif "MIRecord" not in payload:
        raise UnexpectedResponseError(f"M3 {program}.{transaction}: neither an MI v2 nor a v1 response")
    return MiResult(program=program, transaction=transaction, records=tuple(records), error=error)


class MiClient:
    """M3 MI REST v2 calls for one company/division on an injected gateway client (auth attached).

    ``api_base`` is the ``.ionapi``'s ``iu + "/" + ti``. ``cono``/``divi`` are sent with every call.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_base: str,
        cono: str | int,
        divi: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._http = http
        self._root = api_base.rstrip("/") + "/M3/m3api-rest/v2/execute"
        self.cono = str(cono)
        self.divi = divi
        self._timeout = timeout

    def _meta(self, maxrecs: int) -> dict[str, str]:
        if maxrecs < 0:
            raise ValueError("maxrecs must be >= 0 (0 = unlimited)")
        return {"cono": self.cono, "divi": self.divi, "maxrecs": str(maxrecs)}

    async def execute(
        self,
        program: str,
        transaction: str,
        record: Mapping[str, MiValue] | None = None,
        *,
        maxrecs: int = 0,
        returncols: Sequence[str] = (),
        idempotent: bool = True,
        reference: str | None = None,
        position_key: str | None = None,
    ) -> MiResult:
        """Run one transaction; returns its result or raises (business error, transport, status).

        ``idempotent=False`` for writes that must not be blindly repeated (Confirm); ``reference`` is
        then carried by the AmbiguousWriteError so the caller can look the outcome up.
        """
        params = mi_record(record or {})
        params.update(self._meta(maxrecs))
        if returncols:
            params["returncols"] = ",".join(returncols)
        headers = {"positionkey": position_key} if position_key else {}
        url = f"{self._root}/{program}/{transaction}"
        response = await self._send(
            "GET", url, f"{program}.{transaction}", idempotent, reference, params=params, headers=headers
        )
        results = parse_mi_response(
            _json(response, program, transaction),
            program=program,
            transaction=transaction,
            position_key=response.headers.get("positionkey") or None,
        )
        result = results[0]
        for candidate in results:
            if candidate.error is not None:
                raise classify(candidate.error, operation=f"{program}.{transaction}")
        return result

    async def execute_bulk(
        self,
        program: str,
        transactions: Sequence[MiTransaction],
        *,
        maxrecs: int = 0,
        idempotent: bool = True,
        raise_on_error: bool = True,
    ) -> tuple[MiResult, ...]:
        """Run several independent transactions of one program in one POST; results in request order.

        With ``raise_on_error`` (default) the first failed transaction raises; otherwise the results
        carry their errors for the caller to sort out. Transactions cannot feed each other's outputs.
        """
        meta = self._meta(maxrecs)
        body = {
            "program": program,
            "cono": int(self.cono) if self.cono.isdigit() else self.cono,
            "divi": self.divi,
            "excludeEmptyValues": False,
            "rightTrim": True,
            "maxReturnedRecords": maxrecs,
            "transactions": [
                {"transaction": t.transaction, "record": mi_record(t.record)}
                | ({"selectedColumns": list(t.selected_columns)} if t.selected_columns else {})
                for t in transactions
            ],
        }
        response = await self._send(
            "POST", self._root, f"{program}.bulk", idempotent, None, params=meta, json=body
        )
        results = parse_mi_response(_json(response, program, "bulk"), program=program)
        if len(results) != len(transactions) and not any(r.error for r in results):
            raise UnexpectedResponseError(
                f"M3 {program} bulk: {len(results)} results for {len(transactions)} transactions"
            )
        if raise_on_error:
            for result in results:
                if result.error is not None:
                    raise classify(result.error, operation=f"{program}.{result.transaction}")
        return results

    async def paginate(
        self,
        program: str,
        transaction: str,
        record: Mapping[str, MiValue],
        *,
        restart_from: Mapping[str, str],
        page_size: int = 500,
    ) -> AsyncIterator[Mapping[str, str]]:
        """Every record of a List transaction, ``page_size`` at a time, none lost, none twice.

        M3 List transactions start at a key (``LstByNumber`` at CUNO, ``LstItmByItm`` at ITNO);
        ``restart_from`` maps each input key field to the output field of the last record that
        continues the list. When the response carries a ``positionkey`` header it is sent back
        instead. The restart record itself comes back first on the next page and is skipped.
        """
        if page_size <= 0:
            raise ValueError("page_size must be > 0: maxrecs=0 would be one unbounded page")
        query: dict[str, MiValue] = dict(record)
        position: str | None = None
        last: Mapping[str, str] | None = None
        while True:
            result = await self.execute(program, transaction, query, maxrecs=page_size, position_key=position)
            page = list(result.records)
            fresh = page[1:] if last is not None and page and page[0] == last else page
            for item in fresh:
                yield item
            if len(page) < page_size:
                return
            if last is not None and not fresh:
                raise UnexpectedResponseError(
                    f"M3 {program}.{transaction}: paging made no progress at {dict(last)}"
                )
            last = page[-1]
            if result.position_key:
                position = result.position_key
            else:
                query.update({key: last.get(out, "") for key, out in restart_from.items()})

    async def _send(
        self,
        method: str,
        url: str,
        operation: str,
        idempotent: bool,
        reference: str | None,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        json: object = None,
    ) -> httpx.Response:
        started = time.perf_counter()
        status = "error"
        try:
            response = await self._http.request(
                method, url, params=params, headers=headers, json=json, timeout=self._timeout
            )
            status = str(response.status_code)
        except httpx.TransportError as exc:
            raise classify(exc, operation=operation, idempotent=idempotent, reference=reference) from exc
        finally:
            TARGET_REQUEST_SECONDS.labels(SYSTEM, operation, status).observe(time.perf_counter() - started)
        if not response.is_success:
            raise classify(response, operation=operation, idempotent=idempotent, reference=reference)
        return response


def _json(response: httpx.Response, program: str, transaction: str) -> object:
    try:
        return response.json()
    except ValueError:
        raise UnexpectedResponseError(
            f"M3 {program}.{transaction}: HTTP {response.status_code} without a JSON body "
            f"({response.headers.get('content-type', 'no content-type')})"
        ) from None
