"""The agent: sources → decoders → aggregator → detectors → sinks, with checkpoints.

One pipeline thread consumes a bounded queue fed by the source threads (backpressure: a full
queue blocks the sources). Checkpoint order: flush the sinks' outboxes → persist detector,
window and source-position state together (atomic) → (for Kafka-like sources) commit offsets.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import reduce
from math import gcd
from pathlib import Path
from typing import Any

from agent.aggregate import Aggregator
from agent.alerts import Point
from agent.api import PREFIX as API_PREFIX
from agent.api import Api
from agent.config import StartupError, read_secret
from agent.deadletter import DeadLetterFile
from agent.decoders.base import BLANK, BadRecord, DecodeContext
from agent.deliveries import BillingDeliveries
from agent.detect import DetectorRunner
from agent.gaps import SourceSilence
from agent.host import Host
from agent.model import Observation
from agent.notify import Notifier
from agent.registry import build, components
from agent.runtime import Health, tune_gc  # noqa: F401 (Health: re-exported)
from agent.runtime import batch_records as _batch_records
from agent.server import HttpServer, plan_servers
from agent.silences import Silences, configured_silences
from agent.sources.base import Batch, Source
from agent.state import StateStore, make_store
from agent.telemetry import LogOnce, Telemetry, describe
from agent.topology import make_topology

log = logging.getLogger("agent")


class Agent(BillingDeliveries):
    def __init__(
        self,
        cfg: Any,
        *,
        extra_sinks: dict[str, Any] | None = None,
        state_store: StateStore | None = None,
        sink_kwargs: dict[str, Any] | None = None,
        now: Callable[[], float] = time.time,
        progress: Callable[[Agent], None] | None = None,
        replay: bool = False,
    ):
        self.cfg = cfg
        self.now = now
        self.progress = progress
        self.telemetry = Telemetry()
        self.health = Health()
        self.logonce = LogOnce(logging.getLogger("agent.input"))
        self.dead_letter = DeadLetterFile(cfg.dead_letter.path, cfg.dead_letter.max_bytes)
        self.fresh_detectors: frozenset[str] = frozenset()  # (a config reload: detectors whose config changed)
        if state_store is None and cfg.state.type == "blob":  # (the Azure Blob one: imported where it is used)
            from agent.blob_state import BlobStateStore

            state_store = BlobStateStore(cfg.state.blob)
        self.store = state_store or make_store(cfg.state)
        # Billing snapshots (per source and period); persisted beside the local state file. (Imported
        # here: the billing modules stay out of the import-time path of agents that do not read bills.)
        from agent.decoders.billing.base import BILLING_PREFIX
        from agent.snapshots import SnapshotStore

        snap_dir = (
            os.path.join(cfg.state.directory, "snapshots")
            if cfg.state.type == "local" and state_store is None
            else None
        )
        self.snapshots = SnapshotStore(snap_dir)
        self.queue: queue.Queue[Batch] = queue.Queue(maxsize=cfg.pipeline.queue_max_batches)
        windows = [d.window_seconds for d in cfg.detectors.values()]
        self.bucket = float(reduce(gcd, windows))
        pipe = cfg.pipeline
        self.aggregator = Aggregator(
            self.bucket,
            pipe.allowed_lateness_seconds,
            pipe.idle_timeout_seconds,
            wall_clock=self.now,
            idle_horizon_seconds=max(windows),
        )
        # Billing exports keep their own event time (deliveries arrive hours behind the streams); a
        # delivery is complete, so there is no lateness to wait for.
        self.billing = Aggregator(self.bucket, 0.0)
        self.prototypes = {}
        for name, d in cfg.detectors.items():
            cls = components("detector")[d.type][1]
            self.prototypes[name] = cls.from_config(d)
        self.runners = {name: self.make_runner(name) for name in cfg.detectors}
        billing_runners = {n for n, d in cfg.detectors.items() if d.signal.startswith(BILLING_PREFIX)}
        self.clocks: list[tuple[Aggregator, dict[str, DetectorRunner]]] = [
            (self.aggregator, {n: r for n, r in self.runners.items() if n not in billing_runners}),
            (self.billing, {n: r for n, r in self.runners.items() if n in billing_runners}),
        ]
        # Where series live and windows close, chosen once: this process, or tasks that follow the partitions.
        self.topology = make_topology(self)
        state_dir = cfg.state.directory if cfg.state.type in ("local", "kafka", "blob") else None
        kw = {
            "telemetry": self.telemetry,
            "state_dir": state_dir,
            "health": self.health,
            "dead_letter": self.dead_letter,
            **(sink_kwargs or {}),
        }
        self.sinks = {name: build("sink", s, name=name, **kw) for name, s in cfg.sinks.items()}
        self.sinks.update(extra_sinks or {})
        self.servers, self.http = plan_servers(cfg.http, self.sinks, self.health)
        state_path = str(Path(state_dir) / "silences.json") if state_dir else None
        self.silences = Silences(configured_silences(cfg.silences), state_path)
        self.notifier = Notifier(
            cfg.route,
            self.silences,
            self.sinks,
            telemetry=self.telemetry,
            state_dir=state_dir,
            planned=lambda doc, s: self.feedback(doc["id"], "expected", s.created_by, s.comment, wait=False),
            namespace=cfg.alerting.id_namespace,
            event_time=replay,
        )
        if self.http is not None:
            token = read_secret(cfg.http.api_token, cfg.http.api_token_file, "http.api_token_file")
            if token is not None and len(token) < 16:
                raise StartupError(
                    f"http.api_token_file: {cfg.http.api_token_file}: at least 16 characters (it guards silences)"
                )
            self.api = Api(self.silences, token, on_change=self.notifier.tick, feedback=self.feedback)
            self.http.mount_api(API_PREFIX, self.api.handle)
        pipe = cfg.pipeline
        wall = now()
        ctx_defaults = {
            "min_ts": wall - pipe.max_age_days * 86400 if pipe.max_age_days > 0 else -math.inf,
            "max_ts": wall + pipe.max_future_seconds,
            "bucket_seconds": self.bucket,
        }
        self.sources: dict[str, Source] = {}
        for name, s in cfg.sources.items():
            decoder = build("decoder", s.decoder, pricing=cfg.pricing)
            if getattr(decoder, "gpu_prices", None) is not None:  # the rates GPU-hours are priced at, on /metrics
                self.telemetry.watch_gpu_prices(decoder.gpu_prices)
            self.sources[name] = build(
                "source",
                s,
                name=name,
                decoder=decoder,
                emit=self._emit,
                ctx_defaults=ctx_defaults,
                host=Host(self, name),
            )
        own = self.topology.sources(lambda n: Host(self, n), decoder=None, emit=self._emit, ctx_defaults=ctx_defaults)
        self.sources.update(own)
        self.health.sources = list(self.sources.values())
        for name, src in self.sources.items():
            if not src.partitioned:  # partitioned sources register their partitions on assignment
                self.clock_of(name).source_max.setdefault(name, -math.inf)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._stopped = False
        self._started = False
        self._last_checkpoint = time.monotonic()
        self._next_checkpoint = self._last_checkpoint + cfg.state.checkpoint_interval_seconds
        self._checkpoint_failing: float | None = None  # since when (monotonic) checkpoints fail
        self._checkpoint_failures = 0  # consecutive
        self._checkpoint_logged: set[str] = set()  # error types logged in this failure episode
        self.records_in = 0
        self._ignored_seen: dict[str, dict[str, int]] = {}  # per source: ignored records counted so far, by reason
        self.alerts_out = 0
        self.points_out = 0
        self.error: BaseException | None = None
        self._fail_lock = threading.Lock()
        self._failures: set[tuple[str, str]] = set()  # (source, error type) already logged
        self._stage = "decode"
        gap = cfg.pipeline.source_gap_seconds
        self.silence = SourceSilence(3.0 * max(windows) if gap is None else gap, self.now, cfg.alerting.id_namespace)
        self._next_silence_check = 0.0
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def clock_of(self, source: str) -> Aggregator:
        """The event-time clock of a source: billing snapshots have their own."""
        src = self.sources.get(source)
        return self.billing if src is not None and getattr(src.decoder, "snapshot", False) else self.aggregator

    def make_runner(self, name: str) -> DetectorRunner:
        return DetectorRunner(name, self.cfg.detectors[name], self.prototypes[name], self.cfg.alerting)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Restore state, start sinks, the pipeline thread and the sources; returns quickly."""
        self._started = True
        tune_gc()
        if self.store.exclusive:  # one replica at a time holds the state: a standby waits, alive and not ready
            self.store.on_lost = lambda exc: self.fail(exc, str(exc))
            self.health.standby(f"standby: the state ({self.store.describe()}) is held by another replica")
            for server in self.servers:
                server.start()
            if not self.store.acquire(self._closing):
                return
            self.health.standby(None)
        state = self.topology.restore()
        for server in self.servers if not self.store.exclusive else ():  # /healthz answers from here on (alive
            server.start()  # once restored; ready once consuming)
        for s in self.sinks.values():
            s.start()
        if state:
            # Restored series are on /metrics at once, firing alerts included (not after the next window):
            # a rule on finops_alerts_firing must not resolve and fire again on every restart. Nothing is
            # re-sent: only sinks that show state (on_restore) are told.
            restored = [p for r in self.runners.values() for p in r.restored_points()]
            firing = [doc for r in self.runners.values() for doc in r.firing_documents()]
            if restored or firing:
                firing = [self.notifier.mark(doc) for doc in firing]  # (silenced: still shown as such)
                for s in self.sinks.values():
                    s.on_restore(restored, firing)
        self.notifier.start()
        self.health.mark_alive()
        # Scale-out: the internal topics (tasks are restored as partitions are assigned). Alive meanwhile, not ready:
        # an agent started while the brokers are away waits for them. Interrupted (SIGTERM): return, stop() follows.
        if not self.topology.start(self._closing):
            return
        self._thread = threading.Thread(target=self._loop, name="pipeline", daemon=True)
        self._thread.start()
        for src in self.sources.values():
            src.start()
        self.health.mark_ready()

    def interrupt(self) -> None:
        """A stop was asked for (a signal): a start still waiting for the brokers gives up; stop() follows."""
        self._closing.set()

    def _emit(self, batch: Batch) -> None:
        while True:
            try:
                self.queue.put(batch, timeout=0.5)
                return
            except queue.Full:
                if self._closing.is_set():
                    return

    def sources_finished(self) -> bool:
        return all(s.finished.is_set() for s in self.sources.values())

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Backtest: wait until every source read all its input and the queue is drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.error is not None:
                raise RuntimeError("pipeline failed") from self.error
            if self.sources_finished() and self.queue.unfinished_tasks == 0:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def stop(self, timeout: float = 20.0, *, flush_windows: bool = False) -> None:
        """Idempotent; safe without start(). Stops sources, drains, checkpoints, stops sinks."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            self.dead_letter.close()
            return
        deadline = time.monotonic() + timeout
        self._closing.set()  # sources blocked on a full queue give up; what they hold is re-read later
        if not self.store.holding:  # a standby: it never read, nor may it write, the state
            self.health.mark_stopped()
            for server in self.servers:
                server.stop()
            self.dead_letter.close()
            return
        for src in self.sources.values():
            src.stop(max(0.1, deadline - time.monotonic()))
        self._stop.set()  # the pipeline thread drains the queue, then exits
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        if flush_windows:
            self._seal(force_all=True)
        self.notifier.stop(flush=True)  # groups still waiting go out now (into the sinks' outboxes)
        # Half of what is left at most: with the broker away the final checkpoint fails, and what it could not
        # persist is re-read from the last committed position at the next start.
        if not self.checkpoint(max(0.1, (deadline - time.monotonic()) / 2)):
            log.warning("stopping without a final checkpoint: the next start resumes from the last one")
        self.topology.let_go(max(0.1, min(5.0, (deadline - time.monotonic()) / 3)))
        for src in self.sources.values():
            src.finish(max(0.1, deadline - time.monotonic()))  # e.g. commit the offsets just checkpointed
        self.store.release()  # a standby takes over from the final checkpoint (and the sources' own checkpoints)
        for s in self.sinks.values():
            s.stop(max(0.1, deadline - time.monotonic()))
        self.topology.close(max(0.1, deadline - time.monotonic()))
        self.dead_letter.close()
        self.health.mark_stopped()
        for server in self.servers:
            server.stop()

    # -- the pipeline thread ---------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                self.health.beat = time.monotonic()  # (liveness: the thread turns)
                try:
                    batch = self.queue.get(timeout=0.02 if self.sources_finished() else 0.2)  # (stop: soon)
                except queue.Empty:
                    if self._stop.is_set():
                        break  # stopped and drained
                    batch = None
                if batch is not None:
                    t0 = time.perf_counter()
                    try:
                        self.process(batch)
                    except Exception as exc:  # one batch never stops the pipeline
                        self._failed(batch, exc)
                    finally:
                        self.queue.task_done()
                    self.telemetry.latency.observe(time.perf_counter() - t0)
                while not self._commands.empty():  # (the API's feedback: runners are this thread's)
                    self._commands.get_nowait()()
                if time.monotonic() >= self._next_silence_check:
                    self._next_silence_check = time.monotonic() + 1.0
                    self._check_silence()
                if time.monotonic() >= self._next_checkpoint:
                    # Failing (the broker away), an attempt blocks this thread 1 s at most; the backoff spaces them.
                    self.checkpoint(5.0 if self._checkpoint_failing is None else 1.0)
                if self.progress is not None:
                    self.progress(self)
        except BaseException as exc:  # the agent must not die silently
            self.error = exc
            log.exception("pipeline thread failed")
            self.health.mark_dead()
            raise

    def process(self, batch: Batch) -> None:
        """One batch from the queue (the pipeline thread's step; raises on an unexpected error, see ``_failed``)."""
        # "detect" once the batch's records are in the aggregation (then they are not dead-lettered on an error)
        self._stage = "decode" if batch.kind in ("lines", "table") else "process"
        src = self.sources[batch.source]
        comp = batch.source
        stream = batch.stream or comp
        topology = self.topology
        owner = topology.owner(comp, stream)
        if owner is not batch.owner and batch.kind in ("lines", "bad", "idle", "active"):
            # Fetched under an earlier assignment of its partition (queued while it was revoked and assigned again):
            # the current one re-reads these records from the committed offset, with the clock committed there.
            self.telemetry.stale_batches.labels(component=comp).inc()
            return
        if batch.kind == "idle":
            bad_idle = topology.idle(comp, stream, owner, batch.payload)
            if bad_idle:
                self._bad(comp, stream, bad_idle)
            topology.seal()
            return
        if batch.kind == "active":  # a stream reported idle has records again: it holds event time back
            topology.active(comp, stream, owner)
            return
        if batch.kind == "checkpoint":  # a source asks for one (partitions about to be revoked)
            done, release = batch.payload
            self.checkpoint()
            topology.release(release)
            done.set()
            return
        if batch.kind == "snapshot":  # a billing delivery: replaces its period's previous one
            self._apply_snapshot(src, comp, stream, batch)
            return
        if batch.kind in ("task", "partials"):  # the topology's own: a task restored, partials for the tasks
            bad_own = topology.process(batch)
            if bad_own:
                self._bad(comp, "repartition", bad_own)
            if batch.kind == "partials":
                topology.seal()
            return
        if batch.live and src.live:  # read up to its input's end: live from here (early warnings)
            topology.live(comp, stream, owner)
        bad: list[BadRecord] = []
        obs: list[Observation] = []
        ctx = batch.ctx or DecodeContext(comp)
        if batch.kind == "bad":
            bad = batch.payload
        elif batch.payload is not None and (batch.kind == "table" or batch.payload):
            self.records_in += batch.records
            # Decoders keep late records' original bytes; a replay skips what was sealed without reporting it.
            if (late_before := topology.late_before(batch, owner)) is not None:
                ctx.late_before = late_before
            # A decoder that raises (a bug: decoders return bad records) costs this batch alone: see _failed.
            if batch.kind == "lines":
                obs, bad = src.decoder.decode_lines(batch.payload, ctx)
                self._ignored(comp, src.decoder)
            else:
                obs, bad = src.decoder.decode_table(batch.payload, ctx)
            self.telemetry.received.labels(component=comp).inc(batch.records - sum(r.kind == BLANK for r in bad))
        self._stage = "aggregate"
        if obs:
            back = self.silence.records(comp)
            if back is not None:  # a silent source sends records again
                self.telemetry.source_gap.labels(component=comp).set(0)
                self.publish([(back["detector"], [], [back])])
            self.telemetry.observations.labels(component=comp).inc(len(obs))
            late = topology.add(comp, stream, obs, batch, owner, ctx.max_event_time)
            self._stage = "detect"
            if late:
                bad.extend(late)
        if bad:
            self._bad(comp, ctx.location, bad, batch)
        if batch.position is not None:
            src.commit(*batch.position)
        if topology.closes_on_input(comp):
            topology.seal()

    def _ignored(self, comp: str, decoder: Any) -> None:
        """Records a decoder read and left out on purpose (``ignored_records()``: not bad, nothing it reads — another
        metric, a log without tokens): counted in ``events_discarded_total{reason="ignored_<why>"}``, logged once."""
        counts = getattr(decoder, "ignored_records", None)
        if counts is None:
            return
        seen = self._ignored_seen.setdefault(comp, {})
        for why, n in counts().items():
            if n > seen.get(why, 0):
                self.telemetry.discarded.labels(component=comp, reason=f"ignored_{why}").inc(n - seen.get(why, 0))
                if why not in seen:
                    log.info(
                        "source %s: records its decoder does not read are left out (%s), counted in "
                        'finops_agent_events_discarded_total{reason="ignored_%s"}',
                        comp,
                        why,
                        why,
                    )
                seen[why] = n

    def _check_silence(self) -> None:
        """Live stream sources silent past their limit: a data-gap alert each (``agent.gaps.SourceSilence``)."""
        live = [n for n, s in self.sources.items() if s.live and not getattr(s.decoder, "snapshot", False)]
        for doc in self.silence.check(live):
            self.telemetry.source_gap.labels(component=doc["sources"][0]).set(1)
            self.publish([(doc["detector"], [], [doc])])

    def _error(self, component: str, stage: str, exc: Exception, what: str) -> None:
        """An unexpected error: counted in ``finops_agent_errors_total``, logged with its traceback once per
        (component, error type); the agent goes on."""
        etype = type(exc).__name__
        self.telemetry.errors.labels(component=component, error_type=etype, stage=stage).inc()
        if (component, etype) not in self._failures:
            self._failures.add((component, etype))
            log.error(
                "%s: %s (%s: %s); the agent goes on (further %s errors of %s are counted in "
                "finops_agent_errors_total{stage=%r}, not logged)",
                component,
                what,
                etype,
                exc,
                etype,
                component,
                stage,
                exc_info=exc,
            )

    def detector_failed(self, name: str, exc: Exception) -> None:
        self._error(name, "detect", exc, "detector failed while closing windows; the other detectors go on")

    def _failed(self, batch: Batch, exc: Exception) -> None:
        """An unexpected error while processing one batch: counted, logged once per (source, error type) with
        the batch's location, its records dead-lettered (unless they were already aggregated), and the
        source's position moves past it, so the same input cannot stop the agent again after a restart."""
        comp = batch.source
        where = (batch.ctx.location if batch.ctx is not None else "") or comp
        etype = type(exc).__name__
        stage = "decode" if self._stage == "decode" else "process"
        self._error(
            comp, stage, exc, f"processing a {batch.kind} batch from {where} failed; its records are dead-lettered"
        )
        if batch.kind == "checkpoint":
            batch.payload[0].set()  # never leave a source waiting on a checkpoint that failed
            return
        if self._stage != "detect":
            reason = f"processing failed: {etype}: {exc}"[:500]
            raws = _batch_records(batch)
            if raws:
                self.telemetry.discarded.labels(component=comp, reason="processing_error").inc(len(raws))
                self.telemetry.received.labels(component=comp).inc(len(raws) if stage == "decode" else 0)  # (undecoded)
                self.telemetry.dead_lettered.inc(len(raws))
                self.dead_letter.write(comp, where, [BadRecord(r, "processing_error", reason) for r in raws])
        src = self.sources.get(comp)
        if src is not None and batch.position is not None:
            src.commit(*batch.position)

    def _bad(self, comp: str, location: str, bad: list[BadRecord], batch: Batch | None = None) -> None:
        counts: dict[str, int] = {}
        for r in bad:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        blank = counts.pop(BLANK, 0)
        if blank:  # blank lines are no records: counted, neither logged nor dead-lettered
            self.telemetry.blank_lines.labels(component=comp).inc(blank)
            bad = [r for r in bad if r.kind != BLANK]
            if not bad:
                return
        for kind, n in counts.items():
            if kind == "unknown_model":
                continue
            self.telemetry.discarded.labels(component=comp, reason=kind).inc(n)
            sample = next(r for r in bad if r.kind == kind)
            self.logonce(
                comp, kind, f"{sample.reason} in {location or comp}", sample.raw[:300].decode("utf-8", "replace")
            )
        for r in bad:
            if r.kind == "unknown_model":
                self.telemetry.count_unpriced(r.subject)
                self.logonce(comp, f"unknown_model:{r.subject}", r.reason, r.raw[:300].decode("utf-8", "replace"))
        rest = self.sources[comp].dead_letter(batch, bad) if batch is not None else bad  # (a topic takes some)
        self.telemetry.dead_lettered.inc(len(rest))  # what the file gets (a topic's failed sends: Host.dead_letter)
        self.dead_letter.write(comp, location, rest)

    def _seal(self, force_all: bool = False) -> None:
        self.topology.seal(force_all)

    def on_pipeline(self, fn: Callable[[], Any], timeout: float = 10.0, *, wait: bool = True) -> Any:
        """``fn()`` run by the pipeline thread (runners are its own): its result, or None when the thread did not
        answer within ``timeout`` (with ``wait`` False, at once: queued, e.g. from the pipeline thread itself)."""
        done: Future[Any] = Future()

        def apply() -> None:
            try:
                done.set_result(fn())
            except Exception as exc:
                done.set_exception(exc)

        if wait and (self._thread is None or not self._thread.is_alive()):
            apply()  # (not running: nothing else touches the runners)
        else:
            self._commands.put(apply)
        if not wait:
            return None
        try:
            return done.result(timeout)
        except TimeoutError:
            return None

    def feedback(
        self, alert_id: str, verdict: str, by: str, comment: str, timeout: float = 10.0, *, wait: bool = True
    ) -> bool | None:
        """A person's verdict on an open alert (``expected``), applied by the pipeline thread: True when done,
        False when no open alert has that id, None when the pipeline did not answer (see :meth:`on_pipeline`)."""

        def apply() -> bool:
            for name, runner in self.topology.runners():
                events = runner.mark_expected(alert_id, by, comment)
                if events is not None:
                    log.info("alert %s of %s marked %s by %s: %s", alert_id, name, verdict, by, comment)
                    self.publish([(name, [], events)])
                    return True
            return False

        result: bool | None = self.on_pipeline(apply, timeout, wait=wait)
        return result

    def publish(self, closed: list[tuple[str, list[Point], list[dict[str, Any]]]]) -> None:
        """Points and alert events of closed windows to every sink."""
        all_points: list[Point] = []
        docs: list[dict[str, Any]] = []
        for name, points, events in closed:
            if points:
                self.telemetry.points.labels(detector=name).inc(len(points))
                self.telemetry.series.labels(detector=name).set(self.topology.series(name))
                all_points.extend(points)
            for doc in events:
                self.telemetry.alerts.labels(detector=name, status=doc["status"]).inc()
                self.alerts_out += 1
                docs.append(doc)
        self.notifier.on_alerts(docs)  # routes, groups and silences; sinks that do not page see it all
        if all_points:
            self.points_out += len(all_points)
            for s in self.sinks.values():
                s.on_points(all_points)

    # -- checkpoint ------------------------------------------------------------------------
    def checkpoint(self, timeout: float = 5.0) -> bool:
        """Outbox flushed → state persisted → (Kafka) offsets committed. True when the state was persisted.

        A checkpoint that cannot persist (the broker away: ``KafkaTimeoutError``; a full disk) changes nothing:
        the state stays in memory, offsets are not committed, readiness says why, and the pipeline tries again
        with backoff (1 s doubling to 30 s, jittered). A fatal error (credentials, authorization) stops the
        agent (see :meth:`fail`)."""
        try:
            for s in self.sinks.values():
                s.flush(timeout)
            for src in self.sources.values():
                prepare = getattr(src, "prepare_checkpoint", None)
                if prepare is not None:  # e.g. dead-letter records acknowledged before offsets pass them
                    prepare(timeout)
            positions = {name: s.checkpoint_positions() for name, s in self.sources.items()}
            # Nothing to write (partitioned: no task, nothing sent): offsets may be committed, but it proves
            # nothing about the state store (no age reset).
            wrote = self.topology.persist(positions, timeout)
        except Exception as exc:
            self._checkpoint_failed(exc)
            return False
        now = time.monotonic()
        if not wrote:
            self._next_checkpoint = now + self.cfg.state.checkpoint_interval_seconds
            for name, pos in positions.items():
                self.sources[name].checkpointed(pos)
            return True
        if self._checkpoint_failing is not None:
            log.info(
                "checkpoint succeeded again after %.0f s and %d failed attempts",
                now - self._checkpoint_failing,
                self._checkpoint_failures,
            )
        self._checkpoint_failing, self._checkpoint_failures = None, 0
        self._checkpoint_logged.clear()
        self.health.checkpoint_ok()
        self._last_checkpoint = now
        self._next_checkpoint = now + self.cfg.state.checkpoint_interval_seconds
        self.telemetry.checkpointed()
        for name, pos in positions.items():
            self.sources[name].checkpointed(pos)
        return True

    def _checkpoint_failed(self, exc: Exception) -> None:
        etype = type(exc).__name__
        self.telemetry.checkpoint_failures.labels(error_type=etype).inc()
        reason = _fatal_reason(exc)
        if reason is not None:
            self.fail(exc, f"checkpoint: {reason}")
        now = time.monotonic()
        if self._checkpoint_failing is None:
            self._checkpoint_failing = now
        self._checkpoint_failures += 1
        backoff = min(CHECKPOINT_BACKOFF_MAX, CHECKPOINT_BACKOFF_MIN * 2 ** (self._checkpoint_failures - 1))
        self._next_checkpoint = now + backoff * random.uniform(0.5, 1.0)  # jitter: replicas do not retry in step
        error = describe(exc)[:300]
        self.health.checkpoint_failing(self._checkpoint_failing, error)
        if etype not in self._checkpoint_logged:  # once per error type and failure episode
            self._checkpoint_logged.add(etype)
            log.warning(
                "checkpoint failed (%s); state stays in memory, offsets are not committed, retrying with backoff "
                "(up to %.0f s; counted in finops_agent_checkpoint_failures_total)",
                error,
                CHECKPOINT_BACKOFF_MAX,
            )

    def checkpoint_blocked(self, at: float | None = None) -> bool:
        """Checkpoints have failed for a while (at ``at``, monotonic; default now): sources pause their input
        (bounded memory, bounded replay)."""
        since = self._checkpoint_failing
        interval = self.cfg.state.checkpoint_interval_seconds
        now = time.monotonic() if at is None else at
        return since is not None and now - since >= max(5.0, interval)

    @property
    def next_checkpoint_at(self) -> float:
        """When (monotonic) the pipeline thread checkpoints next (later while checkpoints fail: the backoff)."""
        return self._next_checkpoint

    def fail(self, exc: BaseException, message: str) -> None:
        """A fatal error (waiting does not cure it): one log line; ``run`` sees :attr:`error`, stops, exits 1."""
        with self._fail_lock:
            if self.error is None:
                log.error("%s; the agent stops", message)  # before error is set: whoever sees it, sees the line
                self.error = exc

    def _metrics_server(self) -> HttpServer | None:
        return next((s for s in self.servers if "/metrics" in s.routes), None)

    def metrics_url(self) -> str | None:
        """Where ``/metrics`` is served (a Prometheus sink), once started."""
        server = self._metrics_server()
        return f"http://{server.address}:{server.port}/metrics" if server is not None else None

    def metrics_port(self) -> int | None:
        """The port of ``/metrics`` (which also serves ``/healthz`` and ``/readyz``), or the agent's own."""
        server = self._metrics_server() or self.http
        return server.port if server is not None else None


CHECKPOINT_BACKOFF_MIN = 1.0  # seconds before the first retry of a failed checkpoint, doubling
CHECKPOINT_BACKOFF_MAX = 30.0


def _fatal_reason(exc: BaseException) -> str | None:
    """An error that waiting does not cure: one that says so (``fatal``, e.g. a state lease lost), or a Kafka one
    (only where the Kafka client is in use)."""
    if getattr(exc, "fatal", False):
        return str(exc)
    if "kafka" not in sys.modules:
        return None
    from agent.sources.kafka import fatal_reason

    return fatal_reason(exc)
