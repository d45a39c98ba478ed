"""The PrestaShop webservice poller: the authoritative, loss-free path from the shop to the raw topics.

Webhooks cut latency; this service guarantees completeness (ARCHITECTURE.md §5). It runs these loops
on one ``PrestaShopClient`` and one ``PipelineProducer``:

- ``orders``, and ``customers``, ``addresses`` and ``products`` (the backstop of their notifications):
  incremental on ``date_upd`` (module :mod:`~ingest.prestashop_poller.changes`), window arithmetic in
  :mod:`~ingest.prestashop_poller.window`, watermarks persisted in ``state.watermarks``
  (:mod:`~pipeline.watermarks`) only after every record up to them was acknowledged;
- ``order_carriers`` and ``stock_availables`` full scans (:mod:`~ingest.prestashop_poller.scans`),
  because tracking numbers and stock change without moving any ``date_upd``;
- webhook thin notifications (:mod:`~ingest.prestashop_poller.notifications`) make it re-read the
  named resource at once.

Every record it writes has the same shape (:mod:`~ingest.prestashop_poller.raw`): the resource's JSON
exactly as the shop returned it for that one record, re-serialised canonically, key
``{shop_id}:{resource}:{id}``, headers ``source=prestashop-poll``, ``event_type=<node>.snapshot`` and
provenance. :mod:`~ingest.prestashop_poller.service` wires the loops, health and shutdown;
``main()`` lives in :mod:`~ingest.prestashop_poller.main`.
"""
