"""The agent's own metrics (prefix ``finops_agent_``) and structured logging.

Every agent owns a fresh :class:`prometheus_client.CollectorRegistry`, so tests and several
agents in one process never share counters.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MAX_LABEL_VALUES = 200


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "finops_agent_events_received",
            "Records (lines, messages, rows) a component received and decoded; blank lines are no records, counted in"
            " finops_agent_blank_lines_total alone. A decoded record is processed or counted in"
            " finops_agent_events_discarded_total (one processed in part: in both); a record its source refused"
            " before decoding (record_too_large, truncated_gzip) is counted there alone",
            ["component"],
            registry=r,
        )
        self.sent = Counter(
            "finops_agent_events_sent", "Records or alerts a component passed on", ["component"], registry=r
        )
        self.errors = Counter(
            "finops_agent_errors",
            "Errors by component, type and stage",
            ["component", "error_type", "stage"],
            registry=r,
        )
        self.discarded = Counter(
            "finops_agent_events_discarded", "Records not processed, by reason", ["component", "reason"], registry=r
        )
        self.dead_lettered = Counter(
            "finops_agent_dead_letter_records", "Records written to the dead-letter file", registry=r
        )
        self.unpriced = Counter(
            "finops_agent_unpriced_events",
            "Token records whose model has no price (tokens counted, cost not)",
            ["model"],
            registry=r,
        )
        self.observations = Counter("finops_agent_observations", "Observations aggregated", ["component"], registry=r)
        self.points = Counter("finops_agent_points", "Closed windows scored", ["detector"], registry=r)
        self.deliveries = Counter(
            "finops_agent_billing_deliveries",
            "Billing export deliveries (one billing period's refresh): applied, unchanged or refused",
            ["component", "outcome"],
            registry=r,
        )
        self.blank_lines = Counter(
            "finops_agent_blank_lines",
            "Blank (whitespace-only) lines skipped by a component: no records, so not dead-lettered",
            ["component"],
            registry=r,
        )
        self.restated = Counter(
            "finops_agent_restated_cells",
            "Cells of already-sealed buckets changed by a newer billing delivery (re-scored)",
            ["component"],
            registry=r,
        )
        self.restated_hours = Counter(
            "finops_agent_restated_hours",
            "Hours a billing delivery restated (covered by the period's previous delivery, and changed)",
            ["component"],
            registry=r,
        )
        self.restated_usd = Counter(
            "finops_agent_restated_usd",
            "Net cost change of restated days, summed by sign (direction: increase or decrease; net = the difference)",
            ["component", "direction"],
            registry=r,
        )
        self.untagged = Counter(
            "finops_agent_billing_untagged_deliveries",
            "Billing deliveries in which no line item carries a configured tag (tag column absent, or key never set)",
            ["component", "tag"],
            registry=r,
        )
        self.alerts = Counter("finops_agent_alerts", "Alert events emitted", ["detector", "status"], registry=r)
        self.latency = Histogram(
            "finops_agent_processing_seconds",
            "Time to process one batch (decode → aggregate → detect → sinks)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.checkpoint_ts = Gauge(
            "finops_agent_last_checkpoint_timestamp_seconds", "Time of the last checkpoint", registry=r
        )
        self.outbox_depth = Gauge(
            "finops_agent_outbox_depth", "Alert notifications waiting for delivery", ["sink"], registry=r
        )
        self.silenced = Counter(
            "finops_agent_alerts_silenced",
            "Alert events not notified because a silence matched them (still computed and on /metrics)",
            ["detector"],
            registry=r,
        )
        self.throttled = Counter(
            "finops_agent_sink_throttled",
            "Deliveries a sink held back to stay within its receiver's rate limit (PagerDuty: events a minute per "
            "routing key)",
            ["sink"],
            registry=r,
        )
        self.open_cells = Gauge("finops_agent_open_aggregation_cells", "Cells in open event-time buckets", registry=r)
        self.tasks = Gauge(
            "finops_agent_tasks", "Partitions whose series and detector state this replica owns", registry=r
        )
        self.series = Gauge("finops_agent_series", "Series with a model", ["detector"], registry=r)
        self.source_gap = Gauge(
            "finops_agent_source_silent",
            "1 while a live source has sent no record for longer than its data-gap limit (pipeline.source_gap_seconds)",
            ["component"],
            registry=r,
        )
        self.stale_batches = Counter(
            "finops_agent_stale_batches",
            "Batches fetched under an earlier assignment of their partition, skipped: the current owner re-reads "
            "them from the committed offset",
            ["component"],
            registry=r,
        )
        self.watermark = Gauge(
            "finops_agent_watermark_timestamp_seconds",
            "Event-time watermark of the streaming input: the slowest active source or partition's latest event time",
            registry=r,
        )
        self.closed_until = Gauge(
            "finops_agent_windows_closed_until_timestamp_seconds",
            "End of the newest window every streaming detector has closed (scored and alerted)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "finops_agent_consumer_lag",
            "Records behind the end of the partition",
            ["source", "topic", "partition"],
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "finops_agent_checkpoint_age_seconds", "Seconds since the last checkpoint", registry=r
        )
        self.checkpoint_failures = Counter(
            "finops_agent_checkpoint_failures",
            "Checkpoints that could not persist state (e.g. the broker away): retried with backoff, offsets not "
            "committed meanwhile",
            ["error_type"],
            registry=r,
        )
        self._last_checkpoint = time.time()
        self.checkpoint_age.set_function(lambda: time.time() - self._last_checkpoint)
        self._unpriced_models: set[str] = set()
        self._gpu_prices: GpuPriceCollector | None = None

    def watch_gpu_prices(self, table: Any) -> None:
        """Export the rates a GPU price table (:class:`agent.pricing.GpuPriceTable`) has priced GPU-hours at."""
        if self._gpu_prices is None:
            self._gpu_prices = GpuPriceCollector()
            self.registry.register(self._gpu_prices)
        if all(t is not table for t in self._gpu_prices.tables):
            self._gpu_prices.tables.append(table)

    def checkpointed(self) -> None:
        self._last_checkpoint = time.time()
        self.checkpoint_ts.set(self._last_checkpoint)

    def count_unpriced(self, model: str, n: int = 1) -> None:
        if model not in self._unpriced_models and len(self._unpriced_models) >= MAX_LABEL_VALUES:
            model = "__other__"
        self._unpriced_models.add(model)
        self.unpriced.labels(model=model).inc(n)


class GpuPriceCollector(Collector):
    """``finops_gpu_hour_price_usd{gpu_model, purchase_option, source}``: each rate GPU-hours were priced at (the
    decoders' decisions so far: one per GPU model and rule, not per GPU)."""

    def __init__(self) -> None:
        self.tables: list[Any] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily(
            "finops_gpu_hour_price_usd",
            "USD per GPU-hour that GPU-hours are priced at, by GPU model, purchase option (on_demand, reserved, spot; "
            "effective: a configured rate; default) and where the rate comes from",
            labels=["gpu_model", "purchase_option", "source"],
        )
        rates: dict[tuple[str, str, str], float] = {}
        for table in self.tables:
            for model, option, source, usd in table.decisions():
                rates[(model, option, source)] = usd
        for labels, usd in sorted(rates.items()):
            fam.add_metric(list(labels), usd)
        yield fam


class LogOnce:
    """Log the first occurrence of each kind (with a sample), then count silently."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self.seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def __call__(self, component: str, kind: str, message: str, sample: str = "") -> None:
        key = (component, kind)
        with self._lock:
            n = self.seen.get(key, 0)
            self.seen[key] = n + 1
        if n == 0:
            self.logger.warning(
                "%s: %s (further %s records are counted in metrics, not logged)",
                component,
                message,
                kind,
                extra={"kind": kind, "component": component, "sample": sample[:500]},
            )


class JsonFormatter(logging.Formatter):
    _STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in self._STD and not k.startswith("_"):
                doc[k] = v
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def describe(exc: BaseException) -> str:
    """``Type: message``, without the type twice when the message already starts with it (kafka-python's do).

    >>> describe(ValueError("bad"))
    'ValueError: bad'
    >>> describe(TimeoutError("TimeoutError: Timeout waiting for future"))
    'TimeoutError: Timeout waiting for future'
    """
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name


class ClientLogLimit(logging.Filter):
    """The Kafka client logs every failed reconnect (hundreds of lines in a minute's outage): each of its messages
    (logger and format string) passes once per ``interval`` seconds, with the number held back since. The agent's
    own lines say what matters once per episode."""

    def __init__(
        self, prefixes: tuple[str, ...] = ("kafka", "azure"), interval: float = 60.0, clock: Any = time.monotonic
    ):
        super().__init__()
        self.prefixes, self.interval, self.clock = prefixes, interval, clock
        self._last: dict[tuple[str, Any], list[float]] = {}  # (logger, msg) -> [last passed, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        now = self.clock()
        seen = self._last.get(key)
        if seen is None or now - seen[0] >= self.interval:
            if seen is not None and seen[1]:
                record.msg = f"{record.msg} (and {int(seen[1])} more like it in {now - seen[0]:.0f} s)"
            if len(self._last) > 10_000:
                self._last.clear()
            self._last[key] = [now, 0]
            return True
        seen[1] += 1
        return False


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Log lines to stderr: ``text``, ``json`` (one JSON object a line), or ``auto``: text on a terminal, JSON
    otherwise (in a container, where a log collector parses them)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ClientLogLimit())
    root.addHandler(handler)
    root.setLevel(level)
