"""Structured logging for every stage: JSON lines on stderr, correlation ids, no secrets.

``configure_logging(settings.service, stage="sink-infor", secrets=settings.secret_values())`` is called
once in ``main()``. Each record becomes one JSON object per line::

    {"ts": "2025-01-31T12:00:00.123Z", "level": "INFO", "logger": "sinks.infor_orders",
     "message": "sales order created", "stage": "sink-infor", "correlation_id": "c0ffee", "order": "X1"}

(``extra=`` fields are added as keys), or a readable line when ``log_format`` is ``text``. The runners
wrap each message's handling in :func:`correlation_scope` so every line logged meanwhile, by any
module, carries that message's correlation id.

No secret reaches the output: the values passed as ``secrets`` (the settings' ``SecretStr`` values)
and anything shaped like ``password=…``, ``token: …``, ``Bearer …`` or ``user:pass@`` in a URL are
replaced by ``**********`` in the message, the exception text and string ``extra`` fields, before any
handler formats the record. Libraries that log per message (aiokafka, faust, mode, httpx, httpcore,
uvicorn.access) are held at WARNING so a busy stage's log stays about the stage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from pipeline.settings import MASK, ServiceSettings

NOISY_LOGGERS = ("aiokafka", "faust", "mode", "httpx", "httpcore", "uvicorn.access")
"""Libraries that log per message or per request; kept at WARNING whatever the stage's level."""

_correlation_id: ContextVar[str | None] = ContextVar("psinfor_correlation_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a key.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "stage",
    "correlation_id",
}

# key=value, key: value, "key": "value" for keys that name a credential.
_CREDENTIAL = re.compile(
    r"""(?ix)
    \b(password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api_?key|ws_key|
       authorization_code|sasl_password)
    (["']?\s*[=:]\s*["']?)
    ([^\s"'&,;}]+)
    """
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")
_URL_USERINFO = re.compile(r"(://[^/\s:@]+:)[^/\s@]+@")


def current_correlation_id() -> str | None:
    """The correlation id of the message being handled in this thread or task, if any."""
    return _correlation_id.get()


@contextlib.contextmanager
def correlation_scope(correlation_id: str | None) -> Iterator[None]:
    """Tag every log line written inside the ``with`` block with ``correlation_id``; restores on exit.

    Context-local: concurrent asyncio tasks and threads each see their own id.
    """
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)


class SecretMasker:
    """Replaces known secret values and credential-shaped text by ``**********``."""

    def __init__(self, secrets: Iterable[str | SecretStr] = ()) -> None:
        values = {s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted((value for value in values if value), key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every secret value and credential pattern masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _CREDENTIAL.sub(lambda match: match.group(1) + match.group(2) + MASK, text)
        text = _AUTH_SCHEME.sub(lambda match: f"{match.group(1)} {MASK}", text)
        return _URL_USERINFO.sub(lambda match: match.group(1) + MASK + "@", text)


class _RecordFilter(logging.Filter):
    """Masks secrets in place and stamps the stage and correlation id on every record it passes."""

    def __init__(self, masker: SecretMasker, stage: str) -> None:
        super().__init__()
        self._masker = masker
        self._stage = stage

    def filter(self, record: logging.LogRecord) -> bool:
        # Render the message now so secrets hidden in %-args are masked too; args are then spent.
        record.msg = self._masker.mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self._masker.mask(record.stack_info)
        for key, value in _extras(record).items():
            if isinstance(value, SecretStr):
                setattr(record, key, MASK)
            elif isinstance(value, str):
                setattr(record, key, self._masker.mask(value))
        record.stage = self._stage
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = current_correlation_id()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, stage, correlation_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON; values JSON cannot hold are written as their ``str()``."""
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "stage": getattr(record, "stage", None),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger [stage cid=…] message key=value…`` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as readable text; an exception's traceback follows on the next lines."""
        correlation = getattr(record, "correlation_id", None)
        where = getattr(record, "stage", "-") + (f" cid={correlation}" if correlation else "")
        extras = "".join(f" {key}={value}" for key, value in _extras(record).items())
        head = f"{_timestamp(record)} {record.levelname:<7} {record.name} [{where}]"
        line = f"{head} {record.getMessage()}{extras}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (so redirection and test capture work)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never crash the stage; the stdlib reports it
            self.handleError(record)


def configure_logging(
    service: ServiceSettings, *, stage: str, secrets: Iterable[str | SecretStr] = ()
) -> logging.Handler:
    """Send every log record of this process to stderr as ``service.log_format`` says, masked.

    Replaces the handler an earlier call installed (calling twice does not log twice); leaves other
    handlers alone. Returns the installed handler.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setLevel(service.log_level)
    handler.addFilter(_RecordFilter(SecretMasker(secrets), stage))
    handler.setFormatter(JsonFormatter() if service.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(service.log_level)
    level = logging.getLevelNamesMapping()[service.log_level]
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return handler
