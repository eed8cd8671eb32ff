"""Scale-out on a real broker: several replicas in one group, state following the partitions."""

from __future__ import annotations

import math
import re
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from agent.backtest import PointCollector
from agent.config import load_config_text
from agent.model import parse_time
from agent.pipeline import Agent
from agent.state import MemoryStateStore
from scripts.kafka_broker import create_topic
from tests.agent.sources.test_kafka import agent_proc, demo_lines, produce
from tests.conftest import ROOT, Receiver, wait_until

SCALE_CONFIG = """
sources:
  tokens:
    type: kafka
    bootstrap_servers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: {group}
    keyed_by_series: {keyed}
    decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}
detectors:
  spend: {{type: seasonal, signal: token_cost_usd, group_by: [team], contributors_by: [model], window_seconds: 3600}}
  requests: {{type: threshold, signal: requests, group_by: [team, model], upper: 1.0e12, window_seconds: 900}}
sinks:
  console: {{type: console}}
state: {{type: {state}, directory: {directory}, checkpoint_interval_seconds: 1, partitions: 4}}
dead_letter: {{path: {directory}/dead-letter.jsonl}}
pipeline: {{max_age_days: 3650}}
"""


def _team(line: bytes) -> bytes:
    return str(orjson.loads(line)["requestMetadata"]["team"]).encode()


def _sums(collectors: list[PointCollector]) -> dict[tuple[str, tuple, float], float]:
    out: dict[tuple[str, tuple, float], float] = {}
    for c in collectors:
        for (det, series), pts in c.points.items():
            for p in pts:
                k = (det, series, p.window_start)
                assert out.get(k, p.observed) == p.observed, f"window {k} closed twice with different sums"
                out[k] = p.observed
    return out


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed-repartition", "keyed-by-series"])
def test_two_replicas_give_the_window_sums_of_one(
    kafka_bootstrap: str, demo_month: Path, tmp_path: Path, keyed: bool
) -> None:
    """Records over 6 partitions; a replica joins mid-stream, later the other stops: every window sum equals one
    process's over the same data."""
    name = create_topic(kafka_bootstrap, 6)

    def produce(days: range) -> int:
        lines = demo_lines(demo_month, days)
        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20)
        for i, line in enumerate(lines):
            if keyed:  # keyed by the detectors' series (team): the partitioner keeps a team on one partition
                p.send(name, key=_team(line), value=line)
            else:  # no key, round-robin: every team's records on every partition
                p.send(name, value=line, partition=i % 6)
        p.flush(60)
        p.close()
        return len(lines)

    def config(group: str, state: str, directory: Path) -> object:
        text = SCALE_CONFIG.format(
            bootstrap=kafka_bootstrap,
            topic=name,
            group=group,
            keyed=str(keyed).lower(),
            state=state,
            directory=directory,
        )
        if state != "kafka":
            text = text.replace("    keyed_by_series: true\n", "").replace("    keyed_by_series: false\n", "")
        return load_config_text(text)

    n = produce(range(0, 2))
    a_pts, b_pts = PointCollector(), PointCollector()
    a = Agent(config("g-" + name, "kafka", tmp_path / "a"), extra_sinks={"c": a_pts})
    b = Agent(config("g-" + name, "kafka", tmp_path / "b"), extra_sinks={"c": b_pts})
    a.start()
    try:
        assert wait_until(lambda: a.records_in > 0, 60)
        b.start()  # joins while the first is consuming: a rebalance mid-stream
        assert wait_until(
            lambda: a.health.ready() and b.health.ready() and a.topology.tasks() and b.topology.tasks(), 60
        )
        assert not set(a.topology.tasks()) & set(b.topology.tasks())  # each series on one replica
        assert wait_until(lambda: _settled(a_pts, b_pts), 60)
        a.stop()  # the other takes its partitions over, with their state from the changelog
        n += produce(range(2, 4))

        # One process over the same data, the single-replica pipeline.
        ref = PointCollector()
        one = Agent(
            config("ref-" + name, "memory", tmp_path / "ref"), extra_sinks={"c": ref}, state_store=MemoryStateStore()
        )
        one.start()
        try:
            assert wait_until(lambda: one.records_in == n, 120)
            assert wait_until(lambda: _settled(ref), 60)  # idle partitions: the last sealable windows close
        finally:
            one.stop()
        expected = _sums([ref])
        assert len({k[1] for k in expected}) >= 8, expected.keys()  # several series per detector
        assert wait_until(lambda: expected.keys() <= _sums([a_pts, b_pts]).keys(), 120), (
            len(expected),
            sorted(set(expected) - set(_sums([a_pts, b_pts])), key=lambda k: k[2])[:10],
        )
    finally:
        a.stop()
        b.stop()
    got = _sums([a_pts, b_pts])
    diff = {k: (v, got.get(k)) for k, v in expected.items() if not math.isclose(v, got[k], rel_tol=1e-9, abs_tol=1e-9)}
    assert diff == {}
    assert a.error is None and b.error is None
    for ag in (a, b):  # nothing late, nothing bad
        assert [s for m in ag.telemetry.discarded.collect() for s in m.samples if s.value] == []


