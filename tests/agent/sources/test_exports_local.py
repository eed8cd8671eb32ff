"""Local copies of a billing export (a backtest's input, a watched folder): each period's newest delivery, its split
parts together; manifests are metadata; plain files are each a delivery of their own."""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import orjson

from agent.sources.exports import local_deliveries
from agent.sources.file import list_files
from tests.agent.test_billing_deliveries import COLS


def write_cur(path: Path, hours: int, cost: float = 10.0, mtime: float | None = None, first_hour: int = 0) -> int:
    """A CUR 2.0 CSV of one EC2 line item an hour from 2026-10-01 (``first_hour`` on); returns its rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLS)
        for h in range(first_hour, first_hour + hours):
            t = (start + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")
            w.writerow([t, f"{cost}", "Usage", "111122223333", "AmazonEC2", "BoxUsage:m5.large", "Hrs", "1", "USD"])
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return hours


def write_json(path: Path, doc: object, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc))
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def cur2_export(root: Path, with_manifests: bool = True) -> tuple[list[Path], list[Path]]:
    """Two executions of 2026-10 (exec1: one file, modified last; exec2: two split parts, its manifest newer).
    Returns (exec1's files, exec2's files)."""
    data = root / "cur2/finops-cur/data/BILLING_PERIOD=2026-10"
    meta = root / "cur2/finops-cur/metadata/BILLING_PERIOD=2026-10"
    old = [data / "exec1/finops-cur-00001.csv"]
    new = [data / "exec2/finops-cur-00001.csv", data / "exec2/finops-cur-00002.csv"]
    write_cur(old[0], 24, mtime=3_000_000)
    write_cur(new[0], 24, mtime=2_000_000)
    write_cur(new[1], 12, first_hour=24, mtime=2_000_000)
    if with_manifests:
        for ex, files, when in (("exec1", old, 1_000_000), ("exec2", new, 4_000_000)):
            uris = [f"s3://acme/cur2/finops-cur/data/BILLING_PERIOD=2026-10/{ex}/{f.name}" for f in files]
            doc = {"executionId": ex, "dataFiles": uris, "reportName": "finops-cur"}
            write_json(meta / ex / "finops-cur-Manifest.json", doc, mtime=when)
    return old, new


def test_a_periods_newest_manifest_names_the_delivery_read_whole(tmp_path: Path) -> None:
    """exec1's file was modified last, but exec2's manifest is the newest: exec2 is read, its two parts together."""
    old, new = cur2_export(tmp_path)
    plan = local_deliveries(list_files(str(tmp_path)), [str(tmp_path)])
    assert [(d.delivery, d.files) for d in plan.deliveries] == [("exec2", [str(f) for f in new])]
    assert plan.deliveries[0].period.endswith("data/BILLING_PERIOD=2026-10")
    assert len(plan.manifests) == 2 and plan.singles == []
    assert len(plan.notes) == 1 and "newest delivery, exec2 (2 files; its newest manifest" in plan.notes[0]
    assert plan.notes[0].endswith("set aside 1 file of older deliveries (in exec1)")


def test_without_manifests_the_files_modified_last_win(tmp_path: Path) -> None:
    """The data folder alone (or synced without its period folder, as the README's `aws s3 sync`): no manifest,
    so the execution whose files were modified last is read, and the note says so."""
    old, _new = cur2_export(tmp_path, with_manifests=False)
    data = tmp_path / "cur2/finops-cur/data"
    plan = local_deliveries(list_files(str(data)), [str(data)])
    assert [(d.delivery, d.files) for d in plan.deliveries] == [("exec1", [str(old[0])])]
    assert "no manifest: the files modified last" in plan.notes[0] and "(in exec2)" in plan.notes[0]
    synced = data / "BILLING_PERIOD=2026-10"
    os.rename(synced, tmp_path / "cur")
    plan = local_deliveries(list_files(str(tmp_path / "cur")), [str(tmp_path / "cur")])
    assert [(d.period, d.delivery) for d in plan.deliveries] == [(str(tmp_path / "cur"), "exec1")]
    assert plan.singles == [] and len(plan.notes) == 1


def test_an_azure_run_with_the_newest_submitted_time_wins_and_per_run_files_are_deliveries(tmp_path: Path) -> None:
    """Cost Management: `<export>/<date range>/<run id>/` with manifest.json; the newer `submittedTime` wins (not the
    files' mtime). Older exports write one file per run straight into the date range folder: without a manifest
    the newest is read, the other set aside (and said)."""
    rng = tmp_path / "daily/20261001-20261031"
    for run, when, mtime in (("run-a", "2026-10-20T06:00:00Z", 5_000_000), ("run-b", "2026-10-21T06:00:00Z", 1)):
        write_cur(rng / run / "part_0_0001.csv", 24, mtime=mtime)
        write_cur(rng / run / "part_1_0001.csv", 24, first_hour=24, mtime=mtime)
        blobs = [
            {"blobName": f"daily/20261001-20261031/{run}/{n}", "byteCount": 1}
            for n in ("part_0_0001.csv", "part_1_0001.csv")
        ]
        write_json(rng / run / "manifest.json", {"runInfo": {"runId": run, "submittedTime": when}, "blobs": blobs})
    plan = local_deliveries(list_files(str(tmp_path)), [str(tmp_path)])
    assert [(d.delivery, len(d.files)) for d in plan.deliveries] == [("run-b", 2)]

    legacy = tmp_path / "legacy/20261001-20261031"
    write_cur(legacy / "daily_3f2a9c1e-77d0-4c39-9d7b-0a1b2c3d4e5f.csv", 24, mtime=1_000_000)
    write_cur(legacy / "daily_8c1e6a43-1b2d-4e5f-a6b7-c8d9e0f1a2b3.csv", 48, mtime=2_000_000)
    plan = local_deliveries(list_files(str(tmp_path / "legacy")), [str(tmp_path / "legacy")])
    assert [Path(f).name for d in plan.deliveries for f in d.files] == [
        "daily_8c1e6a43-1b2d-4e5f-a6b7-c8d9e0f1a2b3.csv"
    ]
    assert "set aside 1 file of older deliveries" in plan.notes[0]


def test_one_scopes_actual_and_amortized_exports_copied_together_are_read_once(tmp_path: Path) -> None:
    """Both cost views of one subscription (the same charges twice): the ActualCost export is read, and the note
    says why the other is not; another subscription's amortized export is read."""

    def export(name: str, kind: str, sub: str = "ab-12") -> None:
        run = tmp_path / name / "20261001-20261031" / f"{name}-1"  # (run ids are GUIDs)
        write_cur(run / "part_0_0001.csv", 24)
        doc = {
            "exportConfig": {
                "exportName": name,
                "type": kind,
                "resourceId": f"/subscriptions/{sub}/providers/Microsoft.CostManagement/exports/{name}",
            },
            "runInfo": {"runId": f"{name}-1", "startDate": "2026-10-01T00:00:00", "submittedTime": "2026-10-20T06:00Z"},
            "blobs": [{"blobName": f"{name}/20261001-20261031/{name}-1/part_0_0001.csv", "byteCount": 1}],
        }
        write_json(run / "manifest.json", doc)

    export("actual", "ActualCost")
    export("amortized", "AmortizedCost")
    export("other-amortized", "AmortizedCost", sub="cd-34")
    plan = local_deliveries(list_files(str(tmp_path)), [str(tmp_path)])
    assert sorted(d.delivery for d in plan.deliveries) == ["actual-1", "other-amortized-1"]
    assert len(plan.notes) == 1 and "amortized/20261001-20261031: not read — a AmortizedCost export" in plan.notes[0]
    assert "the two list the same charges" in plan.notes[0]


def test_plain_files_are_each_a_delivery_of_their_own(tmp_path: Path) -> None:
    """No period folder, no executions: split parts (part-00000, part-00001), monthly files, several accounts' bills
    are all read (summed); monthly subfolders are periods, not executions; nothing is set aside."""
    for name in (
        "split/part-00000.csv",
        "split/part-00001.csv",
        "aws.csv",
        "azure.csv",
        "2026-09/a.csv",
        "2026-10/a.csv",
    ):
        write_cur(tmp_path / name, 2)
    files = list_files(str(tmp_path))
    plan = local_deliveries(files, [str(tmp_path)])
    assert plan.deliveries == [] and plan.notes == [] and plan.singles == files
