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