def _settled(*collectors: PointCollector, quiet: float = 2.0) -> bool:
    """Some windows closed and none for ``quiet`` seconds."""

    def count() -> int:
        return sum(len(p) for c in collectors for p in c.points.values())

    before = count()
    time.sleep(quiet)
    return before > 0 and count() == before


def test_a_stopped_replica_hands_its_state_over_through_the_changelog(
    kafka_bootstrap: str, demo_month: Path, tmp_path: Path, receiver: Receiver
) -> None:
    """Two processes with empty local directories; one stops; the other restores its tasks and finishes alike."""
    name, gpu = create_topic(kafka_bootstrap, 6), create_topic(kafka_bootstrap, 2)
    text = (ROOT / "config" / "examples" / "kafka.yaml").read_text()
    text = text.replace("${KAFKA_BOOTSTRAP_SERVERS:-localhost:9092}", kafka_bootstrap)
    text = text.replace("topics: [bedrock-invocations]", f"topics: [{name}]")
    text = text.replace("topics: [dcgm-metrics]", f"topics: [{gpu}]")  # no GPU data: idle, never holds time back
    text = text.replace("group_id: finops-agent", f"group_id: g-{name}")
    text = text.replace("topic_prefix: finops-agent", f"topic_prefix: p-{name}")
    assert f"p-{name}" in text and gpu in text
    cfg = tmp_path / "scale.yaml"
    cfg.write_text(text)
    manifest = orjson.loads((demo_month / "anomalies.json").read_bytes())
    runaway, switch = manifest["anomalies"][0], manifest["anomalies"][2]

    def docs() -> list[dict]:
        return [orjson.loads(r.body) for r in receiver.requests]

    def alerted(m: dict) -> bool:
        return any(
            d["status"] == "firing"
            and d["detector"] == m["detector"]
            and d["series"] == m["series"]
            and m["start"] - 3600 <= parse_time(d["started_at"]) <= m["end"]
            for d in docs()
        )

    def produce(days: range) -> None:
        p = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=20, batch_size=256 * 1024)
        for i, line in enumerate(demo_lines(demo_month, days)):
            p.send(name, value=line, partition=i % 6)
        p.flush(60)
        p.close()

    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    produce(range(0, 14))
    a = agent_proc(cfg, dirs[0], receiver, 1)
    b = agent_proc(cfg, dirs[1], receiver, 1)
    try:
        assert wait_until(lambda: alerted(runaway), 180), (dirs[0] / "agent.log").read_text()[-3000:]
        for d in dirs:  # both own tasks
            assert wait_until(lambda d=d: "state restored for task repartition/" in (d / "agent.log").read_text(), 30)
        time.sleep(3)  # a checkpoint after the last window closed
        a.send_signal(signal.SIGTERM)
        assert a.wait(60) == 0
        produce(range(14, 30))
        assert wait_until(lambda: alerted(switch), 180), (dirs[1] / "agent.log").read_text()[-3000:]
        time.sleep(3)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    assert b.returncode == 0
    log_a, log_b = ((d / "agent.log").read_text() for d in dirs)
    owned_a = set(re.findall(r"state restored for task (repartition/\d+)", log_a))
    # The survivor restored the stopped replica's tasks, with their series, from the changelog.
    taken = {
        t: int(n)
        for t, n in re.findall(r"state restored for task (repartition/\d+): (\d+) series", log_b)
        if t in owned_a
    }
    assert taken and sum(taken.values()) > 0, (owned_a, taken)

    sent = Counter((d["id"], d["status"], d["severity"]) for d in docs())
    assert max(sent.values()) == 1, [k for k, v in sent.items() if v > 1]  # never paged twice
    false = [
        d["summary"]
        for d in docs()
        if d["status"] == "firing"
        and not any(
            m["series"] == d["series"] and m["start"] - 3600 <= parse_time(d["started_at"]) <= m["end"] + 3600
            for m in manifest["anomalies"]
        )
    ]
    assert false == []  # no warm-up false alerts: the tasks were restored, not relearned

    # The same alerts as one process over the same month (a backtest on the files).
    one = PointCollector()
    ref = Agent(
        load_config_text(_backtest_config(text, demo_month)), extra_sinks={"c": one}, state_store=MemoryStateStore()
    )
    ref.start()
    try:
        assert ref.wait_finished(300)
    finally:
        ref.stop()
    expected = {(d["id"], d["status"]) for d in one.alerts if d["detector"] in ("token_spend", "unit_cost")}
    got = {(d["id"], d["status"]) for d in docs() if d["detector"] in ("token_spend", "unit_cost")}
    firing = {k for k in expected if k[1] == "firing"}
    assert firing and firing == {k for k in got if k[1] == "firing"}


