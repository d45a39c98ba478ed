"""Sinks: consumers that make the canonical facts true in Infor and PrestaShop (see sinks.base)."""
