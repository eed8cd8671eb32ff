"""Billing exports are snapshots: replacing a period's previous delivery (reading one is
:mod:`agent.decoders.billing.delivery`).

:class:`SnapshotStore` keeps, per (source, billing period), the table of the newest applied
delivery. :meth:`SnapshotStore.apply` replaces it and returns only the cells whose value changed
(new minus old, per bucket and dimensions, computed with a columnar outer join): new hours are
scored, restated hours are re-scored, untouched hours are left alone. With a directory, the
tables are written as Parquet files at each checkpoint and named in the checkpointed state,
so what was processed survives a restart together with the detectors that saw it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agent.aggregate import Cells
from agent.decoders.billing.base import (
    SIGNALS,
    UNTAGGED,
    observations,
)
from agent.model import Observation

log = logging.getLogger(__name__)


class SnapshotStore:
    """Per (source, billing period): the newest applied delivery, and what changed with each new one."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, keep_periods: int = 3):
        self.dir = Path(directory) if directory is not None else None
        self.keep_periods = keep_periods
        self.tables: dict[str, pa.Table] = {}
        self.deliveries: dict[str, str] = {}
        self.files: dict[str, str] = {}  # key → Parquet file holding its table (persisted ones)
        self._dirty: set[str] = set()

    @staticmethod
    def key(source: str, period: str) -> str:
        return f"{source}\x1f{period}"

    def apply(self, key: str, delivery: str, table: pa.Table) -> pa.Table:
        """Replace ``key``'s table; return the changed cells as deltas (new − old, same columns)."""
        old = self.tables.get(key)
        self.tables[key] = table
        self.deliveries[key] = delivery
        self._dirty.add(key)
        self._expire(key)
        if old is None or old.num_rows == 0:
            return table
        if old.schema != table.schema:  # dimensions changed (config): withdraw all old cells, add all new ones
            return pa.concat_tables([table, _negate(old)], promote_options="default")
        keys = [c for c in table.column_names if c not in SIGNALS]
        joined = table.join(old, keys=keys, join_type="full outer", right_suffix="__old", coalesce_keys=True)
        cols: dict[str, Any] = {k: joined.column(k) for k in keys}
        changed = None
        for s in SIGNALS:
            new = joined.column(s).fill_null(0.0)
            prev = joined.column(s + "__old").fill_null(0.0)
            d = pc.subtract(new, prev)
            cols[s] = d
            tol = pc.add(
                pc.multiply(pc.abs(new), 1e-9), 1e-9
            )  # sums regrouped in another order differ in the last bits
            c = pc.greater(pc.abs(d), tol)
            changed = c if changed is None else pc.or_(changed, c)
        out = pa.table(cols).select(table.column_names)
        return out.filter(changed)

    def newest(self, key: str) -> float:
        """Start of the newest bucket ``key``'s applied delivery has (``-inf`` when none)."""
        table = self.tables.get(key)
        if table is None or table.num_rows == 0:
            return float("-inf")
        return float(pc.max(table.column("ts")).as_py())

    def _expire(self, key: str) -> None:
        source = key.split("\x1f", 1)[0]
        mine = sorted(k for k in self.tables if k.split("\x1f", 1)[0] == source)
        for k in mine[: max(0, len(mine) - self.keep_periods)]:
            self.tables.pop(k, None)
            self.deliveries.pop(k, None)
            self._dirty.discard(k)
            self.files.pop(k, None)

    def cells(self, start: float, end: float) -> Cells:
        """Every stored cell with a bucket in ``[start, end)``, summed (a window's whole, for re-scoring)."""
        out: Cells = {}
        for table in self.tables.values():
            ts = table.column("ts")
            part = table.filter(pc.and_(pc.greater_equal(ts, int(start)), pc.less(ts, int(end))))
            if part.num_rows == 0:
                continue
            keys = [c for c in table.column_names if c not in SIGNALS]
            for ob in observations(part, keys):
                cur = out.get(ob.cell)
                if cur is None:
                    out[ob.cell] = list(ob.values)
                else:
                    for i, v in enumerate(ob.values):
                        cur[i] += v
        return out

    # -- persistence -----------------------------------------------------------------------
    def persist(self) -> dict[str, dict[str, str]]:
        """Write changed tables (atomically, one file per delivery); return the manifest for the state."""
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            for key in sorted(self._dirty):
                name = f"{_digest(key)}-{_digest(self.deliveries[key])}.parquet"
                fd, tmp = tempfile.mkstemp(prefix=".snap-", dir=self.dir)
                os.close(fd)
                try:
                    pq.write_table(self.tables[key], tmp, compression="zstd")
                    with open(tmp, "rb") as fh:
                        os.fsync(fh.fileno())
                    os.replace(tmp, self.dir / name)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                self.files[key] = name
            self._dirty.clear()
        return {k: {"delivery": self.deliveries[k], "file": self.files.get(k, "")} for k in self.tables}

    def collect_garbage(self, manifest: dict[str, dict[str, str]]) -> None:
        """After the state naming ``manifest`` was saved: delete files it does not name."""
        if self.dir is None or not self.dir.is_dir():
            return
        keep = {m["file"] for m in manifest.values()}
        for f in self.dir.glob("*.parquet"):
            if f.name not in keep:
                f.unlink(missing_ok=True)

    def restore(self, manifest: dict[str, dict[str, str]]) -> None:
        for key, m in manifest.items():
            if self.dir is None or not m.get("file"):
                continue
            try:
                self.tables[key] = pq.read_table(self.dir / m["file"])
            except (OSError, pa.ArrowInvalid) as exc:
                # The period is read again in full from its next delivery (its cells count as new).
                log.error("snapshot of %s unreadable (%s): its next delivery is applied as new", key, exc)
                continue
            self.deliveries[key] = m["delivery"]
            self.files[key] = m["file"]


