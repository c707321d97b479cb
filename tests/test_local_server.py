"""The temporary API server: a port lost to another process is retried on a free one, and a
server that cannot start says why in one line."""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows import local_server
from flows.local_server import LocalServerError


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_port_taken_after_it_was_chosen_is_retried_on_another(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([busy_port])
    real_free_port = local_server._free_port
    # The race: the port was free when chosen, another process bound it before the server did.
    monkeypatch.setattr(local_server, "_free_port", lambda: next(ports, None) or real_free_port())
    first = local_server.launch(tmp_path / "api.log")
    assert first.port == busy_port
    server = local_server.wait_until_healthy(first, timeout_s=120)
    try:
        assert server.port != busy_port and server.process.poll() is None
        assert first.process.poll() is not None
    finally:
        local_server.stop(server)
    assert server.process.poll() is not None


def test_a_fixed_port_in_use_is_reported_before_starting(tmp_path: Path, busy_port: int) -> None:
    with pytest.raises(LocalServerError, match=f"port {busy_port} \\(FEDFLOW_API_PORT\\) is already in use"):
        local_server.launch(tmp_path / "api.log", port=busy_port)


@pytest.mark.slow
def test_a_fixed_port_lost_at_startup_is_reported_as_in_use(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_server, "_port_is_free", lambda port: True)  # free a moment ago
    server = local_server.launch(tmp_path / "api.log", port=busy_port)
    with pytest.raises(LocalServerError, match=f"could not start: port {busy_port} is already in use"):
        local_server.wait_until_healthy(server, timeout_s=120)
    assert server.process.poll() is not None


def test_a_bad_port_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_server.PORT_VARIABLE, "eighty")
    with pytest.raises(LocalServerError, match="FEDFLOW_API_PORT='eighty' is not a port number"):
        local_server.requested_port()
    monkeypatch.setenv(local_server.PORT_VARIABLE, "")
    assert local_server.requested_port() is None
