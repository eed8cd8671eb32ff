"""Kafka source: a consumer group member on kafka-python, with at-least-once offsets.

- ``topics`` or ``topic_pattern``, ``group_id``, TLS and SASL (PLAIN, SCRAM-SHA-256/512,
  OAUTHBEARER with a token-provider hook, e.g. for AWS MSK IAM; Azure Event Hubs' Kafka endpoint
  with PLAIN, user ``$ConnectionString`` and the connection string as password).
- Every partition is its own event-time stream: the watermark is the slowest assigned
  partition's, so partitions fetched ahead of others never make the others' records late.
- Offsets are committed only after a checkpoint persisted the state that includes them (order:
  outbox flush → state → offsets). On revocation the source asks the pipeline for a checkpoint
  (queued behind what it already handed over), commits, then releases the partitions; on
  assignment it seeks to the positions in the restored state where it has them.
- Backpressure: when the pipeline queue is mostly full, assigned partitions are paused and the
  consumer keeps polling (heartbeats, rebalances) without fetching; they resume once it drains.
- Undecodable records go to ``dead_letter_topic`` with their original key, value and headers plus
  ``error``, ``source_topic``, ``source_partition`` and ``source_offset`` headers (or to the
  dead-letter file when no topic is set); their offsets are then committed like any other. So
  does a message whose value is longer than ``max_record_bytes`` (``record_too_large``, not decoded).
  Dead-letter records are acknowledged by the broker before a checkpoint commits past them.
- Outages: a broker that cannot be reached is waited for, however long (errors counted in
  ``finops_agent_errors_total{stage="consume"}``, retried with backoff, every blocking call
  bounded so shutdown keeps its deadline). Only a fatal error stops the agent, with one log line:
  failed SASL authentication, an authorization failure, or a configured topic unknown to a
  reachable cluster for ``missing_topic_grace_seconds`` (deleted).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from agent.decoders.base import BadRecord, DecodeContext
from agent.partitions import Committed, PartitionOwner
from agent.registry import ComponentConfig, config_union, register
from agent.sources import kafka_dead_letters as dead_letters
from agent.sources.base import Batch, Source, SourceHost
from agent.sources.kafka_client import (  # re-exported: callers import them from here
    CLOSE_TIMEOUT_MS,
    POSITION_TIMEOUT_MS,
    REQUEST_TIMEOUT_MS,
    FatalKafkaError,
    cached_partitions,
    client_options,
    close_producer,
    fatal_reason,
    require_kafka,
    retrying,
)
from agent.telemetry import describe

log = logging.getLogger(__name__)

METADATA_MAX_AGE_MS = 30_000


class KafkaConfig(ComponentConfig):
    type: Literal["kafka"]
    bootstrap_servers: list[str] = Field(min_length=1)
    topics: list[str] = Field(default_factory=list)
    topic_pattern: str | None = None
    group_id: str = "finops-agent"
    client_id: str = "finops-agent"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: str | None = None
    oauth_token_provider: str | None = Field(
        None, description="'module:factory' returning a kafka-python AbstractTokenProvider (e.g. AWS MSK IAM)"
    )
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    max_poll_records: int = Field(2000, ge=1)
    poll_timeout_ms: int = Field(500, ge=1)
    session_timeout_ms: int = Field(10_000, ge=1000)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    dead_letter_topic: str | None = None
    max_record_bytes: int = Field(
        1 << 20,
        gt=0,
        description="bytes; a longer message value is not decoded but dead-lettered whole as record_too_large",
    )
    lag_interval_seconds: float = Field(5.0, gt=0)
    missing_topic_grace_seconds: float = Field(
        120.0,
        gt=0,
        description="a topic of 'topics' that the cluster (reachable) does not know for this long stops the agent "
        "(deleted, or never created); an unreachable broker is waited for however long",
    )
    keyed_by_series: bool = Field(
        False,
        description="with state.type kafka: records are already partitioned by the detectors' series "
        "(every record of a series in one partition), so each input partition is a task and the "
        "repartition topic is skipped",
    )
    decoder: config_union("decoder")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> KafkaConfig:
        if bool(self.topics) == bool(self.topic_pattern):
            raise ValueError("set topics or topic_pattern (one of them)")
        # (Checked here: the consumer would fail in its own thread, and the agent wait for partitions forever.)
        for t in [*self.topics, *([self.dead_letter_topic] if self.dead_letter_topic else [])]:
            if not _TOPIC.fullmatch(t) or t in (".", ".."):
                raise ValueError(f"{t!r} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)")
        pattern = None
        if self.topic_pattern:
            try:
                pattern = re.compile(self.topic_pattern)
            except re.error as exc:
                raise ValueError(f"topic_pattern: not a regular expression: {exc}") from None
        dlq = self.dead_letter_topic
        if dlq and (dlq in self.topics or (pattern is not None and pattern.match(dlq))):  # (as the client matches)
            raise ValueError(
                f"dead_letter_topic {dlq!r} is one of the topics read: each bad record would be read again and "
                "dead-lettered again, forever"
            )
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError("sasl_mechanism is required with a SASL security_protocol")
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not self.sasl_username:
            raise ValueError(f"sasl_username is required with {self.sasl_mechanism}")
        if self.sasl_mechanism == "OAUTHBEARER" and not self.oauth_token_provider:
            raise ValueError("oauth_token_provider is required with OAUTHBEARER")
        if self.sasl_password is not None and self.sasl_password_file:
            raise ValueError("set sasl_password or sasl_password_file, not both")
        return self


_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")  # Kafka's legal topic names
POLL_STUCK_SECONDS = 60.0  # a poll that has not returned this long is woken (its own timeout is under a second)
FETCH_STALL_SECONDS = 5.0  # a partition behind its end whose position has not moved this long is fetched afresh


@register("source", "kafka", KafkaConfig)
class KafkaSource(Source):
    partitioned = True

    def __init__(self, cfg: KafkaConfig, **kw: Any):
        super().__init__(cfg, **kw)
        require_kafka()
        self.consumer: Any = None
        self.producer: Any = None
        self._commit_lock = threading.Lock()
        self._pending_commit: dict[str, int] | None = None
        self._paused = False
        self._ready = threading.Event()
        self._last_lag = 0.0
        self._ends_ok_at: float | None = None  # when the brokers last told the logs' ends (a lag report)
        if kw.get("host") is None:
            raise TypeError("a Kafka source runs in an agent: host= is required")
        self.host: SourceHost = kw["host"]
        self._left_loop = threading.Event()
        self._final = threading.Event()
        self.owned = self.make_owner()  # what to do with assigned partitions: restore, release, positions, idle
        self._dlq_sent: list[tuple[Any, BadRecord, str]] = []  # (future, record, location) not yet acknowledged
        self._missing: dict[str, float] = {}  # configured topic -> metadata refresh that first lacked it
        self._close_timeout = 3 * CLOSE_TIMEOUT_MS / 1000
        self._commit_failing: str | None = None  # error type of the failing offset commits (logged once)
        self._progress: dict[Any, tuple[int, float]] = {}  # partition → (position, since when) while behind its end
        self._polling_since: float | None = None  # when the poll under way began (monotonic)
        self._log_end: dict[Any, int] = {}  # partition → its log-end offset at the last lag report

    @property
    def live(self) -> bool:
        return True

    def make_owner(self) -> PartitionOwner:
        return PartitionOwner(self.name, self.host, keyed=self.cfg.keyed_by_series)

    @property
    def assigned(self) -> set[Any]:
        return self.owned.assigned

    # -- hooks the pipeline calls ----------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._left_loop.wait(timeout)

    def finish(self, timeout: float = 5.0) -> None:
        self._close_timeout = timeout  # the consumer thread's last commit and close share it
        self._final.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def ready(self) -> bool:
        return self._ready.is_set()

    def checkpointed(self, positions: dict[str, Any]) -> None:
        """State with these positions is persisted: commit them (from the consumer's thread)."""
        with self._commit_lock:
            self._pending_commit = dict(positions)
            self.owned.checkpoint_done(positions)

    def checkpoint_positions(self) -> dict[str, Any]:
        return self.owned.positions(self.positions)

    def dead_letter(self, batch: Batch, bad: list[BadRecord]) -> list[BadRecord]:
        """Send undecodable records to the DLQ topic; return what still needs the dead-letter file."""
        if not self.cfg.dead_letter_topic or self.producer is None or batch.meta is None:
            return bad
        return dead_letters.send(self.producer, self.cfg.dead_letter_topic, batch.meta, bad, self._dlq_sent)

    def prepare_checkpoint(self, timeout: float) -> None:
        """Before a checkpoint: the dead-letter records it commits past are acknowledged (see
        :func:`~agent.sources.kafka_dead_letters.acknowledge`)."""
        if not self._dlq_sent or self.producer is None:
            return
        sent, self._dlq_sent = self._dlq_sent, []
        dead_letters.acknowledge(self.producer, sent, timeout, f"kafka source {self.name}", self._to_file)

    def _to_file(self, where: str, r: BadRecord) -> None:
        if self.host is not None:
            self.host.dead_letter(self.name, where, [r])

    # -- the consumer thread ---------------------------------------------------------------
    def run(self) -> None:
        kafka = require_kafka()
        opts = client_options(self.cfg)

        def count(kind: str) -> None:
            if self.host is not None:
                self.host.telemetry.errors.labels(component=self.name, error_type=kind, stage="connect").inc()

        def consumer() -> Any:
            return kafka.KafkaConsumer(
                **opts,
                group_id=self.cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset=self.cfg.auto_offset_reset,
                max_poll_records=self.cfg.max_poll_records,
                session_timeout_ms=self.cfg.session_timeout_ms,
                max_poll_interval_ms=self.cfg.max_poll_interval_ms,
                allow_auto_create_topics=False,  # reading never creates a topic: a deleted one is reported
                # A group leader whose metadata lacked a topic (a repartition topic just created, a broker slow to
                # answer) assigns none of its partitions until the metadata changes: refreshed every 30 s rather
                # than 5 minutes, the group rejoins with them within 30 s.
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
            )

        try:
            self.consumer = retrying(consumer, f"kafka source {self.name}", self._stop, count)
            if self.consumer is not None and self.cfg.dead_letter_topic:
                self.producer = retrying(
                    lambda: kafka.KafkaProducer(**opts, acks="all", linger_ms=5),
                    f"kafka source {self.name} (dead-letter producer)",
                    self._stop,
                    count,
                )
        except Exception as exc:  # fatal (credentials, authorization): the agent stops with one line
            if self.host is not None:
                self.host.fail(exc, f"kafka source {self.name}: {fatal_reason(exc)}")
            self.consumer = None
        if self.producer is not None and self.cfg.dead_letter_topic:
            dead_letters.ensure_topic(kafka, opts, self.cfg.dead_letter_topic, f"kafka source {self.name}")
        if self.consumer is None or (self.cfg.dead_letter_topic and self.producer is None):
            self._left_loop.set()  # stopped (or failed) before the brokers could be reached
            if self.consumer is not None:
                self.consumer.close(autocommit=False, timeout_ms=1000)
            return
        cluster_config = getattr(getattr(self.consumer, "_cluster", None), "config", None)
        if isinstance(cluster_config, dict):  # kafka-python 3.0 does not pass the option on to its metadata
            cluster_config["allow_auto_create_topics"] = False  # requests: a deleted topic came back at once
        threading.Thread(target=self._watch_poll, name=f"poll-watch-{self.name}", daemon=True).start()
        listener = _listener(self)
        if self.cfg.topic_pattern:
            self.consumer.subscribe(pattern=self.cfg.topic_pattern, listener=listener)
        else:
            self.consumer.subscribe(self.cfg.topics, listener=listener)
        failing: str | None = None
        backoff = 0.5
        try:
            while not self.stopping:
                try:
                    self._commit_pending()
                    if not self.owned.ready:
                        self._restore_pending()
                    self._backpressure()
                    # Paused, a poll only waits out its timeout: keep it short to resume as soon as the queue drains.
                    self._polling_since = time.monotonic()
                    try:
                        records = self.consumer.poll(timeout_ms=20 if self._paused else self.cfg.poll_timeout_ms)
                    finally:
                        self._polling_since = None
                    if records:
                        self.emit_fetched(records)
                    elif self.assigned and not self._paused:
                        self.emit_idle()
                    self._report_lag()
                    self._check_topics()
                    if failing is not None:
                        log.info("kafka source %s: consuming again", self.name)
                        failing, backoff = None, 0.5
                except Exception as exc:  # broker down, metadata changes...: never let the source die of them
                    kind = type(exc).__name__
                    if self.host is not None:
                        self.host.telemetry.errors.labels(component=self.name, error_type=kind, stage="consume").inc()
                    reason = fatal_reason(exc)
                    if reason is not None:  # waiting does not cure it: the agent stops, with one line
                        if self.host is not None:
                            self.host.fail(exc, f"kafka source {self.name}: {reason}")
                        break
                    if kind != failing:
                        log.warning("kafka source %s: %s; retrying with backoff", self.name, describe(exc))
                        failing = kind
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            # Shutdown: the pipeline drains what was handed over and checkpoints, then finish() lets
            # the final commit happen here, on the consumer's thread. Every call is bounded: the broker
            # may be away, and what is not committed is re-read from the last committed offsets later.
            self._left_loop.set()
            self._final.wait(60)
            step = max(100, min(CLOSE_TIMEOUT_MS, int(self._close_timeout * 1000 / 3)))
            try:
                self._commit_pending(timeout_ms=step)
                self.consumer.close(autocommit=False, timeout_ms=step)
            except Exception as exc:
                log.warning("kafka source %s: closing the consumer: %s", self.name, describe(exc))
            finally:
                if self.producer is not None:
                    close_producer(self.producer, step / 1000, f"kafka source {self.name}")

    def _watch_poll(self) -> None:
        """A poll that has not returned for ``POLL_STUCK_SECONDS`` (its timeout is under a second; a rebalance with
        its listener takes tens of seconds at most) is woken with a ``KafkaTimeoutError``, which the consumer loop
        retries like any other. Seen after broker restarts and rebalances: kafka-python 3.0's poll waited without
        end for its network thread, and the partitions' records were never read."""
        logged = False
        while not self._left_loop.wait(1.0):
            since = self._polling_since
            if since is None or time.monotonic() - since < POLL_STUCK_SECONDS:
                continue
            net = getattr(self.consumer, "_net", None)
            fail = getattr(net, "_fail_pending_waiters", None)
            if fail is None:
                continue
            from kafka.errors import KafkaTimeoutError

            if self.host is not None:
                self.host.telemetry.errors.labels(component=self.name, error_type="PollStuck", stage="consume").inc()
            if not logged:
                log.warning(
                    "kafka source %s: a poll has not returned for %.0f s (the Kafka client waits on itself); woken "
                    '(further ones are counted in finops_agent_errors_total{error_type="PollStuck"})',
                    self.name,
                    time.monotonic() - since,
                )
                logged = True
            self._polling_since = time.monotonic()
            fail(KafkaTimeoutError(f"poll stuck for {POLL_STUCK_SECONDS:.0f} s: woken by the agent"))

    def emit_fetched(self, records: dict[Any, list[Any]]) -> None:
        """Hand what one poll fetched to the pipeline (a batch per partition), after telling it which partitions
        reported idle hold event time back again (see :meth:`~agent.partitions.PartitionOwner.wake`)."""
        if self.owned.reported_idle:
            self._wake(records)
        for tp, msgs in records.items():
            self.emit_partition(tp, msgs)

    def _wake(self, records: dict[Any, list[Any]]) -> None:
        for tp in list(self.owned.reported_idle):
            # Not in this fetch, its records may still wait in the client's buffer: its position is behind its end.
            if (tp in records or not self._caught_up(tp)[0]) and self.owned.wake(tp):
                self.emit(
                    Batch(self.name, "active", None, None, stream=self.owned.stream(tp), owner=self.owned.owner(tp))
                )

    def _caught_up(self, tp: Any) -> tuple[bool, int | None]:
        """(whether ``tp``'s position is at its log's end, its position). The high watermark is the one of the
        partition's last fetch: a partition the client has not fetched since a broker restart looks caught up by
        it, so the log's end from the last lag report counts too. Unknown (e.g. the broker away): not caught up."""
        hw = self.consumer.highwater(tp)
        pos = None if hw is None else self.consumer.position(tp, timeout_ms=POSITION_TIMEOUT_MS)
        if hw is None or pos is None:
            return False, pos
        # The brokers away (the lag reports fail): the end of the last fetch is no news — records produced meanwhile
        # wait on the brokers, and a partition counted idle would let their windows close before they come (late).
        ok = self._ends_ok_at
        if ok is not None and time.monotonic() - ok > 3 * self.cfg.lag_interval_seconds + REQUEST_TIMEOUT_MS / 1000:
            return False, pos
        return pos >= max(hw, self._log_end.get(tp, -1)), pos

    def emit_partition(self, tp: Any, msgs: list[Any]) -> None:
        """One partition's fetched records as a batch (and their dead letters: too large to decode)."""
        self.owned.fetched(tp)
        up = self.owned.owner(tp)
        boundary = self.owned.replay_boundary(tp)
        if msgs[0].offset < boundary <= msgs[-1].offset:
            # Records before the restored position were processed already (replay); after it, new: the
            # pipeline tells them apart by batch, so a batch never straddles it.
            cut = next(i for i, m in enumerate(msgs) if m.offset >= boundary)
            self.emit_partition(tp, msgs[:cut])
            self.emit_partition(tp, msgs[cut:])
            return
        values = [m.value for m in msgs]
        meta = dead_letters.RecordMeta(tp, msgs)  # built only if a record is dead-lettered to the topic
        limit = self.cfg.max_record_bytes
        too_large: list[BadRecord] = []
        if None in values or max(map(len, values)) > limit:  # rare: one check per batch, not per record
            kept = []
            for v in values:
                if v is None:
                    v = b""
                if len(v) > limit:
                    reason = f"message value of {len(v)} bytes is over max_record_bytes={limit}"
                    too_large.append(BadRecord(v, "record_too_large", reason))
                    continue
                kept.append(v)
            values = kept
        ctx = DecodeContext(
            self.name, f"{tp.topic}/{tp.partition}", default_ts=msgs[-1].timestamp / 1000.0, **self.ctx_defaults
        )
        pos = (f"{tp.topic}/{tp.partition}", msgs[-1].offset + 1)
        stream = self.owned.stream(tp)
        hw = self.consumer.highwater(tp)  # (of this fetch: no request)
        if too_large:  # dead-lettered (with their key, headers and offset) ahead of the batch that commits past them
            self.emit(Batch(self.name, "bad", too_large, ctx, None, len(too_large), stream=stream, meta=meta, owner=up))
        self.emit(
            Batch(
                self.name,
                "lines",
                values,
                ctx,
                pos,
                len(values),
                stream=stream,
                meta=meta,
                offsets=(msgs[0].offset, msgs[-1].offset),
                owner=up,
                live=hw is not None and msgs[-1].offset + 1 >= hw,
            )
        )

    def emit_idle(self) -> None:
        """Partitions that are caught up (position at the high watermark) stop holding event time back, once the
        owner says they are idle (see :meth:`~agent.partitions.PartitionOwner.idle`)."""
        if not self.owned.tracks_idle:
            return
        now = time.monotonic()
        for tp in self.assigned:
            caught_up, pos = self._caught_up(tp)
            if self.owned.idle(tp, caught_up, now):
                self.emit(Batch(self.name, "idle", pos, None, stream=self.owned.stream(tp), owner=self.owned.owner(tp)))

    def _offsets(self, positions: dict[str, int], only: set[Any]) -> dict[Any, Any]:
        from kafka import OffsetAndMetadata, TopicPartition

        offsets = {}
        for key, off in positions.items():
            topic, _, part = key.rpartition("/")
            tp = TopicPartition(topic, int(part))
            if tp in only:
                off, meta = off if isinstance(off, tuple) else (off, "")
                offsets[tp] = OffsetAndMetadata(off, meta, -1)
        return offsets

    def _commit_pending(self, timeout_ms: int | None = None) -> None:
        """Commit what the last checkpoint persisted (consumer thread, outside rebalance callbacks)."""
        with self._commit_lock:
            pending, self._pending_commit = self._pending_commit, None
        if not pending or self.consumer is None:
            return
        offsets = self._offsets(pending, self.assigned)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets, timeout_ms=timeout_ms or REQUEST_TIMEOUT_MS)
        except Exception as exc:  # a rebalance in progress, the broker away: the next checkpoint commits again
            if fatal_reason(exc):
                raise
            kind = type(exc).__name__
            if self.host is not None:
                self.host.telemetry.errors.labels(component=self.name, error_type=kind, stage="commit").inc()
            if kind != self._commit_failing:  # once per kind until a commit succeeds (an outage retries often)
                log.warning("kafka source %s: offset commit failed (%s: %s); will retry", self.name, kind, exc)
                self._commit_failing = kind
            with self._commit_lock:
                if self._pending_commit is None:
                    self._pending_commit = pending
        else:
            if self._commit_failing is not None:
                log.info("kafka source %s: offsets committed again", self.name)
                self._commit_failing = None

    @property
    def paused(self) -> bool:
        """Whether consumption is paused (the pipeline queue mostly full, or checkpoints failing)."""
        return self._paused

    def _backpressure(self) -> None:
        """Pause while the pipeline queue is mostly full, and while checkpoints fail (the state that cannot be
        checkpointed, and what a restart would re-read, stop growing; memory stays bounded in an outage)."""
        if not self.owned.pausable or not self.assigned:
            return
        fill = self.host.backlog()
        blocked = self.host.checkpoint_blocked()
        if not self._paused and (fill >= 0.8 or blocked):
            self.consumer.pause(*self.assigned)
            self._paused = True
        elif self._paused and fill <= 0.5 and not blocked:
            self.consumer.resume(*(self.assigned - self.owned.pending))
            self._paused = False

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < self.cfg.lag_interval_seconds or not self.assigned or self.host is None:
            return
        self._last_lag = now
        try:
            ends = self.consumer.end_offsets(list(self.assigned), timeout_ms=REQUEST_TIMEOUT_MS)
        except Exception as exc:
            if fatal_reason(exc):
                raise
            return
        self._ends_ok_at = now
        for tp, end in ends.items():
            self._log_end[tp] = end
            pos = self.consumer.position(tp, timeout_ms=POSITION_TIMEOUT_MS)
            if pos is None:
                continue
            self.host.telemetry.consumer_lag.labels(source=self.name, topic=tp.topic, partition=str(tp.partition)).set(
                max(0, end - pos)
            )
            self._watch_progress(tp, pos, end, now)

    def _watch_progress(self, tp: Any, pos: int, end: int, now: float) -> None:
        """A partition with records to read that this source has neither paused nor is restoring, whose position has
        not moved for ``FETCH_STALL_SECONDS``, is fetched afresh. Seen after a broker restart: the client stopped
        fetching partitions it had just been assigned again, and event time stood still. Counted as
        ``errors_total{error_type="FetchStalled"}``."""
        if pos >= end or self._paused or tp in self.owned.pending:
            self._progress.pop(tp, None)
            return
        seen = self._progress.get(tp)
        if seen is None or seen[0] != pos:
            self._progress[tp] = (pos, now)
            return
        if now - seen[1] < FETCH_STALL_SECONDS:
            return
        state = getattr(getattr(self.consumer, "_subscription", None), "assignment", {}).get(tp)
        detail = {
            k: getattr(state, k, None)
            for k in ("paused", "_pending_revocation", "has_valid_position", "_awaiting_validation", "awaiting_reset")
        }
        if self.host is not None:
            self.host.telemetry.errors.labels(component=self.name, error_type="FetchStalled", stage="consume").inc()
        log.warning(
            "kafka source %s: %s/%d has not moved from offset %d for %.0f s with %d records to read (client state %s); "
            "fetching it afresh",
            self.name,
            tp.topic,
            tp.partition,
            pos,
            now - seen[1],
            end - pos,
            detail,
        )
        # Whatever holds it: a pause or a revocation the client forgot, an offset validation that never completes,
        # a lost fetch (seek drops the partition's fetch state and any pending validation).
        if state is not None and getattr(state, "_pending_revocation", False):
            state.mark_pending_revocation(False)
        if detail["paused"]:
            self.consumer.resume(tp)
        self.consumer.seek(tp, pos)
        self._progress[tp] = (pos, now)

    def _check_topics(self) -> None:
        """A configured topic that the cluster does not know, at metadata refreshes at least
        ``missing_topic_grace_seconds`` apart, stops the agent (deleted). Refreshes that fail (the broker
        away) never count: an outage is waited for."""
        cluster = getattr(self.consumer, "_cluster", None)
        refreshed = getattr(cluster, "_last_successful_refresh_ms", 0) / 1000.0  # monotonic clock
        if cluster is None or refreshed <= 0 or not self.cfg.topics:
            return
        every = min(self.cfg.missing_topic_grace_seconds / 3, 30.0)
        if time.monotonic() - max(refreshed, getattr(cluster, "_last_refresh_ms", 0) / 1000.0) > every:
            cluster.request_update()  # the client refreshes metadata rarely: a deleted topic would go unnoticed
        for t in self.cfg.topics:
            if cluster.partitions_for_topic(t):
                self._missing.pop(t, None)
                continue
            since = self._missing.setdefault(t, refreshed)
            if refreshed - since >= self.cfg.missing_topic_grace_seconds:
                raise FatalKafkaError(
                    f"topic {t} does not exist (unknown to the cluster for {refreshed - since:.0f} s; "
                    "deleted?): create it again or change 'topics', then restart"
                )

    # -- rebalances (called inside poll, on the consumer thread) ---------------------------
    def on_assigned(self, partitions: list[Any]) -> None:
        where = sorted(f"{t.topic}/{t.partition}" for t in partitions)
        if self.owned.assign(partitions):
            # Restore, then consume: kafka-python forbids blocking calls in this callback, so the
            # partitions wait paused until the consumer loop has restored them (_restore_pending).
            self.consumer.pause(*partitions)
            self._ready.clear()
            log.info("kafka source %s: assigned %s", self.name, where)
            return
        for tp in partitions:
            pos = self.positions.get(f"{tp.topic}/{tp.partition}")
            if pos is not None:
                self.consumer.seek(tp, pos)  # the restored state already includes everything before it
        self._ready.set()
        log.info("kafka source %s: assigned %s", self.name, where)

    def on_revoked(self, partitions: list[Any]) -> None:
        """Checkpoint what was handed over for these partitions, commit it, then let them go.

        Runs on kafka-python's IO thread: the wait for the checkpoint is bounded and the commit is
        sent asynchronously (ahead of the group re-join on the same coordinator connection).
        """
        revoked = set(partitions)
        for tp in revoked:
            self._log_end.pop(tp, None)
        stopping = self.stopping  # at shutdown the final checkpoint is done
        positions = self.owned.checkpoint_before_release(revoked, stopping=stopping)
        if revoked and not stopping:
            with self._commit_lock:
                self._pending_commit = None
            offsets = self._offsets(positions, revoked)
            if offsets:
                self.consumer.commit_async(offsets)
        self.owned.release(revoked, stopping=stopping)
        if self._paused and not self.assigned:
            self._paused = False
        log.info("kafka source %s: revoked %s", self.name, sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))

    # -- restore on assignment (consumer loop, outside the rebalance callback) -------------
    def _restore_pending(self) -> None:
        tps = sorted(self.owned.pending, key=lambda t: (t.topic, t.partition))
        starts = self.owned.restore(tps, self._committed)
        for tp in tps:
            start = starts.get(tp)
            if start is not None:
                self.consumer.seek(tp, start)
            elif self.cfg.auto_offset_reset == "earliest":
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek_to_end(tp)
            if not self._paused:
                self.consumer.resume(tp)
        if self.owned.ready and self.assigned:
            self._ready.set()

    def _committed(self, tp: Any) -> Committed:
        n = len(cached_partitions(self.consumer, tp.topic))
        committed = self.consumer.committed(tp, metadata=True, timeout_ms=REQUEST_TIMEOUT_MS)
        return Committed(getattr(committed, "offset", None), getattr(committed, "metadata", None), n)


def _listener(src: KafkaSource) -> Any:
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            src.on_revoked(list(revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            src.on_assigned(list(assigned))

    return Listener()