@dataclass
class Restatement:
    """What a delivery changed of the hours its period's previous delivery already covered."""

    hours: float  # restated hours (buckets with a changed cell, in hours)
    per_day: dict[str, float]  # UTC day → net change of the cost, in USD

    def describe(self) -> str:
        return ", ".join(f"{day} {'+' if v >= 0 else '-'}${abs(v):,.2f}" for day, v in sorted(self.per_day.items()))


def restatement(delta: pa.Table, previous_newest: float, bucket_seconds: float) -> Restatement:
    """The restated part of ``delta`` (what :meth:`SnapshotStore.apply` returned): its cells at or before the
    previous delivery's newest bucket — new hours after it are not restatements."""
    if delta.num_rows == 0 or not math.isfinite(previous_newest):
        return Restatement(0.0, {})
    part = delta.filter(pc.less_equal(delta.column("ts"), int(previous_newest)))
    if part.num_rows == 0:
        return Restatement(0.0, {})
    hours = len(pc.unique(part.column("ts"))) * bucket_seconds / 3600
    day = pc.multiply(pc.divide(part.column("ts"), 86400), 86400)
    sums = pa.table({"day": day, "usd": part.column(SIGNALS[0])}).group_by("day").aggregate([("usd", "sum")])
    per_day = {
        time.strftime("%Y-%m-%d", time.gmtime(d)): float(v)
        for d, v in zip(sums.column("day").to_pylist(), sums.column("usd_sum").to_pylist(), strict=True)
    }
    return Restatement(hours, per_day)


def untagged(table: pa.Table, tags: Iterable[str]) -> list[str]:
    """Tag dimensions no cell of a delivery carries (its tag column absent from the files, or the key never set)."""
    if table.num_rows == 0:
        return []
    return [t for t in tags if t in table.column_names and pc.all(pc.equal(table.column(t), UNTAGGED)).as_py()]


def _negate(table: pa.Table) -> pa.Table:
    cols = {c: (pc.negate(table.column(c)) if c in SIGNALS else table.column(c)) for c in table.column_names}
    return pa.table(cols)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def delta_observations(table: pa.Table) -> list[Observation]:
    keys = [c for c in table.column_names if c not in SIGNALS]
    return observations(table, keys)
