"""What a new source needs: a config, a ``run`` loop, and the host (agent.sources.base.SourceHost) — nothing else.

``ToyShards`` below is the whole component: every file of a folder is a shard, read like a partition — its own
event-time stream on the clock, a committed position, backpressure, and a checkpoint asked for and waited on
before it reports done. It is registered like a built-in, configured in YAML, and run through a real pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.config import load_config_text
from agent.decoders.base import DecodeContext
from agent.pipeline import Agent
from agent.registry import ComponentConfig, config_union, registered
from agent.sources.base import Batch, Source, SourceHost
from tests.agent.decoders.test_bedrock import log


# -- the component (what a contributor writes) ----------------------------------------------------
class ToyShardsConfig(ComponentConfig):
    type: Literal["toy_shards"]
    path: str
    batch_lines: int = 50
    decoder: config_union("decoder")  # type: ignore[valid-type]


class ToyShards(Source):
    partitioned = True  # each shard is its own event-time stream, registered with the host

    def __init__(self, cfg: ToyShardsConfig, *, host: SourceHost, **kw: Any):
        super().__init__(cfg, **kw)
        self.host = host
        self.checkpointed_at_end = False

    def run(self) -> None:
        shards = sorted(Path(self.cfg.path).iterdir())
        for shard in shards:
            self.host.register_stream(f"{self.name}/{shard.name}")
        for shard in shards:
            lines = shard.read_bytes().splitlines()
            start = int(self.positions.get(shard.name, 0))  # where the last checkpoint left this shard
            for i in range(start, len(lines), self.cfg.batch_lines):
                while self.host.backlog() > 0.8 and not self.stopping:
                    time.sleep(0.01)  # the pipeline is behind: wait, never buffer without bound
                chunk = lines[i : i + self.cfg.batch_lines]
                ctx = self.decode_context(shard.name)
                position = (shard.name, i + len(chunk))
                self.emit(
                    Batch(self.name, "lines", chunk, ctx, position, len(chunk), stream=f"{self.name}/{shard.name}")
                )
        self.checkpointed_at_end = self.host.checkpoint()  # everything above, durable

    def decode_context(self, location: str) -> DecodeContext:
        return DecodeContext(self.name, location, **self.ctx_defaults)


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    """In its own module a component registers with ``@register("source", "toy_shards", ToyShardsConfig)``; here it is
    registered for these tests only, so that other tests see the built-ins alone."""
    with registered("source", "toy_shards", ToyShardsConfig, ToyShards):
        yield


# -- the test ---------------------------------------------------------------------------------------
def _agent(folder: Path, state: Path, out: Path) -> Agent:
    return Agent(
        load_config_text(f"""
sources: {{toy: {{type: toy_shards, path: {folder}, decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}}}}}
detectors: {{calls: {{type: threshold, signal: requests, upper: 25, window_seconds: 3600}}}}
sinks: {{out: {{type: jsonl, path: {out}}}}}
state: {{type: local, directory: {state}}}
dead_letter: {{path: {state}/dlq.jsonl}}
pipeline: {{max_age_days: 3650}}
""")
    )


def test_a_toy_source_on_the_host_protocol_runs_in_a_real_pipeline(tmp_path: Path) -> None:
    folder, state, out = tmp_path / "shards", tmp_path / "state", tmp_path / "alerts.jsonl"
    folder.mkdir()
    for shard in ("a", "b"):  # the same hours in both shards; hour 5 is busy in each (2 × 20 calls)
        rows = [
            log(timestamp=f"2026-10-01T{h:02d}:{m:02d}:00Z", requestId=f"{shard}{h}-{m}")
            for h in range(8)
            for m in range(0, 60, 6)
        ]
        rows += [log(timestamp="2026-10-01T05:30:00Z", requestId=f"{shard}-burst{i}") for i in range(10)]
        (folder / f"{shard}.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    agent = _agent(folder, state, out)
    agent.start()
    assert agent.wait_finished(60)
    agent.stop(flush_windows=True)
    src = agent.sources["toy"]
    assert agent.error is None and src.checkpointed_at_end  # type: ignore[attr-defined]
    assert agent.records_in == 2 * (80 + 10)
    assert src.positions == {"a.jsonl": 90, "b.jsonl": 90}  # committed per shard
    firing = [line for line in out.read_text().splitlines() if '"firing"' in line]
    assert len(firing) == 1 and '"window_start":"2026-10-01T05:00:00Z"' in firing[0]  # 40 calls > 25
    # A restart resumes each shard from its committed position: nothing is read, nothing alerts again.
    again = _agent(folder, state, out)
    again.start()
    assert again.wait_finished(60)
    again.stop()
    assert again.records_in == 0 and len(out.read_text().splitlines()) == 2  # the firing and its resolution
