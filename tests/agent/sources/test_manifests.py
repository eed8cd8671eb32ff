"""Export manifests of either cloud, parsed one way; one scope's actual and amortized exports read once."""

from __future__ import annotations

import orjson
import pytest

from agent.sources.manifests import ManifestDoc, one_cost_view, parse_manifest


def azure(kind: str, export: str, scope: str = "/subscriptions/AB-12", start: str = "2024-09-01") -> ManifestDoc:
    doc = {
        "exportConfig": {
            "exportName": export,
            "type": kind,
            "resourceId": f"{scope}/providers/Microsoft.CostManagement/exports/{export}",
        },
        "runInfo": {
            "runId": f"{export}-run",
            "startDate": f"{start}T00:00:00",
            "submittedTime": "2024-09-19T06:00:00Z",
        },
        "blobCount": 1,
        "blobs": [{"blobName": f"{export}/part_0_0001.csv", "byteCount": 10}],
    }
    got = parse_manifest(orjson.dumps(doc))
    assert got is not None
    return got


def test_each_clouds_manifest_and_what_is_not_one() -> None:
    cur = parse_manifest(b'{"assemblyId": "a1", "reportKeys": ["cur/20241001-20241101/a1/cur-1.csv.gz"]}')
    assert cur is not None and (cur.delivery, cur.files) == ("a1", [("cur/20241001-20241101/a1/cur-1.csv.gz", None)])
    d = azure("ActualCost", "daily-actual")
    assert (d.delivery, d.export, d.start, d.cost_type, d.scope, d.submitted, d.complete) == (
        "daily-actual-run",
        "daily-actual",
        "2024-09-01",
        "ActualCost",
        "/subscriptions/ab-12",
        "2024-09-19T06:00:00Z",
        True,
    )
    half = parse_manifest(b'{"blobCount": 2, "blobs": [{"blobName": "p1.csv"}]}')
    assert half is not None and not half.complete
    assert parse_manifest(b'{"something": "else"}') is None
    for bad in (b"[1]", b'{"blobs": [', b'{"blobs": [{"byteCount": 3}]}'):
        with pytest.raises((ValueError, KeyError)):
            parse_manifest(bad)


def test_one_scopes_actual_and_amortized_exports_are_read_once() -> None:
    actual, amortized = azure("ActualCost", "act"), azure("AmortizedCost", "amo")
    items = [("amo/2024-09-01", amortized), ("act/2024-09-01", actual)]
    assert one_cost_view(items) == {"amo/2024-09-01": "act/2024-09-01"}  # the invoice's view by default
    # The view already counted stays the one read (switching would count its charges twice until a restart).
    assert one_cost_view(items, {"amo/2024-09-01"}) == {"act/2024-09-01": "amo/2024-09-01"}
    # Another scope, another period, or a FOCUS export (both views in its columns) is no double.
    others = [
        ("amo-b", azure("AmortizedCost", "amo-b", scope="/subscriptions/cd-34")),
        ("amo-oct", azure("AmortizedCost", "amo-oct", start="2024-10-01")),
        ("focus", azure("FocusCost", "focus")),
        ("cur", ManifestDoc("x", [("k", None)])),
    ]
    assert one_cost_view([("act/2024-09-01", actual), *others]) == {}
