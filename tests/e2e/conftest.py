"""The e2e session's one stack: ``psinfor dev up`` on the session broker and registry (tests/conftest.py).

Every e2e test shares it (starting the whole stack costs about a minute on a busy machine), so each test
works on entities of its own (its orders, customers, SKUs) and leaves the stack as it found it (rules,
fault rules, the warehouse clock, product fields). The stack starts with the first e2e test, inside that
test's timeout, which is why every e2e timeout includes
:data:`~tests.e2e.running_stack.STACK_START_ALLOWANCE_S`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.running_stack import RunningStack, dev_up


@pytest.fixture(scope="session")
def stack(
    kafka_bootstrap: str, registry_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    """The running stack (see tests/e2e/running_stack.py); stopped with Ctrl-C after the last e2e test."""
    with dev_up(kafka_bootstrap, registry_url, tmp_path_factory.mktemp("e2e")) as running:
        yield running
