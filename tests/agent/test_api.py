"""The agent's API (/api/v1/silences) on its real HTTP server: the token, and silences made, listed and expired."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config import load_config_text
from agent.pipeline import Agent
from tests.agent.decoders.test_bedrock import log
from tests.conftest import wait_until

TOKEN = "t0ken-0123456789abcdef"

CONFIG = """
sources: {{s: {{type: file, path: {inbox}, watch: true, decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}}}}}
pipeline: {{max_age_days: 3650}}
detectors: {{token_spend: {{type: seasonal, signal: token_cost_usd, group_by: [team]}}}}
sinks: {{metrics: {{type: prometheus}}}}
state: {{directory: {state}}}
dead_letter: {{path: {state}/dlq.jsonl}}
http: {{port: 0{token}}}
silences:
  - {{matchers: [team=research], ends_at: '2099-01-01T00:00:00Z', comment: planned, created_by: finops}}
"""


def call(port: int, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=orjson.dumps(body) if body is not None else None,
        headers={"Authorization": f"Bearer {token}"} if token is not None else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        assert TOKEN.encode() not in raw  # never reflected
        return exc.code, orjson.loads(raw)


@pytest.fixture
def agent(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Agent]:
    (tmp_path / "inbox").mkdir()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with_token = getattr(request, "param", True)
    text = CONFIG.format(
        inbox=tmp_path / "inbox",
        state=tmp_path / "state",
        token=f", api_token_file: {token_file}" if with_token else "",
    )
    a = Agent(load_config_text(text))
    a.start()
    try:
        yield a
    finally:
        a.stop()


def test_the_api_wants_the_token(agent: Agent) -> None:
    assert agent.http is not None
    port = agent.http.port
    code, body = call(port, "GET", "/api/v1/silences", token=None)
    assert code == 401 and "bearer token is required" in body["error"]
    assert call(port, "POST", "/api/v1/silences", {"matchers": ["a=b"]}, token="wrong")[0] == 403
    assert call(port, "DELETE", "/api/v1/silences/x", token="wrong")[0] == 403
    code, body = call(port, "GET", "/api/v1/silences")
    assert code == 200 and [s["origin"] for s in body] == ["config"]


@pytest.mark.parametrize("agent", [False], indirect=True)
def test_without_a_token_configured_the_api_refuses_everything(agent: Agent) -> None:
    assert agent.http is not None
    assert call(agent.http.port, "GET", "/api/v1/silences", token="anything")[0] == 403


def test_silences_are_made_listed_and_expired_and_survive_a_restart(agent: Agent, tmp_path: Path) -> None:
    assert agent.http is not None
    port = agent.http.port
    code, body = call(port, "POST", "/api/v1/silences", {"matchers": ["team"], "comment": ""})
    assert code == 400
    assert "matchers: 'team' is not a matcher" in body["error"] and "comment: required" in body["error"]
    assert "ends_at or duration_seconds: required" in body["error"]
    new = {
        "matchers": ["team=ml", 'model=~"claude.*"'],
        "duration_seconds": 3600,
        "comment": "migration",
        "created_by": "bob",
    }
    code, made = call(port, "POST", "/api/v1/silences", new)
    assert code == 201 and made["status"] == "active" and made["matchers"] == new["matchers"]
    code, listed = call(port, "GET", "/api/v1/silences")
    assert {s["id"] for s in listed} >= {made["id"]}
    config_id = next(s["id"] for s in listed if s["origin"] == "config")
    assert call(port, "DELETE", f"/api/v1/silences/{config_id}")[0] == 409
    assert call(port, "DELETE", "/api/v1/silences/nope")[0] == 404
    code, ended = call(port, "DELETE", f"/api/v1/silences/{made['id']}")
    assert code == 200 and ended["status"] == "expired"
    code, made2 = call(port, "POST", "/api/v1/silences", {**new, "comment": "kept"})
    agent.stop()
    again = Agent(agent.cfg)
    again.start()
    try:
        assert again.http is not None
        code, listed = call(again.http.port, "GET", "/api/v1/silences")
        by_id = {s["id"]: s for s in listed}
        assert by_id[made2["id"]]["status"] == "active" and by_id[made["id"]]["status"] == "expired"
    finally:
        again.stop()


def test_the_cli_makes_lists_and_expires_silences(
    agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent import cli

    assert agent.http is not None
    url = f"http://127.0.0.1:{agent.http.port}"
    monkeypatch.delenv("FINOPS_API_TOKEN", raising=False)
    assert cli.main(["silence", "list", "--url", url]) == 2  # no token: says how to give one
    assert "FINOPS_API_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("FINOPS_API_TOKEN", "wrong")
    assert cli.main(["silence", "list", "--url", url]) == 1
    assert "HTTP 403: wrong token" in capsys.readouterr().err
    token = tmp_path / "token"
    args = ["--url", url, "--token-file", str(token)]
    assert (
        cli.main(["silence", "add", "team=ml", "--duration", "2h", "--comment", "eval", "--author", "ana", *args]) == 0
    )
    made = capsys.readouterr().out
    sid = made.split()[0]
    assert "active" in made and "team=ml" in made and "by ana: eval (api)" in made
    assert cli.main(["silence", "list", *args]) == 0
    assert sid in capsys.readouterr().out
    assert cli.main(["silence", "expire", sid, *args]) == 0
    assert "expired" in capsys.readouterr().out
    assert cli.main(["silence", "add", "team", "--duration", "1h", "--comment", "x", "--author", "y", *args]) == 1
    assert "is not a matcher" in capsys.readouterr().err


def _hourly_calls(start: float, hours: int, calls: Callable[[int], int]) -> bytes:
    from agent.model import iso

    lines = []
    for h in range(hours):
        for i in range(calls(h)):
            lines.append(log(timestamp=iso(start + h * 3600 + i * 3600 // max(calls(h), 1)), requestId=f"r{h}-{i}"))
    return b"\n".join(lines) + b"\n"


def test_feedback_expected_resolves_the_alert_and_the_new_level_is_not_paged(tmp_path: Path) -> None:
    from agent.backtest import PointCollector
    from agent.model import parse_time

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "token").write_text(TOKEN)
    start = parse_time("2026-11-01T00:00:00Z")
    day = 24 * 10
    usual = lambda h: 60 + int(30 * math.sin(2 * math.pi * (h % 24) / 24))  # noqa: E731
    (inbox / "a.jsonl").write_bytes(_hourly_calls(start, day + 6, lambda h: usual(h) * (4 if h >= day else 1)))
    text = CONFIG.format(inbox=inbox, state=tmp_path / "state", token=f", api_token_file: {tmp_path / 'token'}")
    got = PointCollector()
    agent = Agent(load_config_text(text), extra_sinks={"c": got})
    agent.start()
    try:
        assert wait_until(lambda: any(a["status"] == "firing" for a in got.alerts), 60), got.alerts
        (firing,) = [a for a in got.alerts if a["status"] == "firing"]
        assert agent.http is not None
        port = agent.http.port
        bad = call(port, "POST", f"/api/v1/alerts/{firing['id']}/feedback", {"verdict": "fine"})
        assert bad[0] == 400 and "verdict: 'expected'" in bad[1]["error"] and "created_by: required" in bad[1]["error"]
        assert call(port, "POST", "/api/v1/alerts/nope/feedback", FEEDBACK)[0] == 404
        code, body = call(port, "POST", f"/api/v1/alerts/{firing['id']}/feedback", FEEDBACK)
        assert code == 200 and body == {"id": firing["id"], "verdict": "expected", "resolved": True}
        resolved = [a for a in got.alerts if a["status"] == "resolved"]
        assert [a["id"] for a in resolved] == [firing["id"]]
        assert resolved[0]["summary"].startswith("[token_spend] marked expected by ana: research doubles")
        # Two more days at the new level: no alert.
        with open(inbox / "a.jsonl", "ab") as fh:
            fh.write(_hourly_calls(start + (day + 6) * 3600, 48, lambda h: usual(h + day + 6) * 4))
        assert wait_until(lambda: agent.records_in >= sum(usual(h) for h in range(day)) + 4 * 60 * 50, 60)
        time.sleep(1.0)
        assert [a["status"] for a in got.alerts] == ["firing", "resolved"]
    finally:
        agent.stop()


FEEDBACK = {"verdict": "expected", "comment": "research doubles its spend", "created_by": "ana"}


def test_a_planned_change_is_silenced_and_its_new_level_learned(tmp_path: Path) -> None:
    from agent.backtest import PointCollector
    from agent.model import parse_time

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    start = parse_time("2026-11-01T00:00:00Z")
    day = 24 * 10
    usual = lambda h: 60 + int(30 * math.sin(2 * math.pi * (h % 24) / 24))  # noqa: E731
    (inbox / "a.jsonl").write_bytes(_hourly_calls(start, day + 54, lambda h: usual(h) * (4 if h >= day else 1)))
    text = CONFIG.format(inbox=inbox, state=tmp_path / "state", token="")
    text += (
        "  - {matchers: [team=search], starts_at: '2026-11-10T00:00:00Z', ends_at: '2099-01-01T00:00:00Z',\n"
        "     comment: search quadruples for the launch, created_by: ana, planned_change: true}\n"
    )
    got = PointCollector()
    agent = Agent(load_config_text(text), extra_sinks={"c": got})
    agent.start()
    try:
        assert wait_until(lambda: [a["status"] for a in got.alerts] == ["firing", "resolved"], 60), got.alerts
        firing, resolved = got.alerts
        assert firing["silenced"] is True and resolved["summary"].startswith(
            "[token_spend] marked expected by ana: search quadruples for the launch"
        )
        assert wait_until(lambda: agent.records_in >= sum(usual(h) for h in range(day)) + 4 * 60 * 50, 60)
        time.sleep(1.0)
        assert len(got.alerts) == 2  # the new level is not paged
    finally:
        agent.stop()
