"""Upstream pre-aggregation + partitioned tasks give exactly the single pipeline's windows (no Kafka here)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config_text
from agent.decoders.base import DecodeContext
from agent.pipeline import Agent
from agent.registry import build
from agent.scaleout import Task, Upstream, decode, encode, parse_record_key, partition_of, rollup
from tests.agent.sources.test_kafka import demo_lines

CONFIG = """
sources:
  tokens: {type: file, path: /nonexistent, decoder: {type: bedrock, tag_dimensions: {team: team}}}
detectors:
  spend: {type: seasonal, signal: token_cost_usd, group_by: [team], contributors_by: [model], window_seconds: 3600}
  requests: {type: threshold, signal: requests, group_by: [team, model], upper: 1.0e12, window_seconds: 900}
sinks: {console: {type: console}}
state: {type: memory}
pipeline: {max_age_days: 3650}
"""

N_IN, N_TASKS, BATCH = 6, 4, 300


def _classic(agent: Agent, decoded: list[list[Any]]) -> dict[tuple[str, tuple, float], float]:
    out: dict[tuple[str, tuple, float], float] = {}
    agent.aggregator.source_max = {f"p{part}": -math.inf for part in range(len(decoded))}
    for i in range(max(len(d) for d in decoded)):
        for part, obs in enumerate(decoded):
            if i < len(obs):
                assert agent.aggregator.add(f"p{part}", obs[i]) == []
        for b, cells in agent.aggregator.seal():
            for r in agent.runners.values():
                r.add_bucket(b, cells)
        for name, r in agent.runners.items():
            for p in r.close_until(agent.aggregator.sealed_until)[0]:
                out[(name, p.series, p.window_start)] = p.observed
    return out


class Replica:
    def __init__(self, agent: Agent, tids: list[int]):
        self.tasks = {
            t: Task(f"repartition/{t}", agent.make_runner, list(agent.runners), sources=["tokens"]) for t in tids
        }


def test_partitioned_tasks_equal_one_pipeline_with_handover_and_replay(demo_month: Path) -> None:
    lines = demo_lines(demo_month, range(0, 2))
    parts = [lines[i::N_IN] for i in range(N_IN)]  # round-robin: every team on every partition
    cfg = load_config_text(CONFIG)
    agent = Agent(cfg)
    decoder = build("decoder", cfg.sources["tokens"].decoder, pricing=cfg.pricing)
    ctx = DecodeContext("tokens", bucket_seconds=agent.bucket, min_ts=-math.inf, max_ts=math.inf)
    batches = [[decoder.decode_lines(p[i : i + BATCH], ctx)[0] for i in range(0, len(p), BATCH)] for p in parts]
    expected = _classic(Agent(cfg), batches)
    assert len(expected) > 500

    routers = {name: agent.make_runner(name) for name in agent.runners}
    meta = {"tokens/t": N_IN}
    ups = {p: Upstream(f"tokens/t/{p}", agent.bucket, 300, meta) for p in range(N_IN)}
    replicas = [Replica(agent, [0, 1]), Replica(agent, [2, 3])]
    owner = {t: r for r in replicas for t in r.tasks}
    got: dict[tuple[str, tuple, float], float] = {}

    def forward(up: Upstream, sealed: list, clock: Any) -> None:
        partials = [p for b, cells in sealed for p in rollup(routers, b, cells)]
        for t in range(N_TASKS):
            mine = [p for p in partials if partition_of(p[0], p[1], N_TASKS) == t]
            src, meta_, clk, decoded = decode(encode(up.src, up.parts, clock, mine))  # through the wire format
            task = owner[t].tasks[t]
            assert task.add(src, meta_, clk, decoded) == []
            for name, points, _ in task.close():
                for p in points:
                    k = (name, p.series, p.window_start)
                    assert got.get(k, p.observed) == p.observed
                    got[k] = p.observed

    handed_over = replayed = False
    offsets = [0] * N_IN
    for i in range(max(len(b) for b in batches)):
        for part in range(N_IN):
            if i >= len(batches[part]):
                continue
            up = ups[part]
            first = offsets[part]
            offsets[part] += BATCH
            up.add(batches[part][i], first, first + BATCH - 1)
            sealed = up.seal()
            forward(up, sealed, (up.sealed_until, up.idle) if up.clock_changed() else None)
        if i == len(batches[0]) // 3 and not handed_over:
            # Task 1 moves to the other replica through its changelog records.
            handed_over = True
            old = replicas[0].tasks.pop(1)
            records = dict(old.changelog_records())
            assert all(parse_record_key(k)[0] == "repartition/1" for k in records)  # type: ignore[index]
            new = Task("repartition/1", agent.make_runner, list(agent.runners), sources=["tokens"])
            assert new.restore({k: v for k, v in records.items() if v is not None}) == old.series_count()
            replicas[1].tasks[1] = new
            owner[1] = replicas[1]
        if i == len(batches[0]) // 2 and not replayed:
            # Input partition 2 moves: the new owner resumes from the committed offset and clock, and replays.
            replayed = True
            offset, clock = ups[2].commit_point()  # type: ignore[misc]
            assert offset % BATCH == 0 and offset < offsets[2]
            ups[2] = Upstream("tokens/t/2", agent.bucket, 300, meta, clock)
            for j in range(offset // BATCH, i + 1):
                ups[2].add(batches[2][j], j * BATCH, j * BATCH + BATCH - 1)
                forward(ups[2], ups[2].seal(), (ups[2].sealed_until, False) if ups[2].clock_changed() else None)
    assert handed_over and replayed
    for up in ups.values():  # the end of input: every partition idle
        up.idle = True
        forward(up, up.provisional(), (up.sealed_until, True) if up.clock_changed() else None)
    missing = sorted(set(expected) - set(got), key=lambda k: k[2])
    assert missing == []
    diff = {k: (v, got[k]) for k, v in expected.items() if not math.isclose(v, got[k], rel_tol=1e-9, abs_tol=1e-9)}
    assert diff == {}


def test_replay_skips_sealed_records_and_clock_survives_in_metadata() -> None:
    up = Upstream("s/t/0", 300.0, 300.0, {"s/t": 1})
    from agent.model import Observation, cell

    c = cell((("team", "a"),), ("x",))
    assert up.add([Observation(1000.0, c, (1.0,)), Observation(1700.0, c, (1.0,))], 0, 1) == []
    assert [b for b, _ in up.seal()] == [900.0]
    offset, meta = up.commit_point()  # type: ignore[misc]
    assert offset == 0 and up.sealed_until == 1200.0
    again = Upstream("s/t/0", 300.0, 300.0, {"s/t": 1}, meta)
    assert again.sealed_until == 1200.0 and again.max_ts == 1700.0
    # Replayed record of the sealed bucket: already sent, skipped silently; a new late one is reported.
    assert again.add([Observation(1000.0, c, (1.0,)), Observation(1700.0, c, (1.0,))], 0, 1) == []
    late = again.add([Observation(950.0, c, (1.0,))], 2, 2)
    assert len(late) == 1
    assert Upstream("s/t/0", 300.0, 300.0, {}, "not json").sealed_until == -math.inf


@pytest.mark.parametrize("idle", [True, False])
def test_task_waits_for_every_input_partition(idle: bool) -> None:
    cfg = load_config_text(CONFIG)
    agent = Agent(cfg)
    task = Task("repartition/0", agent.make_runner, ["spend"], sources=["tokens"])
    task.add("tokens/t/0", {"tokens/t": 2}, (7200.0, False), [])
    assert task.watermark() == -math.inf  # partition 1 not heard from
    task.add("tokens/t/1", {}, (3600.0, idle), [])
    assert task.watermark() == (7200.0 if idle else 3600.0)


# -- restore, replay, late partials, the detectors' first window ------------------------------------
SIGS = ("token_cost_usd", "requests")


def _ob(ts: float, team: str, cost: float) -> Any:
    from agent.model import Observation, cell

    return Observation(ts, cell((("team", team), ("model", "m")), SIGS), (cost, 1.0))


def _wire(agent: Agent, ups: list[Upstream], hours: range, teams: dict[str, range], idle: bool = True) -> list[bytes]:
    """The repartition records of ``hours`` of data spread over the input partitions (one task, all series)."""
    routers = {name: agent.make_runner(name) for name in agent.runners}
    log: list[bytes] = []
    pos = [0] * len(ups)
    for h in hours:
        for i, up in enumerate(ups):
            obs = [
                _ob(h * 3600.0 + k * 600 + i, t, 5.0 + (h * 7 + k + len(t)) % 11)
                for k in range(6)
                for t, when in teams.items()
                if h in when and (k + len(t)) % len(ups) == i
            ]
            if not obs:
                continue
            assert up.add(obs, pos[i], pos[i] + len(obs) - 1) == []
            pos[i] += len(obs)
            partials = up.partials(routers, up.seal())
            clock = up.clock() if up.clock_changed() else None
            if partials or clock is not None:
                log.append(encode(up.src, up.parts, clock, partials))
    for up in ups if idle else ():
        up.idle = True
        log.append(encode(up.src, up.parts, up.clock(), up.partials(routers, up.provisional())))
    return log


def _apply(task: Task, log: list[bytes], start: int, every: int) -> tuple[dict, list]:
    points: dict[tuple[str, tuple, float], float] = {}
    late: list = []
    for offset in range(start, len(log)):
        src, parts, clock, partials = decode(log[offset])
        late += task.add(src, parts, clock, partials, at_ms=float(offset))
        task.offset = offset + 1
        if offset % every == 0 or offset == len(log) - 1:
            for name, pts, _ in task.close():
                points.update({(name, p.series, p.window_start): p.observed for p in pts})
    return points, late


def _changelog(into: dict[bytes, bytes], task: Task) -> None:
    for k, v in task.changelog_records():
        if v is None:
            into.pop(k, None)
        else:
            into[k] = v


def _task(agent: Agent) -> Task:
    return Task("repartition/0", agent.make_runner, list(agent.runners), sources=["tokens"])


def test_a_restored_task_replays_from_its_offset_and_closes_the_same_windows() -> None:
    agent = Agent(load_config_text(CONFIG))
    ups = [Upstream(f"tokens/t/{i}", agent.bucket, 300, {"tokens/t": 2}) for i in range(2)]
    log = _wire(agent, ups, range(0, 60), {"a": range(0, 60), "b": range(0, 20), "c": range(30, 60)})
    first = _task(agent)
    changelog: dict[bytes, bytes] = {}
    cut = len(log) // 2
    before, late = _apply(first, log[:cut], 0, 3)
    _changelog(changelog, first)  # the checkpoint; the task goes on, then its replica dies
    after, late2 = _apply(first, log, cut, 3)
    assert late == late2 == [] and after
    second = _task(agent)
    assert second.restore(changelog) > 0 and second.offset == cut
    replayed, late3 = _apply(second, log, second.offset, 7)  # other batches: the same windows
    assert late3 == [] and replayed == after
    for name, r in first.runners.items():
        r2 = second.runners[name]
        assert _learned(r) == _learned(r2) and len(r.models) == 3
        assert r2.first_window == r.first_window == 0.0


def _learned(r: Any) -> dict:
    return {k: (getattr(m, "n_learned", None), r.last_learned[k], r.last_seen.get(k)) for k, m in r.models.items()}


def test_an_idle_partitions_open_bucket_sent_again_is_not_late_even_after_a_restore() -> None:
    """A window closed on an idle partition's provisional partials; its next owner replays the partition from
    the committed offset and sends the sealed bucket: the same sums are no news, new records are late."""
    agent = Agent(load_config_text(CONFIG))
    task = _task(agent)
    p0, p1 = (Upstream(f"tokens/t/{i}", agent.bucket, 300, {"tokens/t": 2}) for i in range(2))
    routers = {name: agent.make_runner(name) for name in agent.runners}
    assert p1.add([_ob(3000.0, "a", 4.0), _ob(3100.0, "b", 2.0)], 0, 1) == []
    committed = p1.commit_point()
    p1.idle = True
    sent = p1.partials(routers, p1.provisional())
    assert sent and task.add(p1.src, p1.parts, p1.clock(), sent) == []
    p0.add([_ob(t, "a", 1.0) for t in (100.0, 3000.0, 8000.0)], 0, 2)
    assert task.add(*_sealed(p0, routers)) == []
    closed = {(n, p.series, p.window_start): p.observed for n, pts, _ in task.close() for p in pts}
    assert closed[("spend", (("team", "a"),), 0.0)] == 6.0  # p0's 2 + p1's provisional 4
    changelog: dict[bytes, bytes] = {}
    _changelog(changelog, task)
    for restored in (False, True):
        t = task
        if restored:
            t = _task(agent)
            t.restore(changelog)
        again = Upstream(p1.src, agent.bucket, 300, {"tokens/t": 2}, committed[1])  # type: ignore[index]
        assert again.add([_ob(3000.0, "a", 4.0), _ob(3100.0, "b", 2.0), _ob(9000.0, "a", 1.0)], 0, 2) == []
        assert t.add(*_sealed(again, routers)) == []
    # New records for that bucket after its window closed (the partition had gone idle): late.
    newer = Upstream(p1.src, agent.bucket, 300, {"tokens/t": 2}, committed[1])  # type: ignore[index]
    newer.add([_ob(3000.0, "a", 4.0), _ob(3100.0, "b", 2.0), _ob(3200.0, "a", 9.0), _ob(9000.0, "a", 1.0)], 0, 3)
    fresh = _task(agent)
    fresh.restore(changelog)
    late = fresh.add(*_sealed(newer, routers))
    assert {(p[0], p[1]) for p in late} == {("spend", ("a",)), ("requests", ("a", "m"))}


def _sealed(up: Upstream, routers: dict) -> tuple:
    partials = up.partials(routers, up.seal())
    return up.src, up.parts, up.clock(), partials


def test_every_task_learns_the_detectors_first_window_from_the_input_clocks() -> None:
    agent = Agent(load_config_text(CONFIG))
    routers = {name: agent.make_runner(name) for name in agent.runners}
    p0, p1 = (Upstream(f"tokens/t/{i}", agent.bucket, 300, {"tokens/t": 2}) for i in range(2))
    p0.add([_ob(5 * 3600.0, "a", 1.0), _ob(9 * 3600.0, "a", 1.0)], 0, 1)
    p1.add([_ob(2 * 3600.0 + 1000, "b", 1.0), _ob(9 * 3600.0, "b", 1.0)], 0, 1)
    tasks = [Task(f"repartition/{i}", agent.make_runner, list(agent.runners), sources=["tokens"]) for i in range(3)]
    for up in (p0, p1):
        partials = up.partials(routers, up.seal())
        clock = up.clock()
        for i, task in enumerate(tasks):  # each task gets its own series' partials, every task the clocks
            mine = [p for p in partials if partition_of(p[0], p[1], 3) == i]
            task.add(*decode(encode(up.src, up.parts, clock, mine)))
    assert p1.first == {"spend": 8100.0, "requests": 8100.0}  # its first bucket with data, per detector
    for task in tasks:
        assert task.runners["spend"].first_window == 7200.0 and task.runners["requests"].first_window == 8100.0
    # The partition's next owner keeps it (commit metadata); a restored task keeps it (changelog).
    assert Upstream(p1.src, agent.bucket, 300, {}, p1.commit_point()[1]).first == p1.first  # type: ignore[index]
    restored = _task(agent)
    restored.restore(dict(tasks[0].changelog_records()))  # type: ignore[arg-type]
    assert restored.runners["spend"].first_window == 7200.0
    # A first bucket in a window already closed is late data: it does not move the start.
    tasks[0].close()
    tasks[0].add("tokens/t/1", {}, (9 * 3600.0, False, {"spend": 0.0}), [])
    assert tasks[0].runners["spend"].first_window == 7200.0


def test_an_idle_input_whose_log_grew_holds_event_time_back_until_its_owner_reports() -> None:
    """Partitions went idle; new records reach every partition, but one partition's partials are fetched first:
    the others' logs have grown past the offsets they were idle at, so they hold event time back (else the first
    partition's sealed time would close windows the others still feed, and their partials would come late)."""
    agent = Agent(load_config_text(CONFIG))
    routers = {name: agent.make_runner(name) for name in agent.runners}
    task = Task("repartition/0", agent.make_runner, list(agent.runners), sources=["tokens"])
    ups = [Upstream(f"tokens/t/{i}", agent.bucket, 300, {"tokens/t": 2}) for i in range(2)]
    for up in ups:  # both caught up at offset 2 (the wire carries the offset of an idle clock)
        up.add([_ob(1000.0, "a", 1.0), _ob(3500.0, "a", 1.0)], 0, 1)
        task.add(*decode(encode(up.src, up.parts, None, up.partials(routers, up.seal()))))
        up.idle = True
        clock = up.clock()
        assert clock[3] == 2 and up.clock_changed()
        task.add(*decode(encode(up.src, up.parts, clock, up.partials(routers, up.provisional()))))
    base = task.watermark()
    assert 0 < base < 3500.0
    task.log_ends({"tokens/t/0": 2, "tokens/t/1": 2})  # nothing new: both stay idle
    assert task.watermark() == base
    # Hours of new records in both logs; partition 0's are read and sealed first.
    ups[0].add([_ob(t, "a", 1.0) for t in (4000.0, 9000.0, 20000.0)], 2, 4)
    task.add(*_sealed(ups[0], routers))
    # Partition 1 still idle, partition 0 active: the active one's sealed time would close windows up to it...
    assert task.watermark() == ups[0].sealed_until > base + 3600
    task.log_ends({"tokens/t/0": 5, "tokens/t/1": 5})
    assert task.watermark() == base  # ...but partition 1's log grew: it holds event time back
    assert all(p.window_start + task.runners[n].window <= base for n, pts, _ in task.close() for p in pts)
    # Its owner reads them: its partials are on time, then both move on.
    ups[1].add([_ob(t, "a", 2.0) for t in (4100.0, 9100.0, 20100.0)], 2, 4)
    assert task.add(*_sealed(ups[1], routers)) == []
    assert task.watermark() > base + 3600
    # An input whose clock came without an offset (an older agent) counts as idle only while its log is empty.
    old = Task("repartition/0", agent.make_runner, list(agent.runners), sources=["tokens"])
    old.add("tokens/t/0", {"tokens/t": 1}, (3000.0, True), [])
    old.log_ends({"tokens/t/0": 0})
    assert old.inputs["tokens/t/0"][1] is True
    old.log_ends({"tokens/t/0": 7})
    assert old.inputs["tokens/t/0"][1] is False


