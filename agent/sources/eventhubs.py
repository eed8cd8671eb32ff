"""Azure Event Hubs: ``EventHubConsumerClient`` with the Blob checkpoint store.

Several replicas with the same ``consumer_group`` and ``checkpoint_store`` share the hub's partitions through the
SDK's own load balancing (partition ownership blobs in the container) and resume from its checkpoints; there is no
coordinator of the agent's own. Without a checkpoint store one consumer reads every partition and resumes from the
agent's state alone.

What the source does with the SDK (the rules live in :class:`~agent.partitions.PartitionOwner`, as for Kafka):

- **A partition claimed** (``on_partition_initialize``): it becomes a stream on the event-time clock. The SDK
  starts it at its checkpoint (else ``starting_position``); events at or before the position in the agent's own
  restored state are skipped (``finops_agent_events_discarded_total{reason="replayed"}``): a crash between the state
  write and the checkpoint write re-reads them, and they are already counted.
- **Events** (``on_event_batch``): the bodies are the decoder's records; an Azure Monitor envelope
  ``{"records": [...]}`` (diagnostic settings' export) is unpacked into one record each (``unpack_records``).
  A body larger than ``max_record_bytes`` is dead-lettered (``record_too_large``). An empty batch after
  ``max_wait_time_seconds`` means the partition is caught up: after ``state.idle_grace_seconds`` it stops holding
  event time back, until its next events. Lag per partition (last enqueued sequence number minus the last one
  read) is ``finops_agent_consumer_lag{source,topic=<hub>,partition}``.
- **Checkpoints** are written to the store only after the batch's state and the sinks' outbox are durable (the
  agent's checkpoint order: outbox → state → Event Hubs checkpoint), from the SDK's thread, and only for partitions
  this replica still owns.
- **A partition lost** (``on_partition_close``, another replica took it): checkpoint everything handed over, write
  its checkpoint, then let it go. **Shutdown**: stop reading, the final checkpoint, write the checkpoints, and only
  then close the client (which releases ownership): the next owner starts where this replica's state ends.

Delivery across an ownership move is at-least-once, as with the SDK itself: events a replica read after another one
claimed the partition and before it noticed (its next load-balancing round) are read again by the new owner. With
local state (``state.type: local``) each replica detects on the partitions it owns; a hub whose producers key events
by series (the partition key) keeps each series whole on one replica.

Authentication: a connection string (or a file holding one, e.g. a mounted Kubernetes secret), or
``fully_qualified_namespace`` with ``DefaultAzureCredential`` (workload identity). The checkpoint store takes a
connection string, a SAS token or the same credential.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import Field, SecretStr, model_validator

from agent.azure_blob import BlobContainerConfig, azure_credential, blob_connection
from agent.decoders.base import BadRecord, DecodeContext
from agent.partitions import Part, PartitionOwner
from agent.registry import ComponentConfig, config_union, register
from agent.sources.base import Batch, Source

log = logging.getLogger(__name__)


class CheckpointStoreConfig(BlobContainerConfig):
    """The Blob container that holds the consumer group's ownership and checkpoints."""


