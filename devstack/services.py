"""The stack as data: one :class:`ServiceSpec` per process, and the order they start and stop in.

:func:`plan_stack` turns :class:`StackOptions` into a :class:`StackPlan` (ports chosen, secrets drawn,
files named under the data directory); :func:`build_services` turns the plan into the specs the
supervisor runs. Nothing here starts anything, so the whole graph is testable without a machine.

Dependencies decide the order: :func:`start_tiers` groups the specs into tiers, each depending only on
earlier ones (the supervisor starts a tier once the one before it is healthy); stopping walks the
tiers backwards, so a sink is gone before the sandbox it writes to, and Kafka stops last.

The services, by tier (``psinfor dev up --print-plan`` shows the argv of each)::

    0  kafka, registry, sandbox-prestashop, sandbox-infor       (kafka/registry unless attached)
    1  topics, schemas                              (tasks: run once, must exit 0)
    2  ingest-prestashop-webhooks, ingest-infor-events, processors[-<flow>] (one worker per group
       of flows with distinct source topics, see processor_workers)
    3  sandbox-setup                                (task: one catalogue, webhooks -> the receiver)
    4  ingest-prestashop-poller, ingest-infor-poller, sink-<name> for every sink (or sinks-<target>)
"""

from __future__ import annotations

import base64
import importlib
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pipeline.settings import env_name
from processors import FLOWS
from schemas.catalogue import load_catalogue
from sinks.main import DEFAULT_GROUP_PREFIX
from sinks.registry import SINKS

SHOP_KEY = "devshop"
"""The shop key in the webhook URL the sandbox shop posts to (``/webhooks/prestashop/devshop``)."""

INFOR_TENANT = "ACME_TST"
INFOR_CONO = "100"
INFOR_DIVI = "AAA"

PROCESSOR_HEARTBEAT_TIMEOUT_S = 3600
"""Liveness window of the processor workers (see build_services: their heartbeat needs traffic)."""

ServiceKind = Literal["service", "task"]
SinkLayout = Literal["per-sink", "per-target"]


class StackDefinitionError(ValueError):
    """The specs do not form a startable stack: a duplicate name, an unknown dependency or a cycle."""


@dataclass(frozen=True)
class HttpCheck:
    """Healthy while ``GET url`` answers 2xx (a service's ``/readyz``, a sandbox's admin page)."""

    url: str


@dataclass(frozen=True)
class KafkaCheck:
    """Healthy once a metadata request to ``bootstrap`` names at least one broker."""

    bootstrap: str


@dataclass(frozen=True)
class ExitCheck:
    """A task: done once it exited with status 0 (any other status fails the start)."""


HealthCheck = HttpCheck | KafkaCheck | ExitCheck


@dataclass(frozen=True)
class Link:
    """A URL worth showing a newcomer (``admin API``, ``metrics``, ``OpenAPI``)."""

    label: str
    url: str
    probe: bool = False
    """Show it only when ``GET url`` answers 2xx (an OpenAPI page that may be switched off)."""


@dataclass(frozen=True)
class ServiceSpec:
    """One process of the stack, as the supervisor needs it.

    ``env`` is added to (and wins over) the supervisor's base environment. ``liveness_url`` (a
    stage's ``/healthz``) lets the supervisor restart a process whose loop is stuck, not only one that
    exited. ``reload_on`` names files whose change makes the supervisor restart the service (the
    rules file: every stage loads it once at start-up).
    """

    name: str
    argv: tuple[str, ...]
    health: HealthCheck
    group: str
    env: Mapping[str, str] = field(default_factory=dict)
    kind: ServiceKind = "service"
    depends_on: tuple[str, ...] = ()
    ports: Mapping[str, int] = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    liveness_url: str | None = None
    reload_on: tuple[Path, ...] = ()
    start_timeout_s: float = 90.0
    stop_timeout_s: float = 15.0


# -- ordering --------------------------------------------------------------------------------------


