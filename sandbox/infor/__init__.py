"""A faithful Infor sandbox: ION API gateway, OAuth2 server, M3 MI REST v2, IMS inbound and push.

Written only from ``shared/reference/infor/infor.md`` and its fixtures, never from ``connectors/``:
an independent implementation catches what a shared one would hide. Modules by role:

- :mod:`sandbox.infor.tenant`: the tenant, its authorized app and service account, the ``.ionapi`` file;
- :mod:`sandbox.infor.oauth`: token and revocation endpoints and the token store;
- :mod:`sandbox.infor.gateway`: bearer check, quota (429), injected latency, 502/503, 504 timeouts;
- :mod:`sandbox.infor.mi`: the MI REST v2 execute endpoints and the table-driven transaction registry;
- :mod:`sandbox.infor.m3_state`: the M3 data (companies, customers, items, balances, orders, ...);
- :mod:`sandbox.infor.warehouse`: the simulation that allocates, picks, ships and invoices;
- :mod:`sandbox.infor.bod`: Sync BODs for state changes;
- :mod:`sandbox.infor.ims`: IMS inbound endpoints and the outbound v3 multipart pusher;
- :mod:`sandbox.infor.admin`: the unauthenticated ``/_sandbox`` admin API;
- :mod:`sandbox.infor.app` / :mod:`sandbox.infor.server`: assembly and an in-process runner.
"""