def test_an_idle_input_holds_event_time_back_for_the_grace() -> None:
    """Idle partitions stop holding event time back only after ``idle_grace_seconds`` of being idle at the same
    offset (measured on the task's clock, its records' times): a producer that delivers to one partition a moment
    later than to the others (retrying after an outage) does not make that partition's records late."""
    agent = Agent(load_config_text(CONFIG))
    task = Task("repartition/0", agent.make_runner, ["spend"], sources=["tokens"], idle_grace_ms=10_000)
    task.add("tokens/t/0", {"tokens/t": 2}, (7200.0, True, {}, 5), [], at_ms=1_000)
    task.add("tokens/t/1", {}, (3600.0, True, {}, 5), [], at_ms=1_000)
    assert task.watermark() == 3600.0  # both just went idle: the slower one holds time back
    task.add("tokens/t/1", {}, (3600.0, True, {}, 5), [], at_ms=8_000)  # heartbeats: same offset, still idle
    task.add("tokens/t/0", {}, (7200.0, True, {}, 5), [], at_ms=8_000)
    assert task.watermark() == 3600.0
    task.add("tokens/t/1", {}, (3600.0, True, {}, 7), [], at_ms=9_000)  # it read 2 more records: idle anew
    task.add("tokens/t/0", {}, (7200.0, True, {}, 5), [], at_ms=12_000)
    assert task.watermark() == 3600.0  # partition 1 idle for 3 s only
    task.add("tokens/t/1", {}, (3600.0, True, {}, 7), [], at_ms=18_000)  # heartbeat within the lease
    task.add("tokens/t/0", {}, (7200.0, True, {}, 5), [], at_ms=19_500)
    assert task.watermark() == 7200.0  # both idle for the grace: the idle max


