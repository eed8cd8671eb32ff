"""Scale-out over Kafka (``state.type: kafka``): repartition topic, changelog topic, tasks.

Internal topics, named after ``state.topic_prefix`` (default: the first Kafka source's group id):

- ``<prefix>-repartition`` (``state.partitions`` partitions, delete policy): partial window
  aggregates from every replica's input partitions, keyed by (detector, series), plus each input
  partition's sealed event time. Consumed by the group ``<prefix>-tasks``: the replica that owns
  partition *p* owns the series of *p*, whole.
- ``<prefix>-changelog`` (same partition count, compacted): one record per series of each task,
  one per task (its input clocks and the repartition offset it has applied). Written on every
  checkpoint (after the outbox flush, before any offset commit); read back on assignment.
- ``<prefix>-<topic>-changelog`` for sources with ``keyed_by_series: true``: the input is already
  keyed by series, so each input partition is a task and no repartition hop is made.

Input offsets are committed with the partition's clock as metadata (see
:class:`agent.scaleout.Upstream`); a replica that is assigned a partition resumes its clock from
there and its tasks from the changelog, so no replica ever learns a window twice or re-warms up.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.aggregate import Cells
from agent.decoders.base import BadRecord, late_observation
from agent.detect import DetectorRunner
from agent.model import Observation
from agent.partitions import PartitionOwner, TaskPartitions, stream_key
from agent.scaleout import NEG_INF, Clock, Emitted, Partial, Task, Upstream, decode, encode, partition_of
from agent.sources.base import Batch
from agent.sources.kafka import (
    REQUEST_TIMEOUT_MS,
    FatalKafkaError,
    KafkaConfig,
    KafkaSource,
    client_options,
    close_producer,
    fatal_reason,
    require_kafka,
    retrying,
)
from agent.telemetry import Telemetry

log = logging.getLogger("agent.scaleout")

TASKS_SOURCE = "@repartition"  # not a valid configured source name: never clashes
MAX_PARTIALS_PER_RECORD = 2000  # keeps each repartition record well under Kafka's 1 MB default
# Records wait in the producer's buffer for as long as the broker is away (kafka-python's default gives up
# after 2 minutes and drops them): an outage of any length is waited out, a checkpoint fails meanwhile.
DELIVERY_TIMEOUT_MS = 2**31 - 1
MAX_BLOCK_MS = 2000


class KafkaScaleOut:
    """The tasks of this replica and the internal topics they use (owned by the pipeline thread)."""

    def __init__(self, cfg: Any, make_runner: Callable[[str], DetectorRunner], telemetry: Telemetry):
        self.make_runner = make_runner
        self.telemetry = telemetry
        kafka_cfgs = {n: s for n, s in cfg.sources.items() if s.type == "kafka"}
        self.first: KafkaConfig = next(iter(kafka_cfgs.values()))
        self.opts = client_options(self.first)
        self.prefix = cfg.state.topic_prefix or self.first.group_id
        self.repartition_topic = f"{self.prefix}-repartition"
        self.changelog_topic = f"{self.prefix}-changelog"
        self.partitions = cfg.state.partitions
        self.idle_lease = cfg.state.idle_lease_seconds
        self.idle_grace = cfg.state.idle_grace_seconds
        # A partition idle this long moves on the wall clock, at most the longest window past its last record (the
        # single pipeline's rule, agent.aggregate.Aggregator): the last window of a quiet topic closes.
        self.idle_timeout = cfg.pipeline.idle_timeout_seconds
        self.idle_horizon = float(max(d.window_seconds for d in cfg.detectors.values()))
        self.replication = cfg.state.replication_factor
        self.unkeyed = sorted(n for n, s in kafka_cfgs.items() if not s.keyed_by_series)
        self.keyed = {n for n, s in kafka_cfgs.items() if s.keyed_by_series}
        self.detectors = list(cfg.detectors)
        self.routers: dict[str, DetectorRunner] = {name: make_runner(name) for name in self.detectors}
        # Early warnings (agent/early.py): live upstreams send their open buckets every early_check_seconds of
        # event time; tasks check what they received at most that often (wall clock).
        early = any(r.early_enabled for r in self.routers.values())
        self.early_step: float | None = cfg.pipeline.early_check_seconds if early else None
        self._next_early = 0.0
        self._early_touched: set[str] = set()
        self.tasks: dict[str, Task] = {}
        self._touched: set[str] = set()  # tasks with input since close_tasks() last ran
        # "source/topic" → partition count of the unkeyed inputs, as the upstreams announce them (replaced whole,
        # never mutated: the tasks' consumer thread reads it).
        self.input_parts: dict[str, int] = {}
        self.owners: dict[str, PartitionOwner] = {}  # by source
        self.producer: Any = None
        self._admin: Any = None
        self._known_topics: set[str] = set()
        self.closed = False  # close() was called (the agent stops)
        # Futures of records sent since the last successful checkpoint: it succeeds only once all are acknowledged.
        self._sent: list[Any] = []
        # Changelog records not yet acknowledged, latest per key: re-sent if their send failed.
        self._unacked: dict[tuple[str, int, bytes], tuple[bytes | None, Any]] = {}

    # -- set-up ------------------------------------------------------------------------------
    def start(self, stop: threading.Event) -> bool:
        """The producer and the internal topics, waiting for the brokers however long (see
        :func:`~agent.sources.kafka.retrying`). False when ``stop`` was set first."""

        def count(kind: str) -> None:
            self.telemetry.errors.labels(component="scale-out", error_type=kind, stage="connect").inc()

        return retrying(self._start, "scale-out", stop, count) is not None

    def _start(self) -> bool:
        if self.producer is None:
            self.producer = self._producer(require_kafka())
        if self.unkeyed:
            self.ensure_topic(self.repartition_topic, self.partitions, {"cleanup.policy": "delete"})
            self.ensure_topic(self.changelog_topic, self.partitions, {"cleanup.policy": "compact"})
            # The partitioner must use the real partition count (the topic may predate the config).
            self.partitions = len(self._partitions_for(self.repartition_topic))
        return True

    def _producer(self, kafka: Any) -> Any:
        # Idempotent (kafka-python's default with acks=all): retries keep each partition's order, so a changelog
        # record never lands after a newer one of its key.
        return kafka.KafkaProducer(
            **self.opts,
            acks="all",
            linger_ms=5,
            retries=2**31 - 1,
            enable_idempotence=True,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            # send() waits this long for a topic's metadata (60 s by default): during an outage a checkpoint
            # (or a stop) must fail fast and retry, not hang past its deadline.
            max_block_ms=MAX_BLOCK_MS,
        )

    def task_source(self, **kw: Any) -> TaskSource:
        cfg = self.first.model_copy(
            update={
                "topics": [self.repartition_topic],
                "topic_pattern": None,
                "group_id": f"{self.prefix}-tasks",
                "dead_letter_topic": None,
                "auto_offset_reset": "earliest",
            }
        )
        return TaskSource(cfg, scale=self, name=TASKS_SOURCE, **kw)

    def _partitions_for(self, topic: str, timeout: float = 30.0) -> set[int]:
        deadline = time.monotonic() + timeout
        kafka = require_kafka()
        while True:
            try:
                parts = self.producer.partitions_for(topic)
            except kafka.errors.KafkaTimeoutError:  # no metadata within max_block_ms: ask again until the deadline
                parts = None
            if parts:
                return set(parts)
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions after {timeout:.0f} s")
            time.sleep(0.2)

    def ensure_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        if name in self._known_topics:
            return
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        if self._admin is None:
            self._admin = KafkaAdminClient(**self.opts)
        try:
            self._admin.create_topics([NewTopic(name, partitions, self.replication, topic_configs=configs)])
            log.info("created internal topic %s (%d partitions, %s)", name, partitions, configs)
        except TopicAlreadyExistsError:
            pass
        self._known_topics.add(name)

    def adopt(self, owner: PartitionOwner) -> None:
        """A source's partition owner: let go of its partitions at shutdown (see :meth:`let_go`)."""
        self.owners[owner.source] = owner

    def let_go_all(self, timeout: float) -> None:
        """Shutting down: every input partition's tasks stop counting it idle (best effort, see :meth:`let_go`)."""
        for owner in self.owners.values():
            try:
                owner.let_go_all(max(0.1, timeout))
            except Exception as exc:  # fatal ones too: stopping anyway
                log.warning("%s: letting go of its partitions failed: %s: %s", owner.source, type(exc).__name__, exc)

    def keyed_changelog(self, topic: str, partitions: int) -> str:
        name = f"{self.prefix}-{topic}-changelog"
        self.ensure_topic(name, partitions, {"cleanup.policy": "compact"})
        return name

    def close(self, timeout: float = 10.0) -> None:
        self.closed = True  # sends failing from here on failed because of it (a checkpoint still running at stop)
        if self.producer is not None:
            close_producer(self.producer, timeout, "scale-out")
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception as exc:
                log.warning("closing the admin client: %s: %s", type(exc).__name__, exc)

    # -- tasks (restore runs on a consumer thread; the task then travels through the queue) -------
    def restore_tasks(self, specs: list[tuple[str, str, int, dict[str, Any]]]) -> list[Task]:
        """Tasks ``(tid, changelog topic, partition, Task kwargs)`` rebuilt from their changelog partitions."""
        if not specs:
            return []
        t0 = time.monotonic()
        records = read_partitions(self.opts, sorted({(topic, p) for _, topic, p, _ in specs}))
        tasks = []
        for tid, topic, partition, kw in specs:
            task = Task(
                tid,
                self.make_runner,
                self.detectors,
                idle_lease_ms=self.idle_lease * 1000,
                idle_grace_ms=self.idle_grace * 1000,
                **kw,
            )
            task.changelog = (topic, partition)  # type: ignore[attr-defined]
            n = task.restore(records[(topic, partition)])
            log.info("state restored for task %s: %d series from %s/%d", tid, n, topic, partition)
            tasks.append(task)
        log.info("restored %d task(s) in %.2f s", len(tasks), time.monotonic() - t0)
        return tasks

    def install(self, task: Task) -> None:
        self.tasks[task.tid] = task
        self._touched.add(task.tid)
        self.telemetry.tasks.set(len(self.tasks))

    def release(self, tids: list[str]) -> None:
        for tid in tids:
            self.tasks.pop(tid, None)
        self.telemetry.tasks.set(len(self.tasks))

    # -- upstream: an input batch ------------------------------------------------------------
    def add(
        self, source: str, up: Upstream, obs: list[Observation], offsets: tuple[int, int], event_time: float = NEG_INF
    ) -> list[BadRecord]:
        late = up.add(obs, offsets[0], offsets[1], event_time)
        bad = [late_observation(o) for o in late]
        partials = up.partials(self.routers, up.seal())
        if self.early_step:
            partials += up.partials(self.routers, up.early_buckets(self.early_step, time.time(), self.idle_horizon))
        clock = up.clock() if up.clock_changed() else None
        if partials or clock is not None:
            bad.extend(self._forward(source, up, partials, clock))
        return bad

    def idle(self, source: str, up: Upstream, position: int | None = None) -> list[BadRecord]:
        """A caught-up partition (at ``position``, its log's end): send its open buckets provisionally; stop holding
        event time back."""
        now = time.monotonic()
        if not up.idle or up.idle_since is None:
            up.idle_since = now
        up.idle = up.caught_up = True
        if position is not None and (up.position is None or position > up.position):
            up.position = position  # e.g. an empty partition, or records that decoded to nothing
        sealed: list[tuple[float, Cells]] = []
        if self.idle_timeout is not None and now - up.idle_since >= self.idle_timeout:
            sealed = up.seal(up.quiet_time(time.time(), self.idle_timeout, self.idle_horizon))
        partials = up.partials(self.routers, sealed + up.provisional())
        clock = up.clock() if up.clock_changed(self.idle_lease / 3) else None
        if partials or clock is not None:
            return self._forward(source, up, partials, clock)
        return []

    def _forward(self, source: str, up: Upstream, partials: list[Partial], clock: Clock | None) -> list[BadRecord]:
        if source in self.keyed:
            task = self.tasks.get(up.src)
            if task is None:
                return []  # revoked meanwhile: the new owner replays from the committed offset
            self._touched.add(task.tid)
            return self._late(up.src, task.add(up.src, up.parts, clock, partials, time.time() * 1000))
        by_part: dict[int, list[Partial]] = {}
        n = self.partitions
        for p in partials:
            by_part.setdefault(partition_of(p[0], p[1], n), []).append(p)
        targets = range(n) if clock is not None else sorted(by_part)
        for part in targets:
            rows = by_part.get(part, [])
            for i in range(0, max(len(rows), 1), MAX_PARTIALS_PER_RECORD):
                value = encode(up.src, up.parts, clock, rows[i : i + MAX_PARTIALS_PER_RECORD])
                self._sent.append(
                    self.producer.send(self.repartition_topic, key=up.src.encode(), value=value, partition=part)
                )
        return []

    # -- downstream: records of the repartition topic ----------------------------------------
    def let_go(self, source: str, ups: list[Upstream], timeout: float = 10.0) -> None:
        """Input partitions this replica stops reading (revoked, or shutting down): tell their tasks they are
        not idle any more, so event time waits for their next owner instead of running ahead of them.

        Best effort within ``timeout``: with the broker away the records stay buffered (sent if it comes back
        before this replica exits); a task without them waits ``idle_lease_seconds`` for the partition."""
        if source in self.keyed or self.producer is None or not ups:
            return
        try:
            for up in ups:
                value = encode(up.src, up.parts, up.clock(idle=False), [])
                for part in range(self.partitions):
                    self.producer.send(self.repartition_topic, key=up.src.encode(), value=value, partition=part)
            self.producer.flush(timeout)
        except Exception as exc:
            if fatal_reason(exc):
                raise
            log.warning(
                "%s: letting go of %d partition(s) not acknowledged: %s: %s", source, len(ups), type(exc).__name__, exc
            )

    def apply(
        self, records: list[tuple[int, int, bytes, float]], ends: dict[str, int] | None = None
    ) -> list[BadRecord]:
        """Apply repartition records to their tasks; then ``ends``, the input partitions' log-end offsets read
        after these records were fetched (see :meth:`Task.log_ends`)."""
        bad: list[BadRecord] = []
        for partition, offset, value, at_ms in records:
            task = self.tasks.get(f"repartition/{partition}")
            if task is not None:
                self._touched.add(task.tid)
            if task is None:
                continue  # revoked while queued: its new owner re-reads from the changelog's offset
            if task.offset is not None and offset < task.offset:
                continue  # already applied before the changelog was written
            try:
                src, parts, clock, partials = decode(value)
            except Exception as exc:  # written by us; a foreign producer's record must not kill the agent
                bad.append(BadRecord(value, "schema", f"repartition record: {type(exc).__name__}: {exc}"))
            else:
                bad.extend(self._late(src, task.add(src, parts, clock, partials, at_ms)))
                if parts and any(self.input_parts.get(k) != v for k, v in parts.items()):
                    self.input_parts = {**self.input_parts, **parts}  # a new object: read by the tasks' consumer
            task.offset = offset + 1
            task.meta_dirty = True
        if ends:
            for task in self.tasks.values():
                task.log_ends(ends)
        return bad

    def _late(self, src: str, late: list[Partial]) -> list[BadRecord]:
        return [
            BadRecord(
                encode(src, {}, None, [p]),
                "late",
                "partial aggregate for a window already closed (an input partition fell behind its lateness)",
            )
            for p in late
        ]

    def close_tasks(self) -> list[Emitted]:
        """Close what the tasks that received input since the last call can close."""
        out: list[Emitted] = []
        touched, self._touched = self._touched, set()
        for tid in touched:
            task = self.tasks.get(tid)
            if task is not None:
                out.extend(task.close())
        if self.early_step is not None:
            self._early_touched |= touched
            now = time.time()
            if now >= self._next_early:
                self._next_early = now + self.early_step
                early, self._early_touched = self._early_touched, set()
                for tid in early:
                    task = self.tasks.get(tid)
                    if task is not None:
                        out.extend(task.early(now))
        return out

    def series(self, detector: str) -> int:
        return sum(t.runners[detector].series_count() for t in self.tasks.values())

    def watermark(self) -> float:
        """The event-time watermark of the input, as the tasks see it (the slowest input partition's clock)."""
        marks = [w for t in self.tasks.values() if math.isfinite(w := t.watermark())]
        return min(marks, default=float("-inf"))

    def closed_until(self) -> float:
        """End of the newest window every task has closed."""
        return min((t.closed_until for t in self.tasks.values()), default=float("-inf"))

    # -- checkpoint ---------------------------------------------------------------------------
    def checkpoint(self, timeout: float = 30.0) -> bool:
        """Partials acknowledged, then every task's changed series written and acknowledged. False when there was
        nothing to write (no task, nothing sent): then it says nothing about whether the broker can be reached.

        Raises (``KafkaTimeoutError``) when the broker does not acknowledge within ``timeout``: nothing is lost,
        the records stay in the producer's buffer in their order, and the next attempt waits for them and for
        its own. A record whose send failed for good is re-sent if it is a changelog record (the latest value of
        its key; the topic is compacted); a lost partial cannot be: that is fatal (the restart replays the input
        from the last committed offsets, which never passed it)."""
        if self.producer is None:
            return False
        self.producer.flush(timeout)
        wrote = bool(self._sent)
        self._check_sent()
        for task in self.tasks.values():
            topic, partition = task.changelog  # type: ignore[attr-defined]
            # Its meta record every time (one per task, compacted): a checkpoint always reaches the broker, so one
            # with nothing else to write still tells whether it can (readiness, checkpoint age in an outage).
            task.meta_dirty = True
            for key, value in task.changelog_records():
                self._send_changelog(topic, partition, key, value)
        owned = {task.changelog for task in self.tasks.values()}  # type: ignore[attr-defined]
        for (topic, partition, key), (value, future) in list(self._unacked.items()):
            if future.failed():  # e.g. lost in flight when the producer's epoch was bumped
                if fatal_reason(future.exception):
                    raise future.exception
                if (topic, partition) in owned:  # a released task's record is its new owner's to write
                    self._send_changelog(topic, partition, key, value)
                else:
                    del self._unacked[(topic, partition, key)]
        if self._unacked:
            self.producer.flush(timeout)
            failed = [k for k, (_, f) in self._unacked.items() if f.failed()]
            if failed:
                raise self._unacked[failed[0]][1].exception
            self._unacked.clear()
            wrote = True
        return wrote

    def _send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self._unacked[(topic, partition, key)] = (
            value,
            self.producer.send(topic, key=key, value=value, partition=partition),
        )

    def _check_sent(self) -> None:
        """After a flush: every partial since the last checkpoint acknowledged, or the agent cannot go on."""
        sent, self._sent = self._sent, []
        for f in sent:
            if f.failed():
                exc = f.exception
                if self.closed:  # the agent is stopping: not fatal, the next start re-reads it
                    raise RuntimeError(f"a partial was not sent before the producer closed at stop ({exc})") from exc
                raise FatalKafkaError(
                    fatal_reason(exc)
                    or f"a record to {self.repartition_topic} was lost ({type(exc).__name__}: {exc}); "
                    "restart: the input is re-read from the last committed offsets"
                ) from exc


