"""The pipeline's error tree: every stage classifies failures with these, the runners route them.

```
PipelineError                  base of everything the pipeline raises on purpose
 ├── ConfigError               a setting is missing or malformed; raised while building the settings
 │                             in ``main()``; the CLI prints its one-line message and exits 2
 ├── InvalidMessage            this message can never succeed (undecodable, schema or rule violation,
 │                             a target 4xx that blames the payload): the runner writes the original
 │                             bytes to the stage's dead-letter topic, waits for the ack, then commits
 ├── RetryableError            trying the same message later may work (connection error, timeout, 429,
 │                             5xx, 401 once after a token refresh): the runner backs off with jitter,
 │                             honours ``retry_after``, retries the same message and withholds the commit
 ├── ProduceError              the broker refused a record for good (too large, not authorised, fatal
 │                             producer state): retrying the same bytes cannot help, so the stage crashes
 │                             with nothing committed for the message that needed the write
 └── StageHalted               the runner stopped on purpose and committed nothing past the last good
      └── DlqLimitExceeded     offset: too many messages in a row, or too large a share, were invalid,
                               which means a bad deploy, not bad data
```

Anything else raised by a handler is a bug: the runner does not catch it, the process crashes, the
supervisor restarts it and, since nothing was committed, the message is seen again.

Classify where the knowledge is (the client that saw the HTTP status, the codec that failed to
decode), always ``raise ... from exc`` so the cause stays attached.
"""

from __future__ import annotations

from collections.abc import Mapping


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """A setting is missing, unreadable or malformed.

    The message is one line that names the setting (its environment variable) and says what to do.
    """


class InvalidMessage(PipelineError):
    """This message can never succeed; it goes to the dead-letter topic with its story.

    ``reason`` is a short, bounded code (``undecodable``, ``schema_violation``, ``unknown_sku``, ...)
    used as a metric label and a DLQ header; ``message`` is the human explanation. ``field_path``
    names the offending field when one is to blame; ``details`` carries small extra facts for the DLQ
    headers (a target's error code and field, a request/response summary, near-match suggestions).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        field_path: str | None = None,
        details: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field_path = field_path
        self.details: dict[str, str] = dict(details or {})

    def __str__(self) -> str:
        where = f" at {self.field_path}" if self.field_path else ""
        return f"{self.reason}{where}: {self.message}"


class RetryableError(PipelineError):
    """Trying the same message again later may work.

    ``retry_after`` (seconds) is the target's own hint (``Retry-After``); the runner waits at least
    that long before the next attempt. ``status`` is the HTTP status when one was seen.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class ProduceError(PipelineError):
    """The broker refused a record for good (too large, not authorised, fatal producer state).

    Retrying the same record will not help; the caller crashes or reports the failure upstream.
    """

    def __init__(self, message: str, *, topic: str, code: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic
        self.code = code


class StageHalted(PipelineError):
    """The runner stopped on purpose; nothing past the last successfully handled offset was committed."""


class DlqLimitExceeded(StageHalted):
    """Too many invalid messages: a stage whose every message fails must stop, not drain into the DLQ."""