class EventHubsConfig(ComponentConfig):
    type: Literal["eventhubs"]
    eventhub_name: str | None = Field(
        None, description="the event hub; optional when the connection string's EntityPath names it"
    )
    connection_string: SecretStr | None = None
    connection_string_file: str | None = None
    fully_qualified_namespace: str | None = Field(
        None, description="<namespace>.servicebus.windows.net, authenticated with DefaultAzureCredential"
    )
    consumer_group: str = "$Default"
    checkpoint_store: CheckpointStoreConfig | None = Field(
        None,
        description="Blob container for ownership and checkpoints (several replicas share partitions); "
        "none: one consumer reads every partition and resumes from the agent's state",
    )
    starting_position: Literal["earliest", "latest"] | datetime = Field(
        "earliest", description="where a partition without a checkpoint starts: earliest, latest or a time"
    )
    max_batch_size: int = Field(300, ge=1, le=10_000)
    max_wait_time_seconds: float = Field(1.0, gt=0, description="an empty batch after this long: caught up")
    prefetch: int = Field(300, ge=1)
    load_balancing_interval_seconds: float = Field(10.0, gt=0)
    partition_ownership_expiration_interval_seconds: float | None = Field(
        None,
        gt=0,
        description="a crashed replica's partitions are taken over after this long (default: 6 × "
        "load_balancing_interval_seconds)",
    )
    unpack_records: bool = Field(True, description='one record per element of an Azure Monitor {"records": [...]}')
    max_record_bytes: int = Field(1 << 20, gt=0, description="bytes; a larger event body is dead-lettered")
    decoder: config_union("decoder")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _auth(self) -> EventHubsConfig:
        has_cs = self.connection_string is not None or self.connection_string_file is not None
        if self.connection_string is not None and self.connection_string_file is not None:
            raise ValueError("set connection_string or connection_string_file, not both")
        if has_cs and self.fully_qualified_namespace is not None:
            raise ValueError("set connection_string (or connection_string_file) or fully_qualified_namespace, not both")
        if not has_cs and self.fully_qualified_namespace is None:
            raise ValueError("set connection_string (or connection_string_file) or fully_qualified_namespace")
        ns = self.fully_qualified_namespace
        if ns is not None and ("://" in ns or "/" in ns or "." not in ns):
            raise ValueError(f"fully_qualified_namespace: the host name (my-ns.servicebus.windows.net), not {ns!r}")
        if ns is not None and not self.eventhub_name:
            raise ValueError("eventhub_name is required with fully_qualified_namespace")
        if self.connection_string is not None:
            parts = dict(p.split("=", 1) for p in self.connection_string.get_secret_value().split(";") if "=" in p)
            if "Endpoint" not in parts:
                raise ValueError("connection_string: no Endpoint=sb://<namespace>/ (copy the whole connection string)")
            entity = parts.get("EntityPath")
            if entity and self.eventhub_name and entity != self.eventhub_name:
                raise ValueError(f"eventhub_name {self.eventhub_name!r} is not the connection string's EntityPath")
            if not entity and not self.eventhub_name:
                raise ValueError("eventhub_name is required (the connection string names no EntityPath)")
        return self


def event_body(event: Any) -> bytes:
    """An event's body as bytes: its data sections joined (what producers and Azure Monitor send); a body of an AMQP
    value or sequence as its text."""
    try:
        return b"".join(event.body)
    except TypeError:
        return event.body_as_str().encode()


def unpack(body: bytes) -> list[bytes] | None:
    """The records of an Azure Monitor envelope ``{"records": [...]}`` (each as its own JSON bytes), or None when
    ``body`` is not one (the body is then a record itself; a body that is not JSON is the decoder's to reject).

    >>> unpack(b'{"records": [{"a": 1}, {"b": 2}]}')
    [b'{"a":1}', b'{"b":2}']
    >>> unpack(b'{"a": 1}') is None
    True
    """
    head = body.lstrip()[:64]
    if not head.startswith(b"{") or b'"records"' not in body[:4096]:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list) or len(doc) != 1:
        return None
    return [orjson.dumps(r) for r in records]


