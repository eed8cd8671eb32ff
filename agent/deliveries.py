"""Applying a billing delivery: the changed cells go into open buckets, closed windows are scored again.

A mixin of :class:`~agent.pipeline.Agent` (it holds the clocks, the snapshot store and the runners); the pipeline
thread calls :meth:`BillingDeliveries._apply_snapshot` for each ``snapshot`` batch.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from agent.aggregate import Aggregator
from agent.alerts import Point
from agent.detect import DetectorRunner
from agent.model import Observation
from agent.sources.base import Batch, Source
from agent.telemetry import Telemetry

if TYPE_CHECKING:
    from agent.snapshots import SnapshotStore

log = logging.getLogger("agent")


class BillingDeliveries:
    telemetry: Telemetry
    records_in: int
    snapshots: SnapshotStore
    bucket: float
    billing: Aggregator
    clocks: list[tuple[Aggregator, dict[str, DetectorRunner]]]
    _stage: str

    if TYPE_CHECKING:  # the Agent's

        def _seal(self, force_all: bool = False) -> None: ...

        def publish(self, closed: list[tuple[str, list[Point], list[dict[str, Any]]]]) -> None: ...

    def _apply_snapshot(self, src: Source, comp: str, stream: str, batch: Batch) -> None:
        """Changed cells of a new delivery: open buckets take the deltas, closed windows are re-scored."""
        from agent.snapshots import SnapshotStore, delta_observations, restatement, untagged

        d = batch.payload
        self.telemetry.received.labels(component=comp).inc(d.rows)
        self.records_in += d.rows
        key = SnapshotStore.key(comp, d.key)
        previous = self.snapshots.newest(key)
        delta = self.snapshots.apply(key, d.delivery, d.table)
        self._stage = "detect"  # the delivery is in force from here: an error after this does not refuse it
        self.telemetry.deliveries.labels(component=comp, outcome="applied" if delta.num_rows else "unchanged").inc()
        # One line per delivery that restates hours its period's previous delivery covered; the same in metrics.
        rs = restatement(delta, previous, self.bucket)
        if rs.hours:
            self.telemetry.restated_hours.labels(component=comp).inc(rs.hours)
            for v in rs.per_day.values():
                self.telemetry.restated_usd.labels(component=comp, direction="increase" if v >= 0 else "decrease").inc(
                    abs(v)
                )
            log.info(
                "%s: delivery %s of %s restates %g hour%s; net change per day: %s",
                comp,
                d.delivery,
                d.key,
                rs.hours,
                "" if rs.hours == 1 else "s",
                rs.describe(),
            )
        tags = getattr(getattr(src.decoder, "cfg", None), "tags", None) or {}
        for tag in untagged(d.table, tags):  # once per delivery: a tag column absent (or a key never set)
            self.telemetry.untagged.labels(component=comp, tag=tag).inc()
            log.warning(
                "%s: no line item of delivery %s (%s) carries tag %r for dimension %s (its column is absent from "
                "the files, or the key is never set): every cell is %s=(untagged)",
                comp,
                d.delivery,
                d.key,
                tags[tag],
                tag,
                tag,
            )
        obs = delta_observations(delta)
        self.telemetry.observations.labels(component=comp).inc(len(obs))
        agg = self.billing
        before = agg.source_max.get(stream, -math.inf)
        sealed = agg.sealed_until
        agg.add(stream, [o for o in obs if o[0] >= sealed], origin=comp)
        # A complete delivery has no stragglers: event time stands at its newest bucket's end, less the
        # settle time (the newest hours of a bill are still filling in), with no lateness to wait for.
        end = d.coverage_end + self.bucket - d.settle_seconds + agg.lateness
        agg.source_max[stream] = max(before, end)
        restated = [o for o in obs if o[0] < sealed]
        if restated:
            self.telemetry.restated.labels(component=comp).inc(len(restated))
            self._restate(restated)
        if batch.position is not None:
            src.commit(*batch.position)
        self._seal()

    def _restate(self, obs: list[Observation]) -> None:
        """Deltas for sealed buckets: windows still open add them; closed windows are scored again whole."""
        summed = Aggregator(self.bucket, 0.0)  # the deltas per bucket and cell (nothing is sealed in it)
        summed.add("restated", obs)
        buckets = summed.buckets
        closed = []
        for name, r in self.clocks[1][1].items():
            if not any(r.route(c) is not None for cells in buckets.values() for c in cells):
                continue  # the restated cells are not this detector's signal
            todo = set()
            for b, cells in buckets.items():
                w = b - b % r.window
                if w + r.window > r.closed_until:
                    r.add_bucket(b, cells)  # the window is still open: deltas add up to the new value
                else:
                    todo.add(w)
            points: list[Point] = []
            events: list[dict[str, Any]] = []
            for w in sorted(todo):
                acc: dict[Any, list[Any]] = {}
                r.rollup(self.snapshots.cells(w, w + r.window), acc, capped=False)
                p, e = r.restate(w, acc)
                points += p
                events += e
            if todo:
                events += r.settle_restated()
            closed.append((name, points, coalesce(events)))
        self.publish(closed)


def coalesce(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A delivery's documents, one update per alert: consecutive firing revisions of one alert (one per restated
    hour) are its last one; a resolution follows the firing it ends. (A day restated is one update, not 24.)"""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        docs = by_id.setdefault(e["id"], [])
        if docs and e["status"] == "firing" and docs[-1]["status"] == "firing":
            docs[-1] = e
        else:
            docs.append(e)
    return [e for docs in by_id.values() for e in docs]
