"""The whole integration on one machine: ``psinfor dev up`` and ``psinfor demo``, as a library first.

- :mod:`devstack.services`: what the stack is made of, as data (one :class:`~devstack.services.ServiceSpec`
  per process: argv, environment, health check, ports, dependencies) and the order they start and
  stop in;
- :mod:`devstack.supervisor`: runs those specs as child processes: prefixed logs, health waits, restart
  with backoff, ordered shutdown within a time bound;
- :mod:`devstack.status`: the live status line (services up, canonical events/s, sink lag, DLQ);
- :mod:`devstack.sandbox_admin`: clients of the two sandboxes' admin APIs;
- :mod:`devstack.setup`: the step that makes the two sandboxes one consistent world (shared catalogue,
  webhooks pointed at the receiver);
- :mod:`devstack.traffic`: realistic shoppers and stock movements (``--with-traffic``);
- :mod:`devstack.demo`: the narrated order-to-cash run.

Like ``cli/``, this package sits above every stage and may import any of them; no stage imports it.
"""
