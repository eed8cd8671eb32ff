"""Prometheus sink: ``/metrics`` (anomaly outputs per series + the agent's own metrics), ``/healthz``, ``/readyz``.

Anomaly families (gauges, latest closed window per series):
``finops_anomaly_score``, ``finops_observed_value``, ``finops_expected_value``,
``finops_expected_lower``, ``finops_expected_upper``, ``finops_impact_usd``,
``finops_alerts_firing``, labelled ``detector``, ``signal``, ``unit`` (what the values count:
``usd``, ``usd_per_1k_tokens``, ``gpu_hours``, ``ratio``...; ``finops_impact_usd`` is always in
dollars) and the detector's ``group_by`` dimensions. At most ``max_series`` series are exported
(firing series first); the rest are counted in ``finops_agent_metric_series_capped``.

After a restart, :meth:`PrometheusSink.on_restore` shows every restored series' latest point and
its firing alerts at once, so a rule on ``finops_alerts_firing`` does not resolve and fire again
on every restart.
"""

from __future__ import annotations

import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from pydantic import Field

from agent.registry import ComponentConfig, register
from sinks.base import Sink

_LABEL_OK = re.compile(r"[^a-zA-Z0-9_]")


class PrometheusConfig(ComponentConfig):
    type: Literal["prometheus"]
    listen_address: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535, description="0 picks a free port")
    max_series: int = Field(1000, ge=1)


def _label(name: str) -> str:
    n = _LABEL_OK.sub("_", name)
    return n if not n[:1].isdigit() else "_" + n


class AnomalyCollector(Collector):
    """Yields fresh metric families from the latest point of each series at every scrape."""

    def __init__(self, max_series: int):
        self.max_series = max_series
        self.latest: dict[tuple[str, Any], Any] = {}
        self.firing: set[tuple[str, Any]] = set()
        self.lock = threading.Lock()
        self.capped = 0

    def update(self, points: list[Any]) -> None:
        with self.lock:
            for p in points:
                key = (p.detector, p.series)
                if key not in self.latest and len(self.latest) >= self.max_series * 4:
                    self.capped += 1
                    continue
                self.latest[key] = p

    def alert(self, doc: dict[str, Any]) -> None:
        key = (doc["detector"], tuple(doc["series"].items()))
        with self.lock:
            if doc["status"] == "firing":
                self.firing.add(key)
            else:
                self.firing.discard(key)

    def collect(self) -> Any:
        with self.lock:
            keys = sorted(self.latest, key=lambda k: (k not in self.firing, k[0]))
            chosen = keys[: self.max_series]
            hidden = len(keys) - len(chosen) + self.capped
            pts = [(k, self.latest[k]) for k in chosen]
            firing = set(self.firing)
        fams = {
            "score": GaugeMetricFamily("finops_anomaly_score", "Anomaly score of the latest closed window"),
            "observed": GaugeMetricFamily("finops_observed_value", "Observed value of the latest closed window"),
            "expected": GaugeMetricFamily("finops_expected_value", "Expected value of the latest closed window"),
            "lower": GaugeMetricFamily("finops_expected_lower", "Lower bound of the expected band"),
            "upper": GaugeMetricFamily("finops_expected_upper", "Upper bound of the expected band"),
            "firing": GaugeMetricFamily("finops_alerts_firing", "1 while an alert is firing for the series"),
            "impact": GaugeMetricFamily("finops_impact_usd", "Dollar impact of the latest closed window"),
        }
        for key, p in pts:
            labels = {"detector": p.detector, "signal": p.signal, "unit": p.unit}
            for k, v in p.series:
                labels.setdefault(_label(k), v)  # (a dimension named like a fixed label does not replace it)
            vals = {
                "score": p.score,
                "observed": p.observed,
                "expected": p.expected,
                "lower": p.lower,
                "upper": p.upper,
                "firing": 1.0 if key in firing else 0.0,
                "impact": p.impact_usd if p.impact_usd is not None else math.nan,
            }
            for name, fam in fams.items():
                v = vals[name]
                if v is None or (isinstance(v, float) and math.isinf(v)):
                    continue
                fam.samples.append(Sample(fam.name, labels, float(v), None))
        yield from fams.values()
        capped = GaugeMetricFamily(
            "finops_agent_metric_series_capped", "Series not exported because of the cardinality cap", value=hidden
        )
        yield capped


class _Handler(BaseHTTPRequestHandler):
    sink: PrometheusSink

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = generate_latest(self.sink.telemetry.registry)
            self._send(200, body, CONTENT_TYPE_LATEST)
        elif path == "/healthz":  # alive: the pipeline runs (also while it waits out a broker outage)
            ok = self.sink.health is None or self.sink.health.alive()
            self._send(200 if ok else 503, b"ok\n" if ok else b"pipeline stopped\n")
        elif path == "/readyz":  # ready: consuming and checkpointing; else why not, e.g. "cannot checkpoint for 47 s"
            why = None if self.sink.health is None else self.sink.health.not_ready()
            self._send(200 if why is None else 503, b"ready\n" if why is None else f"not ready: {why}\n".encode())
        else:
            self._send(404, b"not found\n")

    def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None


@register("sink", "prometheus", PrometheusConfig)
class PrometheusSink(Sink):
    def __init__(self, cfg: PrometheusConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.collector = AnomalyCollector(cfg.max_series)
        self.telemetry.registry.register(self.collector)
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server else self.cfg.port

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"sink": self})
        self.server = ThreadingHTTPServer((self.cfg.listen_address, self.cfg.port), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"http-{self.name}", daemon=True)
        self._thread.start()

    def on_points(self, points: list[Any]) -> None:
        self.collector.update(points)

    def on_alert(self, doc: dict[str, Any]) -> None:
        self.collector.alert(doc)

    def on_restore(self, points: list[Any], firing: list[dict[str, Any]]) -> None:
        """State restored at start: each series' latest point and the alerts still firing."""
        self.collector.update(points)
        for doc in firing:
            self.collector.alert(doc)

    def stop(self, timeout: float = 5.0) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
