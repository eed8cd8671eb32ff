"""Billing exports in object storage: AWS Data Exports / CUR on S3, Azure Cost Management exports on Blob.

Both sources poll a prefix for *manifests*, the file an export writes after every data file of a
refresh landed, and treat each billing period's newest manifest as one delivery:

- ``s3_export``: Data Exports (CUR 2.0, FOCUS) write
  ``<prefix>/<export>/metadata/BILLING_PERIOD=YYYY-MM/[<execution>/]<export>-Manifest.json`` with
  ``executionId`` and ``dataFiles`` (S3 URIs); legacy CUR writes
  ``<prefix>/<report>/<YYYYMMDD-YYYYMMDD>/[<assembly>/]<report>-Manifest.json`` with ``assemblyId``
  and ``reportKeys``. ``OVERWRITE_REPORT`` rewrites one manifest per period, ``CREATE_NEW_REPORT``
  adds one per execution: either way the newest one wins.
- ``blob_export``: Cost Management writes ``manifest.json`` per run (``runInfo.runId``,
  ``exportConfig``, ``blobs[]`` with byte counts), under a folder per export and date range.

A delivery is applied only when its manifest parses and every data file it lists is there (with
the byte count the manifest says, on Blob) and reads whole; otherwise the previous delivery stays,
the problem is counted, logged once and dead-lettered once, and the next poll tries again. What
was applied (per period: delivery id and manifest time) is checkpointed with the detectors.
Row-level problems inside a readable file (a ragged CSV row, a value that is not UTF-8, a cost
that is not a number, NaN, ±inf or absurd, an impossible date) cost only their rows: each is
dead-lettered with its file and row, and the delivery is applied without them.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from agent.azure_blob import BlobAuth, blob_service
from agent.decoders.base import BadRecord, DecodeContext
from agent.decoders.billing.auto import AutoBillingConfig
from agent.decoders.billing.base import AzureCostConfig, CurConfig, DeliveryError, FocusConfig
from agent.decoders.billing.delivery import Delivery, read_delivery
from agent.model import parse_time
from agent.registry import ComponentConfig, register
from agent.sources.base import Batch, Source
from agent.sources.manifests import ManifestDoc, one_cost_view, parse_manifest

log = logging.getLogger(__name__)

BillingDecoderConfig = Annotated[
    Union[AutoBillingConfig, FocusConfig, CurConfig, AzureCostConfig],  # noqa: UP007
    Field(discriminator="type"),
]


class ExportConfig(ComponentConfig):
    prefix: str = Field("", description="where the export's folders start (no leading slash)")
    poll_interval_seconds: float = Field(300.0, gt=0)
    settle_hours: float = Field(
        3.0,
        ge=0,
        description="the newest hours of a delivery are still filling in: scored once a later one covers them",
    )
    periods: int = Field(2, ge=1, description="watch the newest N billing periods (a closed month is still restated)")
    download_dir: str | None = Field(None, description="scratch space for data files (default: the system temp dir)")
    manifest_grace_seconds: float = Field(
        3600.0, ge=0, description="data files without a manifest for this long are reported (missing_manifest)"
    )
    decoder: BillingDecoderConfig = Field(default_factory=lambda: AutoBillingConfig(type="billing"))


@dataclass
class Manifest:
    period: str  # billing period key, stable across refreshes
    delivery: str  # execution / assembly / run id
    modified: float  # when the manifest was written (newest wins)
    location: str  # where the manifest is (for messages)
    files: list[tuple[str, int | None]] = field(default_factory=list)  # (object name, expected bytes)
    raw: bytes = b""
    doc: ManifestDoc = field(default_factory=ManifestDoc)  # what it says (export type and scope: one_cost_view)


class ExportSource(Source):
    """Poll → newest manifest per period → download → read whole → one snapshot batch."""

    def __init__(self, cfg: Any, **kw: Any):
        super().__init__(cfg, **kw)
        agent = kw.get("agent")
        self.telemetry = getattr(agent, "telemetry", None)
        self._reported: set[tuple[str, str]] = set()  # (delivery or location, kind) already dead-lettered
        # Filled while listing: where data files lie (period or folder → one data file's name), and
        # the same keys for manifests; data without any manifest is reported as missing_manifest.
        self.data_seen: dict[str, str] = {}
        self.manifest_seen: set[str] = set()
        self._orphans: dict[str, float] = {}  # data without a manifest: since when (monotonic)

    # -- storage (per backend) -------------------------------------------------------------
    def manifests(self) -> Iterator[Manifest]:
        raise NotImplementedError

    def download(self, name: str, path: str, expected: int | None) -> None:
        raise NotImplementedError

    def describe_error(self, exc: BaseException) -> tuple[str, str] | None:
        """(kind, reason) of a storage error, or None when it is not one."""
        return None

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping:
            try:
                self.poll()
            except Exception as exc:
                described = self.describe_error(exc)
                if described is None:
                    log.exception("%s: poll failed", self.name)
                    described = ("poll_error", f"{type(exc).__name__}: {exc}")
                self._refuse(self.where(), described[0], described[1], self.where().encode())
            self.emit(Batch(self.name, "idle", None, None))
            self._stop.wait(self.cfg.poll_interval_seconds)

    def where(self) -> str:
        raise NotImplementedError

    def poll(self) -> None:
        newest: dict[str, Manifest] = {}
        self.data_seen, self.manifest_seen = {}, set()
        for m in self.manifests():
            cur = newest.get(m.period)
            if cur is None or (m.modified, m.location) > (cur.modified, cur.location):
                newest[m.period] = m
        now = time.monotonic()
        for where, example in sorted(self.data_seen.items())[-self.cfg.periods :]:
            if where in self.manifest_seen:
                self._orphans.pop(where, None)
                continue
            # Still being written, or its manifest never came: after the grace period, say so.
            since = self._orphans.setdefault(where, now)
            if now - since >= self.cfg.manifest_grace_seconds:
                reason = f"data files under {where} but no manifest (e.g. {example}): nothing applied from them"
                self._refuse(f"no-manifest:{where}", "missing_manifest", reason, example.encode())
        watched = sorted(newest)[-self.cfg.periods :]
        aside = one_cost_view(((p, newest[p].doc) for p in watched), {p for p in watched if p in self.positions})
        for period in watched:
            if self.stopping:
                return
            m = newest[period]
            if period in aside:
                kept = newest[aside[period]]
                reason = (
                    f"{m.location}: a {m.doc.cost_type} export of the scope whose {kept.doc.cost_type} export is read"
                    f" ({kept.location}): the two list the same charges, so it is not read (point `prefix` at the"
                    " export to read)"
                )
                self._refuse(f"view:{period}", "double_export", reason, m.raw)
                continue
            pos = self.positions.get(period)
            if pos is not None and (pos.get("delivery") == m.delivery or pos.get("modified", 0) > m.modified):
                continue  # applied already (or older than what was applied)
            self._apply(m)

    def _apply(self, m: Manifest) -> None:
        ctx = DecodeContext(self.name, m.location, **self.ctx_defaults)
        if not m.files:
            self._refuse(m.delivery, "bad_manifest", f"{m.location}: manifest lists no data files", m.raw)
            return
        with tempfile.TemporaryDirectory(prefix="finops-export-", dir=self.cfg.download_dir) as tmp:
            local = []
            try:
                for i, (name, size) in enumerate(m.files):
                    path = os.path.join(tmp, f"{i:05d}-{os.path.basename(name)}")
                    self.download(name, path, size)
                    local.append((path, name))
                table, bad, rows = read_delivery(local, self.decoder, ctx)  # type: ignore[arg-type]
            except DeliveryError as exc:
                self._refuse(m.delivery, exc.kind, f"{m.location}: {exc.reason}", m.raw)
                return
            except Exception as exc:
                described = self.describe_error(exc)
                if described is None:
                    raise
                self._refuse(m.delivery, described[0], f"{m.location}: {described[1]}", m.raw)
                return
        if bad:
            self.bad(m.location, bad)
        delivery = Delivery(m.period, m.delivery, table, rows, [n for n, _ in m.files], self.cfg.settle_hours * 3600)
        log.info(
            "%s: delivery %s of period %s: %d line items, %d files → %d cells",
            self.name,
            m.delivery,
            m.period,
            rows,
            len(m.files),
            table.num_rows,
        )
        pos = (m.period, {"delivery": m.delivery, "modified": m.modified, "manifest": m.location})
        self.emit(Batch(self.name, "snapshot", delivery, ctx, pos, rows))

    def _refuse(self, what: str, kind: str, reason: str, raw: bytes) -> None:
        """Keep the previous snapshot; count, log and dead-letter once per (delivery, kind); retry next poll."""
        if (what, kind) in self._reported:
            log.debug("%s: still %s: %s", self.name, kind, reason)
            return
        self._reported.add((what, kind))
        if self.telemetry is not None:
            self.telemetry.deliveries.labels(component=self.name, outcome="refused").inc()
        self.bad(self.where(), [BadRecord(raw or reason.encode(), kind, reason)])


# -- AWS S3 ------------------------------------------------------------------------------------
class S3ExportConfig(ExportConfig):
    type: Literal["s3_export"]
    bucket: str
    region: str | None = None
    endpoint_url: str | None = Field(None, description="e.g. a VPC endpoint, or a local S3 for tests")


_DATA_EXPORT = re.compile(r"/metadata/BILLING_PERIOD=(\d{4}-\d{2})/(?:[^/]+/)?[^/]*Manifest\.json$")
_DATA_FILE = re.compile(r"(?:/data/BILLING_PERIOD=(\d{4}-\d{2})|(?:^|/)(\d{8})-\d{8})/.*\.(?:csv|csv\.gz|parquet)$")


def _period_of(m: re.Match[str]) -> str:
    return m.group(1) or f"{m.group(2)[:4]}-{m.group(2)[4:6]}"


_LEGACY_CUR = re.compile(r"(?:^|/)(\d{8})-(\d{8})/(?:[^/]+/)?[^/]*-Manifest\.json$")


@register("source", "s3_export", S3ExportConfig)
class S3ExportSource(ExportSource):
    def __init__(self, cfg: S3ExportConfig, **kw: Any):
        super().__init__(cfg, **kw)
        try:
            import boto3
            import botocore.config
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise RuntimeError("the s3_export source needs boto3: pip install 'finops-agent[aws]'") from exc
        # The standard credential chain: environment, profile, IRSA web identity, instance role.
        self.s3 = boto3.session.Session().client(
            "s3",
            region_name=cfg.region,
            endpoint_url=cfg.endpoint_url,
            config=botocore.config.Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def where(self) -> str:
        return f"s3://{self.cfg.bucket}/{self.cfg.prefix}"

    def manifests(self) -> Iterator[Manifest]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.cfg.bucket, Prefix=self.cfg.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                m = _DATA_EXPORT.search(key)
                legacy = None if m else _LEGACY_CUR.search(key)
                if not m and not legacy:
                    data = _DATA_FILE.search(key)
                    if data:
                        self.data_seen.setdefault(_period_of(data), key)
                    continue
                period = m.group(1) if m else f"{legacy.group(1)[:4]}-{legacy.group(1)[4:6]}"  # type: ignore[union-attr]
                self.manifest_seen.add(period)
                yield self._manifest(key, period, obj["LastModified"].timestamp())

    def _manifest(self, key: str, period: str, modified: float) -> Manifest:
        location = f"s3://{self.cfg.bucket}/{key}"
        raw = self.s3.get_object(Bucket=self.cfg.bucket, Key=key)["Body"].read()
        out = Manifest(period, "", modified, location, raw=raw)
        try:
            doc = parse_manifest(raw)
        except (ValueError, KeyError, TypeError):
            doc = None
        if doc is None:
            out.delivery = f"unparseable@{modified}"
            return out  # no files: refused as a bad manifest (half-written), retried next poll
        out.doc, out.delivery = doc, doc.delivery or str(modified)
        out.files = [(self._key_of(u), None) for u, _n in doc.files]
        return out

    def _key_of(self, uri: str) -> str:
        if uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            if bucket != self.cfg.bucket:
                raise DeliveryError("bad_manifest", f"data file {uri} is not in bucket {self.cfg.bucket}")
            return key
        return uri

    def download(self, name: str, path: str, expected: int | None) -> None:
        self.s3.download_file(self.cfg.bucket, name, path)

    def describe_error(self, exc: BaseException) -> tuple[str, str] | None:
        import botocore.exceptions

        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            op = exc.operation_name
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
                return "access_denied", f"{op}: access denied ({code})"
            if code in ("NoSuchKey", "404", "NotFound"):
                return "missing_file", f"{op}: a data file the manifest lists is not there ({code})"
            if code == "NoSuchBucket":
                return "missing_bucket", f"{op}: bucket {self.cfg.bucket} does not exist"
            return "storage_error", f"{op}: {code}"
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return "storage_error", f"{type(exc).__name__}: {exc}"
        return None


# -- Azure Blob --------------------------------------------------------------------------------
class BlobExportConfig(ExportConfig, BlobAuth):
    type: Literal["blob_export"]
    container: str


@register("source", "blob_export", BlobExportConfig)
class BlobExportSource(ExportSource):
    def __init__(self, cfg: BlobExportConfig, **kw: Any):
        super().__init__(cfg, **kw)
        self.container = blob_service(cfg, f"sources.{self.name}").get_container_client(cfg.container)

    def where(self) -> str:
        return f"{self.container.url}/{self.cfg.prefix}"

    def manifests(self) -> Iterator[Manifest]:
        for blob in self.container.list_blobs(name_starts_with=self.cfg.prefix or None):
            lower = blob.name.lower()
            if not lower.endswith("manifest.json"):
                if lower.endswith((".csv", ".csv.gz", ".parquet")):
                    self.data_seen.setdefault(blob.name.rsplit("/", 1)[0], blob.name)
                continue
            self.manifest_seen.add(blob.name.rsplit("/", 1)[0])
            raw = self.container.download_blob(blob.name).readall()
            modified = blob.last_modified.timestamp()
            folder = blob.name.rsplit("/", 1)[0]
            out = Manifest(folder, f"unparseable@{modified}", modified, f"{self.container.url}/{blob.name}", raw=raw)
            try:
                doc = parse_manifest(raw)
                if doc is not None:
                    out.doc = doc
                    out.period = f"{doc.export}/{doc.start}" if doc.start else folder
                    out.delivery = doc.delivery or str(modified)
                    if doc.submitted:
                        out.modified = parse_time(doc.submitted)
                    out.files = doc.files if doc.complete else []  # half-written: refused as a bad manifest
            except (ValueError, KeyError, TypeError):
                pass  # refused as a bad manifest; retried on the next poll
            yield out

    def download(self, name: str, path: str, expected: int | None) -> None:
        blob = self.container.get_blob_client(name)
        size = blob.get_blob_properties().size
        if expected is not None and int(expected) != size:
            raise DeliveryError("incomplete_file", f"{name}: {size} bytes, the manifest says {expected}")
        with open(path, "wb") as fh:
            blob.download_blob().readinto(fh)

    def describe_error(self, exc: BaseException) -> tuple[str, str] | None:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
        )

        if isinstance(exc, ResourceNotFoundError):
            return "missing_file", f"not found: {exc.reason or exc}"
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
        ):
            return "access_denied", f"access denied ({exc.status_code if isinstance(exc, HttpResponseError) else ''})"
        if isinstance(exc, AzureError):
            return "storage_error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None


# -- local copies of an export (a backtest's input, a watched folder) ----------------------------
#: A billing period's folder: Data Exports' ``BILLING_PERIOD=YYYY-MM``, legacy CUR's and Cost Management's
#: ``YYYYMMDD-YYYYMMDD``.
_PERIOD_DIR = re.compile(r"^(?:BILLING_PERIOD=\d{4}-\d{2}|\d{8}-\d{8})$")
#: A folder named like a month or a date range holds a period, never one execution of one.
_PERIOD_LIKE = re.compile(r"^(?:BILLING_PERIOD=)?\d{4}-?\d{2}(?:-?\d{2})?(?:-\d{8})?$")
_MANIFEST = re.compile(r"(?:^|[-_])manifest\.json$", re.IGNORECASE)
_DATA_EXT = (".csv", ".csv.gz", ".parquet", ".parquet.gz", ".pq", ".tsv", ".tsv.gz")


@dataclass
class LocalDelivery:
    """One delivery found among local files: every data file of one execution (split parts: read together)."""

    period: str  # the period's key: its folder (or the input folder whose subfolders are executions)
    delivery: str  # the manifest's execution / assembly / run id, else the execution folder's name
    files: list[str]
    modified: float  # the manifest's time, else the newest file's mtime (newest wins)
    manifest: str | None = None
    doc: ManifestDoc | None = None  # what the manifest says


@dataclass
class LocalPlan:
    """What a file source reads of a folder of billing files: one delivery per period, plain files one by one."""

    deliveries: list[LocalDelivery] = field(default_factory=list)  # the newest of each period
    singles: list[str] = field(default_factory=list)  # no export structure: each file a delivery of its own
    manifests: list[str] = field(default_factory=list)  # metadata: never read as data
    notes: list[str] = field(default_factory=list)  # per period with several deliveries: which one was taken


def is_manifest(path: str) -> bool:
    return bool(_MANIFEST.search(os.path.basename(path)))


def _stem(name: str) -> str:
    """A data file's name without its part number: split parts of one delivery share it (``part-00000``,
    ``finops-cur-00002.snappy.parquet``, ``report-1.csv.gz``, ``part_0_0001.csv``)."""
    return re.sub(r"\d+", "#", name)


def _manifest_files(path: str) -> tuple[ManifestDoc, list[str], float | None] | None:
    """(what it says, data file names, time) of a local manifest of either cloud; None when it is not one."""
    try:
        with open(path, "rb") as fh:
            doc = parse_manifest(fh.read())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if doc is None:
        return None
    when: float | None = None
    if doc.submitted:
        try:
            when = parse_time(doc.submitted)
        except ValueError:
            when = None
    return doc, [n for n, _b in doc.files if n], when


def _resolve(name: str, by_tail: dict[tuple[str, ...], list[str]]) -> str | None:
    """The local file a manifest's entry (an S3 URI, a key, a blob name) names: matched by its last path parts."""
    parts = tuple(p for p in name.split("/") if p)
    for k in (2, 1):
        found = by_tail.get(parts[-k:]) if len(parts) >= k else None
        if found:
            longest = [f for f in found if "/".join(Path(f).parts).endswith("/".join(parts[-3:]))] or found
            return longest[0]
    return None


