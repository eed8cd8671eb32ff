from __future__ import annotations

import io

import orjson

from agent.telemetry import Telemetry
from sinks.console import ConsoleConfig, ConsoleSink
from tests.sinks.test_webhook import DOC


def test_readable_and_json_lines() -> None:
    out = io.StringIO()
    s = ConsoleSink(ConsoleConfig(type="console"), name="c", telemetry=Telemetry(), stream=out)
    s.on_alert(DOC)
    s.on_alert({**DOC, "status": "resolved", "lower": None})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("FIRING   error    token spend up") and "band 1..4" in lines[0]
    assert lines[1].startswith("RESOLVED")
    out = io.StringIO()
    s = ConsoleSink(ConsoleConfig(type="console", json_lines=True), name="c", telemetry=Telemetry(), stream=out)
    s.on_alert({**DOC, "lower": None})
    assert orjson.loads(out.getvalue()) == {**DOC, "lower": None}


def test_threshold_escalation_and_resolution_read_correctly() -> None:
    """The runner's own documents: the limit (not an expected value), the escalation, the episode's impact."""
    from tests.agent.test_detect import feed_idle, idle_runner

    r = idle_runner()
    feed_idle(r, range(0, 5), 0.1)
    docs = feed_idle(r, range(5, 6), 1.0, cost_per_idle_hour=1.3125)  # $10.50 an hour: $252 a day → error
    docs += feed_idle(r, range(6, 7), 1.0) + feed_idle(r, range(7, 9), 0.1)  # $98 an hour: critical
    out = io.StringIO()
    s = ConsoleSink(ConsoleConfig(type="console"), name="c", telemetry=Telemetry(), stream=out)
    for d in docs:
        s.on_alert(d)
    first, escalated, resolved = out.getvalue().splitlines()
    assert first.startswith("FIRING   error    [idle_gpu]") and "100 % idle (limit 50 %)" in first
    assert "[limit 0.5; id " in first and "band" not in first and "expected" not in first
    assert escalated.startswith("FIRING   critical escalated to critical: [idle_gpu]")
    assert resolved.startswith("RESOLVED critical [idle_gpu] resolved") and "episode impact +$108.50" in resolved


def test_a_silence_made_or_ended_while_an_alert_fires_is_said_once() -> None:
    """New-user review: the same FIRING line was printed again when a silence muted the alert and again when the
    silence ended, with nothing saying it was silenced."""
    out = io.StringIO()
    s = ConsoleSink(ConsoleConfig(type="console"), name="c", telemetry=Telemetry(), stream=out)
    s.on_alert({**DOC, "silenced": False})
    s.on_alert({**DOC, "silenced": True, "silenced_by": ["s1"]})
    s.on_alert({**DOC, "silenced": True, "silenced_by": ["s1"]})  # the same again: nothing
    s.on_alert({**DOC, "silenced": False, "silenced_by": None})
    s.on_alert({**DOC, "revision": DOC.get("revision", 0) + 1, "silenced": True, "silenced_by": ["s1"]})
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[0].startswith("FIRING")
    assert lines[1].startswith("SILENCED error") and lines[1].endswith("(by s1)")
    assert lines[2].startswith("UNSILENCED error") and lines[2].endswith("still firing")
    assert lines[3].startswith("FIRING") and lines[3].endswith("(silenced)")  # a new revision, silenced