@register("source", "eventhubs", EventHubsConfig)
class EventHubsSource(Source):
    partitioned = True

    def __init__(self, cfg: EventHubsConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.owned: PartitionOwner | None = PartitionOwner(self.name, self.host) if self.host is not None else None
        self.hub = cfg.eventhub_name or ""
        self.client: Any = None
        self.store: Any = None
        self._started = 0.0
        self._claimed = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}  # positions checkpointed in the agent, not yet written to the store
        self._written: dict[str, Any] = {}  # positions written to the store
        self._last_seq: dict[str, int] = {}  # partition id → the last sequence number handed over
        self.replayed = 0

    @property
    def live(self) -> bool:
        return True

    # -- start / stop ----------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Build the client and the checkpoint store (no request yet: the SDK connects when receiving)."""
        try:
            from azure.eventhub import EventHubConsumerClient
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise RuntimeError("the eventhubs source needs azure-eventhub: pip install 'finops-agent[azure]'") from exc
        from agent.config import read_secret

        cfg, where = self.cfg, f"sources.{self.name}"
        kwargs: dict[str, Any] = {
            "consumer_group": cfg.consumer_group,
            "load_balancing_interval": cfg.load_balancing_interval_seconds,
        }
        if cfg.partition_ownership_expiration_interval_seconds is not None:
            kwargs["partition_ownership_expiration_interval"] = cfg.partition_ownership_expiration_interval_seconds
        if cfg.checkpoint_store is not None:
            self.store = self._checkpoint_store(cfg.checkpoint_store, f"{where}.checkpoint_store")
            kwargs["checkpoint_store"] = self.store
        cs = read_secret(cfg.connection_string, cfg.connection_string_file, f"{where}.connection_string_file")
        if cs is not None:
            if cfg.eventhub_name:
                kwargs["eventhub_name"] = cfg.eventhub_name
            self.client = EventHubConsumerClient.from_connection_string(cs, **kwargs)
        else:
            self.client = EventHubConsumerClient(
                cfg.fully_qualified_namespace or "", cfg.eventhub_name or "", azure_credential(), **kwargs
            )
        self.hub = self.client.eventhub_name

    @staticmethod
    def _checkpoint_store(cfg: CheckpointStoreConfig, where: str) -> Any:
        try:
            from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise RuntimeError(
                "the Event Hubs checkpoint store needs azure-eventhub-checkpointstoreblob: "
                "pip install 'finops-agent[azure]'"
            ) from exc
        cs, url, credential = blob_connection(cfg, where)
        if cs is not None:
            return BlobCheckpointStore.from_connection_string(cs, cfg.container)
        return BlobCheckpointStore(url or "", cfg.container, credential=credential)

    def start(self) -> None:
        if self.client is None:
            self.connect()
        self._started = time.monotonic()
        super().start()

    def run(self) -> None:
        cfg = self.cfg
        position: Any = {"earliest": "-1", "latest": "@latest"}.get(cfg.starting_position, cfg.starting_position)
        try:
            self.client.receive_batch(
                on_event_batch=self._on_batch,
                on_partition_initialize=self._on_claimed,
                on_partition_close=self._on_closed,
                on_error=self._on_error,
                max_batch_size=cfg.max_batch_size,
                max_wait_time=cfg.max_wait_time_seconds,
                prefetch=cfg.prefetch,
                starting_position=position,
                track_last_enqueued_event_properties=True,
            )
        except Exception as exc:  # the SDK gives up (e.g. credentials): the agent stops with one line
            if not self.stopping and self.host is not None:
                self.host.fail(exc, f"source {self.name}: Event Hubs receive failed")
            elif not self.stopping:
                raise

    def ready(self) -> bool:
        """Consuming: a partition claimed, or a load-balancing round or two without one (a replica with nothing to
        own — more replicas than partitions — is ready too)."""
        if self._claimed.is_set():
            return True
        return self._started > 0 and time.monotonic() - self._started > 2 * self.cfg.load_balancing_interval_seconds

    def stop(self, timeout: float = 5.0) -> None:
        """First phase: stop handing events over (what the SDK still delivers is read again by the next owner). The
        client stays open, holding ownership, until :meth:`finish` has written the final checkpoints."""
        self._stop.set()

    def finish(self, timeout: float = 5.0) -> None:
        """Second phase: write the final checkpoints, then close the client (ownership released)."""
        self._write_checkpoints()
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing a client that failed already
                log.debug("%s: closing the Event Hubs client failed", self.name, exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the SDK's callbacks (its thread) ------------------------------------------------------------------------
    def _part(self, partition_id: str) -> Part:
        return Part(self.hub, int(partition_id))

    def _on_claimed(self, ctx: Any) -> None:
        self._claimed.set()
        if self.owned is not None:
            self.owned.assign([self._part(ctx.partition_id)])
        log.info("%s: claimed partition %s of %s", self.name, ctx.partition_id, self.hub)

    def _on_closed(self, ctx: Any, reason: Any) -> None:
        part = self._part(ctx.partition_id)
        stopping = self.stopping or getattr(reason, "name", "") == "SHUTDOWN"
        if self.owned is not None:
            positions = self.owned.checkpoint_before_release([part], stopping=stopping)
            if positions:
                with self._lock:
                    self._pending.update(positions)
                self._write_checkpoints(only={f"{self.hub}/{part.partition}"})
            self.owned.release([part], stopping=stopping)
        self._last_seq.pop(ctx.partition_id, None)
        log.info(
            "%s: partition %s of %s closed (%s)", self.name, ctx.partition_id, self.hub, getattr(reason, "name", reason)
        )

    def _on_error(self, ctx: Any, exc: Exception) -> None:
        where = f"partition {ctx.partition_id}" if ctx is not None else "load balancing"
        if self.host is not None:
            self.host.telemetry.errors.labels(component=self.name, error_type=type(exc).__name__, stage="source").inc()
        log.warning("%s: Event Hubs %s: %s", self.name, where, type(exc).__name__)

    def _on_batch(self, ctx: Any, events: list[Any]) -> None:
        self._write_checkpoints()
        if self.stopping or self.owned is None:
            return
        part = self._part(ctx.partition_id)
        key = f"{self.hub}/{part.partition}"
        stream = self.owned.stream(part)
        if not events:
            if self.owned.idle(part, True):
                self.emit(Batch(self.name, "idle", self.positions.get(key), None, stream=stream))
            self._report_lag(ctx, part)
            return
        if self.owned.wake(part):
            self.emit(Batch(self.name, "active", None, None, stream=stream))
        self.owned.fetched(part)
        done = self.positions.get(key)
        if done is not None:  # the restored state already counts these (a crash before their checkpoint)
            first = len(events)
            for i, e in enumerate(events):
                if e.sequence_number is None or e.sequence_number > done[0]:
                    first = i
                    break
            if first:
                self.replayed += first
                if self.host is not None:
                    self.host.telemetry.discarded.labels(component=self.name, reason="replayed").inc(first)
                events = events[first:]
            if not events:
                return
        self._emit_events(ctx, part, key, stream, events)
        self._report_lag(ctx, part)

    def _emit_events(self, ctx: Any, part: Part, key: str, stream: str, events: list[Any]) -> None:
        lines: list[bytes] = []
        too_large: list[BadRecord] = []
        limit = self.cfg.max_record_bytes
        for e in events:
            body = event_body(e)
            if len(body) > limit:
                reason = f"event body of {len(body)} bytes is over max_record_bytes={limit}"
                too_large.append(BadRecord(body[:limit], "record_too_large", reason))
                continue
            records = unpack(body) if self.cfg.unpack_records else None
            if records is None:
                lines.append(body)
            else:
                lines.extend(records)
        last = events[-1]
        enqueued = last.enqueued_time
        dctx = DecodeContext(
            self.name,
            key,
            default_ts=enqueued.timestamp() if enqueued is not None else time.time(),
            **self.ctx_defaults,
        )
        if too_large:
            self.emit(Batch(self.name, "bad", too_large, dctx, None, len(too_large), stream=stream))
        seq = last.sequence_number
        self._last_seq[ctx.partition_id] = seq
        last_enqueued = (ctx.last_enqueued_event_properties or {}).get("sequence_number")
        self.emit(
            Batch(
                self.name,
                "lines",
                lines,
                dctx,
                (key, (seq, last.offset)),
                len(lines),
                stream=stream,
                offsets=(events[0].sequence_number, seq),
                live=last_enqueued is not None and seq >= last_enqueued,
            )
        )

    def _report_lag(self, ctx: Any, part: Part) -> None:
        props = ctx.last_enqueued_event_properties or {}
        end = props.get("sequence_number")
        seq = self._last_seq.get(ctx.partition_id)
        if end is None or self.host is None:
            return
        lag = max(0, end - seq) if seq is not None else end + 1
        self.host.telemetry.consumer_lag.labels(source=self.name, topic=self.hub, partition=str(part.partition)).set(
            lag
        )

    # -- checkpoints -------------------------------------------------------------------------------------------
    def checkpoint_positions(self) -> dict[str, Any]:
        return self.owned.positions(self.positions) if self.owned is not None else dict(self.positions)

    def checkpointed(self, positions: dict[str, Any]) -> None:
        """State with these positions is durable: their Event Hubs checkpoints are written next (from the SDK's
        thread, or by :meth:`finish`)."""
        with self._lock:
            self._pending.update(positions)
        if self.owned is not None:
            self.owned.checkpoint_done(positions)

    def _write_checkpoints(self, only: set[str] | None = None) -> None:
        if self.store is None or self.client is None:
            return
        with self._lock:
            todo = {k: v for k, v in self._pending.items() if (only is None or k in only) and self._written.get(k) != v}
        owned = {f"{p.topic}/{p.partition}" for p in self.owned.assigned} if self.owned is not None else set()
        for key, (seq, offset) in todo.items():
            if key not in owned and only is None:
                continue  # another replica owns it now: its checkpoints are its own
            pid = key.rsplit("/", 1)[1]
            try:
                self.store.update_checkpoint(
                    {
                        "fully_qualified_namespace": self.client._address.hostname,  # the SDK's own key
                        "eventhub_name": self.hub,
                        "consumer_group": self.cfg.consumer_group,
                        "partition_id": pid,
                        "offset": offset,
                        "sequence_number": seq,
                    }
                )
            except Exception as exc:  # noqa: BLE001 - written again with the next checkpoint
                log.warning("%s: writing the checkpoint of partition %s failed: %s", self.name, pid, type(exc).__name__)
                continue
            self._written[key] = (seq, offset)
