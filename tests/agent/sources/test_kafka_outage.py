"""Broker outages of any length on a real broker that is stopped and started again (the ``kafka_broker`` fixture).

The agent waits them out: it never dies, liveness stays 200, readiness says "cannot checkpoint" with the
reason, the checkpoint age grows and drops again, and the result equals a one-process backtest.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.model import parse_time
from agent.pipeline import Agent
from agent.sources.kafka import FatalKafkaError
from agent.state import MemoryStateStore
from agent.topology import LocalTopology
from scripts.kafka_broker import KafkaBroker, create_topic
from tests.agent.sources.test_kafka import _committed, _quiet, demo_lines, produce
from tests.conftest import ROOT, Receiver, free_port, http_get, wait_until

CONFIG = """
sources:
  tokens:
    type: kafka
    bootstrap_servers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: g-{topic}
    decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}
detectors:
  token_spend:
    {{type: seasonal, signal: token_cost_usd, group_by: [team], contributors_by: [model], window_seconds: 3600,
      min_impact_usd: 20}}
  unit_cost:
    {{type: seasonal, signal: token_cost_usd, per: tokens, per_scale: 1000, group_by: [team],
      contributors_by: [model], window_seconds: 3600, min_impact_usd: 5}}
  requests: {{type: threshold, signal: requests, group_by: [team, model], upper: 1.0e12, window_seconds: 900}}
sinks:
  metrics: {{type: prometheus, port: 0}}
