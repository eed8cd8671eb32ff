"""Config reload: SIGHUP or a changed config file (a ConfigMap update) runs the new detector set, the old series keep
their state; an invalid config is refused and the agent runs on; liveness says whether the pipeline turns."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load_config_text
from agent.reload import ConfigWatch, changes, reload
from agent.runtime import Health
from tests.conftest import ROOT, free_port, wait_until

T0 = 1_760_000_400  # an hour start, 2025-10-09


def _config(tmp: Path, port: int, detectors: str) -> str:
    return f"""
sources:
  calls:
    type: file
    path: {tmp}/in
    watch: true
    poll_interval_seconds: 0.2
    decoder: {{type: json, time_field: ts, values: {{cost_usd: cost}}, dimensions: {{team: team}}}}
detectors:
{detectors}
sinks:
  metrics: {{type: prometheus, listen_address: 127.0.0.1, port: {port}}}
  out: {{type: jsonl, path: {tmp}/alerts.jsonl}}
state: {{directory: {tmp}/state, checkpoint_interval_seconds: 0.5}}
dead_letter: {{path: {tmp}/state/dead-letter.jsonl}}
pipeline: {{max_age_days: 0, allowed_lateness_seconds: 0, idle_timeout_seconds: null}}
"""


SPEND = "  spend: {type: threshold, signal: cost_usd, upper: 100000, group_by: [team], window_seconds: 3600}\n"
CALLS = "  per_call: {type: threshold, signal: cost_usd, upper: 100000, window_seconds: 3600}\n"
CAP = "  cap: {type: threshold, signal: cost_usd, upper: 0.5, min_impact_usd: 0.01, window_seconds: 3600}\n"


def _hours(tmp: Path, name: str, hours: range) -> None:
    lines = [orjson.dumps({"ts": T0 + h * 3600 + 60, "team": "search", "cost": 1.0}) for h in hours]
    (tmp / "in" / name).write_bytes(b"\n".join(lines) + b"\n")


def _scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:  # not listening (yet, or between the two agents of a reload)
        return 0, ""


def _alerts(tmp: Path, detector: str, status: str) -> list[dict]:
    path = tmp / "alerts.jsonl"
    docs = [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []
    return [d for d in docs if d["detector"] == detector and d["status"] == status]


def _detectors(port: int) -> set[str]:
    status, text = _scrape(port)
    fams = {f.name: f for f in text_string_to_metric_families(text)} if status == 200 else {}
    scores = fams.get("finops_anomaly_score")
    return {s.labels["detector"] for s in scores.samples} if scores is not None else set()


def test_a_changed_config_file_and_sighup_reload_without_losing_state(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "in").mkdir()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(_config(tmp_path, port, SPEND + CAP))  # cap fires: $1 an hour over its $0.50
    _hours(tmp_path, "a.jsonl", range(0, 6))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(cfg), "--config-check-seconds", "0.3"],
        cwd=ROOT,
        env={**os.environ},
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
    try:
        assert wait_until(lambda: _detectors(port) == {"spend", "cap"}, 30), lines
        assert wait_until(lambda: _alerts(tmp_path, "cap", "firing"), 30), lines[-5:]
        # Logs are JSON lines when stderr is no terminal (a container's).
        assert all(ln.startswith("{") for ln in lines if ln.strip()), lines[:3]
        # An invalid config is refused with its errors and paths; the agent runs on.
        cfg.write_text(_config(tmp_path, port, SPEND + CAP + "  broken: {type: threshold, signal: cost_usd}\n"))
        assert wait_until(lambda: any("not reloaded" in ln for ln in lines), 15), lines[-5:]
        assert any("detectors.broken" in ln for ln in lines if "not reloaded" in ln)
        assert _scrape(port, "/healthz")[0] == 200
        # A new detector set: the file changes (as a ConfigMap update does), the agent reloads in place; the
        # removed detector's firing alert is resolved (no receiver keeps it open for ever).
        cfg.write_text(_config(tmp_path, port, SPEND.replace("100000", "200000") + CALLS))
        assert wait_until(lambda: any("config reloaded" in ln for ln in lines), 30), lines[-5:]
        (resolved,) = _alerts(tmp_path, "cap", "resolved")
        assert "removed by a config reload" in resolved["summary"]
        assert resolved["id"] == _alerts(tmp_path, "cap", "firing")[0]["id"]
        restored = [ln for ln in lines if "state restored" in ln]
        assert len(restored) == 1 and "1 series" in restored[0], restored  # spend's team=search (only retuned), kept
        _hours(tmp_path, "b.jsonl", range(6, 9))  # read on from the position: the new detector scores them
        assert wait_until(lambda: _detectors(port) == {"spend", "per_call"}, 30), lines[-5:]
        # SIGHUP with nothing changed: nothing restarts.
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: any("nothing changed" in ln for ln in lines), 15), lines[-5:]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
    assert rc == 0, lines[-10:]
    points = [ln for ln in lines if '"state restored' in ln]
    assert len(points) == 1  # (the first start found no state; only the reload restored it)


def test_what_changed_is_said_by_section() -> None:
    base = "sources: {f: {type: file, path: x, decoder: {type: json, values: {c: c}}}}\nsinks: {c: {type: console}}\n"
    old = load_config_text(base + "detectors: {a: {type: threshold, signal: c, upper: 1}}\n")
    new = load_config_text(
        base + "detectors: {a: {type: threshold, signal: c, upper: 2}, b: {type: threshold, signal: c, upper: 1}}\n"
    )
    assert changes(old, new) == {"detectors added": ["b"], "detectors changed": ["a"]}
    assert changes(old, old) == {}


def test_a_config_watch_sees_a_new_file_not_a_missing_moment(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("a: 1\n")
    watch = ConfigWatch(str(path))
    assert not watch.changed()
    path.unlink()
    assert not watch.changed()  # (a ConfigMap swap: missing for a moment)
    path.write_text("a: 2, b: 3\n")
    assert watch.changed() and not watch.changed()


def test_liveness_fails_when_the_pipeline_thread_is_stuck() -> None:
    h = Health()
    h.mark_alive()
    assert h.alive()  # (restored, the thread not turning yet)
    h.beat = time.monotonic()
    assert h.alive()
    h.beat = time.monotonic() - h.stall_seconds - 1  # stuck in one step
    assert not h.alive()
    h.standby("standby: waiting")
    assert h.alive() and h.ready() and h.standby_reason == "standby: waiting"  # ready as a standby


def test_a_refused_config_is_logged_once_per_content(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGHUP, then the file watch a moment later (or a second SIGHUP) on the same invalid file: one error, not two;
    a new invalid content is news again."""
    path = tmp_path / "cfg.yaml"
    path.write_text("sources: {}\ndetectors: {d: {type: threshold, signal: token_cost_usd}}\n")
    running, cfg = object(), object()
    caplog.set_level(logging.DEBUG, logger="agent")

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    def never_built(c: object) -> object:
        raise AssertionError("an invalid config builds no agent")

    for _ in range(3):
        assert reload(running, cfg, str(path), never_built, 1.0) == (running, cfg)  # runs on with what it has
    assert len(refusals()) == 1 and refusals()[0].startswith(f"config {path} not reloaded: ")
    path.write_text("sources: {}\ndetectors: {d: {type: threshold, signal: token_cost_usd, upper: -}}\n")
    reload(running, cfg, str(path), never_built, 1.0)
    assert len(refusals()) == 2
