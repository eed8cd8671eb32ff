"""What a new network sink needs: a config and two methods on the queued-sink base, nothing else.

``ToyLines`` below is the whole component. It is registered like a built-in, configured in YAML, and run
through a real pipeline; the base gives it the durable outbox, retries, once-only delivery and dead letters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest

from agent.config import load_config_text
from agent.pipeline import Agent
from agent.registry import registered
from sinks.delivery import QueuedSink, QueuedSinkConfig, Result
from tests.agent.decoders.test_bedrock import log


# -- the component (what a contributor writes) ----------------------------------------------------
class ToyLinesConfig(QueuedSinkConfig):
    type: Literal["toy_lines"]
    path: str
    refuse: str = ""  # alerts of this detector are refused for good (to show dead-lettering)


class ToyLines(QueuedSink):
    """Appends "<id> <status> <severity>" lines to a file; the first attempt of each delivery fails."""

    cfg: ToyLinesConfig
    attempts: dict[bytes, int] = {}  # noqa: RUF012 (per class: the test reads it)

    def render(self, doc: dict[str, Any]) -> bytes:
        return orjson.dumps({"line": f"{doc['id']} {doc['status']} {doc['severity']}", "detector": doc["detector"]})

    def send(self, body: bytes, alert_id: str) -> Result:
        msg = orjson.loads(body)
        if msg["detector"] == self.cfg.refuse:
            return Result("permanent", "refused")
        self.attempts[body] = self.attempts.get(body, 0) + 1
        if self.attempts[body] == 1:
            return Result("retry", "busy", retry_after=0.0)
        with open(self.cfg.path, "a", encoding="utf-8") as f:
            f.write(msg["line"] + "\n")
        return Result("ok")


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    """In its own module a component registers with ``@register("sink", "toy_lines", ToyLinesConfig)``; here it is
    registered for these tests only, so that other tests see the built-ins alone."""
    with registered("sink", "toy_lines", ToyLinesConfig, ToyLines):
        yield


# -- the test ---------------------------------------------------------------------------------------
def test_a_toy_sink_on_the_queued_base_runs_in_a_real_pipeline(tmp_path: Path) -> None:
    inbox, out, dlq = tmp_path / "inbox", tmp_path / "alerts.txt", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    quiet = [log(timestamp=f"2026-10-01T{h:02d}:10:00Z", requestId=f"q{h}") for h in range(0, 6)]
    burst = [log(timestamp="2026-10-01T06:10:00Z", requestId=f"b{i}") for i in range(40)]
    after = [log(timestamp=f"2026-10-01T{h:02d}:10:00Z", requestId=f"a{h}") for h in range(7, 12)]
    (inbox / "a.jsonl").write_bytes(b"\n".join(quiet + burst + after) + b"\n")
    cfg = f"""
sources: {{tokens: {{type: file, path: {inbox}, decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}}}}}
detectors:
  spend: {{type: threshold, signal: token_cost_usd, upper: 0.1, min_impact_usd: 0, window_seconds: 3600}}
  calls: {{type: threshold, signal: requests, upper: 20, window_seconds: 3600}}
sinks:
  toy: {{type: toy_lines, path: {out}, refuse: calls, backoff_base_seconds: 0.01, backoff_cap_seconds: 0.05}}
state: {{type: local, directory: {tmp_path / "state"}}}
dead_letter: {{path: {dlq}}}
pipeline: {{max_age_days: 3650}}
"""
    agent = Agent(load_config_text(cfg))
    agent.start()
    assert agent.wait_finished(60)
    agent.stop(flush_windows=True)
    assert agent.error is None
    lines = out.read_text().splitlines()
    statuses = [line.split()[1] for line in lines]
    assert statuses == ["firing", "resolved"], lines  # the spend alert, delivered once each after a retry
    assert len({line.split()[0] for line in lines}) == 1
    dead = [orjson.loads(x) for x in dlq.read_bytes().splitlines()]  # the calls alert, refused for good
    assert [(d["source"], d["location"], d["reason"]) for d in dead] == [
        ("toy", "toy", "refused (permanent) after 1 attempt: refused"),
        # its resolution is not sent alone: the receiver never had the alert
        ("toy", "toy", "not sent: its firing was never delivered (dead-lettered), and a resolution alone would tell"
         " the receiver of an alert it never had"),
    ]
    assert {orjson.loads(orjson.loads(d["original"])["body"])["detector"] for d in dead} == {"calls"}
