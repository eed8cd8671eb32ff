"""The snapshot store: a new delivery replaces its period, only changed cells come back, state survives restarts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from agent.decoders.billing.base import SIGNALS
from agent.snapshots import SnapshotStore, delta_observations


def _t(rows: list[tuple[int, str, float]]) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([r[0] for r in rows], pa.int64()),
            "service": [r[1] for r in rows],
            SIGNALS[0]: [r[2] for r in rows],
            SIGNALS[1]: [0.0] * len(rows),
            SIGNALS[2]: [0.0] * len(rows),
        }
    )


def test_a_new_delivery_replaces_the_period_and_returns_only_changes(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap")
    key = SnapshotStore.key("cur", "2026-10")
    first = store.apply(key, "exec-1", _t([(0, "ec2", 10.0), (0, "s3", 1.0), (3600, "ec2", 12.0)]))
    assert first.num_rows == 3  # all new
    # Restated: ec2@0 10 → 15; s3@0 withdrawn; ec2@3600 unchanged (regrouped sums may differ in the last bits).
    delta = store.apply(key, "exec-2", _t([(0, "ec2", 15.0), (3600, "ec2", 12.0 + 1e-13), (7200, "ec2", 9.0)]))
    got = {(o.ts, dict(o.dims)["service"]): o.values[0] for o in delta_observations(delta)}
    assert got == {(0.0, "ec2"): 5.0, (0.0, "s3"): -1.0, (7200.0, "ec2"): 9.0}
    # Whole values of a window, across everything stored.
    cells = store.cells(0, 3600)
    assert {dict(c.dims)["service"]: v[0] for c, v in cells.items()} == {"ec2": 15.0}
    # Persisted at a checkpoint, named in the state; a new store restores the same tables.
    manifest = store.persist()
    store.collect_garbage(manifest)
    assert len(list((tmp_path / "snap").glob("*.parquet"))) == 1
    again = SnapshotStore(tmp_path / "snap")
    again.restore(manifest)
    assert again.deliveries == {key: "exec-2"}
    assert again.tables[key].equals(store.tables[key])
    assert again.apply(key, "exec-2", store.tables[key]).num_rows == 0


def test_old_periods_are_dropped_per_source() -> None:
    store = SnapshotStore(None, keep_periods=2)
    for p in ("2026-08", "2026-09", "2026-10"):
        store.apply(SnapshotStore.key("cur", p), p, _t([(0, "ec2", 1.0)]))
    store.apply(SnapshotStore.key("azure", "x"), "r", _t([(0, "vm", 1.0)]))
    assert sorted(store.tables) == sorted(
        [SnapshotStore.key("cur", "2026-09"), SnapshotStore.key("cur", "2026-10"), SnapshotStore.key("azure", "x")]
    )
