"""Every network sink through every answer a receiver gives: delivered, retried (408/429/5xx, timeouts, refused
connections, ``Retry-After``) or dead-lettered with the reason (other 4xx) — one table, real loopback servers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.deadletter import DeadLetterFile
from agent.telemetry import Telemetry
from sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from sinks.delivery import QueuedSink
from sinks.pagerduty import PagerDutyConfig, PagerDutySink
from sinks.slack import SlackConfig, SlackSink
from sinks.teams import TeamsConfig, TeamsSink
from sinks.webhook import WebhookConfig, WebhookSink
from tests.conftest import Receiver, free_port, wait_until
from tests.sinks.test_pagerduty import doc

RETRY = {"backoff_base_seconds": 0.05, "backoff_cap_seconds": 0.1, "max_attempts": 3, "timeout_seconds": 0.5}

SINKS: dict[str, Callable[[str], QueuedSink]] = {
    "webhook": lambda url: WebhookSink(WebhookConfig(type="webhook", url=url + "/hook", secret="k", **RETRY), **KW),
    "slack": lambda url: SlackSink(SlackConfig(type="slack", url=url + "/services/T/B/X", **RETRY), **KW),
    "teams": lambda url: TeamsSink(TeamsConfig(type="teams", url=url + "/workflows/x?sig=s", **RETRY), **KW),
    "pagerduty": lambda url: PagerDutySink(
        PagerDutyConfig(type="pagerduty", url=url + "/v2/enqueue", routing_key="rk", **RETRY), **KW
    ),
    "alertmanager": lambda url: AlertmanagerSink(AlertmanagerConfig(type="alertmanager", urls=[url], **RETRY), **KW),
}
KW: dict[str, Any] = {}

# answers in order (status, headers[, body]), seconds of delay per request, what becomes of the event, requests made
CASES: dict[str, tuple[list[tuple[Any, ...]], list[float], str, int]] = {
    "accepted": ([(202, {})], [], "sent", 1),
    "ok": ([(200, {})], [], "sent", 1),
    "bad request": ([(400, {}, b"invalid event")], [], "dead", 1),
    "unauthorized": ([(401, {})], [], "dead", 1),
    "not found": ([(404, {})], [], "dead", 1),
    "rate limited, Retry-After": ([(429, {"Retry-After": "0"}), (202, {})], [], "sent", 2),
    "request timeout": ([(408, {}), (202, {})], [], "sent", 2),
    "server error": ([(500, {}), (503, {}), (202, {})], [], "sent", 3),
    "server error throughout": ([(502, {})] * 3, [], "dead", 3),
    "timeout": ([(202, {}), (202, {})], [1.5], "sent", 2),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", list(SINKS))
def test_every_sink_through_every_answer(kind: str, case: str, receiver: Receiver, tmp_path: Path) -> None:
    answers, delays, outcome, requests = CASES[case]
    receiver.responses, receiver.delays = list(answers), list(delays)
    receiver.default = (202, {})
    tel = Telemetry()
    dlq = DeadLetterFile(tmp_path / "dlq.jsonl")
    KW.update(name=kind, telemetry=tel, state_dir=str(tmp_path), dead_letter=dlq)
    sink = SINKS[kind](receiver.url)
    sink.start()
    sink.on_alert(doc())
    assert receiver.wait_for(lambda r: len(r) >= requests, 10)
    assert sink.flush(10)
    sink.stop()
    dlq.close()
    assert len(receiver.requests) == requests
    sent = tel.registry.get_sample_value("finops_agent_events_sent_total", {"component": kind})
    dead = (tmp_path / "dlq.jsonl").read_bytes().splitlines() if (tmp_path / "dlq.jsonl").exists() else []
    if outcome == "sent":
        assert sent == 1 and not dead
    else:
        assert sent is None and len(dead) == 1
        reason = orjson.loads(dead[0])["reason"]
        status = str(answers[-1][0])
        assert f"after {requests} attempt{'s' if requests > 1 else ''}" in reason and status in reason, reason
    for r in receiver.requests:
        assert orjson.loads(r.body)  # JSON every time, whatever the sink


@pytest.mark.parametrize("kind", list(SINKS))
def test_a_refused_connection_is_retried_then_dead_lettered(kind: str, tmp_path: Path) -> None:
    tel = Telemetry()
    dlq = DeadLetterFile(tmp_path / "dlq.jsonl")
    KW.update(name=kind, telemetry=tel, state_dir=str(tmp_path), dead_letter=dlq)
    sink = SINKS[kind](f"http://127.0.0.1:{free_port()}")  # nothing listens there
    sink.start()
    sink.on_alert(doc())
    assert wait_until(
        lambda: (
            tel.registry.get_sample_value(
                "finops_agent_events_discarded_total", {"component": kind, "reason": "delivery_failed"}
            )
            == 1
        ),
        10,
    )
    sink.stop()
    dlq.close()
    (dead,) = [orjson.loads(x) for x in (tmp_path / "dlq.jsonl").read_bytes().splitlines()]
    # every line of the dead-letter file counts (the shipped PrometheusRule watches this counter)
    assert tel.registry.get_sample_value("finops_agent_dead_letter_records_total") == 1
    assert (
        dead["reason"].startswith("gave up after 3 attempts (max_attempts), the last: ")
        and "refused" in dead["reason"].lower()
    )
    assert (
        tel.registry.get_sample_value(
            "finops_agent_errors_total", {"component": kind, "error_type": "retry", "stage": "deliver"}
        )
        == 3
    )


def _bodies(kind: str, raw: bytes) -> list[tuple[str, str]]:
    """(alert id, status) of what a receiver got, whatever the sink's format."""
    body = orjson.loads(raw)
    if kind == "pagerduty":
        return [(body["dedup_key"], "resolved" if body["event_action"] == "resolve" else "firing")]
    if kind == "webhook":
        return [(body["id"], body["status"])]
    if kind == "slack":
        return [
            (
                body["blocks"][2]["elements"][0]["text"].split("`")[1],
                "resolved" if "white_check_mark" in body["text"] else "firing",
            )
        ]
    card = body["attachments"][0]["content"]
    return [(card["body"][-1]["text"].split()[-1], "resolved" if card["body"][0]["color"] == "Good" else "firing")]


