"""Partition ownership, whatever the broker: what a replica does with the partitions it is given.

A partitioned source (Kafka today; Event Hubs next) makes the SDK calls — assign, pause, seek, fetch, commit — and
asks a :class:`PartitionOwner` what to do at each step. The rules live here, once:

- **Restore, then consume.** Newly assigned partitions wait (paused) until :meth:`PartitionOwner.restore` has
  rebuilt what they need: with local state, nothing (each partition starts at the position in the restored state
  and becomes a stream on the event-time clock); with state that follows the partition (``state.type: kafka``),
  the partition's clock from its commit metadata (:class:`~agent.scaleout.Upstream`) and, for an input keyed by
  series or the repartition topic, its tasks from the state store, handed to the pipeline before any record.
- **Checkpoint, then release.** :meth:`PartitionOwner.revoke` asks the pipeline for a checkpoint of everything
  handed over so far (waiting, bounded), then lets the partitions go: their clocks tell the tasks they are no longer
  idle, their streams leave the clock. The source commits the positions it returns.
- **Replay from the committed position, the clock carried with the commit.** :meth:`PartitionOwner.positions` are
  what a checkpoint commits: with state that follows the partition, each partition's oldest open bucket with its
  clock as commit metadata; :meth:`PartitionOwner.replay_boundary` tells a source where records already processed
  before that commit end (a batch never straddles it).
- **Idle partitions** stop holding event time back once caught up for ``state.idle_grace_seconds``
  (:meth:`PartitionOwner.idle`); with partitioned state the tasks apply the grace, on their own clock.

How a partitioned source wires it (``agent/sources/kafka.py`` does all of this; a new one makes the same calls):

- ``partitioned = True`` on the class; ``self.owned = PartitionOwner(self.name, self.host, keyed=...)``.
- Assigned (the SDK's callback): ``owned.assign(parts)``; if it returns True, hold those partitions (pause them, or
  do not start their receivers) and ``ready()`` is False until the consumer loop has called
  ``owned.restore(parts, committed)`` — ``committed(part)`` returns :class:`Committed` (the SDK's checkpoint: offset
  or sequence number, the metadata string stored with it, the partition count) — then start each at the returned
  position (None: the source's own start policy). If it returned False, start at ``self.positions`` (local state).
- Each fetch: ``owned.fetched(part)``; split the records at ``owned.replay_boundary(part)`` so that no batch straddles
  it; emit ``Batch(..., stream=owned.stream(part), owner=owned.owner(part), offsets=(first, last))``.
- Nothing fetched: for each partition, ``owned.idle(part, caught_up)``; when True emit
  ``Batch(name, "idle", position, None, stream=owned.stream(part), owner=owned.owner(part))``.
- Records fetched: first, for each partition in ``owned.reported_idle`` that has records now (in this fetch, or its
  log's end past its position), ``owned.wake(part)``; when True emit ``Batch(name, "active", None, None, stream=...,
  owner=...)`` — then the records' batches.
- Backpressure (when ``owned.pausable``): pause while ``host.backlog()`` ≥ 0.8 or ``host.checkpoint_blocked()``;
  never resume a partition in ``owned.pending``.
- ``checkpoint_positions()`` returns ``owned.positions(self.positions)``; ``checkpointed(positions)`` calls
  ``owned.checkpoint_done(positions)`` and then commits them through the SDK (a position may be ``(offset,
  metadata)``: store the metadata with the checkpoint — an SDK without a metadata field keeps it beside it).
- Revoked (the SDK's callback): ``positions = owned.checkpoint_before_release(parts, stopping=self.stopping)``, commit
  them, then ``owned.release(parts, stopping=...)``. The agent's stop calls :meth:`PartitionOwner.let_go_all`.

Partitions are the SDK's own handles: anything hashable with ``topic`` and ``partition`` attributes (kafka-python's
``TopicPartition``; an Event Hubs source makes ``Part(hub, int(partition_id))``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from agent.sources.base import Batch, SourceHost

if TYPE_CHECKING:
    from agent.scaleout import Task, Upstream

log = logging.getLogger(__name__)


class Part(NamedTuple):
    """A partition handle for SDKs that have none of their own (the same shape as kafka-python's)."""

    topic: str
    partition: int


class Committed(NamedTuple):
    """What the broker holds for a partition: the committed position (None: none yet) and its metadata, and how many
    partitions its topic has."""

    offset: int | None
    metadata: str | None
    partitions: int


class PartitionedState(Protocol):
    """The partitioned topology's side (see :class:`agent.topology.PartitionedTopology`)."""

    def restore_tasks(self, specs: list[tuple[str, str, int, dict[str, Any]]]) -> list[Task]: ...

    def keyed_changelog(self, topic: str, partitions: int) -> str: ...

    def let_go(self, source: str, ups: list[Upstream], timeout: float = 10.0) -> None: ...

    def adopt(self, owner: PartitionOwner) -> None: ...


def stream_key(source: str, topic: str, partition: int) -> str:
    """The event-time stream of a source's partition."""
    return f"{source}/{topic}/{partition}"


def pid(part: Any) -> str:
    """A partition's position key (``topic/partition``)."""
    return f"{part.topic}/{part.partition}"


class PartitionOwner:
    """The partitions of one source this replica owns (see the module docstring)."""

    #: Whether caught-up partitions are reported idle (a source whose records are clocks of their own, e.g. the
    #: repartition topic's, is never idle); whether the source is paused under backpressure.
    tracks_idle = True
    pausable = True

    def __init__(self, source: str, host: SourceHost, *, keyed: bool = False):
        self.source = source
        self.host = host
        self.keyed = keyed
        self.state: PartitionedState | None = host.partitioned
        self.assigned: set[Any] = set()
        self.pending: set[Any] = set()  # assigned, waiting (paused) for restore()
        self.upstreams: dict[str, Upstream] = {}  # stream → the partition's pre-aggregation (partitioned state)
        self.checkpointed: dict[str, Any] = {}  # the positions of the last checkpoint
        self._caught_up: dict[Any, float] = {}  # partition → since when (monotonic) it has been caught up
        self.reported_idle: set[Any] = set()  # partitions reported idle since their last records
        if self.state is not None:
            self.state.adopt(self)

    def stream(self, part: Any) -> str:
        """The partition's event-time stream."""
        return stream_key(self.source, part.topic, part.partition)

    # -- assignment ------------------------------------------------------------------------------------------------
    def assign(self, parts: Iterable[Any]) -> bool:
        """Newly assigned partitions. True: they wait (paused) for :meth:`restore`; False: consume them now, from
        the positions in the restored state."""
        parts = list(parts)
        self.assigned.update(parts)
        if self.state is not None:
            self.pending.update(parts)
            return bool(parts)
        for part in parts:
            self.host.register_stream(self.stream(part))
        return False

    def restore(self, parts: list[Any], committed: Callable[[Any], Committed]) -> dict[Any, int | None]:
        """Restore what the pending ``parts`` need (``committed`` asks the broker for one partition); return where
        each is consumed from (None: the source's reset policy). They may be consumed once this returns."""
        from agent.scaleout import Upstream

        assert self.state is not None, "only partitioned state restores partitions"
        host = self.host
        starts: dict[Any, int | None] = {}
        specs = []
        for part in parts:
            c = committed(part)
            key = self.stream(part)
            self.upstreams[key] = Upstream(
                key,
                host.bucket_seconds,
                host.allowed_lateness_seconds,
                {f"{self.source}/{part.topic}": c.partitions},
                c.metadata,
            )
            # Consume from exactly where the restored clock says: a partition held before a rebalance keeps the
            # client's fetch position, which may be past the committed replay point.
            starts[part] = c.offset if c.offset is not None and c.offset >= 0 else None
            if self.keyed:
                topic = self.state.keyed_changelog(part.topic, c.partitions)
                specs.append((key, topic, part.partition, {"inputs": [key]}))
        self._install(self.state.restore_tasks(specs))
        self.pending.difference_update(parts)
        return starts

    def _install(self, tasks: list[Task]) -> None:
        for task in tasks:  # through the queue: installed before any record fetched after it
            self.host.emit(Batch(self.source, "task", task, None))

    @property
    def ready(self) -> bool:
        """Every assigned partition restored."""
        return not self.pending

    # -- revocation ------------------------------------------------------------------------------------------------
    def released(self, parts: Iterable[Any]) -> list[str]:
        """The tasks these partitions carry (an input keyed by series: one per partition)."""
        if self.state is None or not self.keyed:
            return []
        return [self.stream(part) for part in parts]

    def checkpoint_before_release(self, parts: Iterable[Any], *, stopping: bool = False) -> dict[str, Any]:
        """Partitions about to be revoked: checkpoint what was handed over for them (waits, bounded); return the
        checkpointed positions of theirs, for the source to commit before :meth:`release`. At shutdown
        (``stopping``) the final checkpoint does it."""
        revoked = set(parts)
        self.pending -= revoked
        for part in revoked:
            self._caught_up.pop(part, None)
            self.reported_idle.discard(part)
        if not revoked or stopping:
            return {}
        if not self.host.checkpoint(self.released(revoked), timeout=10):
            log.warning("%s: no checkpoint before revocation (pipeline busy or timed out)", self.source)
        mine = {pid(p) for p in revoked}
        return {k: v for k, v in self.checkpointed.items() if k in mine}

    def release(self, parts: Iterable[Any], *, stopping: bool = False) -> None:
        """Let revoked partitions go: their tasks stop counting them idle (event time waits for their next owner),
        their streams leave the clock."""
        revoked = set(parts)
        if revoked and not stopping:
            gone = [self.upstreams.pop(self.stream(p), None) for p in revoked]
            if self.state is not None:
                self.state.let_go(self.source, [up for up in gone if up is not None])
            for part in revoked:
                self.host.forget_stream(self.stream(part))
        self.assigned -= revoked

    def let_go_all(self, timeout: float) -> None:
        """Shutting down: every partition's tasks stop counting it idle (its next owner reports for it)."""
        if self.state is not None:
            self.state.let_go(self.source, list(self.upstreams.values()), timeout=timeout)

    # -- consuming -------------------------------------------------------------------------------------------------
    def owner(self, part: Any) -> Upstream | None:
        """What batches of this partition carry (``Batch.owner``): a batch queued under an earlier assignment of
        its partition is recognised as stale."""
        return self.upstreams.get(self.stream(part))

    def replay_boundary(self, part: Any) -> int:
        """The first offset not processed before the restored commit (-1: none): a batch never straddles it."""
        up = self.owner(part)
        return up.replay_until if up is not None else -1

    def fetched(self, part: Any) -> None:
        """Records of ``part`` were fetched: not idle, whatever the log's end said."""
        self._caught_up.pop(part, None)
        self.reported_idle.discard(part)

    def wake(self, part: Any) -> bool:
        """A partition reported idle has records to read again (its log grew): True when the source must tell the
        pipeline — *before* any record fetched with them — that it holds event time back again. Else a burst
        spread over several partitions (producers flushing after an outage) would let the first partition
        processed close windows that the others' records still feed."""
        self._caught_up.pop(part, None)
        if part in self.reported_idle:
            self.reported_idle.discard(part)
            return True
        return False

    def idle(self, part: Any, caught_up: bool, now: float | None = None) -> bool:
        """Whether a partition with nothing fetched now counts as idle: caught up (at its log's end) for the grace
        in a row (local state) — the end the client knows is the one of its last fetch, and records delivered to one
        partition a moment after the others are on time, not late. Partitioned state: at once (its tasks apply
        the grace)."""
        if not caught_up:
            self._caught_up.pop(part, None)
            return False
        now = time.monotonic() if now is None else now
        since = self._caught_up.setdefault(part, now)
        grace = 0.0 if self.state is not None else self.host.idle_grace_seconds
        if now - since >= grace:
            self.reported_idle.add(part)
            return True
        return False

    # -- checkpoint ------------------------------------------------------------------------------------------------
    def positions(self, local: dict[str, Any]) -> dict[str, Any]:
        """What a checkpoint commits: ``local`` (the source's processed positions) with local state; with
        partitioned state, each partition's oldest open bucket, with its clock as metadata."""
        if self.state is None:
            return dict(local)
        out: dict[str, Any] = {}
        for key, up in list(self.upstreams.items()):
            point = up.commit_point()
            if point is not None:
                out[key.split("/", 1)[1]] = point
        return out

    def checkpoint_done(self, positions: dict[str, Any]) -> None:
        self.checkpointed = dict(positions)


class TaskPartitions(PartitionOwner):
    """The partitions of the repartition topic: each is a task (the series it owns), restored from the state store
    and replayed from exactly the offset its state includes. Never idle (its records are the input's clocks) and
    never paused (its records are few, and they are what lets windows close)."""

    tracks_idle = False
    pausable = False

    def __init__(self, source: str, host: SourceHost, *, tasks: Any):
        super().__init__(source, host)
        self.tasks = tasks  # the partitioned state: changelog_topic, repartition_topic, unkeyed, tasks

    @staticmethod
    def task_id(part: Any) -> str:
        return f"repartition/{part.partition}"

    def restore(self, parts: list[Any], committed: Callable[[Any], Committed]) -> dict[Any, int | None]:
        t = self.tasks
        specs = [(self.task_id(p), t.changelog_topic, p.partition, {"sources": t.unkeyed}) for p in parts]
        starts: dict[Any, int | None] = {}
        restored = t.restore_tasks(specs)
        self._install(restored)
        for part, task in zip(parts, restored, strict=True):
            # A task without state replays from the start: the fetch position kept over a rebalance, or a
            # committed offset without a changelog record, would skip partials that no state holds.
            starts[part] = task.offset
            log.info("task %s replays %s/%d from offset %s", task.tid, part.topic, part.partition, task.offset or 0)
        self.pending.difference_update(parts)
        return starts

    def released(self, parts: Iterable[Any]) -> list[str]:
        return [self.task_id(p) for p in parts]

    def positions(self, local: dict[str, Any]) -> dict[str, Any]:
        """The offset each task has applied (its state in the changelog includes everything before it)."""
        out: dict[str, Any] = {}
        for tid, task in list(self.tasks.tasks.items()):
            if tid.startswith("repartition/") and task.offset is not None:
                out[f"{self.tasks.repartition_topic}/{tid[12:]}"] = task.offset
        return out
