"""`psinfor schemas register` against a registry that does not answer: one line, exit 1, no traceback."""

from __future__ import annotations

import socket

import pytest

from cli.main import main


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends: nothing listens there


@pytest.mark.timeout(60)
def test_unreachable_registry_is_a_retryable_one_liner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("PSINFOR_REGISTRY__URL", f"http://127.0.0.1:{_closed_port()}/apis/ccompat/v7")

    assert main(["schemas", "register"]) == 1

    err = capsys.readouterr().err
    assert "RetryableError: schema registry unreachable" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
