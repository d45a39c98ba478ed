"""M3 MI REST v2: ``/{TENANT}/M3/m3api-rest/v2/execute/{PROGRAM}/{TRANSACTION}`` and bulk ``.../execute``.

The engine is table-driven (infor.md §8): each :class:`Transaction` names its input fields (required or
not) and a handler; field types and lengths come from :mod:`sandbox.infor.mi_fields`. For every call:

1. company/division: ``cono``/``divi`` meta parameters, else the record's CONO/DIVI, else the service
   account user's defaults (§2.2: omit them and you silently work in that company);
2. ``MandatoryInputFieldNotFound`` for a missing required input, ``InputFieldTooLong`` for a value over
   its field length, ``ServerReturnedNOK`` for a malformed number or date and for business checks
   raised by the handler (unknown customer → CUNO, unknown item → ITNO, ...);
3. output: records are flat dicts of strings; ``maxrecs`` truncates lists (0 = unlimited; omitted =
   100, the believed legacy default, so forgetting it truncates visibly), ``returncols`` selects,
   ``excludeempty`` drops empty values, ``righttrim=false`` pads values to their field length,
   ``dateformat`` re-formats D fields (YMD8 default, YMD6, MDY6, DMY6, YMD8-).

Business errors come back with HTTP 200 and the error quartet; the top level carries ``wasTerminated``,
``nrOfSuccessfullTransactions`` (sic) and ``nrOfFailedTransactions`` (§2.3, fixtures/m3). An unknown
program or transaction on the GET path is a bare 400 without an MI body, as through the real gateway;
inside a bulk request it is a ``TransactionNotFound`` result.

Paging (an assumption, documented as such): list transactions take their start keys as inputs (CUNO,
ITNO, ...); in addition a request header ``positionkey`` skips every record up to and including that
key, and a truncated list answers with the header ``positionkey`` set to the last record's key.
Matrix parameters (``LstLine;maxrecs=20;returncols=ORNO,PONR``) are accepted like query parameters.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox.infor.m3_state import M3State
from sandbox.infor.mi_fields import spec_of
from sandbox.infor.tenant import Tenant

DEFAULT_MAXRECS = 100
DATE_FORMATS = {"YMD8": "%Y%m%d", "YMD6": "%y%m%d", "MDY6": "%m%d%y", "DMY6": "%d%m%y", "YMD8-": "%Y-%m-%d"}


class MiError(Exception):
    """An MI failure reported in the result's error quartet (HTTP 200)."""

    def __init__(self, error_type: str, code: str, field_name: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.code = code
        self.field_name = field_name
        self.message = message


def nok(code: str, field_name: str, message: str) -> MiError:
    """A business rejection from the MI program (``ServerReturnedNOK``). Codes are illustrative."""
    return MiError("ServerReturnedNOK", code, field_name, message)


@dataclass
class MiContext:
    """What a transaction handler sees: the state, the resolved company/division and paging hints."""

    state: M3State
    cono: int
    divi: str


Handler = Callable[[MiContext, dict[str, str]], Iterable[dict[str, str]]]


@dataclass(frozen=True)
class Transaction:
    """One MI transaction: inputs (``"CUNO*"`` marks a required one), handler, list or single."""

    program: str
    name: str
    inputs: tuple[str, ...]
    handler: Handler
    is_list: bool = False
    key_fields: tuple[str, ...] = ()

    @property
    def required(self) -> list[str]:
        """The mandatory input fields."""
        return [name[:-1] for name in self.inputs if name.endswith("*")]

    @property
    def input_names(self) -> list[str]:
        """Every declared input field."""
        return [name.rstrip("*") for name in self.inputs]


@dataclass
class Registry:
    """Transactions by program and name."""

    transactions: dict[tuple[str, str], Transaction] = field(default_factory=dict)

    def add(self, transaction: Transaction) -> None:
        """Register one transaction."""
        self.transactions[(transaction.program, transaction.name)] = transaction

    def get(self, program: str, name: str) -> Transaction | None:
        """The transaction, None if the program or transaction does not exist."""
        return self.transactions.get((program, name))


@dataclass
class Meta:
    """The v2 meta parameters that shape a response (§2.2)."""

    cono: int | None = None
    divi: str | None = None
    maxrecs: int = DEFAULT_MAXRECS
    returncols: list[str] | None = None
    excludeempty: bool = False
    righttrim: bool = True
    dateformat: str = "YMD8"
    positionkey: str | None = None


@dataclass
class Outcome:
    """One transaction's result entry and, for a truncated list, the key to continue from."""

    entry: dict[str, Any]
    ok: bool
    next_position: str | None = None


def _bool(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def parse_meta(params: Mapping[str, str], headers: Mapping[str, str] | None = None) -> Meta | str:
    """Meta parameters from query/matrix params; an error text when one is malformed."""
    meta = Meta()
    lowered = {key.lower(): value for key, value in params.items() if not (len(key) == 4 and key.isupper())}
    try:
        if "cono" in lowered:
            meta.cono = int(lowered["cono"])
        if "maxrecs" in lowered:
            meta.maxrecs = int(lowered["maxrecs"])
    except ValueError:
        return "cono and maxrecs must be integers"
    if "divi" in lowered:
        meta.divi = lowered["divi"]
    if lowered.get("returncols"):
        meta.returncols = [col.strip() for col in lowered["returncols"].split(",") if col.strip()]
    for spelling in ("excludeempty", "excludempty"):
        if spelling in lowered:
            meta.excludeempty = _bool(lowered[spelling])
    if "righttrim" in lowered:
        meta.righttrim = _bool(lowered["righttrim"])
    if "dateformat" in lowered:
        if lowered["dateformat"] not in DATE_FORMATS:
            return f"dateformat {lowered['dateformat']!r} is not supported"
        meta.dateformat = lowered["dateformat"]
    if headers is not None:
        meta.positionkey = headers.get("positionkey") or None
    return meta


def _format_value(name: str, value: str, meta: Meta) -> str:
    spec = spec_of(name)
    if spec is not None and spec.type == "D" and value and meta.dateformat != "YMD8":
        with contextlib.suppress(ValueError):  # a malformed stored date is shown as stored
            value = datetime.strptime(value, "%Y%m%d").strftime(DATE_FORMATS[meta.dateformat])
    if not meta.righttrim and spec is not None:
        value = value.ljust(spec.length)
    return value


def _shape(record: dict[str, str], meta: Meta, columns: list[str] | None) -> dict[str, str]:
    if columns is not None:
        record = {name: record.get(name, "") for name in columns}
    if meta.excludeempty:
        record = {name: value for name, value in record.items() if value.strip()}
    return {name: _format_value(name, value, meta) for name, value in record.items()}


def _check_inputs(transaction: Transaction, record: dict[str, str]) -> None:
    for name in transaction.required:
        if not record.get(name, "").strip():
            raise MiError("MandatoryInputFieldNotFound", "", name, f"Mandatory input field {name} not found")
    for name in transaction.input_names:
        value = record.get(name)
        spec = spec_of(name)
        if value is None or spec is None:
            continue
        if len(value) > spec.length:
            raise MiError(
                "InputFieldTooLong",
                "",
                name,
                f"Input field {name} is too long ({len(value)} > {spec.length})",
            )
        if not value.strip():
            continue
        if spec.type == "N":
            try:
                Decimal(value.strip())
            except InvalidOperation:
                raise nok("XNU0001", name, f"Field {name} must be numeric, got {value!r}") from None
        elif spec.type == "D":
            try:
                datetime.strptime(value.strip(), "%Y%m%d")
            except ValueError:
                raise nok(
                    "XDT0001", name, f"Field {name} is not a valid date (yyyyMMdd): {value!r}"
                ) from None


def _resolve_company(state: M3State, tenant: Tenant, meta: Meta, record: dict[str, str]) -> tuple[int, str]:
    cono_text = str(meta.cono) if meta.cono is not None else record.get("CONO", "").strip()
    cono = int(cono_text) if cono_text.isdigit() else tenant.default_cono
    company = state.companies.get(cono)
    if company is None:
        raise nok("XAU0008", "CONO", f"Not authorized for company {cono}")
    divi = meta.divi if meta.divi is not None else record.get("DIVI", "").strip()
    if not divi:
        divi = tenant.default_divi if cono == tenant.default_cono else next(iter(company.divisions))
    if divi not in company.divisions:
        raise nok("XAU0009", "DIVI", f"Not authorized for division {divi} in company {cono}")
    return cono, divi


def execute(
    registry: Registry,
    state: M3State,
    tenant: Tenant,
    transaction: Transaction,
    record: dict[str, str],
    meta: Meta,
    columns: list[str] | None = None,
) -> Outcome:
    """Run one transaction and build its ``results[]`` entry."""
    entry: dict[str, Any] = {"transaction": transaction.name}
    try:
        _check_inputs(transaction, record)
        cono, divi = _resolve_company(state, tenant, meta, record)
        produced = transaction.handler(MiContext(state, cono, divi), record)
        next_position: str | None = None
        if transaction.is_list:
            rows: Iterable[dict[str, str]] = produced
            if meta.positionkey is not None and transaction.key_fields:
                position = meta.positionkey
                rows = (row for row in rows if _key(transaction, row) > position)
            if meta.maxrecs > 0:
                page = list(itertools.islice(rows, meta.maxrecs + 1))
                if len(page) > meta.maxrecs:
                    page = page[: meta.maxrecs]
                    if transaction.key_fields:
                        next_position = _key(transaction, page[-1])
            else:
                page = list(rows)
        else:
            page = list(itertools.islice(produced, 1))
        entry["records"] = [_shape(row, meta, columns or meta.returncols) for row in page]
        return Outcome(entry, True, next_position)
    except MiError as exc:
        entry.update(
            errorMessage=exc.message, errorType=exc.error_type, errorCode=exc.code, errorField=exc.field_name
        )
        return Outcome(entry, False)


def _key(transaction: Transaction, row: dict[str, str]) -> str:
    # Numeric key parts are zero-padded so string order equals numeric order.
    parts = []
    for name in transaction.key_fields:
        value = row.get(name, "")
        spec = spec_of(name)
        parts.append(value.rjust(spec.length, "0") if spec is not None and spec.type == "N" else value)
    return "|".join(parts)


def envelope(outcomes: list[Outcome]) -> dict[str, Any]:
    """The v2 top-level response around the result entries."""
    ok = sum(1 for outcome in outcomes if outcome.ok)
    return {
        "results": [outcome.entry for outcome in outcomes],
        "wasTerminated": False,
        "nrOfSuccessfullTransactions": ok,
        "nrOfFailedTransactions": len(outcomes) - ok,
    }


def bare_error(status: int, error: str, message: str) -> JSONResponse:
    """A gateway-style error without an MI body (the shape real clients must not depend on, §1.4)."""
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _string_record(raw: object) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        return None
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def build_router(registry: Registry, state: M3State, tenant: Tenant) -> APIRouter:
    """The MI REST v2 routes under ``/{tenant}/M3/m3api-rest/v2``."""
    router = APIRouter()
    base = f"/{tenant.tenant_id}/M3/m3api-rest/v2"

    @router.get(base + "/execute/{program}/{transaction}")
    async def execute_one(program: str, transaction: str, request: Request) -> Response:
        name, *matrix = transaction.split(";")
        params: dict[str, str] = dict(request.query_params)
        for part in matrix:
            key, _, value = part.partition("=")
            params.setdefault(key, value)
        found = registry.get(program.split(";")[0], name)
        if found is None:
            return bare_error(400, "bad_request", f"Transaction {program}/{name} not found")
        meta = parse_meta(params, request.headers)
        if isinstance(meta, str):
            return bare_error(400, "bad_request", meta)
        record = {key: value for key, value in params.items() if len(key) == 4 and key.isupper()}
        outcome = execute(registry, state, tenant, found, record, meta)
        headers = {"positionkey": outcome.next_position} if outcome.next_position else None
        return JSONResponse(envelope([outcome]), headers=headers)

    @router.post(base + "/execute")
    async def execute_bulk(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return bare_error(400, "bad_request", "Request body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("transactions"), list):
            return bare_error(400, "bad_request", "Body needs program and transactions[]")
        params: dict[str, str] = dict(request.query_params)
        for key, meta_key in (
            ("cono", "cono"),
            ("divi", "divi"),
            ("maxReturnedRecords", "maxrecs"),
            ("excludeEmptyValues", "excludeempty"),
            ("rightTrim", "righttrim"),
        ):
            if key in body and body[key] is not None:
                params.setdefault(
                    meta_key, str(body[key]).lower() if isinstance(body[key], bool) else str(body[key])
                )
        meta = parse_meta(params, request.headers)
        if isinstance(meta, str):
            return bare_error(400, "bad_request", meta)
        program = str(body.get("program", ""))
        outcomes: list[Outcome] = []
        for item in body["transactions"]:
            name = str(item.get("transaction", "")) if isinstance(item, dict) else ""
            record = _string_record(item.get("record", {})) if isinstance(item, dict) else None
            found = registry.get(program, name)
            if found is None or record is None:
                outcomes.append(
                    Outcome(
                        {
                            "transaction": name,
                            "errorMessage": f"Transaction {program}/{name} not found",
                            "errorType": "TransactionNotFound",
                            "errorCode": "",
                            "errorField": "",
                        },
                        False,
                    )
                )
                continue
            columns = item.get("selectedColumns") if isinstance(item, dict) else None
            selected = [str(col) for col in columns] if isinstance(columns, list) and columns else None
            outcomes.append(execute(registry, state, tenant, found, record, meta, selected))
        return JSONResponse(envelope(outcomes))

    return router
