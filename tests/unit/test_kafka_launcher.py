"""The local runtime's pure parts: config rendering, Java discovery, the fetch cache, ports, log tails."""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
from pathlib import Path

import pytest

from cli import dev
from sandbox.kafka import runtime as runtime_module
from sandbox.kafka.jvm import (
    Java,
    RuntimeMissingError,
    find_java,
    free_ports,
    log_tail,
    parse_java_version,
    port_is_free,
)
from sandbox.kafka.launcher import KafkaCluster, NodeSpec, new_cluster_id, render_server_properties
from sandbox.kafka.registry import CCOMPAT_PATH, registry_argv
from sandbox.kafka.runtime import (
    STAMP_NAME,
    PomVersions,
    RegistryRuntime,
    apicurio_stamp,
    choose_registry_java,
    fetch_runtime,
    find_registry_jar,
    read_pom_versions,
)


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


# -- java version parsing and discovery ------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6)', 17),
        ('openjdk version "25" 2025-09-16\nOpenJDK Runtime Environment Temurin-25+36', 25),
        ('openjdk version "21.0.2" 2024-01-16 LTS', 21),
        ('java version "1.8.0_292"\nJava(TM) SE Runtime Environment', 8),
        ('Picked up JAVA_TOOL_OPTIONS: -Dx=y\nopenjdk version "11.0.22-ea" 2024-01-16', 11),
    ],
)
def test_parse_java_version(output: str, expected: int) -> None:
    assert parse_java_version(output) == expected


def test_parse_java_version_rejects_output_without_a_version() -> None:
    with pytest.raises(ValueError, match="no version"):
        parse_java_version("bash: java: command not found")


def test_find_java_returns_a_working_java_of_at_least_the_minimum() -> None:
    java = find_java(17)

    assert java is not None
    assert java.version >= 17
    assert java.executable.exists()


def test_find_java_returns_none_when_nothing_is_new_enough() -> None:
    assert find_java(999) is None


def test_registry_falls_back_to_the_old_apicurio_without_java_21(monkeypatch: pytest.MonkeyPatch) -> None:
    java17 = Java(Path("/usr/bin/java"), 17)
    monkeypatch.setattr(runtime_module, "find_java", lambda minimum, **_: java17 if minimum <= 17 else None)
    versions = PomVersions(kafka="4.3.1", log4j="2.25.3", apicurio="3.3.3", apicurio_fallback="3.0.9")

    version, java, warning = choose_registry_java(versions, None)

    assert (version, java) == ("3.0.9", java17)
    assert warning is not None
    assert "3.0.9" in warning


def test_registry_uses_the_pinned_apicurio_with_java_21(monkeypatch: pytest.MonkeyPatch) -> None:
    java25 = Java(Path("/opt/jdk25/bin/java"), 25)
    monkeypatch.setattr(runtime_module, "find_java", lambda minimum, **_: java25)
    versions = PomVersions(kafka="4.3.1", log4j="2.25.3", apicurio="3.3.3", apicurio_fallback="3.0.9")

    assert choose_registry_java(versions, None) == ("3.3.3", java25, None)


# -- server.properties -----------------------------------------------------------------------------


def test_single_node_config_is_loopback_static_quorum_rf1(tmp_path: Path) -> None:
    node = NodeSpec(node_id=1, port=19092, controller_port=19093)

    props = _properties(render_server_properties(node, [node], tmp_path / "data"))

    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert "broker.session.timeout.ms" not in props


def test_three_node_config_has_rf3_min_isr2_and_fast_failure_detection(tmp_path: Path) -> None:
    nodes = [NodeSpec(i, 20000 + 2 * i, 20001 + 2 * i) for i in (1, 2, 3)]

    props = _properties(render_server_properties(nodes[1], nodes, tmp_path))

    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:20003,2@127.0.0.1:20005,3@127.0.0.1:20007"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:20004,CONTROLLER://127.0.0.1:20005"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["broker.session.timeout.ms"] == "4000"
    assert props["broker.heartbeat.interval.ms"] == "500"


def test_overrides_win_over_defaults(tmp_path: Path) -> None:
    node = NodeSpec(1, 1, 2)

    props = _properties(
        render_server_properties(node, [node], tmp_path, {"num.partitions": "6", "x.custom": "yes"})
    )

    assert props["num.partitions"] == "6"
    assert props["x.custom"] == "yes"


def test_two_nodes_are_refused(tmp_path: Path) -> None:
    nodes = [NodeSpec(1, 1, 2), NodeSpec(2, 3, 4)]
    with pytest.raises(ValueError, match="1 or 3"):
        render_server_properties(nodes[0], nodes, tmp_path)
    with pytest.raises(ValueError, match="1 or 3"):
        KafkaCluster(2, tmp_path)


def test_cluster_id_is_22_urlsafe_base64_chars_of_16_bytes() -> None:
    ids = {new_cluster_id() for _ in range(50)}

    assert len(ids) == 50
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_registry_binds_loopback_on_both_interfaces() -> None:
    runtime = RegistryRuntime("3.3.3", Path("/rt/quarkus-run.jar"), Java(Path("/j/bin/java"), 25))

    argv = registry_argv(runtime, 18081, 19001)

    assert argv[0] == "/j/bin/java"
    assert argv[-2:] == ["-jar", "/rt/quarkus-run.jar"]
    assert "-Dquarkus.http.host=127.0.0.1" in argv
    assert "-Dquarkus.http.port=18081" in argv
    assert "-Dquarkus.management.host=127.0.0.1" in argv
    assert "-Dquarkus.management.port=19001" in argv
    assert CCOMPAT_PATH == "/apis/ccompat/v7"


