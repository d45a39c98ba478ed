"""A faithful fake PrestaShop webservice (``/api/...``), written only from the reference spec.

Never imports ``connectors/``: an independent implementation catches what a shared one would hide.
Modules by role: ``resources`` (field and association definitions per resource and version),
``store`` (indexed in-memory tables), ``shop`` (business side effects: state changes, stock,
checkout), ``seed`` (deterministic catalogue), ``query`` (GET parameter parsing and evaluation),
``render_xml`` / ``render_json`` (output with the documented quirks), ``writes`` (XML write bodies),
``app`` (routes, auth, headers, version quirks), ``admin`` (``/_sandbox`` API), ``faults``,
``webhooks`` (outbound sender) and ``server`` (in-process runner).
"""
