"""The agent serves /healthz and /readyz itself, with or without a Prometheus sink; /metrics joins them."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from agent.config import StartupError, load_config_text
from agent.pipeline import Agent
from tests.conftest import free_port, http_get, wait_until


def _config(tmp_path: Path, sinks: str, http: str = "") -> str:
    (tmp_path / "in").mkdir(exist_ok=True)
    return f"""
sources: {{s: {{type: file, path: {tmp_path / "in"}, decoder: {{type: bedrock}}}}}}
detectors: {{d: {{type: seasonal, signal: token_cost_usd}}}}
sinks: {sinks}
state: {{type: local, directory: {tmp_path / "state"}}}
dead_letter: {{path: {tmp_path / "dlq.jsonl"}}}
{http}
"""


def test_probes_without_a_metrics_sink(tmp_path: Path) -> None:
    port = free_port()
    agent = Agent(load_config_text(_config(tmp_path, "{c: {type: console}}", f"http: {{port: {port}}}")))
    agent.start()
    try:
        assert wait_until(lambda: http_get(port, "/readyz") == (200, "ready\n"), 10)
        assert http_get(port, "/healthz") == (200, "ok\n")
        assert http_get(port, "/metrics")[0] == 404  # no Prometheus sink: no /metrics
    finally:
        agent.stop()
    with pytest.raises(OSError):  # stopped with the agent
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_metrics_on_the_agents_port_or_on_its_own(tmp_path: Path) -> None:
    port = free_port()
    agent = Agent(load_config_text(_config(tmp_path, "{m: {type: prometheus}}", f"http: {{port: {port}}}")))
    agent.start()
    try:
        assert wait_until(lambda: http_get(port, "/readyz")[0] == 200, 10)
        assert http_get(port, "/metrics")[0] == 200 and agent.sinks["m"].port == port  # type: ignore[attr-defined]
    finally:
        agent.stop()
    own, metrics = free_port(), free_port()
    sinks = f"{{m: {{type: prometheus, port: {metrics}}}}}"
    agent = Agent(load_config_text(_config(tmp_path, sinks, f"http: {{port: {own}}}")))
    agent.start()
    try:
        assert wait_until(lambda: http_get(own, "/readyz")[0] == 200, 10)
        assert http_get(own, "/metrics")[0] == 404
        assert http_get(metrics, "/metrics")[0] == 200 and http_get(metrics, "/healthz")[0] == 200
    finally:
        agent.stop()


def test_the_default_address_is_the_metrics_sinks_and_http_can_be_off(tmp_path: Path) -> None:
    metrics = free_port()
    agent = Agent(load_config_text(_config(tmp_path, f"{{m: {{type: prometheus, port: {metrics}}}}}")))
    assert [(s.address, s.requested_port) for s in agent.servers] == [("127.0.0.1", metrics)]
    agent.stop()
    agent = Agent(load_config_text(_config(tmp_path, "{c: {type: console}}", "http: {enabled: false}")))
    assert agent.servers == [] and agent.http is None
    agent.stop()


def test_a_port_in_use_fails_at_start_with_what_to_change(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        agent = Agent(load_config_text(_config(tmp_path, "{c: {type: console}}", f"http: {{port: {port}}}")))
        with pytest.raises(StartupError, match=rf"http: cannot listen on 127.0.0.1:{port}: .*set http.port"):
            agent.start()
        agent.stop()


def test_a_bad_port_in_the_environment_fails_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_HTTP_PORT", "abc")
    with pytest.raises(StartupError, match="FINOPS_HTTP_PORT='abc' is not a port"):
        Agent(load_config_text(_config(tmp_path, "{c: {type: console}}")))


def test_a_client_that_goes_away_mid_answer_leaves_no_traceback(capfd: Any) -> None:
    """A scraper that hangs up (a timeout, a stopped Prometheus) is not the agent's error: no trace on stderr."""
    from agent.server import HttpServer

    big = b"x" * (8 << 20)  # more than the socket buffers hold: the write meets the closed connection
    server = HttpServer("127.0.0.1", 0)
    server.routes["/big"] = lambda: (200, big, "text/plain")
    server.start()
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                s.recv(100)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        time.sleep(0.5)
    finally:
        server.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]
