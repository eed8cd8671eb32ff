from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config import StartupError
from agent.deadletter import DeadLetterFile
from agent.telemetry import Telemetry
from sinks.delivery import classify_status
from sinks.webhook import WebhookConfig, WebhookSink, verify
from tests.conftest import Receiver, free_port

DOC: dict[str, Any] = {
    "version": "1",
    "id": "abc123",
    "status": "firing",
    "severity": "error",
    "summary": "token spend up",
    "detector": "token_spend",
    "series": {"team": "a"},
    "observed": 10.0,
    "expected": 2.0,
    "impact_usd": 8.0,
    "score": 9.0,
    "lower": 1.0,
    "upper": 4.0,
}


def sink(url: str, tmp_path: Path, **kw: Any) -> tuple[WebhookSink, Telemetry, DeadLetterFile]:
    tel = Telemetry()
    dlq = DeadLetterFile(tmp_path / "dlq.jsonl")
    cfg = WebhookConfig(type="webhook", url=url, **{"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.2, **kw})
    s = WebhookSink(cfg, name="hook", telemetry=tel, state_dir=str(tmp_path), dead_letter=dlq)
    s.start()
    return s, tel, dlq


def test_signed_delivery_verified_by_the_receiver(receiver: Receiver, tmp_path: Path) -> None:
    s, tel, _ = sink(receiver.url + "/hook", tmp_path, secret="k3y", headers={"X-Team": "finops"})
    s.on_alert(DOC)
    assert receiver.wait_for(lambda r: len(r) == 1)
    req = receiver.requests[0]
    assert req.path == "/hook" and req.headers["X-Team"] == "finops"
    assert req.headers["Content-Type"] == "application/json"
    assert orjson.loads(req.body) == DOC
    ts, sig = req.headers["X-FinOps-Timestamp"], req.headers["X-FinOps-Signature"]
    assert abs(int(ts) - time.time()) < 60
    assert verify(b"k3y", ts, req.body, sig)
    assert not verify(b"wrong", ts, req.body, sig)
    assert not verify(b"k3y", ts, req.body + b" ", sig)
    assert req.headers["X-FinOps-Alert-Id"] == "abc123"
    s.stop()
    assert tel.registry.get_sample_value("finops_agent_events_sent_total", {"component": "hook"}) == 1


def test_retries_5xx_and_429_honouring_retry_after(receiver: Receiver, tmp_path: Path) -> None:
    receiver.responses = [(503, {}), (429, {"Retry-After": "1"}), (202, {})]
    s, tel, _ = sink(receiver.url, tmp_path)
    t0 = time.monotonic()
    s.on_alert(DOC)
    assert receiver.wait_for(lambda r: len(r) == 3)
    assert time.monotonic() - t0 >= 1.0  # waited as the receiver asked
    assert s.flush(5)
    s.stop()
    errors = tel.registry.get_sample_value(
        "finops_agent_errors_total", {"component": "hook", "error_type": "retry", "stage": "deliver"}
    )
    assert errors == 2
    assert tel.registry.get_sample_value("finops_agent_events_sent_total", {"component": "hook"}) == 1


def test_4xx_is_permanent_and_dead_lettered(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default = (400, {})
    s, tel, dlq = sink(receiver.url, tmp_path)
    s.on_alert(DOC)
    assert receiver.wait_for(lambda r: len(r) == 1)
    time.sleep(0.5)
    s.stop()
    assert len(receiver.requests) == 1  # never retried
    dlq.close()
    entry = orjson.loads((tmp_path / "dlq.jsonl").read_bytes().splitlines()[0])
    assert entry["kind"] == "delivery_failed" and "HTTP 400" in entry["reason"]
    assert b"abc123" in orjson.loads(entry["original"].encode())["body"].encode()
    assert (
        tel.registry.get_sample_value(
            "finops_agent_events_discarded_total", {"component": "hook", "reason": "delivery_failed"}
        )
        == 1
    )


def test_credentials_in_the_url_become_basic_auth_and_never_reach_the_dead_letter_file(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Slack-style URL whose path is its secret, with user:password@: the receiver gets basic auth, and the
    dead-letter entry of a refused delivery names scheme and host only."""
    receiver.default = (403, {})
    url = receiver.url.replace("http://", "http://bot:Pa%24s456@") + "/services/T0/B0/SLACKTOKEN123"
    caplog.set_level(logging.DEBUG)
    s, _tel, dlq = sink(url, tmp_path)
    s.on_alert(DOC)
    assert receiver.wait_for(lambda r: len(r) == 1)
    time.sleep(0.3)
    s.stop()
    dlq.close()
    req = receiver.requests[0]
    assert req.path == "/services/T0/B0/SLACKTOKEN123"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"bot:Pa$s456").decode()
    written = (tmp_path / "dlq.jsonl").read_text()
    entry = orjson.loads(written.splitlines()[0])
    assert entry["location"] == receiver.url + "/…"
    for secret in ("SLACKTOKEN123", "Pa%24s456", "Pa$s456", "bot:"):
        assert secret not in written and secret not in caplog.text


def test_outbox_survives_a_restart(receiver: Receiver, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens here
    s, _tel, _ = sink(down, tmp_path, backoff_base_seconds=30.0, backoff_cap_seconds=30.0)
    s.on_alert(DOC)
    time.sleep(0.3)
    s.stop(timeout=0.5)
    assert not receiver.requests
    # Same state directory, the receiver now reachable: the pending alert is delivered.
    s2, _tel2, _ = sink(receiver.url + "/hook", tmp_path)
    assert receiver.wait_for(lambda r: len(r) == 1, 20)
    s2.stop()


@pytest.mark.parametrize(
    "status,outcome",
    [
        (200, "ok"),
        (201, "ok"),
        (202, "ok"),
        (204, "ok"),
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (404, "permanent"),
        (408, "retry"),
        (413, "permanent"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
    ],
)
def test_status_code_table(status: int, outcome: str, receiver: Receiver, tmp_path: Path) -> None:
    assert classify_status(status) == outcome
    receiver.responses = [(status, {})]
    receiver.default = (200, {})
    s, _tel, _ = sink(receiver.url, tmp_path, max_attempts=2)
    s.on_alert(DOC)
    expected = 2 if outcome == "retry" else 1
    assert receiver.wait_for(lambda r: len(r) == expected, 10)
    time.sleep(0.2)
    s.stop()
    assert len(receiver.requests) == expected


def test_slack_format(receiver: Receiver, tmp_path: Path) -> None:
    s, _tel, _ = sink(receiver.url, tmp_path, format="slack")
    s.on_alert(DOC)
    assert receiver.wait_for(lambda r: len(r) == 1)
    body = orjson.loads(receiver.requests[0].body)
    assert "token spend up" in body["text"] and body["blocks"][0]["type"] == "section"
    s.stop()


# -- the secret (issue 12, point 6) -------------------------------------------------------------
EMPTY_SECRET = """
sources: {s: {type: file, path: x, decoder: {type: bedrock}}}
detectors: {d: {type: seasonal, signal: token_cost_usd}}
sinks: {w: {type: webhook, url: "http://127.0.0.1:1/x", secret: %s}}
"""


@pytest.mark.parametrize(
    ("value", "env"),
    [('""', {}), ("'   '", {}), ('"${HOOK_SECRET}"', {"HOOK_SECRET": ""}), ('"${HOOK_SECRET:-}"', {})],
    ids=["empty", "blank", "variable-set-empty", "empty-default"],
)
def test_an_empty_secret_is_refused_with_its_path(value: str, env: dict[str, str]) -> None:
    from agent.config import ConfigError, load_config_text

    with pytest.raises(ConfigError) as exc:
        load_config_text(EMPTY_SECRET % value, env=env)
    assert exc.value.errors == [
        "sinks.w.secret: empty secret: deliveries would go unsigned; set a secret or remove the key"
    ]
    assert load_config_text(EMPTY_SECRET % '"${HOOK_SECRET}"', env={"HOOK_SECRET": "s3cret"}).sinks["w"].secret


def test_an_empty_secret_file_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("\n")
    cfg = WebhookConfig(type="webhook", url="http://127.0.0.1:1/x", secret_file=str(tmp_path / "secret"))
    s = WebhookSink(cfg, name="hook", telemetry=Telemetry(), state_dir=str(tmp_path))
    with pytest.raises(StartupError, match="sinks.hook.secret_file: .* is empty"):
        s.start()
    s.stop()


def test_a_missing_or_empty_secret_file_stops_run_with_its_path_and_no_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "empty").write_text("  \n")
    for secret_file, says in ((tmp_path / "nope", "cannot read"), (tmp_path / "empty", "is empty")):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            f"sources: {{t: {{type: file, path: {tmp_path}/in, decoder: {{type: bedrock}}}}}}\n"
            "detectors: {d: {type: threshold, signal: requests, upper: 1, window_seconds: 60}}\n"
            f"sinks: {{hook: {{type: webhook, url: 'http://127.0.0.1:1/x', secret_file: {secret_file}}}}}\n"
            f"state: {{directory: {tmp_path}/state}}\n"
        )
        res = subprocess.run(
            [sys.executable, "-m", "agent", "run", "-c", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert res.returncode == 2, res.stderr
        line = next(ln for ln in res.stderr.splitlines() if ln.strip().startswith("sinks.hook.secret_file:"))
        assert says in line and str(secret_file) in line
        assert "Traceback" not in res.stderr


def _default_webhook(monkeypatch: pytest.MonkeyPatch, secret: str | None, tmp_path: Path) -> WebhookSink:
    from agent.config import load_config

    if secret is None:
        monkeypatch.delenv("FINOPS_WEBHOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("FINOPS_WEBHOOK_SECRET", secret)
    cfg = load_config(None).sinks["webhook"]
    return WebhookSink(cfg, name="webhook", telemetry=Telemetry(), state_dir=str(tmp_path))


def test_the_embedded_defaults_demo_secret_is_warned_about_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sinks.webhook import DEMO_SECRET

    s = _default_webhook(monkeypatch, None, tmp_path)
    assert s.cfg.secret.get_secret_value() == DEMO_SECRET  # what config/default.yaml falls back to
    with caplog.at_level("INFO", logger="sinks.webhook"):
        s.start()
        s.stop()
    warned = [r for r in caplog.records if r.name == "sinks.webhook"]
    assert [r.levelname for r in warned] == ["WARNING"]
    assert "demo secret" in warned[0].getMessage() and "FINOPS_WEBHOOK_SECRET" in warned[0].getMessage()
    assert DEMO_SECRET not in caplog.text  # the value itself is never logged

    caplog.clear()
    s = _default_webhook(monkeypatch, "a-real-one", tmp_path)
    with caplog.at_level("INFO", logger="sinks.webhook"):
        s.start()
        s.stop()
    assert [r for r in caplog.records if r.name == "sinks.webhook"] == []


def _dead_letters(tel: Telemetry) -> float:
    return tel.registry.get_sample_value("finops_agent_dead_letter_records_total") or 0.0


def test_a_resolution_whose_firing_was_dead_lettered_is_dead_lettered_too_not_sent_alone(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.responses = [(500, {}), (500, {})]  # the firing: given up after max_attempts; then the receiver is back
    s, tel, dlq = sink(receiver.url, tmp_path, max_attempts=2)
    s.on_alert(DOC)
    s.on_alert({**DOC, "status": "resolved"})
    assert receiver.wait_for(lambda r: len(r) == 2)
    s.on_alert({**DOC, "id": "other"})  # (delivered after both: the outbox went past the resolution)
    assert receiver.wait_for(lambda r: len(r) == 3)
    assert s.flush(5)
    s.stop()
    dlq.close()
    assert [orjson.loads(r.body)["status"] for r in receiver.requests] == ["firing"] * 3  # no lone "resolved"
    dead = [orjson.loads(x) for x in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    assert [orjson.loads(orjson.loads(d["original"])["body"])["status"] for d in dead] == ["firing", "resolved"]
    assert dead[0]["reason"].startswith("gave up after 2 attempts (max_attempts)")
    assert dead[1]["reason"].startswith("not sent: its firing was never delivered")
    assert _dead_letters(tel) == 2


def test_a_resolution_is_sent_when_an_earlier_firing_of_its_alert_was_delivered(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.responses = [(200, {}), (400, {})]  # the alert's first firing delivered, its escalation refused
    s, tel, _dlq = sink(receiver.url, tmp_path)
    s.on_alert(DOC)
    s.on_alert({**DOC, "severity": "critical"})
    s.on_alert({**DOC, "status": "resolved"})
    assert receiver.wait_for(lambda r: len(r) == 3)
    assert s.flush(5)
    s.stop()
    # (the receiver lists a request once answered: in any order)
    assert sorted(orjson.loads(r.body)["status"] for r in receiver.requests) == ["firing", "firing", "resolved"]
    assert _dead_letters(tel) == 1


def test_an_orphaned_resolution_is_dead_lettered_after_a_restart_too(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default = (400, {})
    s, tel, _dlq = sink(receiver.url, tmp_path)
    s.on_alert(DOC)
    assert receiver.wait_for(lambda r: len(r) == 1)
    assert s.flush(5)
    s.stop()
    receiver.default = (200, {})
    s, tel, dlq = sink(receiver.url, tmp_path)  # the same state dir: the outbox remembers the firing was lost
    s.on_alert({**DOC, "status": "resolved"})
    assert s.flush(5)
    s.stop()
    assert len(receiver.requests) == 1 and _dead_letters(tel) == 1
