"""The webservice's error documents: one exception carrying the HTTP status and the PrestaShop codes.

``WsError`` is raised anywhere below the routes (query parsing, writes, side effects) and rendered
by ``app`` in the request's output format, as the real ``WebserviceRequest::setError`` does: errors
accumulate in one document and the status is that of the last one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WsErrorItem:
    """One ``<error>`` element: the PrestaShop error code and its message."""

    code: int
    message: str


class WsError(Exception):
    """A webservice error response: ``status`` plus one or more (code, message) items."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} [{code}] {message}")
        self.status = status
        self.items: list[WsErrorItem] = [WsErrorItem(code, message)]

    @classmethod
    def many(cls, status: int, items: list[WsErrorItem]) -> WsError:
        """Several accumulated errors reported in one document (``items`` must not be empty)."""
        err = cls(status, items[0].code, items[0].message)
        err.items = list(items)
        return err


class NotFoundEmpty(Exception):
    """GET of a missing id: PrestaShop answers 404 with an EMPTY body, not an error document."""
