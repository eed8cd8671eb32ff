"""Where series live and windows close: chosen once, at start (``state.type``).

- :class:`LocalTopology` (``local``, ``memory``): this process owns every series. Decoded observations go into the
  aggregation's buckets; windows close when the slowest stream's event time has passed them; state is one snapshot
  (windows, models, source positions, billing tables) in the state store.
- :class:`PartitionedTopology` (``kafka``): state follows the partition. Each input partition pre-aggregates its own
  buckets (:class:`~agent.scaleout.Upstream`) and sends partial aggregates to the tasks that own their series
  (:class:`~agent.scaleout.Task`, over the repartition topic, or in place for an input keyed by series); windows
  close in the tasks, which keep their state in the changelog topic. Its sources' partitions are owned through
  :class:`~agent.partitions.PartitionOwner`.

The pipeline (:class:`~agent.pipeline.Agent`) calls the same methods whichever it is: the flow reads one way.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agent.decoders.base import BadRecord, late_observation
from agent.model import Observation
from agent.sources.base import Batch, Source, SourceHost

if TYPE_CHECKING:
    from agent.detect import DetectorRunner
    from agent.partitions import PartitionedState
    from agent.pipeline import Agent

log = logging.getLogger("agent")


class Topology:
    """What the pipeline asks of the topology (see the module docstring)."""

    #: The partitioned state sources' partition owners use (None: local state).
    partitioned: PartitionedState | None = None

    def restore(self) -> bool:
        """Restore the state this process owns from the start (True: there was some)."""
        return False

    def start(self, stop: threading.Event) -> bool:
        """Connect what the topology needs before sources start; False when ``stop`` was set first."""
        return True

    def sources(self, host_for: Callable[[str], SourceHost], **kw: Any) -> dict[str, Source]:
        """Sources of its own (the repartition topic's consumer), each given ``host_for(name)``."""
        return {}

    def owner(self, source: str, stream: str) -> Any:
        """What a batch of this stream must carry to be current (None: anything; see ``Batch.owner``)."""
        return None

    def late_before(self, batch: Batch, owner: Any) -> float | None:
        """Event time before which a batch's records are late (the decoders keep their bytes); None: unknown."""
        raise NotImplementedError

    def add(
        self, source: str, stream: str, obs: list[Observation], batch: Batch, owner: Any, event_time: float
    ) -> list[BadRecord]:
        """Decoded observations (``event_time``: the latest event time behind them, see
        ``DecodeContext.max_event_time``); returns the late ones as bad records."""
        raise NotImplementedError

    def idle(self, source: str, stream: str, owner: Any, position: Any) -> list[BadRecord]:
        """A stream caught up with its input: it stops holding event time back."""
        raise NotImplementedError

    def active(self, source: str, stream: str, owner: Any) -> None:
        """A stream reported idle has records again: it holds event time back until they are processed."""
        raise NotImplementedError

    def live(self, source: str, stream: str, owner: Any) -> None:
        """A stream's batch reached its input's end (``Batch.live``): it has caught up, what it reads is live."""
        raise NotImplementedError

    def closes_on_input(self, source: str) -> bool:
        """Whether this source's batches can close windows (else its records travel to the tasks first)."""
        return True

    def process(self, batch: Batch) -> list[BadRecord]:
        """A batch of the topology's own kinds (``task``, ``partials``)."""
        raise ValueError(f"unexpected batch kind {batch.kind!r} with {type(self).__name__}")

    def release(self, release: Any) -> None:
        """After the checkpoint a source asked for before it lets partitions go: drop what they carried."""
        return None

    def seal(self, force_all: bool = False) -> None:
        """Close the windows event time has passed: score, publish, update the clock gauges."""
        raise NotImplementedError

    def series(self, detector: str) -> int:
        raise NotImplementedError

    def runners(self) -> Iterator[tuple[str, DetectorRunner]]:
        """(detector, runner) of every series this process holds (partitioned: one runner per task)."""
        raise NotImplementedError

    def closed_until(self) -> float:
        """End of the newest window every streaming detector has closed."""
        raise NotImplementedError

    def tasks(self) -> list[str]:
        """The tasks this replica owns (partitioned; local: none)."""
        return []

    def persist(self, positions: dict[str, dict[str, Any]], timeout: float) -> bool:
        """Persist the state including the sources' ``positions`` (the sinks' outboxes are flushed already).
        False: there was nothing to write, so it proves nothing about the state store being reachable."""
        raise NotImplementedError

    def let_go(self, timeout: float) -> None:
        """Shutting down, after the final checkpoint: tell others this process no longer holds its partitions."""
        return None

    def close(self, timeout: float) -> None:
        return None


class LocalTopology(Topology):
    """This process owns every series (see the module docstring); the state is the agent's own."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self._last_sealed = [-math.inf, -math.inf]  # per clock
        self._next_early = -math.inf  # event time of the next early-warning check (agent/early.py)
        for agg, runners in agent.clocks:
            for r in runners.values():
                r.source_of = agg.cell_source.get  # what a data-gap alert names

    def restore(self) -> bool:
        a = self.agent
        state = a.store.load()
        if not state:
            return False
        a.aggregator.restore(state["aggregator"])
        if "billing" in state:
            a.billing.restore(state["billing"])
        a.snapshots.restore(state.get("snapshots", {}))
        for name, snap in state["runners"].items():
            if name in a.runners and name not in a.fresh_detectors:  # (a reload: its config changed, it starts fresh)
                a.runners[name].restore(snap)
        for name, pos in state["sources"].items():
            if name in a.sources:
                a.sources[name].restore(pos)
        self._last_sealed = [agg.sealed_until for agg, _ in a.clocks]
        log.info("state restored: %d series", sum(len(r.models) for r in a.runners.values()))
        return True

    def late_before(self, batch: Batch, owner: Any) -> float | None:
        return self.agent.aggregator.sealed_until

    def add(
        self, source: str, stream: str, obs: list[Observation], batch: Batch, owner: Any, event_time: float
    ) -> list[BadRecord]:
        late = self.agent.aggregator.add(stream, obs, event_time, origin=source)
        return [late_observation(o) for o in late]

    def idle(self, source: str, stream: str, owner: Any, position: Any) -> list[BadRecord]:
        src = self.agent.sources.get(source)
        self.agent.clock_of(source).set_idle(stream, live=bool(src is not None and src.live))
        return []

    def active(self, source: str, stream: str, owner: Any) -> None:
        self.agent.clock_of(source).set_idle(stream, False)

    def live(self, source: str, stream: str, owner: Any) -> None:
        self.agent.clock_of(source).mark_live(stream)

    def seal(self, force_all: bool = False) -> None:
        a = self.agent
        for i, (agg, runners) in enumerate(a.clocks):
            sealed = agg.seal(force_all=force_all)
            until = math.inf if force_all else agg.sealed_until
            if until <= self._last_sealed[i] and not sealed:
                continue
            self._last_sealed[i] = until
            closed = []
            for name, r in runners.items():
                try:  # one detector's failure never stops the others, nor the pipeline
                    for b, cells in sealed:
                        r.add_bucket(b, cells)
                    closed.append((name, *r.close_until(until)))
                except Exception as exc:
                    a.detector_failed(name, exc)
            a.publish(closed)
        if not force_all:
            self._early()
        t = a.telemetry
        gauge(t.watermark, a.aggregator.watermark())
        gauge(t.closed_until, self.closed_until())
        t.open_cells.set(a.aggregator.open_cells() + a.billing.open_cells())

    def _early(self) -> None:
        """Every ``early_check_seconds`` of event time (the newest a stream has reached), the streaming detectors
        look at their open windows (``agent/early.py``); billing deliveries are whole, they have none. Not while a
        stream reads a backlog (a backtest, a catch-up after a restart): its windows close as soon as it is read, an
        early warning would be no earlier."""
        a = self.agent
        agg, runners = a.clocks[0]
        now = max(agg.source_max.values(), default=-math.inf)
        if now < self._next_early or not math.isfinite(now) or not agg.live_now():
            return
        step = a.cfg.pipeline.early_check_seconds
        self._next_early = now - now % step + step
        buckets = list(agg.buckets.items())
        closed = []
        for name, r in runners.items():
            if r.early_enabled:
                try:
                    closed.append((name, *r.early(now, buckets, wall=a.now())))
                except Exception as exc:
                    a.detector_failed(name, exc)
        a.publish(closed)

    def series(self, detector: str) -> int:
        return len(self.agent.runners[detector].models)

    def runners(self) -> Iterator[tuple[str, DetectorRunner]]:
        yield from self.agent.runners.items()

    def closed_until(self) -> float:
        return min((r.closed_until for r in self.agent.clocks[0][1].values()), default=-math.inf)

    def persist(self, positions: dict[str, dict[str, Any]], timeout: float) -> bool:
        a = self.agent
        snapshots = a.snapshots.persist()  # billing tables first: the state names their files
        state = {
            "aggregator": a.aggregator.snapshot(),
            "billing": a.billing.snapshot(),
            "runners": {name: r.snapshot() for name, r in a.runners.items()},
            "sources": positions,
            "snapshots": snapshots,
        }
        a.store.save(state)
        a.snapshots.collect_garbage(snapshots)
        return True


class PartitionedTopology(Topology):
    """State follows the partition (see the module docstring), over Kafka's repartition and changelog topics."""

    def __init__(self, agent: Agent):
        from agent.sources.kafka_scale import KafkaScaleOut

        self.agent = agent
        self.scale = KafkaScaleOut(agent.cfg, agent.make_runner, agent.telemetry)
        self.partitioned = self.scale

    def start(self, stop: threading.Event) -> bool:
        return self.scale.start(stop)

    def sources(self, host_for: Callable[[str], SourceHost], **kw: Any) -> dict[str, Source]:
        if not self.scale.unkeyed:
            return {}  # every input keyed by series: each input partition is its own task
        from agent.sources.kafka_scale import TASKS_SOURCE

        return {TASKS_SOURCE: self.scale.task_source(host=host_for(TASKS_SOURCE), **kw)}

    def owner(self, source: str, stream: str) -> Any:
        o = self.scale.owners.get(source)
        return o.upstreams.get(stream) if o is not None else None

    def late_before(self, batch: Batch, owner: Any) -> float | None:
        # A replay skips what its partition sealed before without reporting it.
        if owner is not None and batch.offsets is not None and batch.offsets[1] >= owner.replay_until:
            return float(owner.sealed_until)
        return None

    def add(
        self, source: str, stream: str, obs: list[Observation], batch: Batch, owner: Any, event_time: float
    ) -> list[BadRecord]:
        if owner is None or batch.offsets is None:
            return []  # (revoked meanwhile: its next owner re-reads the records)
        return self.scale.add(source, owner, obs, batch.offsets, event_time)

    def idle(self, source: str, stream: str, owner: Any, position: Any) -> list[BadRecord]:
        return self.scale.idle(source, owner, position) if owner is not None else []

    def active(self, source: str, stream: str, owner: Any) -> None:
        # The tasks see an idle input partition's log grow (Task.log_ends) and its next clock; nothing to do here.
        return None

    def live(self, source: str, stream: str, owner: Any) -> None:
        if owner is not None:
            owner.caught_up = True  # its open buckets go to the tasks for early warnings (Upstream.early_buckets)

    def closes_on_input(self, source: str) -> bool:
        return source in self.scale.keyed  # else windows close as the repartition topic delivers

    def process(self, batch: Batch) -> list[BadRecord]:
        if batch.kind == "task":  # a task restored from the changelog, before its partition is consumed
            self.scale.install(batch.payload)
            return []
        if batch.kind == "partials":  # repartition topic: partial window aggregates for our tasks
            return self.scale.apply(*batch.payload)
        return super().process(batch)

    def release(self, release: Any) -> None:
        self.scale.release(release)

    def seal(self, force_all: bool = False) -> None:
        a = self.agent
        a.publish(self.scale.close_tasks())
        gauge(a.telemetry.watermark, self.scale.watermark())
        gauge(a.telemetry.closed_until, self.scale.closed_until())

    def series(self, detector: str) -> int:
        return self.scale.series(detector)

    def runners(self) -> Iterator[tuple[str, DetectorRunner]]:
        for task in list(self.scale.tasks.values()):
            yield from task.runners.items()

    def closed_until(self) -> float:
        return self.scale.closed_until()

    def tasks(self) -> list[str]:
        return list(self.scale.tasks)

    def persist(self, positions: dict[str, dict[str, Any]], timeout: float) -> bool:
        # Partials acknowledged, then the tasks' changelog records (the offsets are committed after).
        return self.scale.checkpoint(timeout) is not False

    def let_go(self, timeout: float) -> None:
        self.scale.let_go_all(timeout)

    def close(self, timeout: float) -> None:
        self.scale.close(timeout)


def make_topology(agent: Agent) -> Topology:
    return PartitionedTopology(agent) if agent.cfg.state.type == "kafka" else LocalTopology(agent)


def gauge(g: Any, value: float) -> None:
    if math.isfinite(value):
        g.set(value)