def _backtest_config(text: str, demo: Path) -> str:
    """The scale-out example's detectors over the demo month's Bedrock files, in one process."""
    detectors = text[text.index("detectors:") : text.index("sinks:")]
    return (
        "sources:\n"
        f"  bedrock: {{type: file, path: {demo / 'bedrock'}, "
        "decoder: {type: bedrock, tag_dimensions: {team: team}}}\n"
        # the example's GPU detectors need a dcgm source; as in the Kafka run, it has no data
        f"  gpus: {{type: file, path: {demo / 'no-gpu-data'}, "
        "decoder: {type: dcgm, constant_dimensions: {cluster: gpu-prod-1}}}\n"
        + detectors
        + "sinks:\n  console: {type: console}\n"
        + "state: {type: memory}\npipeline: {max_age_days: 3650}\n"
    )


def test_a_quiet_topics_last_windows_close_on_the_wall_clock_as_in_one_process(
    kafka_bootstrap: str, demo_month: Path, tmp_path: Path
) -> None:
    """A day of records, then silence: with `state.type: kafka` each input partition idle for
    `pipeline.idle_timeout_seconds` moves on the wall clock, so the windows of the last records close (one horizon
    past them, no more) — the same windows and sums as one process with local state."""
    name = create_topic(kafka_bootstrap, 2)
    lines = demo_lines(demo_month, range(0, 1))
    produce(kafka_bootstrap, name, lines, partitions=2)
    last = max(parse_time(orjson.loads(x)["timestamp"]) for x in lines)

    def run(state: str, directory: Path) -> dict[tuple[str, tuple, float], float]:
        text = SCALE_CONFIG.format(
            bootstrap=kafka_bootstrap,
            topic=name,
            group=f"{state}-{name}",
            keyed="false",
            state=state,
            directory=directory,
        ).replace("pipeline: {max_age_days: 3650}", "pipeline: {max_age_days: 3650, idle_timeout_seconds: 1}")
        if state != "kafka":
            text = text.replace("    keyed_by_series: false\n", "")
        pts = PointCollector()
        agent = Agent(
            load_config_text(text), extra_sinks={"c": pts}, state_store=None if state == "kafka" else MemoryStateStore()
        )
        agent.start()
        try:
            assert wait_until(lambda: agent.records_in == len(lines), 120)
            # The hour of the last record closes (it holds records up to its last second), nothing past the horizon.
            hour = last - last % 3600
            assert wait_until(lambda: any(k[0] == "spend" and k[2] == hour for k in _sums([pts])), 60), sorted(
                {k[2] for k in _sums([pts])}
            )[-3:]
            assert wait_until(lambda: _settled(pts), 30)
        finally:
            agent.stop()
        assert agent.error is None
        return _sums([pts])

    scaled = run("kafka", tmp_path / "scaled")
    one = run("memory", tmp_path / "one")
    assert max(k[2] for k in scaled) < last + 3600
    assert scaled.keys() == one.keys()
    assert all(math.isclose(v, one[k], rel_tol=1e-9, abs_tol=1e-9) for k, v in scaled.items())


def test_a_live_runaway_loop_is_warned_early_in_kafka_scale_out(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`state.type: kafka`: eight days of a team's usual calls, then — once the partitions are caught up (live) — a
    runaway loop in the current hour: the task warns while the hour is still open."""
    from tests.agent.decoders.test_bedrock import log

    now = time.time()
    if 3600 - now % 3600 < 150:  # (the loop's hour must stay open for the test's length)
        time.sleep(3600 - now % 3600 + 1)
        now = time.time()
    w = now - now % 3600
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    history = [log(timestamp=stamp(t), requestId=f"h{t}") for t in range(int(w - 8 * 86400) + 30, int(w), 600)]
    name = create_topic(kafka_bootstrap, 2)
    produce(kafka_bootstrap, name, history, partitions=2)
    text = SCALE_CONFIG.format(
        bootstrap=kafka_bootstrap, topic=name, group="g-" + name, keyed="false", state="kafka", directory=tmp_path
    ).replace("pipeline: {max_age_days: 3650}", "pipeline: {max_age_days: 3650, early_check_seconds: 1}")
    pts = PointCollector()
    agent = Agent(load_config_text(text), extra_sinks={"c": pts})
    agent.start()
    try:
        assert wait_until(lambda: agent.records_in == len(history) and agent.health.ready(), 90)
        time.sleep(3)  # caught up: live
        span = int(max(1.0, min(time.time() - w, 600.0)))  # the hour so far (at most ten minutes of it)
        loop = [log(timestamp=stamp(w + i % span), requestId=f"l{i}") for i in range(3000)]  # about $13
        produce(kafka_bootstrap, name, loop, partitions=2)  # (the usual hour: six calls)
        assert wait_until(lambda: any(d.get("early") for d in pts.alerts), 60), [d["summary"] for d in pts.alerts]
        early = next(d for d in pts.alerts if d.get("early"))
        assert early["detector"] == "spend" and early["window_start"] == stamp(w) and early["status"] == "firing"
        assert w not in {pt.window_start for ps in pts.points.values() for pt in ps}  # its hour is still open
    finally:
        agent.stop()
    assert agent.error is None