def test_an_empty_partition_that_goes_idle_counts_as_idle_after_the_grace() -> None:
    """An input partition with no records at all (offset 0), announced active by its previous owner, then idle by
    its new owner: its heartbeats keep the time it went idle, so the grace ends (offset 0 is not "not idle")."""
    agent = Agent(load_config_text(CONFIG))
    task = Task("repartition/0", agent.make_runner, ["spend"], sources=["tokens"], idle_grace_ms=10_000)
    task.add("tokens/t/0", {"tokens/t": 2}, (7200.0, False, {}, None), [], at_ms=1_000)
    task.add("tokens/t/1", {}, (-math.inf, False, {}, None), [], at_ms=1_000)  # let go by its owner
    for at in (2_000, 5_000, 8_000, 11_000, 14_000):  # its new owner: idle at offset 0, heartbeats
        task.add("tokens/t/1", {}, (-math.inf, True, {}, 0), [], at_ms=at)
    assert task.watermark() == 7200.0


def test_a_quiet_partition_moves_on_the_wall_clock_and_its_last_window_closes() -> None:
    """The single pipeline's idleness rule, per input partition: idle for the timeout, its time moves to the wall
    clock less the timeout, at most the longest window plus the lateness past its last record. The window of a
    record ten seconds into its hour closes; the hour after it does not; a record for a sealed bucket is late."""
    agent = Agent(load_config_text(CONFIG))
    task = _task(agent)
    up = Upstream("tokens/t/0", agent.bucket, 300, {"tokens/t": 1})
    routers = {name: agent.make_runner(name) for name in agent.runners}
    last = 36_000.0 + 10  # ten seconds into hour 10
    assert up.add([_ob(t, "a", 2.0) for t in (32_400.0, 34_000.0, last)], 0, 2) == []
    assert task.add(*_sealed(up, routers)) == []
    up.idle = True  # caught up: its open buckets go out provisionally, and it stops holding time back
    assert task.add(up.src, up.parts, up.clock(), up.partials(routers, up.provisional())) == []
    closed = {(n, p.window_start) for n, pts, _ in task.close() for p in pts}
    assert ("spend", 36_000.0) not in closed  # (its own time: the last record's; hour 10 is open)
    # Idle for the timeout, long after its last record: one horizon (the longest window) plus the lateness on.
    quiet = up.quiet_time(wall=10_000_000.0, timeout=300.0, horizon=3600.0)
    assert quiet == last + 3600 + 300
    assert up.quiet_time(wall=last + 1000.0, timeout=300.0, horizon=3600.0) == last + 700.0  # soon after: the wall
    sealed = up.partials(routers, up.seal(quiet))
    assert task.add(up.src, up.parts, up.clock(), sealed) == []
    closed = {(n, p.window_start): p.observed for n, pts, _ in task.close() for p in pts}
    assert closed[("spend", 36_000.0)] == 2.0  # hour 10 closed with the record ten seconds into it
    assert ("spend", 39_600.0) not in closed  # hour 11 stays open: silence is not made into zeros
    assert up.sealed_until == 36_000.0 + 3600
    assert [o[0] for o in up.add([_ob(38_000.0, "a", 1.0)], 3, 3)] == [38_000.0]  # late from then on
    # A partition that never had a record has no time of its own to move on.
    empty = Upstream("tokens/t/1", agent.bucket, 300, {"tokens/t": 2})
    assert empty.seal(empty.quiet_time(10_000_000.0, 300.0, 3600.0)) == [] and empty.sealed_until == -math.inf


