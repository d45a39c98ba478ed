"""One page of a webservice list read, for loops that page by key instead of by offset.

Offset paging (``limit=offset,count``) over rows that change while being read skips a row whenever an
earlier one leaves the result (its ``date_upd`` moved past the window): everything after it shifts up
by one. The orders loop therefore always asks for the FIRST page of a query whose lower bound is the
last row it saw (keyset paging), and this helper reads exactly that page.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import TypeVar, cast

from connectors.prestashop.client import Fetched, PrestaShopClient
from connectors.prestashop.models import PsModel
from connectors.prestashop.query import Query

M = TypeVar("M", bound=PsModel)


async def first_page(client: PrestaShopClient, model: type[M], q: Query, page_size: int) -> list[Fetched[M]]:
    """At most ``page_size`` rows: the first page of ``q`` (the client must page by ``page_size``).

    Fewer than ``page_size`` rows means the query had no more rows when it was answered.
    """
    rows: list[Fetched[M]] = []
    # The client's async generator, closed at once so it never asks for the next page.
    generator = cast(AsyncGenerator[Fetched[M], None], client.iterate_fetched(model, q))
    async with contextlib.aclosing(generator) as pages:
        async for fetched in pages:
            rows.append(fetched)
            if len(rows) >= page_size:
                break
    return rows
