"""`finops-agent run` on the embedded default: alerts on the console, at the webhook and at /metrics; clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from sinks.webhook import verify
from tests.conftest import ROOT, Receiver, free_port, wait_until

SECRET = "test-secret-value"


def _start(demo: Path, state: Path, receiver: Receiver, port: int, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    env = {
        **os.environ,
        "FINOPS_DEMO_DIR": str(demo),
        "FINOPS_INBOX": str(state / "inbox"),
        "FINOPS_STATE_DIR": str(state),
        "FINOPS_WEBHOOK_URL": receiver.url + "/alerts",
        "FINOPS_WEBHOOK_SECRET": SECRET,
        "FINOPS_METRICS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_run_default_finds_the_demo_anomalies(demo_month: Path, tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    proc, lines = _start(demo_month, tmp_path, receiver, port)
    try:

        def firing() -> list[str]:
            return [ln for ln in lines if ln.startswith("FIRING")]

        assert wait_until(
            lambda: (
                {
                    d
                    for d in ("token_spend", "unit_cost", "gpu_hours", "idle_gpu")
                    if any(f"[{d}]" in ln for ln in firing())
                }
                == {"token_spend", "unit_cost", "gpu_hours", "idle_gpu"}
            ),
            60,
        ), "\n".join(lines[-30:])
        assert all("$" in ln for ln in firing())  # every alert line carries dollars
        assert any("support-bot" in ln and "impact +$" in ln for ln in firing())
        # /metrics serves the anomaly outputs and the agent's own metrics.
        assert wait_until(lambda: _scrape(port)[0] == 200, 10)
        fams = {f.name: f for f in text_string_to_metric_families(_scrape(port)[1])}
        for name in (
            "finops_anomaly_score",
            "finops_observed_value",
            "finops_expected_value",
            "finops_expected_upper",
            "finops_alerts_firing",
            "finops_agent_events_received",
            "finops_gpu_hour_price_usd",  # the rate the demo's H100s are priced at
        ):
            assert name in fams, sorted(fams)
        detectors = {s.labels["detector"] for s in fams["finops_anomaly_score"].samples}
        assert detectors == {
            "token_spend",
            "unit_cost",
            "prompt_bloat",
            "call_rate",
            "prompt_cache",
            "gpu_hours",
            "idle_gpu",
        }
        manifest = orjson.loads((demo_month / "anomalies.json").read_bytes())

        def received() -> float:
            fams = {f.name: f for f in text_string_to_metric_families(_scrape(port)[1])}
            return sum(s.value for s in fams["finops_agent_events_received"].samples if s.name.endswith("_total"))

        assert wait_until(lambda: received() >= manifest["bedrock_records"] + manifest["dcgm_samples"], 30)
        assert _scrape(port, "/healthz")[0] == 200 and _scrape(port, "/readyz")[0] == 200
        # The webhook received signed alert documents.
        assert receiver.wait_for(lambda reqs: len(reqs) >= 4, 30)
        for req in receiver.requests:
            assert verify(
                SECRET.encode(), req.headers["X-FinOps-Timestamp"], req.body, req.headers["X-FinOps-Signature"]
            )
            doc = orjson.loads(req.body)
            assert doc["version"] == "1" and doc["id"] == req.headers["X-FinOps-Alert-Id"]
        assert SECRET not in "\n".join(lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0, "\n".join(lines[-20:])
    assert any("stopped cleanly" in ln for ln in lines)
    alerts_before = len(receiver.requests)

    # Restart (Ctrl-C this time): state and file positions are restored, nothing is re-read or re-alerted.
    proc, lines = _start(demo_month, tmp_path, receiver, port)
    try:
        assert wait_until(lambda: any("agent running" in ln for ln in lines), 30), lines
        time.sleep(3)
        assert not [ln for ln in lines if ln.startswith("FIRING")]
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
    assert rc == 0
    assert len(receiver.requests) == alerts_before
