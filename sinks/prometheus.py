"""Prometheus sink: ``/metrics`` (anomaly outputs per series + the agent's own metrics).

``/metrics`` is served on the agent's HTTP server (:mod:`agent.server`, with ``/healthz`` and ``/readyz``), or
on an address of its own when ``listen_address`` / ``port`` are set and differ from the agent's.

Anomaly families (gauges, latest closed window per series):
``finops_anomaly_score``, ``finops_observed_value``, ``finops_expected_value``,
``finops_expected_lower``, ``finops_expected_upper``, ``finops_impact_usd``,
``finops_alerts_firing`` (also ``silenced``: "true" while a silence keeps it from paging), labelled ``detector``,
``signal``, ``unit`` (what the values count:
``usd``, ``usd_per_1k_tokens``, ``gpu_hours``, ``ratio``...; ``finops_impact_usd`` is always in
dollars) and the detector's ``group_by`` dimensions. At most ``max_series`` series are exported
(firing series first); the rest are counted in ``finops_agent_metric_series_capped``.

After a restart, :meth:`PrometheusSink.on_restore` shows every restored series' latest point and
its firing alerts at once, so a rule on ``finops_alerts_firing`` does not resolve and fire again
on every restart.
"""

from __future__ import annotations

import math
import os
import re
import threading
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from pydantic import Field

from agent.registry import ComponentConfig, register
from agent.server import DEFAULT_ADDRESS, HttpServer, Route
from sinks.base import Sink

_LABEL_OK = re.compile(r"[^a-zA-Z0-9_]")


class PrometheusConfig(ComponentConfig):
    type: Literal["prometheus"]
    listen_address: str | None = Field(
        None,
        description="default: the agent's http.listen_address (with only a port: $FINOPS_METRICS_ADDRESS, "
        "$FINOPS_HTTP_ADDRESS or 127.0.0.1)",
    )
    port: int | None = Field(None, ge=0, le=65535, description="default: the agent's http.port; 0 picks a free port")
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
        self.gaps: set[tuple[str, Any]] = set()  # series in a data gap (their own alerts, apart from spend)
        self.silenced: set[tuple[str, Any]] = set()  # firing series a silence matches (not notified)
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
        target = self.gaps if doc.get("kind") == "data_gap" else self.firing
        with self.lock:
            if doc["status"] == "firing":
                target.add(key)
            else:
                target.discard(key)
            if doc["status"] == "firing" and doc.get("silenced") and target is self.firing:
                self.silenced.add(key)
            elif target is self.firing:
                self.silenced.discard(key)

    def collect(self) -> Any:
        with self.lock:
            keys = sorted(self.latest, key=lambda k: (k not in self.firing and k not in self.gaps, k[0]))
            chosen = keys[: self.max_series]
            hidden = len(keys) - len(chosen) + self.capped
            pts = [(k, self.latest[k]) for k in chosen]
            firing = set(self.firing)
            gaps = set(self.gaps)
            silenced = set(self.silenced)
        fams = {
            "score": GaugeMetricFamily("finops_anomaly_score", "Anomaly score of the latest closed window"),
            "observed": GaugeMetricFamily("finops_observed_value", "Observed value of the latest closed window"),
            "expected": GaugeMetricFamily("finops_expected_value", "Expected value of the latest closed window"),
            "lower": GaugeMetricFamily("finops_expected_lower", "Lower bound of the expected band"),
            "upper": GaugeMetricFamily("finops_expected_upper", "Upper bound of the expected band"),
            "firing": GaugeMetricFamily("finops_alerts_firing", "1 while an alert is firing for the series"),
            "gap": GaugeMetricFamily("finops_data_gap", "1 while the series is in a data gap (stopped reporting)"),
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
                "gap": 1.0 if key in gaps else 0.0,
                "impact": p.impact_usd if p.impact_usd is not None else math.nan,
            }
            for name, fam in fams.items():
                v = vals[name]
                if v is None or (isinstance(v, float) and math.isinf(v)):
                    continue
                if name == "firing":  # silenced="true": firing, but a silence keeps it from paging
                    fam.samples.append(
                        Sample(fam.name, {**labels, "silenced": "true" if key in silenced else "false"}, float(v), None)
                    )
                    continue
                fam.samples.append(Sample(fam.name, labels, float(v), None))
        yield from fams.values()
        capped = GaugeMetricFamily(
            "finops_agent_metric_series_capped", "Series not exported because of the cardinality cap", value=hidden
        )
        yield capped


@register("sink", "prometheus", PrometheusConfig)
class PrometheusSink(Sink):
    cfg: PrometheusConfig

    def __init__(self, cfg: PrometheusConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.collector = AnomalyCollector(cfg.max_series)
        self.telemetry.registry.register(self.collector)
        self.server: HttpServer | None = None

    @property
    def port(self) -> int:
        """The port ``/metrics`` is served on."""
        if self.server is not None:
            return self.server.port
        return self.cfg.port if self.cfg.port is not None else DEFAULT_ADDRESS[1]

    def http_routes(self) -> dict[str, Route]:
        return {"/metrics": lambda: (200, generate_latest(self.telemetry.registry), CONTENT_TYPE_LATEST)}

    def http_address(self) -> tuple[str, int] | None:
        if self.cfg.listen_address is None and self.cfg.port is None:
            return None
        # An address not given is the environment's (the image and the chart set 0.0.0.0), else loopback.
        env = os.environ.get("FINOPS_METRICS_ADDRESS") or os.environ.get("FINOPS_HTTP_ADDRESS")
        return (
            self.cfg.listen_address or env or DEFAULT_ADDRESS[0],
            DEFAULT_ADDRESS[1] if self.cfg.port is None else self.cfg.port,
        )

    def served_by(self, server: HttpServer) -> None:
        self.server = server

    def on_points(self, points: list[Any]) -> None:
        self.collector.update(points)

    def on_alert(self, doc: dict[str, Any]) -> None:
        self.collector.alert(doc)

    def on_restore(self, points: list[Any], firing: list[dict[str, Any]]) -> None:
        """State restored at start: each series' latest point and the alerts still firing."""
        self.collector.update(points)
        for doc in firing:
            self.collector.alert(doc)