def read_partitions(
    opts: dict[str, Any], partitions: list[tuple[str, int]], timeout: float = 300.0
) -> dict[tuple[str, int], dict[bytes, bytes]]:
    """Latest value per key of partitions of compacted topics, read to their end (tombstones drop keys)."""
    kafka = require_kafka()
    consumer = kafka.KafkaConsumer(**opts, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
    latest: dict[tuple[str, int], dict[bytes, bytes]] = {tp: {} for tp in partitions}
    try:
        tps = [kafka.TopicPartition(t, p) for t, p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"restoring {partitions}: not at the end offsets after {timeout:.0f} s")
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                out = latest[(tp.topic, tp.partition)]
                for m in msgs:
                    if m.key is None:
                        continue
                    if m.value is None:
                        out.pop(m.key, None)
                    else:
                        out[m.key] = m.value
    finally:
        consumer.close(autocommit=False)
    return latest


class TaskSource(KafkaSource):
    """Consumes the repartition topic: its assigned partitions are this replica's tasks
    (:class:`~agent.partitions.TaskPartitions`); its records are partial aggregates, not decoded input."""

    def __init__(self, cfg: KafkaConfig, *, scale: KafkaScaleOut, **kw: Any):
        self.scale = scale
        super().__init__(cfg, **kw)
        self._input_tps: list[tuple[str, Any]] = []
        self._input_parts_seen: dict[str, int] | None = None

    def make_owner(self) -> PartitionOwner:
        return TaskPartitions(self.name, self.host, tasks=self.scale)

    def emit_fetched(self, records: dict[Any, list[Any]]) -> None:
        ends = self._input_ends()
        for tp, msgs in records.items():
            self.emit(
                Batch(
                    self.name,
                    "partials",
                    ([(tp.partition, m.offset, m.value, float(m.timestamp)) for m in msgs], ends),
                    None,
                    records=len(msgs),
                )
            )

    def _input_ends(self) -> dict[str, int] | None:
        """The log-end offset of every partition of the unkeyed input topics (one request), read after a fetch of
        partials: an input partition idle in a task's view whose log has grown since holds event time back. None
        when they cannot be read (the broker away): then the clocks alone decide, as before."""
        from kafka import TopicPartition

        # The input partitions, as their upstreams announce them ("source/topic" → count; no metadata request: a
        # blocking one could hang this thread around an outage).
        parts = self.scale.input_parts
        if parts is not self._input_parts_seen:
            tps: list[tuple[str, Any]] = []
            for key, n in parts.items():
                name, _, topic = key.partition("/")
                tps.extend((name, TopicPartition(topic, p)) for p in range(n))
            self._input_tps, self._input_parts_seen = tps, parts
        tps = self._input_tps
        if not tps:
            return None
        try:
            ends = self.consumer.end_offsets([tp for _, tp in tps], timeout_ms=REQUEST_TIMEOUT_MS)
        except Exception as exc:
            if fatal_reason(exc):
                raise
            return None
        return {stream_key(name, tp.topic, tp.partition): ends[tp] for name, tp in tps if tp in ends}
