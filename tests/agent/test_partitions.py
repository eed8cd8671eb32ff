"""The partition-ownership rules, without a broker: what a partitioned source (Kafka, Event Hubs) asks of
:class:`agent.partitions.PartitionOwner` at each step. The Kafka source runs the same code against a real broker in
``tests/agent/sources/test_kafka*.py``."""

from __future__ import annotations

from typing import Any

import orjson

from agent.partitions import Committed, Part, PartitionOwner
from agent.scaleout import Task, Upstream
from agent.sources.base import Batch
from agent.telemetry import Telemetry


class RecordingHost:
    """A :class:`~agent.sources.base.SourceHost` that records what the owner asks of the pipeline."""

    def __init__(self, partitioned: Any = None, grace: float = 10.0):
        self.telemetry = Telemetry()
        self.partitioned = partitioned
        self.bucket_seconds = 300.0
        self.allowed_lateness_seconds = 60.0
        self.idle_grace_seconds = grace
        self.emitted: list[Batch] = []
        self.streams: set[str] = set()
        self.checkpoints: list[Any] = []

    def emit(self, batch: Batch) -> None:
        self.emitted.append(batch)

    def backlog(self) -> float:
        return 0.0

    def checkpoint_blocked(self) -> bool:
        return False

    def checkpoint(self, release: Any = None, timeout: float = 10.0) -> bool:
        self.checkpoints.append(release)
        return True

    def register_stream(self, key: str) -> None:
        self.streams.add(key)

    def forget_stream(self, key: str) -> None:
        self.streams.discard(key)

    def dead_letter(self, source: str, where: str, records: list[Any]) -> None:
        raise AssertionError("not expected")

    def fail(self, exc: BaseException, message: str) -> None:
        raise AssertionError(message)


class RecordingState:
    """The partitioned state's side: tasks restored empty, let-go recorded."""

    def __init__(self) -> None:
        self.owners: dict[str, PartitionOwner] = {}
        self.specs: list[tuple[str, str, int, dict[str, Any]]] = []
        self.let_go_of: list[tuple[str, list[str]]] = []

    def restore_tasks(self, specs: list[tuple[str, str, int, dict[str, Any]]]) -> list[Task]:
        self.specs.extend(specs)
        return [Task(tid, lambda n: None, [], **kw) for tid, _, _, kw in specs]  # type: ignore[arg-type,return-value]

    def keyed_changelog(self, topic: str, partitions: int) -> str:
        return f"app-{topic}-changelog"

    def let_go(self, source: str, ups: list[Upstream], timeout: float = 10.0) -> None:
        self.let_go_of.append((source, sorted(up.src for up in ups)))

    def adopt(self, owner: PartitionOwner) -> None:
        self.owners[owner.source] = owner


def test_local_state_partitions_are_streams_and_idle_after_the_grace() -> None:
    host = RecordingHost(grace=10.0)
    owner = PartitionOwner("tokens", host)
    p0, p1 = Part("in", 0), Part("in", 1)
    assert owner.assign([p0, p1]) is False  # nothing to restore: consume at once
    assert host.streams == {"tokens/in/0", "tokens/in/1"} and owner.ready
    assert not owner.idle(p0, True, now=100.0)  # caught up a moment ago: still holds event time back
    assert not owner.idle(p0, True, now=109.9)
    assert owner.idle(p0, True, now=110.0)
    owner.fetched(p0)  # records: the grace starts again
    assert not owner.idle(p0, True, now=111.0)
    assert not owner.idle(p1, False, now=200.0)  # behind its end
    assert owner.idle(p0, True, now=121.0) and owner.reported_idle == {p0}
    assert owner.wake(p0) and not owner.wake(p0)  # its log grew: the pipeline is told once
    assert not owner.wake(p1)  # never reported idle: nothing to tell
    assert owner.positions({"in/0": 7}) == {"in/0": 7}
    owner.checkpoint_done({"in/0": 7, "in/1": 3})
    assert owner.checkpoint_before_release([p1]) == {"in/1": 3}  # checkpoint, then the source commits this
    assert host.checkpoints == [[]]
    owner.release([p1])
    assert host.streams == {"tokens/in/0"} and owner.assigned == {p0}


def test_partitioned_state_restores_the_clock_then_consumes_and_checkpoints_before_release() -> None:
    state = RecordingState()
    host = RecordingHost(partitioned=state)
    owner = PartitionOwner("tokens", host, keyed=True)
    assert state.owners == {"tokens": owner}
    p0, p1 = Part("in", 0), Part("in", 1)
    assert owner.assign([p0, p1]) is True and not owner.ready  # restore first: paused meanwhile
    clock = orjson.dumps({"m": 3600.0, "s": 3000.0, "r": 42}).decode()
    committed = {p0: Committed(40, clock, 2), p1: Committed(None, None, 2)}
    starts = owner.restore([p0, p1], committed.__getitem__)
    assert starts == {p0: 40, p1: None} and owner.ready  # None: the source's reset policy
    up = owner.owner(p0)
    assert up is not None and up.sealed_until == 3000.0 and owner.replay_boundary(p0) == 42
    assert owner.replay_boundary(p1) == -1
    # Keyed by series: each partition's task comes from the state store, through the pipeline's queue, first.
    assert [s[:3] for s in state.specs] == [
        ("tokens/in/0", "app-in-changelog", 0),
        ("tokens/in/1", "app-in-changelog", 1),
    ]
    assert [(b.kind, b.payload.tid) for b in host.emitted] == [("task", "tokens/in/0"), ("task", "tokens/in/1")]
    # Commit points: the oldest open bucket's first offset, with the clock as metadata.
    up.add([(3650.0, "cell", (1.0, 1.0, 0.0))], 42, 45)  # type: ignore[list-item]
    positions = owner.positions({"ignored": 1})
    offset, meta = positions["in/0"]
    assert offset == 42 and orjson.loads(meta)["r"] == 46 and "in/1" not in positions
    # Partitioned: idle at once (the tasks apply the grace on their own clock).
    assert owner.idle(p1, True, now=0.0)
    owner.checkpoint_done(positions)
    assert owner.checkpoint_before_release([p0]) == {"in/0": (offset, meta)}
    assert host.checkpoints == [["tokens/in/0"]]  # the task the partition carries is released after it
    owner.release([p0])
    assert state.let_go_of == [("tokens", ["tokens/in/0"])] and owner.owner(p0) is None
    assert owner.assigned == {p1}


def test_a_shutdown_revocation_leaves_the_final_checkpoint_to_the_pipeline() -> None:
    state = RecordingState()
    host = RecordingHost(partitioned=state)
    owner = PartitionOwner("tokens", host)
    p0 = Part("in", 0)
    owner.assign([p0])
    owner.restore([p0], lambda p: Committed(None, None, 1))
    assert owner.checkpoint_before_release([p0], stopping=True) == {}
    owner.release([p0], stopping=True)
    assert host.checkpoints == [] and state.let_go_of == []
    owner.let_go_all(1.0)  # the pipeline's stop, after the final checkpoint
    assert state.let_go_of == [("tokens", ["tokens/in/0"])]
