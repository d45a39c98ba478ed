"""PrestaShop webservice connector, written from reference/prestashop/prestashop.md.

Modules by role:

- ``client``: :class:`~connectors.prestashop.client.PrestaShopClient`, one method per business
  operation (reads, changed-since windows, status/tracking/stock/customer/address/product writes);
- ``transport``: auth, sending, ``PSWS-Version`` detection and the one status → error mapping;
- ``query``: filter/display/sort/limit/date builders with strict URL encoding;
- ``json_reads``: every JSON envelope and scalar quirk, normalised;
- ``xml_writes``: XML request bodies and the read-only field rules per version;
- ``models``: pydantic source models (tolerant, Decimal money, shop-local naive timestamps);
- ``order_states``: order states resolved from the shop's flags and PS_OS_* configuration;
- ``webhook_signature``: Standard Webhooks / legacy signature verification (pure functions).
"""
