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