state: {{type: kafka, directory: {directory}, checkpoint_interval_seconds: 1, partitions: 4}}
dead_letter: {{path: {directory}/dead-letter.jsonl}}
pipeline: {{max_age_days: 3650}}
"""


def test_a_broker_restarts_on_its_directory_and_address(kafka_broker: KafkaBroker) -> None:
    """Stopped (SIGTERM) and started again: same address, cluster id and data; a second object on the same
    directory finds the running broker and can stop it (what the CLI's start / stop / restart do)."""
    bs = kafka_broker.bootstrap
    name = create_topic(bs, 2)
    p = KafkaProducer(bootstrap_servers=bs)
    for i in range(10):
        p.send(name, value=b"r%d" % i, partition=i % 2)
    p.flush(30)
    p.close()
    cluster = _cluster_id(bs)
    kafka_broker.restart(down=1.0)
    assert kafka_broker.bootstrap == bs and _cluster_id(bs) == cluster
    c = KafkaConsumer(name, bootstrap_servers=bs, auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    assert sorted(m.value for m in c) == sorted(b"r%d" % i for i in range(10))
    c.close()
    other = KafkaBroker(kafka_broker.workdir)
    assert other.bootstrap == bs and other.running()
    other.stop()
    # The process that started the broker sees it gone once its own handle reaps the exit (a moment later
    # than the second object, which watches the pid, on a busy machine).
    assert wait_until(lambda: not kafka_broker.running(), 30)
    kafka_broker.start()
    assert _cluster_id(bs) == cluster


def _cluster_id(bs: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bs)
    try:
        return str(admin.describe_cluster()["cluster_id"])
    finally:
        admin.close()


def _age(agent: Agent) -> float:
    v = agent.telemetry.registry.get_sample_value("finops_agent_checkpoint_age_seconds")
    assert v is not None
    return float(v)


def _failures(agent: Agent) -> float:
    return sum(
        s.value for m in agent.telemetry.checkpoint_failures.collect() for s in m.samples if s.name.endswith("_total")
    )


def _outage(broker: KafkaBroker, agent: Agent, seconds: float) -> dict[str, Any]:
    """Stop the broker for ``seconds``, probing the agent every half second; start it again and wait until the
    agent is ready and checkpointing. Returns what was seen."""
    port = agent.metrics_port()
    assert port is not None
    seen: dict[str, Any] = {"healthz": set(), "readyz": [], "ages": [], "failures_before": _failures(agent)}
    broker.stop()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        assert agent.error is None, agent.error
        seen["healthz"].add(http_get(port, "/healthz")[0])
        seen["readyz"].append(http_get(port, "/readyz"))
        seen["ages"].append(_age(agent))
        time.sleep(0.5)
    broker.start()
    back = time.monotonic()
    assert wait_until(lambda: http_get(port, "/readyz")[0] == 200, 120), http_get(port, "/readyz")
    assert wait_until(lambda: _age(agent) < 5, 60), _age(agent)
    seen["recovered_s"] = time.monotonic() - back
    print(
        f"outage of {seconds} s: broker back in {back - t0 - seconds:.1f} s, "
        f"agent ready {seen['recovered_s']:.1f} s later"
    )
    seen["failures"] = _failures(agent) - seen["failures_before"]
    return seen


@pytest.mark.timeout(600)  # 175 s of outages, a month of records, a backtest
def test_outages_of_10_45_and_120_s_are_waited_out(kafka_broker: KafkaBroker, demo_month: Path, tmp_path: Path) -> None:
    """A month produced unkeyed to 6 partitions in four parts with a broker outage between each part: 10 s
    right after the first part was handed over (state in memory, not checkpointed), 45 s and 120 s with nothing
    left to read. The agent never dies and ends with the window sums and firing alerts of a backtest."""
    bs = kafka_broker.bootstrap
    name = create_topic(bs, 6)

    def produce(days: range) -> int:
        lines = demo_lines(demo_month, days)
        p = KafkaProducer(bootstrap_servers=bs, linger_ms=20, batch_size=256 * 1024)
        for i, line in enumerate(lines):
            p.send(name, value=line, partition=i % 6)
        p.flush(60)
        p.close()
        return len(lines)

    text = CONFIG.format(bootstrap=bs, topic=name, directory=tmp_path / "state")
    got = PointCollector()
    agent = Agent(load_config_text(text), extra_sinks={"c": got})
    t_start = time.monotonic()
    n = produce(range(0, 8))
    agent.start()
    outages = {}
    try:
        assert wait_until(lambda: agent.health.ready() and agent.records_in > 0, 90), agent.health.not_ready()
        outages[10] = _outage(kafka_broker, agent, 10)
        for days, length in ((range(8, 15), 45), (range(15, 22), 120)):
            assert wait_until(lambda n=n: agent.records_in >= n, 120), (agent.records_in, n)  # all so far
            assert wait_until(lambda: _settled(got), 60)  # caught up: nothing left to read
            outages[length] = _outage(kafka_broker, agent, length)
            n += produce(days)
        n += produce(range(22, 30))
        assert wait_until(lambda: agent.records_in >= n, 180), (agent.records_in, n)
        # Every window the stream can close (all but the last hours, held open by the allowed lateness) closes.
        horizon = _horizon(demo_month, text)
        assert wait_until(lambda: _closed_until(got) >= horizon, 180), (_closed_until(got), horizon)
        assert wait_until(lambda: _settled(got, quiet=3.0), 60)
        assert agent.error is None
    finally:
        agent.stop()
    assert agent.error is None
    print(f"streaming run done at {time.monotonic() - t_start:.0f} s")

    for length, seen in outages.items():
        assert seen["healthz"] == {200}, (length, seen["healthz"])  # alive throughout: it waits on purpose
        reasons = [body for code, body in seen["readyz"] if code == 503]
        assert reasons and all(b.startswith("not ready: ") for b in reasons), (length, seen["readyz"][-3:])
        assert any("cannot checkpoint for" in b and "KafkaTimeoutError" in b for b in reasons), (length, reasons[-3:])
        ages = seen["ages"]
        assert ages[-1] >= length - 5 and ages[-1] > ages[0], (length, ages[:3], ages[-3:])  # grows...
        assert seen["failures"] >= 2, (length, seen)  # ...retried (with backoff), counted
    # Backoff: a 120 s outage costs few attempts (1 s doubling to 30 s), not one per second.
    assert outages[120]["failures"] <= 20, outages[120]["failures"]

    # One process over the same records, as a backtest on the files.
    ref, one = _reference(demo_month, text)
    expected, sums = _sums(ref), _sums(got)
    # The streaming run has not closed its last windows (allowed lateness): compare every window it could close.
    cutoff = max(k[2] for k in sums)
    assert cutoff >= max(k[2] for k in expected) - 2 * 3600
    want = {k: v for k, v in expected.items() if k[2] <= cutoff - 3600}
    missing = sorted(set(want) - set(sums), key=lambda k: k[2])
    assert missing == [], (len(missing), missing[:5])
    diff = {k: (v, sums[k]) for k, v in want.items() if not math.isclose(v, sums[k], rel_tol=1e-9, abs_tol=1e-9)}

    def firing(c: PointCollector) -> set[str]:
        return {d["id"] for d in c.alerts if d["status"] == "firing" and parse_time(d["started_at"]) <= cutoff - 3600}

    assert diff == {}, list(diff.items())[:5]
    assert firing(ref) and firing(got) == firing(ref)
    assert _discarded(agent) == _discarded(one)  # nothing dead-lettered that the backtest kept


def _closed_until(c: PointCollector) -> float:
    return max((p.window_start for pts in c.points.values() for p in pts), default=-math.inf)


_REFERENCES: dict[tuple[str, str], tuple[PointCollector, Agent]] = {}


def _reference(demo: Path, text: str) -> tuple[PointCollector, Agent]:
    """One process over the same records, as a backtest on the files (run once per month and config)."""
    if (str(demo), text) not in _REFERENCES:
        ref = PointCollector()
        one = Agent(
            load_config_text(_backtest_config(text, demo)), extra_sinks={"c": ref}, state_store=MemoryStateStore()
        )
        one.start()
        try:
            assert one.wait_finished(300)
        finally:
            one.stop(flush_windows=True)
        _REFERENCES[(str(demo), text)] = ref, one
    return _REFERENCES[(str(demo), text)]


def _horizon(demo: Path, text: str) -> float:
    """The start of the last window a streaming run is sure to close: two hours before a backtest's last one."""
    return _closed_until(_reference(demo, text)[0]) - 2 * 3600


def _discarded(agent: Agent, component: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in agent.telemetry.discarded.collect():
        for s in m.samples:
            if s.name.endswith("_total") and s.value and component in (None, s.labels["component"]):
                out[s.labels["reason"]] = out.get(s.labels["reason"], 0) + s.value
    return out


def _sums(c: PointCollector) -> dict[tuple[str, tuple[Any, ...], float], float]:
    out: dict[tuple[str, tuple[Any, ...], float], float] = {}
    for (det, series), pts in c.points.items():
        for p in pts:
            k = (det, series, p.window_start)
            assert out.get(k, p.observed) == p.observed, f"window {k} closed twice with different sums"
            out[k] = p.observed
    return out


def _settled(c: PointCollector, quiet: float = 2.0) -> bool:
    def count() -> int:
        return sum(len(p) for p in c.points.values())

    before = count()
    time.sleep(quiet)
    return before > 0 and count() == before


def _backtest_config(text: str, demo: Path) -> str:
    detectors = text[text.index("detectors:") : text.index("sinks:")]
    return (
        "sources:\n"
        f"  tokens: {{type: file, path: {demo / 'bedrock'}, "
        "decoder: {type: bedrock, tag_dimensions: {team: team}}}\n"
        + detectors
        + "sinks:\n  console: {type: console}\nstate: {type: memory}\npipeline: {max_age_days: 3650}\n"
    )


def test_stop_during_an_outage_keeps_its_deadline_and_the_next_start_resumes(
    kafka_broker: KafkaBroker, demo_month: Path, tmp_path: Path
) -> None:
    """Stopped while the broker is away: stop() returns within its deadline, without an error; what it could not
    checkpoint is re-read from the last committed position by the next start, so the sums come out whole."""
    bs = kafka_broker.bootstrap
    name = create_topic(bs, 3)
    lines = demo_lines(demo_month, range(0, 3))
    p = KafkaProducer(bootstrap_servers=bs, linger_ms=20, batch_size=256 * 1024)
    for i, line in enumerate(lines):
        p.send(name, value=line, partition=i % 3)
    p.flush(60)
    p.close()
    text = CONFIG.format(bootstrap=bs, topic=name, directory=tmp_path / "state")
    first = PointCollector()
    agent = Agent(load_config_text(text), extra_sinks={"c": first})
    agent.start()
    try:
        assert wait_until(lambda: agent.records_in > 0, 90)
        kafka_broker.stop()  # mid-stream: some state is not checkpointed
        time.sleep(3)  # checkpoints fail meanwhile
    finally:
        t0 = time.monotonic()
        agent.stop(timeout=10)
        took = time.monotonic() - t0
    assert took < 12, took
    assert agent.error is None
    kafka_broker.start()
    second = PointCollector()
    again = Agent(load_config_text(text), extra_sinks={"c": second})
    again.start()
    try:
        assert wait_until(lambda: again.health.ready(), 90), again.health.not_ready()
        assert wait_until(lambda: _settled(second, quiet=3.0), 90)
    finally:
        again.stop()
    assert again.error is None
    ref = PointCollector()
    one = Agent(
        load_config_text(_backtest_config(text, demo_month).replace(str(demo_month / "bedrock"), str(tmp_path / "in"))),
        extra_sinks={"c": ref},
        state_store=MemoryStateStore(),
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "lines.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    one.start()
    try:
        assert one.wait_finished(120)
    finally:
        one.stop()
    both = {**_sums(first), **_sums(second)}
    for k in set(_sums(first)) & set(_sums(second)):  # a window closed by both runs has one sum
        assert math.isclose(_sums(first)[k], _sums(second)[k], rel_tol=1e-9), k
    cutoff = max(k[2] for k in both)
    want = {k: v for k, v in _sums(ref).items() if k[2] <= cutoff - 3600}
    assert want and set(want) <= set(both), sorted(set(want) - set(both), key=lambda k: k[2])[:5]
    diff = {k: (v, both[k]) for k, v in want.items() if not math.isclose(v, both[k], rel_tol=1e-9, abs_tol=1e-9)}
    assert diff == {}, list(diff.items())[:5]


MEMORY_CONFIG = """
sources:
  tokens:
    type: kafka
    bootstrap_servers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: g-{topic}
    missing_topic_grace_seconds: {grace}
    decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}
detectors:
  requests: {{type: threshold, signal: requests, upper: 1.0e12, window_seconds: 3600}}
sinks:
  metrics: {{type: prometheus, port: 0}}
state: {{type: memory, checkpoint_interval_seconds: 0.5}}
dead_letter: {{path: {directory}/dead-letter.jsonl}}
pipeline: {{max_age_days: 3650}}
"""


def test_a_deleted_source_topic_stops_the_agent_with_one_line(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = create_topic(kafka_bootstrap, 2)
    text = MEMORY_CONFIG.format(bootstrap=kafka_bootstrap, topic=name, grace=3, directory=tmp_path)
    agent = Agent(load_config_text(text), state_store=MemoryStateStore())
    agent.start()
    try:
        assert wait_until(lambda: agent.health.ready(), 60), agent.health.not_ready()
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_topics([name])
        finally:
            admin.close()
        assert wait_until(lambda: agent.error is not None, 60)
    finally:
        agent.stop(timeout=10)
    assert isinstance(agent.error, FatalKafkaError)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "agent"]
    assert lines == [f"kafka source tokens: topic {name} does not exist " + lines[0].split("does not exist ", 1)[1]]
    assert "the agent stops" in lines[0] and "deleted?" in lines[0]


class _Consumer:
    """Stands in for kafka-python's consumer: every poll raises ``error``."""

    def __init__(self, error: Exception, **_: Any):
        self.error = error
        self.polls = 0

    def subscribe(self, *_: Any, **__: Any) -> None:
        return None

    def poll(self, **_: Any) -> dict[Any, Any]:
        self.polls += 1
        raise self.error

    def close(self, **_: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("error", "fatal"),
    [
        (kafka_errors.SaslAuthenticationFailedError("Authentication failed: Invalid username or password"), True),
        (kafka_errors.TopicAuthorizationFailedError(), True),
        (kafka_errors.GroupAuthorizationFailedError(), True),
        (kafka_errors.KafkaConnectionError("111 ECONNREFUSED"), False),
        (kafka_errors.KafkaTimeoutError("Failed to update metadata after 60.0 secs."), False),
        (kafka_errors.NodeNotReadyError("bootstrap-0"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_consumer_errors_are_retried_unless_fatal(
    error: Exception, fatal: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import kafka

    text = MEMORY_CONFIG.format(bootstrap="127.0.0.1:1", topic="in", grace=120, directory=tmp_path)
    agent = Agent(load_config_text(text), state_store=MemoryStateStore())
    consumers: list[_Consumer] = []
    monkeypatch.setattr(kafka, "KafkaConsumer", lambda **kw: consumers.append(_Consumer(error, **kw)) or consumers[-1])
    src = agent.sources["tokens"]
    src.start()
    try:
        if fatal:
            assert wait_until(lambda: agent.error is not None, 10)
            assert agent.error is error and consumers[0].polls == 1
            lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "agent"]
            assert len(lines) == 1 and lines[0].startswith("kafka source tokens: ") and type(error).__name__ in lines[0]
        else:  # retried with backoff, counted, never fatal
            assert wait_until(lambda: consumers and consumers[0].polls >= 3, 10)
            assert agent.error is None
        n = agent.telemetry.registry.get_sample_value(
            "finops_agent_errors_total", {"component": "tokens", "error_type": type(error).__name__, "stage": "consume"}
        )
        assert n is not None and n >= 1
    finally:
        src.stop(1)
        src.finish(1)
    agent.stop()


class _Failing(LocalTopology):
    """The agent's own topology whose persist raises each error of ``errors`` in turn, then succeeds."""

    def __init__(self, agent: Agent, errors: list[Exception]):
        super().__init__(agent)
        self.errors = errors

    def persist(self, positions: dict[str, dict[str, Any]], timeout: float) -> bool:
        if self.errors:
            raise self.errors.pop(0)
        return super().persist(positions, timeout)


def test_a_failing_checkpoint_is_retried_with_backoff_and_shown_in_readiness(tmp_path: Path) -> None:
    text = MEMORY_CONFIG.format(bootstrap="127.0.0.1:1", topic="in", grace=120, directory=tmp_path)
    agent = Agent(load_config_text(text), state_store=MemoryStateStore())
    agent.health.mark_alive()
    agent.health.mark_ready()
    agent.health.sources = []
    committed: list[dict[str, Any]] = []
    agent.sources["tokens"].checkpointed = committed.append  # type: ignore[method-assign]
    timeout = kafka_errors.KafkaTimeoutError("Failed to flush buffered records within 1.0 secs")
    agent.topology = _Failing(agent, [timeout] * 6)
    delays = []
    for _ in range(6):
        t0 = time.monotonic()
        assert agent.checkpoint(0.1) is False
        delays.append(agent.next_checkpoint_at - t0)
        why = agent.health.not_ready()
        assert why is not None and why.startswith("cannot checkpoint for ") and "KafkaTimeoutError" in why
    assert committed == []  # no offset committed after a failed checkpoint
    # Exponential, jittered (half to whole of 1, 2, 4, 8, 16, 30 s), capped at 30 s.
    for i, d in enumerate(delays):
        cap = min(30.0, 2.0**i)
        assert cap / 2 - 0.05 <= d <= cap + 0.05, (i, delays)
    assert not agent.checkpoint_blocked()  # failing for a moment: input goes on
    assert agent.checkpoint_blocked(at=time.monotonic() + 6)  # failing for a while: sources pause their input
    failures = agent.telemetry.registry.get_sample_value(
        "finops_agent_checkpoint_failures_total", {"error_type": "KafkaTimeoutError"}
    )
    assert failures == 6 and agent.error is None
    assert agent.checkpoint(0.1) is True  # the broker is back
    assert agent.health.not_ready() is None and len(committed) == 1 and not agent.checkpoint_blocked()
    # A fatal error is not waited out: the agent stops with its reason.
    agent.topology = _Failing(agent, [kafka_errors.TopicAuthorizationFailedError()])
    assert agent.checkpoint(0.1) is False
    assert isinstance(agent.error, kafka_errors.TopicAuthorizationFailedError)
    agent.topology = LocalTopology(agent)
    agent.stop()


def test_an_agent_started_while_the_broker_is_away_waits_for_it(
    kafka_broker: KafkaBroker, demo_month: Path, tmp_path: Path
) -> None:
    """A pod rescheduled during an outage: start() waits for the brokers (alive, not ready: "starting") instead of
    dying of the clients' bootstrap timeout, and consumes once they are back; interrupted (SIGTERM) while it waits,
    it stops at once."""
    import threading

    bs = kafka_broker.bootstrap
    name = create_topic(bs, 2)
    text = CONFIG.format(bootstrap=bs, topic=name, directory=tmp_path / "state")
    kafka_broker.stop()
    # Two pods at once, each on its own state directory: one interrupted while it waits, one that waits the
    # outage out (their bootstrap timeouts run side by side instead of one after the other).
    waiting = Agent(load_config_text(CONFIG.format(bootstrap=bs, topic=name, directory=tmp_path / "interrupted")))
    t = threading.Thread(target=waiting.start, daemon=True)
    agent = Agent(load_config_text(text))
    t2 = threading.Thread(target=agent.start, daemon=True)
    t.start()
    t2.start()
    time.sleep(3)
    assert t.is_alive() and waiting.health.alive() and waiting.health.not_ready() == "starting"
    waiting.interrupt()
    t.join(40)  # the attempt under way ends within the client's bootstrap timeout
    assert not t.is_alive() and waiting.error is None
    t0 = time.monotonic()
    waiting.stop(timeout=10)
    assert time.monotonic() - t0 < 12

    def connect_failures() -> float:
        n = agent.telemetry.registry.get_sample_value(
            "finops_agent_errors_total",
            {"component": "scale-out", "error_type": "KafkaTimeoutError", "stage": "connect"},
        )
        return n or 0.0

    # Past the clients' 30 s bootstrap timeout: the first attempt failed (counted), and the agent waits on.
    assert wait_until(lambda: connect_failures() >= 1, 60)
    time.sleep(1)
    assert t2.is_alive() and agent.health.alive() and agent.error is None
    kafka_broker.start()
    t2.join(90)
    assert not t2.is_alive()
    lines = demo_lines(demo_month, range(0, 1))
    produce(bs, name, lines, partitions=2)
    try:
        assert wait_until(lambda: agent.health.ready() and agent.records_in >= len(lines), 120), (
            agent.health.not_ready(),
            agent.records_in,
        )
        n = agent.telemetry.registry.get_sample_value(
            "finops_agent_errors_total",
            {"component": "scale-out", "error_type": "KafkaTimeoutError", "stage": "connect"},
        )
        assert n is not None and n >= 1
    finally:
        agent.stop()
    assert agent.error is None


def test_sigterm_to_a_foreground_broker_stops_its_java_too(tmp_path: Path) -> None:
    """``python -m scripts.kafka_broker run`` (the README's way to run one by hand) stopped by a process manager."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.kafka_broker", "run", "--dir", str(tmp_path / "b")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ready" in line, line
        broker = KafkaBroker(tmp_path / "b")
        java = broker.pid()
        assert java is not None and broker.running()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        assert code == 0, proc.stdout.read()  # (what the script said: its error, if any)
        assert not broker.running()
        with pytest.raises(ProcessLookupError):
            os.kill(java, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
        KafkaBroker(tmp_path / "b").stop(kill=True)


SHUTDOWN_TIMEOUT = 20.0  # ``finops-agent run --shutdown-timeout``: the pod's grace period, less a margin


def _run(cfg: Path, state: Path, receiver: Receiver, port: int) -> subprocess.Popen[str]:
    """``finops-agent run`` as a pod runs it (test_kafka's ``agent_proc``, with a metrics port we know and the
    shutdown timeout named), logging to ``state/agent.log``."""
    env = {
        **os.environ,
        "FINOPS_STATE_DIR": str(state),
        "FINOPS_WEBHOOK_URL": receiver.url + "/alerts",
        "FINOPS_METRICS_PORT": str(port),
        "FINOPS_CHECKPOINT_SECONDS": "0.5",
    }
    cmd = [sys.executable, "-m", "agent", "run", "--config", str(cfg), "--shutdown-timeout", str(SHUTDOWN_TIMEOUT)]
    with open(state / "agent.log", "a") as err:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)


def _received(port: int, source: str) -> float | None:
    """``finops_agent_events_received_total`` of ``source`` on the agent's /metrics (None: not serving)."""
    try:
        code, body = http_get(port, "/metrics")
    except OSError:
        return None
    if code != 200:
        return None
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == "finops_agent_events_received_total" and s.labels.get("component") == source:
                return s.value
    return 0.0


def _committed_now(bootstrap: str, group: str, name: str) -> int:
    """``_committed`` while the group's coordinator is still being set up (a fresh broker: coordinator not
    available, not the coordinator, load in progress): 0 meanwhile."""
    try:
        return _committed(bootstrap, group, name)
    except kafka_errors.KafkaError as exc:
        if not exc.retriable:
            raise
        return 0


def _end_offsets(bootstrap: str, name: str) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(name, p) for p in c.partitions_for_topic(name) or ()]
        return sum(c.end_offsets(tps).values())
    finally:
        c.close()


@pytest.mark.timeout(420)
def test_sigterm_during_a_busy_stream_exits_in_time_and_a_restart_loses_and_repeats_nothing(
    kafka_bootstrap: str, demo_month: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """A pod stopped (SIGTERM) while its agent works through a month of backlog: it stops consuming, drains what
    it holds, checkpoints and commits, and exits 0 within --shutdown-timeout. The next pod resumes exactly there:
    every record is counted once over both runs, no alert is sent twice, and the month's runaway loop is alerted.

    config/examples/kafka.yaml with ``state.type: local`` (the single replica with a volume): its checkpoint holds
    the open windows too, so the offsets it commits are exactly what was processed and "counted once" is exact.
    (With ``state.type: kafka`` a checkpoint commits each partition's oldest open window by design: its records
    are read again after a restart, their effect is not applied twice; see test_kafka's kill -9 test.)"""
    bs = kafka_bootstrap
    name, gpu = create_topic(bs, 6), create_topic(bs, 1)
    cfg_text = (
        (ROOT / "config" / "examples" / "kafka.yaml")
        .read_text()
        .replace("[bedrock-invocations]", f"[{name}]")
        .replace("[dcgm-metrics]", f"[{gpu}]")
        .replace("group_id: finops-agent", f"session_timeout_ms: 45000\n    group_id: g-{name}")
        .replace("topic_prefix: finops-agent", f"topic_prefix: p-{name}")
        .replace("${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}", bs)
    )
    kafka_state = "  type: kafka                         #"
    assert kafka_state in cfg_text
    cfg_text = cfg_text.replace(kafka_state, "  type: local  #")
    cfg = tmp_path / "kafka.yaml"
    cfg.write_text(cfg_text)
    state = tmp_path / "state"
    state.mkdir()
    group = f"g-{name}-bedrock"
    manifest = orjson.loads((demo_month / "anomalies.json").read_bytes())
    runaway = manifest["anomalies"][0]
    early, late = demo_lines(demo_month, range(0, 14)), demo_lines(demo_month, range(14, 30))
    n0, n = len(early), len(early) + len(late)
    assert n == manifest["bedrock_records"]
    produce(bs, name, early)

    def log_text() -> str:
        return (state / "agent.log").read_text()

    def alerts() -> list[dict[str, Any]]:
        return [orjson.loads(r.body) for r in receiver.requests]

    def runaway_alerted() -> bool:
        return any(
            d["status"] == "firing"
            and d["detector"] == runaway["detector"]
            and d["series"] == runaway["series"]
            and runaway["start"] - 3600 <= parse_time(d["started_at"]) <= runaway["end"]
            for d in alerts()
        )

    # First run: the first two weeks read (the runaway loop of day 12 paged: detector state and alerts to carry
    # over), then the other two produced while it is stopped (SIGSTOP); SIGTERM once a checkpoint is into them,
    # most of them unread.
    port = free_port()
    proc = _run(cfg, state, receiver, port)
    last: list[float] = []  # every /metrics answer until the server goes away (it stops last, after the drain)

    def scrape() -> None:
        while proc.poll() is None:
            v = _received(port, "bedrock")
            if v is not None:
                last.append(v)
            time.sleep(0.05)

    watcher = threading.Thread(target=scrape, daemon=True)
    watcher.start()
    try:
        assert wait_until(runaway_alerted, 120), log_text()[-3000:]
        assert wait_until(lambda: _committed_now(bs, group, name) == n0, 60)
        paged = len(receiver.requests)
        proc.send_signal(signal.SIGSTOP)  # the two weeks land at once, as a backlog (within the session timeout)
        try:
            produce(bs, name, late)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert _end_offsets(bs, name) == n
        assert wait_until(lambda: _committed(bs, group, name) > n0, 60)
        before = _committed(bs, group, name)
        busy = _received(port, "bedrock")
        # Busy: records still unread when the SIGTERM lands (how far it got by the first checkpoint into the backlog
        # depends on the machine's speed against the checkpoint interval: behind, not a fraction of the backlog).
        assert busy is not None and before <= busy < n, (before, busy, n)
        t0, wall = time.monotonic(), time.time()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(SHUTDOWN_TIMEOUT + 30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    watcher.join(10)
    first = log_text()
    print(f"SIGTERM at {busy:.0f} of {n} records ({before} committed): exit {code} in {took:.1f} s; {paged} alerts")
    assert code == 0, first[-3000:]
    assert took <= SHUTDOWN_TIMEOUT + 3, took
    assert "received SIGTERM, stopping" in first and "stopped cleanly" in first.strip().splitlines()[-1], first[-3000:]
    assert "without a final checkpoint" not in first and "Traceback" not in first, first[-3000:]
    after = _committed(bs, group, name)
    r1 = last[-1]
    # The final checkpoint committed past the last periodic one, and exactly what the run counted: nothing it
    # processed is left to re-read, nothing it did not process is skipped.
    assert before < after < n, (before, after, n)
    assert r1 == after, (r1, after)
    saved = state / "agent-state.pkl"
    assert saved.exists() and saved.stat().st_mtime >= wall - 0.05, "no final checkpoint of the state"

    # Second run on the same state: from the committed offsets to the end.
    mark = len(first)
    port = free_port()
    proc = _run(cfg, state, receiver, port)
    try:
        assert wait_until(lambda: _committed(bs, group, name) == n, 180), (_committed(bs, group, name), n)
        r2 = _received(port, "bedrock")
        assert r2 == n - after, (r2, n, after)  # read once: from where the first run stopped, to the end
        assert wait_until(lambda: _quiet(receiver, 3.0), 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(SHUTDOWN_TIMEOUT + 30) == 0
    second = log_text()[mark:]
    assert "stopped cleanly" in second and "Traceback" not in second, second[-3000:]
    assert r1 + r2 == n
    restored = re.findall(r"state restored: (\d+) series", second)
    assert sum(int(k) for k in restored) > 0, second[-3000:]  # the restart read its series back, not relearned

    docs = alerts()
    sent = Counter((d["id"], d["status"], d["severity"]) for d in docs)
    assert docs and max(sent.values()) == 1, [k for k, v in sent.items() if v > 1]  # a restart re-alerts nothing
    assert runaway_alerted()
    # The runaway loop's episode was carried over the restart and closed: resolved, never paged again.
    assert any(d["status"] == "resolved" and d["series"] == runaway["series"] for d in docs), [
        (d["detector"], d["series"], d["status"], d["started_at"]) for d in docs
    ]