# -- the fetch cache -------------------------------------------------------------------------------


def test_pom_pins_the_versions() -> None:
    versions = read_pom_versions()

    assert versions.kafka.startswith("4.")
    assert versions.apicurio.startswith("3.")
    assert versions.apicurio_fallback.startswith("3.0.")


@pytest.mark.parametrize("layout", ["quarkus-run.jar", "quarkus-app/quarkus-run.jar", "app-3.0.9-runner.jar"])
def test_find_registry_jar_handles_each_tarball_layout(tmp_path: Path, layout: str) -> None:
    jar = tmp_path / layout
    jar.parent.mkdir(parents=True, exist_ok=True)
    jar.write_bytes(b"")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "other.jar").write_bytes(b"")

    assert find_registry_jar(tmp_path) == jar


def test_find_registry_jar_explains_a_broken_cache(tmp_path: Path) -> None:
    with pytest.raises(RuntimeMissingError, match="refetch"):
        find_registry_jar(tmp_path)


def _warm_cache(cache: Path) -> None:
    versions = read_pom_versions()
    libs = cache / f"kafka-{versions.kafka}" / "libs"
    libs.mkdir(parents=True)
    (libs / f"kafka_2.13-{versions.kafka}.jar").write_bytes(b"")
    (cache / f"kafka-{versions.kafka}" / STAMP_NAME).write_text(versions.kafka_stamp)
    for version in (versions.apicurio, versions.apicurio_fallback):
        (cache / f"apicurio-{version}").mkdir(parents=True)
        (cache / f"apicurio-{version}" / "quarkus-run.jar").write_bytes(b"")
        (cache / f"apicurio-{version}" / STAMP_NAME).write_text(apicurio_stamp(version))


def test_warm_fetch_runs_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm_cache(tmp_path)

    def no_maven(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("Maven must not run when the cache is complete")

    monkeypatch.setattr(runtime_module, "_mvn", no_maven)
    progress: list[str] = []

    fetched = fetch_runtime(tmp_path, progress=progress.append)

    assert fetched.kafka.libs_dir == tmp_path / f"kafka-{fetched.kafka.version}" / "libs"
    assert fetched.registry.jar.name == "quarkus-run.jar"
    assert fetched.registry.jar.is_relative_to(tmp_path)
    assert not [line for line in progress if "download" in line or "resolving" in line]


def test_a_stale_stamp_refetches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm_cache(tmp_path)
    version = read_pom_versions().kafka
    (tmp_path / f"kafka-{version}" / STAMP_NAME).write_text("kafka 0.0.1, log4j 0")
    calls: list[list[str]] = []

    def fake_maven(args: list[str], *, maven_repo: Path | None) -> None:
        calls.append(args)
        out = Path(next(arg for arg in args if arg.startswith("-DoutputDirectory=")).split("=", 1)[1])
        out.mkdir(parents=True)
        (out / f"kafka_2.13-{version}.jar").write_bytes(b"")

    monkeypatch.setattr(runtime_module, "_mvn", fake_maven)

    fetch_runtime(tmp_path, registry=False, progress=lambda _line: None)

    assert len(calls) == 1
    assert "kafka" in calls[0]
    assert (tmp_path / f"kafka-{version}" / STAMP_NAME).read_text() == read_pom_versions().kafka_stamp


def test_missing_maven_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "mvn" else real_which(name))

    with pytest.raises(RuntimeMissingError, match=r"install Maven: apt-get install maven"):
        fetch_runtime(tmp_path, registry=False, progress=lambda _line: None)


# -- ports, logs, CLI state ------------------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(6)

    assert len(set(ports)) == 6
    assert all(port_is_free(port) for port in ports)


def test_port_is_free_sees_a_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not port_is_free(listener.getsockname()[1])


def test_log_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))

    assert log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == ""


def test_dev_status_reports_not_running_without_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(state_dir=tmp_path)

    assert dev._kafka_status(args) == 1
    assert dev._registry_status(args) == 1
    assert dev._kafka_down(args) == 0
    assert "not running" in capsys.readouterr().out


def test_dev_down_ignores_a_recorded_pid_that_is_not_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pid 1 is alive but is not a broker: down must not signal it (pid reuse after a reboot).
    state = tmp_path / "kafka" / "state.json"
    state.parent.mkdir()
    recorded = {"pids": [1], "endpoint": "127.0.0.1:1", "nodes": 1, "run_dir": str(tmp_path), "started_at": 0}
    state.write_text(json.dumps(recorded))

    assert dev._kafka_down(argparse.Namespace(state_dir=tmp_path)) == 0
    assert "0 broker process(es)" in capsys.readouterr().out
    assert not state.exists()


def test_every_dev_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="psinfor")
    dev.register(parser.add_subparsers())
    for argv in (
        ["dev"],
        ["dev", "fetch"],
        ["dev", "kafka", "up"],
        ["dev", "kafka", "down"],
        ["dev", "kafka", "status"],
        ["dev", "registry", "up"],
        ["dev", "registry", "down"],
        ["dev", "registry", "status"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([*argv, "--help"])
        assert exit_info.value.code == 0
        assert "usage: psinfor " + " ".join(argv) in capsys.readouterr().out