def start_tiers(specs: Sequence[ServiceSpec]) -> list[tuple[ServiceSpec, ...]]:
    """The specs in tiers: tier ``n`` holds the specs whose deepest dependency is in tier ``n-1``.

    Within a tier the given order is kept. Raises StackDefinitionError for a duplicate name, a
    dependency on a name that is not in ``specs``, or a cycle (naming the services in it).
    """
    by_name: dict[str, ServiceSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise StackDefinitionError(f"two services are called {spec.name!r}")
        by_name[spec.name] = spec
    for spec in specs:
        unknown = [name for name in spec.depends_on if name not in by_name]
        if unknown:
            raise StackDefinitionError(f"{spec.name} depends on unknown service(s) {', '.join(unknown)}")
    depth: dict[str, int] = {}
    visiting: list[str] = []

    def tier_of(name: str) -> int:
        if name in depth:
            return depth[name]
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise StackDefinitionError(f"dependency cycle: {' -> '.join(cycle)}")
        visiting.append(name)
        deps = by_name[name].depends_on
        depth[name] = 1 + max((tier_of(dep) for dep in deps), default=-1)
        visiting.pop()
        return depth[name]

    for spec in specs:
        tier_of(spec.name)
    tiers: list[list[ServiceSpec]] = [[] for _ in range(1 + max(depth.values(), default=-1))]
    for spec in specs:
        tiers[depth[spec.name]].append(spec)
    return [tuple(tier) for tier in tiers]


def start_order(specs: Sequence[ServiceSpec]) -> list[str]:
    """Service names in the order they start (tier by tier)."""
    return [spec.name for tier in start_tiers(specs) for spec in tier]


def stop_tiers(specs: Sequence[ServiceSpec]) -> list[tuple[ServiceSpec, ...]]:
    """The tiers in the order they stop: the reverse of :func:`start_tiers`."""
    return list(reversed(start_tiers(specs)))


# -- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackOptions:
    """What ``psinfor dev up`` was asked for.

    ``kafka_bootstrap`` / ``registry_url`` attach to a running broker / registry instead of starting
    one (the stack then owns neither). ``shop_products`` and ``infor_items`` size the two sandboxes'
    catalogues: every Infor item becomes a sellable unit of the shop (see :mod:`devstack.setup`), so the
    shop needs more units than Infor has items; the shop units left over stay unknown to Infor (the
    demo's unknown item).
    """

    data_dir: Path
    python: str = sys.executable
    kafka_bootstrap: str | None = None
    registry_url: str | None = None
    sinks: tuple[str, ...] = tuple(SINKS)
    flows: tuple[str, ...] = tuple(FLOWS)
    sink_layout: SinkLayout = "per-sink"
    seed: int = 1
    shop_products: int = 150
    shop_customers: int = 200
    infor_items: int = 150
    topic_prefix: str = ""
    """Prepended to every topic, consumer group and faust app id: an isolated copy of the pipeline
    on a shared cluster (with ``kafka_bootstrap``), as ``topics apply --prefix`` creates it."""
    java: Path | None = None
    log_level: str = "INFO"
    infor_requests_per_minute: int = 60_000
    """The sandbox gateway has no quota by default; the production pace (600/min) would hold a busy
    demo at about one order per second."""


@dataclass(frozen=True)
class StackSecrets:
    """Credentials drawn for one run: the shop's webservice key, the webhook signing secret, IMS token."""

    ws_key: str
    webhook_secret: str
    ims_token: str

    @classmethod
    def draw(cls, token: Callable[[int], bytes] = secrets.token_bytes) -> StackSecrets:
        """Fresh random secrets (``token`` returns that many random bytes)."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        ws_key = "".join(alphabet[byte % len(alphabet)] for byte in token(32))
        webhook_secret = "whsec_" + base64.b64encode(token(32)).decode()
        ims_token = base64.urlsafe_b64encode(token(24)).decode().rstrip("=")
        return cls(ws_key=ws_key, webhook_secret=webhook_secret, ims_token=ims_token)


@dataclass(frozen=True)
class StackPorts:
    """Every TCP port the stack listens on (all on 127.0.0.1)."""

    kafka: int
    registry: int
    prestashop: int
    infor: int
    webhooks: int
    infor_events: int
    prestashop_poller: int
    infor_poller: int
    processors: Mapping[str, int]
    sinks: Mapping[str, int]

    @classmethod
    def allocate(
        cls, processor_processes: Sequence[str], sink_processes: Sequence[str], free_port: Callable[[], int]
    ) -> StackPorts:
        """One port per listener from ``free_port`` (which must not return the same port twice)."""
        return cls(
            kafka=free_port(),
            registry=free_port(),
            prestashop=free_port(),
            infor=free_port(),
            webhooks=free_port(),
            infor_events=free_port(),
            prestashop_poller=free_port(),
            infor_poller=free_port(),
            processors={name: free_port() for name in processor_processes},
            sinks={name: free_port() for name in sink_processes},
        )


@dataclass(frozen=True)
class StackPlan:
    """Everything the services are built from: options, ports, secrets and the files under data_dir."""

    options: StackOptions
    workers: tuple[tuple[str, ...], ...]
    """The processor workers' flows (see :func:`processor_workers`)."""
    ports: StackPorts
    secrets: StackSecrets

    @property
    def data_dir(self) -> Path:
        """Where the stack keeps its files (logs, secrets, .ionapi, rules, Kafka and faust data)."""
        return self.options.data_dir

    @property
    def bootstrap(self) -> str:
        """The Kafka bootstrap servers every stage uses."""
        return self.options.kafka_bootstrap or f"127.0.0.1:{self.ports.kafka}"

    @property
    def registry_url(self) -> str:
        """The registry's Confluent-compatible base URL."""
        return self.options.registry_url or f"http://127.0.0.1:{self.ports.registry}/apis/ccompat/v7"

    @property
    def prestashop_url(self) -> str:
        """The sandbox shop's root URL (webservice under ``/api/``, admin under ``/_sandbox/``)."""
        return f"http://127.0.0.1:{self.ports.prestashop}"

    @property
    def infor_url(self) -> str:
        """The Infor sandbox's root URL (ION API gateway, admin under ``/_sandbox/``)."""
        return f"http://127.0.0.1:{self.ports.infor}"

    @property
    def webhook_url(self) -> str:
        """Where the shop posts its webhooks: the receiver, with the stack's shop key."""
        return f"http://127.0.0.1:{self.ports.webhooks}/webhooks/prestashop/{SHOP_KEY}"

    @property
    def ims_push_url(self) -> str:
        """Where the Infor sandbox's IMS pusher posts: the IMS receiver."""
        return f"http://127.0.0.1:{self.ports.infor_events}/infor/ims/service/v3/multipartMessage"

    @property
    def ionapi_path(self) -> Path:
        """The ``.ionapi`` file the Infor sandbox writes at start and the Infor stages read."""
        return self.data_dir / "secrets" / "sandbox.ionapi"

    @property
    def rules_path(self) -> Path:
        """The rules file every processor and sink loads (watched: a change restarts them)."""
        return self.data_dir / "rules.yaml"

    @property
    def catalogue_path(self) -> Path:
        """The shared catalogue the setup task writes (read by the traffic generator and the demo)."""
        return self.data_dir / "catalogue.json"

    @property
    def secrets_dir(self) -> Path:
        """Secret files handed to the stages through ``*_FILE`` variables (mode 0600)."""
        return self.data_dir / "secrets"

    @property
    def logs_dir(self) -> Path:
        """One ``<service>.log`` per service, the same lines the console shows."""
        return self.data_dir / "logs"

    def processor_workers(self) -> list[tuple[str, ...]]:
        """The flows of each processor worker."""
        return list(self.workers)

    def processor_names(self) -> list[str]:
        """The processor workers' service names."""
        return processor_names(self.workers)

    def sink_processes(self) -> dict[str, tuple[str, ...]]:
        """Process name → the sinks it runs (one per sink, or one per target system)."""
        return sink_processes(self.options.sinks, self.options.sink_layout)

    def sink_groups(self) -> list[str]:
        """The consumer groups of the sinks (``psinfor-sink-<name>``), for the lag figure."""
        return [self.sink_group_prefix + name for name in self.options.sinks]

    @property
    def sink_group_prefix(self) -> str:
        """What ``psinfor sink --group-prefix`` gets: the stack's topic prefix + the default."""
        return self.options.topic_prefix + DEFAULT_GROUP_PREFIX

    def topic(self, name: str) -> str:
        """The actual name of catalogue topic ``name`` in this stack."""
        return self.options.topic_prefix + name


def sink_processes(sinks: Sequence[str], layout: SinkLayout) -> dict[str, tuple[str, ...]]:
    """``sink-<name>`` per sink, or ``sinks-<target>`` holding all sinks of one target system."""
    if layout == "per-sink":
        return {f"sink-{name}": (name,) for name in sinks}
    grouped: dict[str, list[str]] = {}
    for name in sinks:
        grouped.setdefault(f"sinks-{name.split('-', 1)[0]}", []).append(name)
    return {process: tuple(names) for process, names in grouped.items()}


def flow_source(reference: str) -> str | None:
    """The source topic of a flow (``SOURCE_TOPIC`` of its module), None when the module names none."""
    target = FLOWS.get(reference, reference)
    module = importlib.import_module(target.partition(":")[0])
    source = getattr(module, "SOURCE_TOPIC", None)
    return source if isinstance(source, str) else None


def processor_workers(
    flows: Sequence[str], source_of: Callable[[str], str | None] = flow_source
) -> list[tuple[str, ...]]:
    """The flows packed into as few workers as possible, no two flows of one worker on the same topic.

    One faust worker admits each source offset once, for whichever flow sees it first, so flows that
    read the same topic (orders, order status and payments all read ``raw.prestashop.orders``) must
    run in different workers (each its own consumer group). The first worker takes every flow it can.
    """
    workers: list[tuple[set[str], list[str]]] = []
    for flow in flows:
        source = source_of(flow)
        for sources, members in workers:
            if source is not None and source not in sources:
                sources.add(source)
                members.append(flow)
                break
        else:
            workers.append(({source} if source is not None else set(), [flow]))
    return [tuple(members) for _, members in workers]


def processor_names(workers: Sequence[Sequence[str]]) -> list[str]:
    """``processors`` for the first worker, ``processors-<first flow>`` for the others."""
    return ["processors"] + [f"processors-{flows[0].replace('_', '-')}" for flows in workers[1:]]


def plan_stack(
    options: StackOptions,
    *,
    free_port: Callable[[], int],
    stack_secrets: StackSecrets | None = None,
) -> StackPlan:
    """Choose ports (``free_port``) and secrets for ``options``; touches nothing on disk."""
    processes = list(sink_processes(options.sinks, options.sink_layout))
    workers = processor_workers(options.flows)
    return StackPlan(
        options=options,
        workers=tuple(workers),
        ports=StackPorts.allocate(processor_names(workers), processes, free_port),
        secrets=stack_secrets or StackSecrets.draw(),
    )


def write_secret_files(plan: StackPlan) -> dict[str, Path]:
    """Write the secrets the stages read through ``*_FILE`` variables (0600); returns name → path."""
    plan.secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(plan.secrets_dir, 0o700)
    files = {
        "ws_key": plan.secrets.ws_key,
        "webhook_secret": plan.secrets.webhook_secret,
        "ims_token": plan.secrets.ims_token,
    }
    paths: dict[str, Path] = {}
    for name, value in files.items():
        path = plan.secrets_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        paths[name] = path
    return paths


def stage_environment(plan: StackPlan) -> dict[str, str]:
    """The ``PSINFOR_*`` settings every stage of the stack gets (secrets as ``*_FILE`` paths)."""
    secret_dir = plan.secrets_dir
    return {
        env_name("kafka", "bootstrap_servers"): plan.bootstrap,
        env_name("registry", "url"): plan.registry_url,
        env_name("service", "log_format"): "text",
        env_name("service", "log_level"): plan.options.log_level,
        env_name("rules", "path"): str(plan.rules_path),
        env_name("prestashop", "base_url"): plan.prestashop_url,
        env_name("prestashop", "ws_key") + "_FILE": str(secret_dir / "ws_key"),
        env_name("infor", "ionapi_path"): str(plan.ionapi_path),
        env_name("infor", "cono"): INFOR_CONO,
        env_name("infor", "divi"): INFOR_DIVI,
        env_name("infor", "requests_per_minute"): str(plan.options.infor_requests_per_minute),
        # The sandbox's M3 takes any charge id: with these the shop's shipping and gift wrapping reach
        # the M3 order, so its invoice adds up to what the shop charged.
        env_name("infor", "shipping_charge_id"): "FREIGHT",
        env_name("infor", "wrapping_charge_id"): "GIFTWRAP",
        env_name("webhooks", "secrets") + "_FILE": str(secret_dir / "webhook_secret"),
        env_name("webhooks", "shop_keys"): SHOP_KEY,
        env_name("infor_events", "tokens") + "_FILE": str(secret_dir / "ims_token"),
        # Items reach the stack through IMS pushes (Sync.ItemMaster); the MI poller's item feed starts
        # from LMDT 00000000, which M3 (and the sandbox) refuse, so it is left out here.
        env_name("infor_events", "poll_feeds"): "inventory,customers",
        **_prefix_environment(plan.options.topic_prefix),
    }


def _prefix_environment(prefix: str) -> dict[str, str]:
    if not prefix:
        return {}
    return {
        env_name("webhooks", "topic_prefix"): prefix,
        env_name("poller", "topic_prefix"): prefix,
        env_name("poller", "group_id"): f"{prefix}psinfor-prestashop-poller",
        env_name("infor_events", "topic_prefix"): prefix,
        env_name("sinks", "topic_prefix"): prefix,
    }


def _prefix_arguments(plan: StackPlan) -> tuple[str, ...]:
    prefix = plan.options.topic_prefix
    return ("--prefix", prefix) if prefix else ()


def _processor_topics(plan: StackPlan) -> tuple[str, ...]:
    """``--topic NAME=ACTUAL`` for every catalogue topic (the processors take no prefix setting)."""
    prefix = plan.options.topic_prefix
    if not prefix:
        return ()
    pairs = (("--topic", f"{topic.name}={prefix}{topic.name}") for topic in load_catalogue().topics)
    return tuple(part for pair in pairs for part in pair)


def _psinfor(plan: StackPlan, *args: str) -> tuple[str, ...]:
    return (plan.options.python, "-m", "cli.main", *args)


def _stage(
    plan: StackPlan,
    name: str,
    group: str,
    argv: tuple[str, ...],
    port: int,
    depends_on: tuple[str, ...],
    *,
    reload_on_rules: bool = False,
    docs: bool = False,
    stop_timeout_s: float = 15.0,
) -> ServiceSpec:
    base = f"http://127.0.0.1:{port}"
    links = [Link("metrics", f"{base}/metrics")]
    if docs:
        links.append(Link("OpenAPI", f"{base}/docs", probe=True))
    return ServiceSpec(
        name=name,
        argv=argv,
        health=HttpCheck(f"{base}/readyz"),
        group=group,
        env={**stage_environment(plan), env_name("service", "http_port"): str(port)},
        depends_on=depends_on,
        ports={"http": port},
        links=tuple(links),
        liveness_url=f"{base}/healthz",
        reload_on=(plan.rules_path,) if reload_on_rules else (),
        stop_timeout_s=stop_timeout_s,
    )


def build_services(plan: StackPlan) -> list[ServiceSpec]:
    """The specs of the whole stack, in declaration order (see the module docstring for the tiers)."""
    options = plan.options
    ports = plan.ports
    java = ("--java", str(options.java)) if options.java is not None else ()
    specs: list[ServiceSpec] = []
    runtime: list[str] = []
    if options.kafka_bootstrap is None:
        specs.append(
            ServiceSpec(
                name="kafka",
                argv=_psinfor(
                    plan,
                    "dev",
                    "kafka",
                    "up",
                    "--foreground",
                    "--port",
                    str(ports.kafka),
                    "--state-dir",
                    str(plan.data_dir / "kafka"),
                    *java,
                ),
                health=KafkaCheck(plan.bootstrap),
                group="runtime",
                ports={"kafka": ports.kafka},
                links=(Link("bootstrap servers", plan.bootstrap),),
                start_timeout_s=120.0,
                stop_timeout_s=20.0,
            )
        )
        runtime.append("kafka")
    if options.registry_url is None:
        specs.append(
            ServiceSpec(
                name="registry",
                argv=_psinfor(
                    plan,
                    "dev",
                    "registry",
                    "up",
                    "--foreground",
                    "--port",
                    str(ports.registry),
                    "--state-dir",
                    str(plan.data_dir / "registry"),
                    *java,
                ),
                health=HttpCheck(f"{plan.registry_url}/subjects"),
                group="runtime",
                ports={"http": ports.registry},
                links=(Link("schema registry", plan.registry_url),),
                start_timeout_s=120.0,
                stop_timeout_s=20.0,
            )
        )
        runtime.append("registry")
    env = stage_environment(plan)
    specs.append(
        ServiceSpec(
            name="topics",
            argv=_psinfor(plan, "topics", "apply", "--replication-factor", "1", *_prefix_arguments(plan)),
            health=ExitCheck(),
            group="runtime",
            env=env,
            kind="task",
            depends_on=tuple(name for name in runtime if name == "kafka"),
        )
    )
    specs.append(
        ServiceSpec(
            name="schemas",
            argv=_psinfor(plan, "schemas", "register", *_prefix_arguments(plan)),
            health=ExitCheck(),
            group="runtime",
            env=env,
            kind="task",
            depends_on=tuple(name for name in runtime if name == "registry"),
        )
    )
    shop = plan.prestashop_url
    specs.append(
        ServiceSpec(
            name="sandbox-prestashop",
            # No --webhook-url: the setup task aligns the catalogue first (those edits are not
            # business events), then points the shop's webhooks at the receiver.
            argv=_psinfor(
                plan,
                "sandbox",
                "prestashop",
                "--port",
                str(ports.prestashop),
                "--ws-key",
                plan.secrets.ws_key,
                "--seed",
                str(options.seed),
                "--products",
                str(options.shop_products),
                "--customers",
                str(options.shop_customers),
                "--orders",
                "0",
            ),
            health=HttpCheck(f"{shop}/_sandbox/info"),
            group="sandbox",
            ports={"http": ports.prestashop},
            links=(
                Link("webservice", f"{shop}/api/"),
                Link("admin API", f"{shop}/_sandbox/info"),
                Link("OpenAPI", f"{shop}/docs", probe=True),
            ),
        )
    )
    infor = plan.infor_url
    specs.append(
        ServiceSpec(
            name="sandbox-infor",
            argv=_psinfor(
                plan,
                "sandbox",
                "infor",
                "--port",
                str(ports.infor),
                "--tenant",
                INFOR_TENANT,
                "--ionapi-out",
                str(plan.ionapi_path),
                "--seed",
                str(options.seed),
                "--items",
                str(options.infor_items),
                "--ims-push-url",
                plan.ims_push_url,
                # One argument: a urlsafe-base64 token may start with "-", which argparse would take
                # for an option ("expected one argument") if it stood on its own.
                f"--ims-push-token={plan.secrets.ims_token}",
            ),
            health=HttpCheck(f"{infor}/_sandbox/warehouse"),
            group="sandbox",
            ports={"http": ports.infor},
            links=(
                Link("ION API gateway", f"{infor}/{INFOR_TENANT}"),
                Link("admin API", f"{infor}/_sandbox/warehouse"),
                Link("OpenAPI", f"{infor}/docs", probe=True),
            ),
        )
    )
    specs.append(
        _stage(
            plan,
            "ingest-prestashop-webhooks",
            "ingest",
            _psinfor(plan, "ingest", "prestashop-webhooks", "--port", str(ports.webhooks)),
            ports.webhooks,
            ("topics",),
            docs=True,
        )
    )
    specs.append(
        _stage(
            plan,
            "ingest-infor-events",
            "ingest",
            _psinfor(plan, "ingest", "infor-events", "--port", str(ports.infor_events)),
            ports.infor_events,
            ("topics",),
            docs=True,
        )
    )
    for index, (name, flows) in enumerate(zip(plan.processor_names(), plan.processor_workers(), strict=True)):
        app_id = options.topic_prefix + ("psinfor-processors" if index == 0 else f"psinfor-{name}")
        spec = _stage(
            plan,
            name,
            "processors",
            _psinfor(
                plan,
                "process",
                "--flows",
                ",".join(flows),
                "--app-id",
                app_id,
                "--datadir",
                str(plan.data_dir / "faust" / name),
                "--session-timeout",
                "10",
                *_processor_topics(plan),
            ),
            ports.processors[name],
            ("topics", "schemas"),
            reload_on_rules=True,
            stop_timeout_s=20.0,
        )
        # The worker's heartbeat moves only when a batch arrives, so an idle worker (one reading a
        # quiet topic) would read as stuck after heartbeat_timeout_s and be restarted for nothing.
        idle_ok = {env_name("service", "heartbeat_timeout_s"): str(PROCESSOR_HEARTBEAT_TIMEOUT_S)}
        specs.append(replace(spec, env={**spec.env, **idle_ok}))
    specs.append(
        ServiceSpec(
            name="sandbox-setup",
            argv=(
                options.python,
                "-m",
                "devstack.setup",
                "--prestashop",
                shop,
                "--infor",
                infor,
                "--ionapi",
                str(plan.ionapi_path),
                "--ws-key-file",
                str(plan.secrets_dir / "ws_key"),
                "--webhook-url",
                plan.webhook_url,
                "--webhook-secret-file",
                str(plan.secrets_dir / "webhook_secret"),
                "--catalogue-out",
                str(plan.catalogue_path),
            ),
            health=ExitCheck(),
            group="sandbox",
            kind="task",
            depends_on=("sandbox-prestashop", "sandbox-infor", "ingest-prestashop-webhooks"),
        )
    )
    specs.append(
        _stage(
            plan,
            "ingest-prestashop-poller",
            "ingest",
            _psinfor(plan, "ingest", "prestashop-poller"),
            ports.prestashop_poller,
            ("topics", "sandbox-setup"),
        )
    )
    specs.append(
        _stage(
            plan,
            "ingest-infor-poller",
            "ingest",
            _psinfor(plan, "ingest", "infor-poller"),
            ports.infor_poller,
            ("topics", "sandbox-setup"),
        )
    )
    for process, names in plan.sink_processes().items():
        specs.append(
            _stage(
                plan,
                process,
                "sinks",
                _psinfor(plan, "sink", "--sinks", ",".join(names), "--group-prefix", plan.sink_group_prefix),
                ports.sinks[process],
                ("topics", "schemas", "sandbox-setup"),
                reload_on_rules=True,
                stop_timeout_s=25.0,
            )
        )
    start_tiers(specs)  # refuse a broken graph here, not half-way through a start
    return specs


def links_of(specs: Iterable[ServiceSpec]) -> list[tuple[str, Link]]:
    """Every (service name, link) to print at start, in spec order."""
    return [(spec.name, link) for spec in specs for link in spec.links]
