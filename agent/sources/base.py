"""Source interface, and the host a source is given (never the pipeline itself).

A source runs its own thread and hands :class:`Batch` es to the pipeline through a bounded
queue (``emit`` blocks when the pipeline is behind: backpressure, never unbounded memory).
A batch carries the position *after* it; the pipeline commits that position only once the batch
is processed, and positions are checkpointed together with detector state.

Batch kinds a source emits: ``lines`` (raw records for the decoder, with the position after them), ``table`` (an
Arrow table), ``bad`` (records already known bad), and ``idle`` — emitted when the source has read everything there
is for now (caught up), so that its stream stops holding event time back until its next records; ``active`` when a
stream it reported idle has records again (sent before them, so that no other stream's records close windows that
these still feed). A source's config declares ``decoder: config_union("decoder")`` (checked by ``validate``).

A source that needs more than ``emit`` — a broker client that pauses its partitions, registers each one on the
event-time clock, asks for a checkpoint before it lets partitions go — uses :class:`SourceHost`, given as
``host=``. A new source is written against :class:`Source` and :class:`SourceHost` alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from agent.decoders.base import BadRecord, DecodeContext, Decoder

if TYPE_CHECKING:
    from agent.partitions import PartitionedState
    from agent.telemetry import Telemetry


@dataclass(slots=True)
class Batch:
    source: str
    kind: Literal["lines", "table", "bad", "idle", "active", "checkpoint", "partials", "task", "snapshot"]
    payload: Any
    ctx: DecodeContext | None
    position: tuple[str, Any] | None = None  # (key, value) committed after processing
    records: int = 0
    stream: str | None = None  # event-time stream (watermark unit): the source, or one of its partitions
    meta: dict[int, Any] | None = None  # per-record metadata by id(raw bytes), for dead-lettering
    offsets: tuple[int, int] | None = None  # first and last source offset in the batch (Kafka)
    # Scale-out: the partition's pre-aggregation it was fetched for. A batch still queued when its partition was
    # revoked and assigned again belongs to the old assignment: the new one re-reads it from the committed offset.
    owner: Any = None
    # The batch reached its partition's log end (the high watermark of its fetch): the source has caught up, what it
    # reads from now on is live, not a backlog (early warnings start; a busy partition may never be idle).
    live: bool = False


Emit = Callable[[Batch], None]


class SourceHost(Protocol):
    """What the agent offers a source (one host per source).

    - :meth:`emit`: hand a batch to the pipeline (blocks while the queue is full; gives up when stopping).
    - :meth:`backlog` and :meth:`checkpoint_blocked`: pause consuming while the queue is mostly full (e.g. at
      0.8, resume at 0.5) or while checkpoints fail (bounded memory and replay during an outage).
    - :meth:`checkpoint`: ask for a checkpoint of everything emitted so far and wait until it is durable
      (True) — e.g. before partitions are revoked; ``release`` is handed to the partition owner afterwards.
    - :meth:`register_stream` / :meth:`forget_stream`: a partition's own event-time stream on the clock
      (assigned / revoked): the watermark waits for every registered stream.
    - :meth:`dead_letter`: records that cannot be processed, with where they came from.
    - :meth:`fail`: a fatal error (one log line; the agent stops). ``telemetry``: the agent's metrics.
    - ``partitioned``: the partitioned state with ``state.type: kafka`` (else None), for the source's
      :class:`~agent.partitions.PartitionOwner` (a partitioned source owns its partitions through one);
      ``bucket_seconds`` and ``allowed_lateness_seconds``: the aggregation's bucket and lateness;
      ``idle_grace_seconds``: how long a caught-up partition holds event time back before it counts as idle.
    """

    telemetry: Telemetry
    partitioned: PartitionedState | None
    bucket_seconds: float
    allowed_lateness_seconds: float
    idle_grace_seconds: float

    def emit(self, batch: Batch) -> None: ...

    def backlog(self) -> float: ...

    def checkpoint_blocked(self) -> bool: ...

    def checkpoint(self, release: Any = None, timeout: float = 10.0) -> bool: ...

    def register_stream(self, key: str) -> None: ...

    def forget_stream(self, key: str) -> None: ...

    def dead_letter(self, source: str, where: str, records: list[BadRecord]) -> None: ...

    def fail(self, exc: BaseException, message: str) -> None: ...


class Source:
    #: True when every partition is its own event-time stream, registered on assignment.
    partitioned: ClassVar[bool] = False

    @property
    def live(self) -> bool:
        """Whether the source keeps watching its input once caught up (its quiet streams may move on the wall clock:
        ``pipeline.idle_timeout_seconds``); False for a finite input read once."""
        return False

    def __init__(
        self,
        cfg: Any,
        *,
        name: str,
        decoder: Decoder,
        emit: Emit,
        ctx_defaults: dict[str, Any],
        host: SourceHost | None = None,
        **_: Any,
    ):
        self.cfg = cfg
        self.name = name
        self.decoder = decoder
        self.emit = emit
        self.ctx_defaults = ctx_defaults  # DecodeContext(...) defaults: the accepted time range, the bucket
        self.host = host  # what else the agent offers (see SourceHost); None only in a bare unit test
        # What the pipeline has *processed* (it calls commit() after each batch; checkpoints save this): where a
        # restarted source resumes, not where this one has read to (batches may still wait in the queue).
        self.positions: dict[str, Any] = {}
        self.finished = threading.Event()  # all finite input read (backtest)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def check_config(cls, config: type) -> str | None:
        """What this source's config class lacks (checked by ``validate``); None when it can run."""
        if "decoder" not in getattr(config, "model_fields", {}):
            return (
                f"source {cls.__name__}: its config {config.__name__} has no 'decoder' field "
                "(declare decoder: config_union('decoder'), from agent.registry)"
            )
        return None

    def restore(self, positions: dict[str, Any]) -> None:
        self.positions = dict(positions)

    def ready(self) -> bool:
        """False until the source can consume (e.g. partitions assigned)."""
        return True

    def not_ready_reason(self) -> str | None:
        """Why this source cannot consume now, where :meth:`ready` is False for a reason of its own (``/readyz``
        says it); None: the default wording (waiting for partitions)."""
        return None

    def checkpoint_positions(self) -> dict[str, Any]:
        """What a checkpoint records (and then commits) for this source."""
        return dict(self.positions)

    def checkpointed(self, positions: dict[str, Any]) -> None:
        """Called after state including ``positions`` was persisted (commit offsets here)."""
        return None

    def dead_letter(self, batch: Batch, bad: list[BadRecord]) -> list[BadRecord]:
        """Route bad records somewhere source-specific; return those left for the dead-letter file."""
        return bad

    def commit(self, key: str, value: Any) -> None:
        self.positions[key] = value

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_safe, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def _run_safe(self) -> None:
        try:
            self.run()
        finally:
            self.finished.set()

    def run(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading (first phase of a shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def finish(self, timeout: float = 5.0) -> None:
        """After the final checkpoint (second phase): commit and release what the source holds."""
        return None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def bad(self, location: str, records: list[BadRecord], position: tuple[str, Any] | None = None) -> None:
        self.emit(Batch(self.name, "bad", records, DecodeContext(self.name, location), position, len(records)))
