"""/metrics, /healthz, /readyz over a real loopback socket, and the probe logic as plain functions."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from pipeline.errors import ConfigError
from pipeline.health import HealthServer, HealthState
from pipeline.settings import ServiceSettings

pytestmark = pytest.mark.timeout(15)


class FakeClock:
    """A monotonic clock the test moves by hand, so liveness expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock, request: pytest.FixtureRequest) -> HealthState:
    # A stage label unique to the test keeps the shared metrics registry's series apart.
    return HealthState(f"test-{request.node.name}"[:60], heartbeat_timeout_s=10, clock=clock)


@pytest.fixture
def server(state: HealthState) -> Iterator[HealthServer]:
    with HealthServer(state, host="127.0.0.1", port=0) as running:
        yield running


def get(server: HealthServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def get_json(server: HealthServer, path: str) -> tuple[int, dict[str, object]]:
    status, content_type, body = get(server, path)
    assert content_type == "application/json"
    decoded = json.loads(body)
    assert isinstance(decoded, dict)
    return status, decoded


# --- over the socket -----------------------------------------------------------------------------------


def test_port_zero_binds_a_free_port_and_exposes_it(server: HealthServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    status, _ = get_json(server, "/healthz")
    assert status == 200


def test_healthz_follows_the_heartbeat(server: HealthServer, state: HealthState, clock: FakeClock) -> None:
    status, body = get_json(server, "/healthz")
    assert (status, body["status"]) == (200, "ok"), "start-up counts as the first heartbeat"

    clock.now += 10.5
    status, body = get_json(server, "/healthz")
    assert status == 503
    assert body["status"] == "failing"
    assert "no heartbeat for 10.5s" in str(body["reason"])
    assert body["stage"] == state.stage

    state.heartbeat()
    status, body = get_json(server, "/healthz")
    assert (status, body["seconds_since_heartbeat"]) == (200, 0.0)


def test_readyz_waits_for_the_stage(server: HealthServer, state: HealthState, clock: FakeClock) -> None:
    status, body = get_json(server, "/readyz")
    assert (status, body["status"], body["reason"]) == (503, "not_ready", "starting")

    state.set_ready(True)
    status, body = get_json(server, "/readyz")
    assert (status, body["status"]) == (200, "ready")

    state.set_ready(False, "partitions revoked")
    status, body = get_json(server, "/readyz")
    assert (status, body["reason"]) == (503, "partitions revoked")

    state.set_ready(True)
    clock.now += 60
    status, body = get_json(server, "/readyz")
    assert status == 503, "a stuck loop is not ready either"
    assert "no heartbeat" in str(body["reason"])


def test_metrics_serves_the_catalogue(server: HealthServer, state: HealthState) -> None:
    state.set_ready(True)

    status, content_type, body = get(server, "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain")
    text = body.decode()
    assert f'psinfor_stage_up{{stage="{state.stage}"}} 1.0' in text
    assert "# TYPE psinfor_messages_total counter" in text


def test_stage_up_gauge_follows_readiness(server: HealthServer, state: HealthState) -> None:
    state.set_ready(True)
    state.set_ready(False, "shutting down")

    text = get(server, "/metrics")[2].decode()

    assert f'psinfor_stage_up{{stage="{state.stage}"}} 0.0' in text


def test_head_and_query_strings_and_unknown_paths(server: HealthServer) -> None:
    status, _, body = get(server, "/healthz", method="HEAD")
    assert (status, body) == (200, b"")
    assert get(server, "/metrics?name[]=psinfor_stage_up")[0] == 200
    status, body_json = get_json(server, "/nope")
    assert status == 404
    assert body_json["paths"] == ["/metrics", "/healthz", "/readyz"]


def test_concurrent_probes_are_served(server: HealthServer) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def probe() -> None:
        status = get(server, "/healthz")[0]
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=probe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert statuses == [200] * 8


def test_stop_releases_the_port_and_is_idempotent(state: HealthState) -> None:
    server = HealthServer(state, port=0)
    server.start()
    port = server.port
    assert get(server, "/healthz")[0] == 200

    server.stop()
    server.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(RuntimeError):
        _ = server.port
    assert not any(thread.name == f"health-{state.stage}" for thread in threading.enumerate())


def test_a_port_in_use_is_a_config_error_naming_the_setting(state: HealthState) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer.from_settings(ServiceSettings(http_port=port), state)

        with pytest.raises(ConfigError) as caught:
            server.start()

    assert "PSINFOR_SERVICE__HTTP_PORT" in str(caught.value)
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_two_servers_get_different_free_ports(state: HealthState) -> None:
    settings = ServiceSettings(http_port=0)
    with (
        HealthServer.from_settings(settings, state) as one,
        HealthServer.from_settings(settings, state) as two,
    ):
        assert one.port != two.port
        assert get(one, "/healthz")[0] == get(two, "/healthz")[0] == 200


# --- the plain functions (for FastAPI services) -----------------------------------------------------------


def test_checks_as_plain_functions(clock: FakeClock) -> None:
    state = HealthState("test-plain", heartbeat_timeout_s=5, clock=clock)

    assert state.liveness().status_code == 200
    assert state.readiness().status_code == 503
    state.set_ready(True)
    assert state.readiness().ok
    clock.now += 5
    assert state.liveness().ok, "exactly at the limit is still alive"
    clock.now += 0.1
    assert state.liveness().status_code == 503
    assert not state.readiness().ok


def test_from_settings_uses_the_heartbeat_timeout() -> None:
    state = HealthState.from_settings(ServiceSettings(heartbeat_timeout_s=0.5), "test-settings")
    assert state.liveness().ok