def _files(n: int) -> str:
    return f"{n} file{'' if n == 1 else 's'}"


def _when(files: list[str]) -> float:
    return max(os.stat(f).st_mtime for f in files)


def local_deliveries(files: list[str], roots: list[str] = ()) -> LocalPlan:  # type: ignore[assignment]
    """Group local billing files into deliveries, as ``s3_export`` / ``blob_export`` read the export itself.

    - A manifest (``*Manifest.json``, ``manifest.json``) is metadata: it names a delivery and its files.
    - A data file under a period folder (``BILLING_PERIOD=YYYY-MM``, ``YYYYMMDD-YYYYMMDD``) belongs to that
      period; the files of one execution folder whose names differ only in their numbers are the split parts
      of one delivery (read together). Of a period's deliveries only the newest is read: the one of its newest
      manifest whose files are all here (by the manifest's time, then its path), else — no manifest — the one
      whose files were modified last (then the folder's name).
    - An input folder whose data files all lie in two or more subfolders, none named like a month or date
      range, each holding files of the same names (``aws s3 sync …/data/BILLING_PERIOD=2026-11/ ./cur/``): the
      subfolders are executions of one period, and the newest is read.
    - Any other file is a delivery of its own (a folder of monthly files, of several accounts' bills, the split
      parts of one export without its folders: all summed); a file rewritten in place replaces itself.

    ``notes`` says, per period with several deliveries, which was read and which were set aside."""
    plan = LocalPlan()
    data: list[str] = []
    for f in files:
        if is_manifest(f):
            plan.manifests.append(f)
        elif f.lower().endswith(_DATA_EXT):
            data.append(f)
        else:
            plan.singles.append(f)
    periods: dict[str, list[str]] = {}
    loose: list[str] = []
    for f in data:
        parts = Path(f).parts[:-1]
        at = next((i for i in range(len(parts) - 1, -1, -1) if _PERIOD_DIR.match(parts[i])), None)
        if at is None:
            loose.append(f)
        else:
            periods.setdefault(str(Path(*parts[: at + 1])), []).append(f)
    for root in map(os.path.normpath, roots):  # executions synced without their period folder
        if not os.path.isdir(root) or any(os.path.dirname(f) == root for f in loose):
            continue
        mine = [f for f in loose if Path(f).is_relative_to(root)]
        dirs: dict[str, set[str]] = {}
        for f in mine:
            dirs.setdefault(os.path.dirname(f), set()).add(_stem(os.path.basename(f)))
        if (
            len(dirs) >= 2
            and all(os.path.dirname(d) == os.path.normpath(root) for d in dirs)
            and not any(_PERIOD_LIKE.match(os.path.basename(d)) for d in dirs)
            and len({frozenset(s) for s in dirs.values()}) == 1
        ):
            periods[root] = mine
            loose = [f for f in loose if f not in set(mine)]
    plan.singles += loose
    by_tail: dict[tuple[str, ...], list[str]] = {}
    for f in data:
        p = Path(f).parts
        by_tail.setdefault(p[-2:], []).append(f)
        by_tail.setdefault(p[-1:], []).append(f)
    listed: dict[str, list[LocalDelivery]] = {}  # period → the deliveries its manifests name (all files here)
    for m in plan.manifests:
        doc = _manifest_files(m)
        if doc is None:
            continue
        said, names, when = doc
        local = [_resolve(n, by_tail) for n in names]
        found = [f for f in local if f is not None]
        if not found or len(found) < len(names):
            continue  # not all of its files copied: not a delivery read here
        period = next((p for p, fs in periods.items() if found[0] in fs), None)
        if period is None:
            continue
        d = LocalDelivery(
            period, said.delivery or os.path.basename(os.path.dirname(m)), found, when or os.stat(m).st_mtime, m, said
        )
        listed.setdefault(period, []).append(d)
    for period, fs in sorted(periods.items()):
        candidates: dict[tuple[str, str], list[str]] = {}
        for f in sorted(fs):
            candidates.setdefault((os.path.dirname(f), _stem(os.path.basename(f))), []).append(f)
        if period in listed:
            newest = max(listed[period], key=lambda d: (d.modified, d.manifest or ""))
            how = f"its newest manifest, {newest.manifest}"
        else:
            found_d = [
                LocalDelivery(
                    period, os.path.relpath(d, period) if d != period else os.path.basename(fl[0]), fl, _when(fl)
                )
                for (d, _s), fl in candidates.items()
            ]
            newest = max(found_d, key=lambda d: (d.modified, d.delivery))
            how = "no manifest: the files modified last"
        plan.deliveries.append(newest)
        aside = [f for f in fs if f not in set(newest.files)]
        if aside:
            where = sorted({os.path.relpath(os.path.dirname(f), period) for f in aside})
            shown = ", ".join(where[:5]) + (f" and {len(where) - 5} more" if len(where) > 5 else "")
            plan.notes.append(
                f"{period}: read its newest delivery, {newest.delivery} ({_files(len(newest.files))}; {how}); "
                f"set aside {_files(len(aside))} of older deliveries (in {shown})"
            )
    views = one_cost_view((d.period, d.doc) for d in plan.deliveries if d.doc is not None)
    for d in list(plan.deliveries):
        if d.doc is not None and d.period in views:
            plan.deliveries.remove(d)
            plan.notes.append(
                f"{d.period}: not read — a {d.doc.cost_type} export of the scope whose other cost view "
                f"({views[d.period]}) is read: the two list the same charges"
            )
    return plan


__all__ = ["S3ExportSource", "BlobExportSource", "Manifest", "LocalDelivery", "LocalPlan", "local_deliveries"]
