"""The sinks ``psinfor sink --sinks`` can run: name → ``module:factory``, imported only when asked for.

A name is looked up in :data:`SINKS`; anything else of the form ``package.module:ATTRIBUTE`` is taken
as a reference to a :data:`~sinks.base.SinkFactory` directly (tests, a sink not yet listed). Modules
are imported lazily, so running one sink never imports (or needs the settings of) the others, and a
sink whose module is not installed only fails when it is chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import cast

from pipeline.errors import ConfigError
from sinks.base import SinkFactory

SINKS: Mapping[str, str] = MappingProxyType(
    {
        "infor-orders": "sinks.infor_orders:build",
        "infor-customers": "sinks.infor_customers:build",
        "infor-payments": "sinks.infor_payments:build",
        # canonical.invoice.v1's half of the payment reconciliation (a runner decodes one record type).
        "infor-payment-invoices": "sinks.infor_payments:build_invoices",
        "prestashop-status": "sinks.prestashop_order_status:build",
        "prestashop-tracking": "sinks.prestashop_shipments:build",
        "prestashop-payment": "sinks.prestashop_payments:build",
        # canonical.payment.v1's half of the PrestaShop payment status (the other half reads invoices).
        "prestashop-payment-records": "sinks.prestashop_payments:build_payments",
        "prestashop-stock": "sinks.prestashop_inventory:build",
        "prestashop-products": "sinks.prestashop_products:build",
        "prestashop-customers": "sinks.prestashop_customers:build",
    }
)
"""Every production sink by name (the stage name, metric label and consumer-group suffix)."""


def resolve_sink(reference: str) -> SinkFactory:
    """The factory a ``--sinks`` item names: a :data:`SINKS` name or ``package.module:ATTRIBUTE``.

    ConfigError (one line, naming what to do) for an unknown name, a module that is not present or
    fails to import, or an attribute that is missing or not callable.
    """
    target = SINKS.get(reference, reference)
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(
            f"unknown sink {reference!r}: use a sink name ({', '.join(SINKS)}) or package.module:FACTORY"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"sink {reference!r}: module {module_name} is not present in this installation"
            ) from exc
        raise ConfigError(f"sink {reference!r}: importing {module_name} failed ({exc})") from exc
    except ImportError as exc:
        raise ConfigError(f"sink {reference!r}: importing {module_name} failed ({exc})") from exc
    factory = getattr(module, attribute, None)
    if factory is None or not callable(factory):
        raise ConfigError(
            f"sink {reference!r}: {module_name}.{attribute} is missing or not a sink factory "
            "(a callable taking SinkResources, returning an async context manager of a Sink)"
        )
    return cast(SinkFactory, factory)