def test_a_live_partitions_open_buckets_let_the_task_warn_early_and_the_close_confirms() -> None:
    """Kafka scale-out: a live input partition (caught up once) sends its open buckets every early_check_seconds of
    event time; the task warns while the window is open (not written to the changelog until it alerts), and the
    window's close confirms the alert under the same id."""
    agent = Agent(load_config_text(CONFIG))
    task = _task(agent)
    up = Upstream("tokens/t/0", agent.bucket, 300, {"tokens/t": 1})
    routers = {name: agent.make_runner(name) for name in agent.runners}
    days = 9
    usual = [_ob(h * 3600.0 + k * 600 + 30, "a", 1.0) for h in range(days * 24) for k in range(6)]
    assert up.add(usual, 0, len(usual) - 1) == []
    assert task.add(*_sealed(up, routers)) == []
    task.close()
    w = days * 24 * 3600.0  # the loop's hour
    assert up.early_buckets(60.0) == []  # not live yet: a backlog closes its windows soon enough
    up.caught_up = True  # (its owner reported it idle once)
    loop = [_ob(w + s, "a", 1.0) for s in range(0, 600, 6)]  # $100 in ten minutes, usually $6 an hour
    pos = len(usual)
    assert up.add(loop, pos, pos + len(loop) - 1) == []
    sealed = up.partials(routers, up.seal())
    assert up.early_buckets(60.0, wall=w + 5 * 3600, horizon=3600.0) == []  # hours behind the wall clock: a backlog
    open_ = up.partials(routers, up.early_buckets(60.0, wall=w + 12 * 60, horizon=3600.0))
    assert open_ and {p[2] for p in open_} == {w} and up.early_buckets(60.0) == []  # once a minute of event time
    assert task.add(up.src, up.parts, up.clock() if up.clock_changed() else None, sealed) == []
    task.dirty = {name: set() for name in task.runners}
    assert task.add(up.src, up.parts, None, open_) == []
    assert task.dirty["spend"] == set()  # open buckets are not written to the changelog
    assert w not in {p.window_start for _, pts, _ in task.close() for p in pts}  # the loop's window is open
    early = [e for _, _, evs in task.early(w + 12 * 60) for e in evs]
    assert [(e["detector"], e["status"], e["early"]) for e in early] == [("spend", "firing", True)]
    assert early[0]["window_start"] == "1970-01-10T00:00:00Z" and early[0]["window_progress"] == 0.2
    assert task.dirty["spend"] == {("a",)}  # the episode is
    assert task.early(w + 13 * 60) == []  # once per episode
    # The rest of the hour, quiet; the next hour's first record seals it: the close confirms the warning.
    after = [_ob(w + 3600 + 400, "a", 1.0)]
    assert up.add(after, pos + len(loop), pos + len(loop)) == []
    assert task.add(*_sealed(up, routers)) == []
    confirmed = [e for name, _, evs in task.close() if name == "spend" for e in evs]
    assert [(e["status"], e["confirmed"], e["id"]) for e in confirmed] == [("firing", True, early[0]["id"])]
