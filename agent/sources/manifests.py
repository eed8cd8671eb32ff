"""Billing export manifests, parsed one way for the ``s3_export`` and ``blob_export`` sources and for local copies.

A manifest names one delivery of an export and its data files:

- AWS Data Exports (``…/metadata/BILLING_PERIOD=YYYY-MM/…Manifest.json``): ``executionId``, ``dataFiles`` (S3 URIs);
- legacy CUR (``…/YYYYMMDD-YYYYMMDD/…-Manifest.json``): ``assemblyId``, ``reportKeys`` (keys);
- Azure Cost Management (``manifest.json`` per run): ``runInfo`` (``runId``, ``submittedTime``, ``startDate``),
  ``exportConfig`` (``exportName``, ``type``: ``ActualCost``, ``AmortizedCost``, ``FocusCost``…, and the export's
  ``resourceId``), ``blobs`` (name and byte count) and ``blobCount``.

**One scope's actual and amortized exports.** Cost Management's ``ActualCost`` and ``AmortizedCost`` exports of a scope
list the same charges (the amortized one spreads reservation and savings plan purchases over the usage they cover):
read together they count every charge twice. :func:`one_cost_view` keeps one of them per scope and period — the one
already applied, else ``ActualCost`` (what the invoice says) — and says which it set aside. A ``FocusCost`` export
carries both views in its columns and is never set aside.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

#: The two Cost Management export types that list the same charges.
ACTUAL, AMORTIZED = "ActualCost", "AmortizedCost"


@dataclass
class ManifestDoc:
    """What a manifest says (empty where it does not say it)."""

    delivery: str = ""  # executionId / assemblyId / runInfo.runId
    files: list[tuple[str, int | None]] = field(default_factory=list)  # as named (URI, key, blob) and bytes if said
    complete: bool = True  # False: blobCount disagrees with the blobs listed (still being written)
    submitted: str = ""  # runInfo.submittedTime as written
    export: str = ""  # exportConfig.exportName
    start: str = ""  # runInfo.startDate's date (YYYY-MM-DD)
    cost_type: str = ""  # exportConfig.type
    scope: str = ""  # the scope the export is defined on (lower case), from exportConfig.resourceId


def json_object(raw: bytes) -> dict[str, Any]:
    """The manifest's JSON object; ValueError when it is not one (half-written, or not a manifest)."""
    doc = orjson.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("manifest is not a JSON object")
    return doc


def parse_manifest(raw: bytes) -> ManifestDoc | None:
    """The manifest in ``raw``; None when it is JSON of no known manifest. Raises ValueError when ``raw`` is not a
    JSON object, and ValueError/KeyError/TypeError when a known manifest is malformed.

    >>> parse_manifest(b'{"executionId": "e1", "dataFiles": ["s3://b/data/x-00001.parquet"]}').files
    [('s3://b/data/x-00001.parquet', None)]
    >>> d = parse_manifest(b'{"exportConfig": {"exportName": "daily", "type": "AmortizedCost", "resourceId":'
    ...     b' "/subscriptions/AB/providers/Microsoft.CostManagement/exports/daily"}, "runInfo": {"runId": "r",'
    ...     b' "startDate": "2024-09-01T00:00:00"}, "blobCount": 1, "blobs": [{"blobName": "p.csv", "byteCount": 9}]}')
    >>> (d.delivery, d.export, d.start, d.cost_type, d.scope, d.files)
    ('r', 'daily', '2024-09-01', 'AmortizedCost', '/subscriptions/ab', [('p.csv', 9)])
    """
    doc = json_object(raw)
    if "dataFiles" in doc:  # Data Exports
        return ManifestDoc(str(doc.get("executionId") or ""), [(str(u), None) for u in doc.get("dataFiles") or []])
    if "reportKeys" in doc:  # legacy CUR
        return ManifestDoc(str(doc.get("assemblyId") or ""), [(str(k), None) for k in doc.get("reportKeys") or []])
    if "blobs" not in doc:
        return None
    run = doc.get("runInfo") or {}
    export = doc.get("exportConfig") or {}
    blobs = doc.get("blobs") or []
    count = doc.get("blobCount")
    files = [(str(b["blobName"]), b.get("byteCount")) for b in blobs]  # (a blob without its name: malformed)
    rid = str(export.get("resourceId") or "").lower()
    return ManifestDoc(
        str(run.get("runId") or ""),
        files,
        count is None or int(count) == len(blobs),
        str(run.get("submittedTime") or ""),
        str(export.get("exportName") or ""),
        str(run.get("startDate") or "")[:10],
        str(export.get("type") or ""),
        rid.split("/providers/microsoft.costmanagement/", 1)[0],
    )


T = TypeVar("T")


def one_cost_view(items: Iterable[tuple[T, ManifestDoc]], applied: set[T] = frozenset()) -> dict[T, T]:  # type: ignore[assignment]
    """Of the deliveries ``items`` (key, manifest), those to set aside because the same scope's other cost view
    (``ActualCost`` / ``AmortizedCost``) of the same period is read: set-aside key → the key read instead. Per scope
    and period start the view read is the one with a key in ``applied`` (already counted), else ``ActualCost``."""
    groups: dict[tuple[str, str], dict[str, list[T]]] = {}
    for key, doc in items:
        if doc.cost_type in (ACTUAL, AMORTIZED) and doc.start:
            groups.setdefault((doc.scope, doc.start), {}).setdefault(doc.cost_type, []).append(key)
    aside: dict[T, T] = {}
    for views in groups.values():
        if len(views) < 2:
            continue
        keep = next((v for v in (ACTUAL, AMORTIZED) if any(k in applied for k in views[v])), ACTUAL)
        other = AMORTIZED if keep == ACTUAL else ACTUAL
        for k in views[other]:
            aside[k] = views[keep][0]
    return aside