@pytest.mark.parametrize("kind", [k for k in SINKS if k != "alertmanager"])
def test_a_receiver_down_while_the_agent_restarts_gets_everything_once_in_order(kind: str, tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    events = [(i, "firing") for i in range(5)] + [(i, "resolved") for i in range(3)]
    tel = Telemetry()
    KW.update(name=kind, telemetry=tel, state_dir=str(tmp_path), dead_letter=DeadLetterFile(tmp_path / "d.jsonl"))
    RETRY["max_attempts"] = 1000
    try:
        sink = SINKS[kind](url)
        sink.start()
        for i, status in events:
            sink.on_alert(doc(id=f"{i:032x}", status=status, series={"team": f"t{i}"}))
        assert wait_until(
            lambda: (
                (
                    tel.registry.get_sample_value(
                        "finops_agent_errors_total", {"component": kind, "error_type": "retry", "stage": "deliver"}
                    )
                    or 0
                )
                >= 2
            ),
            10,
        )
        sink.stop(0.5)  # the agent stops (or dies) while the receiver is down
        got: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                got.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # the receiver is back
        threading.Thread(target=server.serve_forever, daemon=True).start()
        again = SINKS[kind](url)  # the agent again, on the same state directory
        again.start()
        for i, status in events:  # a replay after the restart re-creates the same events: not sent twice
            again.on_alert(doc(id=f"{i:032x}", status=status, series={"team": f"t{i}"}))
        assert wait_until(lambda: len(got) == len(events), 15), len(got)
        time.sleep(0.3)
        again.stop()
        server.shutdown()
        server.server_close()
    finally:
        RETRY["max_attempts"] = 3
    seen = [pair for raw in got for pair in _bodies(kind, raw)]
    assert sorted(seen) == sorted((f"{i:032x}", s) for i, s in events)  # everything, once
    for i in range(3):  # per alert: firing before resolved
        aid = f"{i:032x}"
        assert seen.index((aid, "firing")) < seen.index((aid, "resolved"))
