"""The same answer whatever the partition count: one seeded stretch of Bedrock logs, produced unkeyed, run with
``state.partitions`` 1, 6 and 12 on the real broker, against a one-process backtest of the same records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.model import parse_time
from agent.pipeline import Agent
from agent.scaleout import partition_of
from agent.state import MemoryStateStore
from bench.chaos import DETECTORS  # the same detectors as the fault-injection harness
from scripts.kafka_broker import create_topic
from tests.agent.sources.test_kafka import demo_lines
from tests.agent.sources.test_kafka_scale import _settled
from tests.conftest import wait_until

KAFKA = """
sources:
  tokens:
    type: kafka
    bootstrap_servers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: g-{prefix}
    decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}
{detectors}
sinks:
  console: {{type: console}}
state: {{type: kafka, topic_prefix: {prefix}, partitions: {partitions}, directory: {directory},
  checkpoint_interval_seconds: 1}}
dead_letter: {{path: {directory}/dead-letter.jsonl}}
pipeline: {{max_age_days: 3650}}
"""
BACKTEST = """
sources:
  tokens: {{type: file, path: {path}, decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}}}
{detectors}
sinks:
  console: {{type: console}}
state: {{type: memory}}
pipeline: {{max_age_days: 3650}}
"""
DAYS, NEW_FROM = 14, 9  # the new team starts on day 9, past the 7 days of the detectors' warm-up
PARTITIONS = (1, 6, 12)


def _newcomer(teams: set[str]) -> str:
    """A team name alone in its repartition partition for every count tried (else no test of the old fault)."""
    for i in range(100):
        name = f"newcomer-{i}"
        if all(
            all(partition_of("token_spend", (name,), n) != partition_of("token_spend", (t,), n) for t in teams)
            for n in PARTITIONS
            if n > 1
        ):
            return name
    raise AssertionError("no team name alone in its partition")


def _month(demo: Path) -> tuple[list[bytes], str, float]:
    """The demo's first 14 days, plus a team that appears on day 9 with the search team's traffic."""
    manifest = orjson.loads((demo / "anomalies.json").read_bytes())
    t0 = parse_time(manifest["start"] + "T00:00:00Z")
    lines = demo_lines(demo, range(DAYS))
    teams = {orjson.loads(x)["requestMetadata"]["team"] for x in lines}
    newcomer = _newcomer(teams)
    out: list[bytes] = []
    for x in lines:
        out.append(x)
        doc = orjson.loads(x)
        if doc["requestMetadata"]["team"] == "search" and parse_time(doc["timestamp"]) >= t0 + NEW_FROM * 86400:
            doc["requestMetadata"]["team"] = newcomer
            doc["requestId"] += "-n"
            out.append(orjson.dumps(doc))
    return out, newcomer, t0


def _learned(agent: Agent) -> dict[tuple[str, tuple], tuple[int, float]]:
    out = {}
    for name, r in agent.topology.runners():
        for key, m in r.models.items():
            out[(name, key)] = (m.n_learned, r.last_learned[key])
    return out


def _events(docs: list[dict[str, Any]], cutoff: float) -> dict[str, list[str]]:
    """(id → its statuses in order) of the alert events of windows closed before ``cutoff``."""
    out: dict[str, list[str]] = {}
    for d in docs:
        at = parse_time(d["resolved_at"] or d["window_start"]) + 3600
        if at <= cutoff:
            out.setdefault(d["id"], []).append(d["status"])
    return out


def test_the_same_alerts_and_learned_windows_with_1_6_and_12_partitions(
    kafka_bootstrap: str, demo_month: Path, tmp_path: Path
) -> None:
    lines, newcomer, t0 = _month(demo_month)
    topic = create_topic(kafka_bootstrap, 6)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20, batch_size=256 * 1024)
    for i, line in enumerate(lines):
        producer.send(topic, value=line, partition=i % 6)  # unkeyed, round-robin: every team on every partition
    producer.flush(60)
    producer.close()

    runs: dict[int, tuple[PointCollector, dict, float]] = {}
    for n in PARTITIONS:
        out = PointCollector()
        cfg = KAFKA.format(
            bootstrap=kafka_bootstrap,
            topic=topic,
            prefix=f"p{n}-{topic}",
            partitions=n,
            directory=tmp_path / f"p{n}",
            detectors=DETECTORS,
        )
        agent = Agent(load_config_text(cfg), extra_sinks={"c": out})
        agent.start()
        try:
            assert wait_until(lambda agent=agent: agent.records_in == len(lines), 120), agent.records_in
            assert wait_until(lambda out=out: _settled(out), 120)
            runs[n] = (out, _learned(agent), agent.topology.closed_until())
            # The watermark metric is the input's event time; the last closed window has its own metric.
            reg = agent.telemetry.registry
            wm = reg.get_sample_value("finops_agent_watermark_timestamp_seconds")
            closed = reg.get_sample_value("finops_agent_windows_closed_until_timestamp_seconds")
            assert wm is not None and closed is not None and wm >= closed
        finally:
            agent.stop()
        assert agent.error is None
        discarded = [(s.labels, s.value) for m in agent.telemetry.discarded.collect() for s in m.samples if s.value]
        assert discarded == []  # nothing late, nothing bad

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "records.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    ref = PointCollector()
    one = Agent(
        load_config_text(BACKTEST.format(path=tmp_path / "files", detectors=DETECTORS)),
        extra_sinks={"c": ref},
        state_store=MemoryStateStore(),
    )
    one.start()
    try:
        assert one.wait_finished(300)
    finally:
        one.stop()

    # Every run closed the same windows (the input clocks are the same); the backtest closes the rest too.
    cutoffs = {n: run[2] for n, run in runs.items()}
    assert len(set(cutoffs.values())) == 1 and cutoffs[1] > t0 + (DAYS - 1) * 86400, cutoffs
    cutoff = cutoffs[1]
    expected = _events(ref.alerts, cutoff)
    firing = {i for i, st in expected.items() if "firing" in st}
    new_series = [d for d in ref.alerts if d["series"] == {"team": newcomer} and (d["reason"] or "").startswith("new")]
    runaway = [d for d in ref.alerts if d["series"] == {"team": "support-bot"} and d["detector"] == "token_spend"]
    assert new_series and runaway  # the month holds what the test is about
    ref_points: dict[tuple[str, tuple], list[tuple[float, float]]] = {}
    for (det, series), pts in ref.points.items():
        key = (det, tuple(v for _, v in series))
        ref_points[key] = [(p.window_start, p.observed) for p in pts if p.window_end <= cutoff]
    for n, (out, learned, _) in runs.items():
        got = _events(out.alerts, cutoff)
        assert {i for i, st in got.items() if "firing" in st} == firing, n
        assert got == expected, n  # each alert's (id, status) sequence
        # Every series learned the windows the backtest's did, no more, no fewer, with the same sums.
        assert learned == runs[1][1], n
        for key, (n_learned, last) in learned.items():
            mine = [(w, v) for w, v in ref_points.get(key, []) if w <= last]
            assert n_learned == len(mine), (n, key)
        kafka_points = {
            (det, tuple(v for _, v in series)): [(p.window_start, p.observed) for p in pts]
            for (det, series), pts in out.points.items()
        }
        for key, pts in kafka_points.items():
            ref_here = dict(ref_points.get(key, []))
            assert all(math.isclose(v, ref_here[w], rel_tol=1e-9, abs_tol=1e-9) for w, v in pts), (n, key)
