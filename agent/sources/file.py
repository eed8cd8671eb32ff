"""Local files: JSON lines, CSV, Parquet, Prometheus text, each optionally gzip-compressed.

``path`` is a file, a glob or a directory. With ``watch: true`` the source keeps polling for
new files (and for lines appended to plain-text files). What was read is remembered per file
(size, modification time, byte offset or record-batch index) in the checkpointed state, so a
restart never reads a file twice. A truncated gzip file yields every complete record, then the
cut-off tail goes to the dead-letter file. A line longer than ``max_record_bytes`` is never held
whole: its first ``max_record_bytes`` bytes go to the dead-letter file (``record_too_large``,
with the line's true length in the reason) and reading goes on after its end.

A ``.json`` file (``.json.gz`` too) is JSON lines, or one whole JSON document spread over lines (pretty-printed, as
Azure Monitor exports write): a file whose first line is no JSON value alone but whose content is one. A document's
records go to the decoder one by one, with their original bytes: a top-level array's elements, an object's
``records`` list (``{"records": [...]}``), else the object itself. A document is read whole, at most 256 MiB of
content (a larger one is refused with one dead-letter record), and never again once read.

Billing files (a billing decoder: each file read whole, as a snapshot) in an export's layout are read delivery by
delivery, each period's newest (:func:`agent.sources.exports.local_deliveries`). Watched, a billing file is read only
once it has settled — its size and mtime what the previous poll saw, and last modified ``settle_seconds`` (10) ago or
seen unchanged that long — so a file copied in non-atomically is never read half-written (write it elsewhere and
rename it in to have it read at the next poll). Line files are read as they grow, as before.

A line file is known by its content, not its name: the position read to carries a fingerprint of the file's first
KiB (of content: a ``.gz`` file's decompressed head). A file rotated away and created anew at the same path (logrotate,
a shipper's ``mv``) has another head: it is read from its start, never from the old file's offset. The rotated file,
renamed beside it (``a.jsonl.1``) or compressed (``a.jsonl.1.gz``), has the head of one read before: it takes that
file's position and only what was written after it is read (nothing twice). Positions checkpointed without a
fingerprint (an older version's) are taken as they are.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import logging
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import Field

from agent.decoders.base import BOM, BadRecord, DecodeContext
from agent.registry import ComponentConfig, config_union, register
from agent.sources.base import Batch, Source

log = logging.getLogger(__name__)

_LINE_EXT = (".jsonl", ".ndjson", ".json", ".log", ".prom", ".txt", ".metrics")
_DOCUMENT_MAX = 256 << 20  # bytes of content: a whole-document .json file larger than this is refused
_DOCUMENT_BATCH = 5_000  # records per batch of a whole-document file
_HEAD = 1024  # bytes of content a line file is fingerprinted by
_HEAD_MIN = 64  # a file read before is recognised in another by at least this many bytes of its head
_RETIRED_MAX = 1_000  # positions of files rotated away, kept for their renamed or compressed copies
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])


class FileConfig(ComponentConfig):
    type: Literal["file"]
    path: str = Field(description="a file, a glob (data/*.jsonl.gz) or a directory")
    more_paths: list[str] = Field(
        default_factory=list, description="more files, globs or directories, read after path's (in this order)"
    )
    format: Literal["auto", "jsonl", "csv", "parquet", "text"] = "auto"
    watch: bool = Field(False, description="keep polling for new files and appended lines")
    poll_interval_seconds: float = Field(2.0, gt=0)
    settle_seconds: float = Field(
        10.0,
        ge=0,
        description="watch: a billing file (read whole, as a snapshot) is read only once its size and modification "
        "time were the same at the previous poll and it was last modified this long ago (or has been seen unchanged "
        "this long): a file still being copied in is never read half-written. Line files are read as they grow",
    )
    chunk_bytes: int = Field(1 << 20, ge=4096)
    max_record_bytes: int = Field(
        1 << 20,
        gt=0,
        description="bytes; a longer line (JSON lines, text) is dead-lettered as record_too_large, "
        "with its first max_record_bytes bytes",
    )
    decoder: config_union("decoder")  # type: ignore[valid-type]


def format_of(path: str) -> str:
    p = path.lower()
    if p.endswith(".gz"):
        p = p[:-3]
    if p.endswith(".parquet") or p.endswith(".pq"):
        return "parquet"
    if p.endswith(".csv") or p.endswith(".tsv"):
        return "csv"
    if p.endswith(_LINE_EXT):
        return "jsonl" if not p.endswith((".prom", ".txt", ".metrics")) else "text"
    return "jsonl"


def list_files(path: str) -> list[str]:
    """The files a ``path`` names: a directory (recursively, hidden files skipped), a glob, or one file."""
    if os.path.isdir(path):
        files = [str(f) for f in Path(path).rglob("*") if f.is_file() and not f.name.startswith(".")]
    elif any(ch in path for ch in "*?["):
        files = [f for f in glob.glob(path, recursive=True) if os.path.isfile(f)]
    else:
        files = [path] if os.path.isfile(path) else []
    return sorted(files)


def source_files(cfg: FileConfig) -> list[str]:
    """A file source's files: its ``path``'s, then each of ``more_paths``' (a file named twice: once)."""
    files = list_files(cfg.path)
    for p in cfg.more_paths:
        files += list_files(p)
    return list(dict.fromkeys(files)) if cfg.more_paths else files


def nothing_at(cfg: FileConfig) -> str | None:
    """What to say of a file source none of whose paths names a file now (a typo, a volume not mounted), or None."""
    paths = [cfg.path, *cfg.more_paths]
    if any(list_files(p) for p in paths):
        return None
    missing = [p for p in paths if not os.path.exists(p) and not any(ch in p for ch in "*?[")]
    what = f"no such file or directory: {', '.join(missing)}" if missing else f"nothing matches {', '.join(paths)}"
    return what + (" (yet: read when files appear)" if cfg.watch else " (nothing to read)")


def empty_file_sources(cfg: Any) -> list[str]:
    """``sources.<name>.path: …`` for each file source that names no file now (``validate`` warns of them)."""
    out = []
    for name, scfg in cfg.sources.items():
        if getattr(scfg, "type", None) == "file" and (said := nothing_at(scfg)) is not None:
            out.append(f"sources.{name}.path: {said}")
    return out


@register("source", "file", FileConfig)
class FileSource(Source):
    @property
    def live(self) -> bool:
        return bool(self.cfg.watch)

    def __init__(self, cfg: Any, **kw: Any):
        super().__init__(cfg, **kw)
        # Where this source has read to: the position of the last batch it handed over, per file (or period).
        # ``positions`` is what the pipeline has *processed*: it lags while batches wait in the queue, and reading
        # again from it would hand the same lines over twice (a watched file polled while its batches are queued).
        self.read_to: dict[str, Any] = {}
        emit = self.emit

        def handed_over(batch: Batch) -> None:
            emit(batch)
            if batch.position is not None:
                self.read_to[batch.position[0]] = batch.position[1]

        self.emit = handed_over
        # Positions of line files rotated away (another file now at their path), by fingerprint: for the copy of the
        # file renamed or compressed beside it (``a.jsonl.1``, ``a.jsonl.1.gz``), which goes on from there.
        self._retired: dict[tuple[str, int], dict[str, Any]] = {}
        self._seen: dict[str, tuple[int, int, float]] = {}  # billing file → (size, mtime_ns, first seen so)
        #: Per billing period with several deliveries here: which one was read, which were set aside.
        self.set_aside: dict[str, str] = {}

    def list_files(self) -> list[str]:
        return source_files(self.cfg)

    def run(self) -> None:
        said_empty = False
        while not self.stopping:
            files = self.list_files()
            if not files and not said_empty:  # a typo in `path`, a volume not mounted: said, not silent
                log.warning("file source %s: %s", self.name, nothing_at(self.cfg) or "no file to read")
            said_empty = not files
            if getattr(self.decoder, "snapshot", False):
                files = self._read_deliveries(files)
            for f in files:
                if self.stopping:
                    return
                try:
                    self._read_if_new(f)
                except Exception as exc:  # one bad file never stops the source
                    log.exception("file source %s: cannot read %s", self.name, f)
                    self.bad(
                        f,
                        [BadRecord(f.encode(), "unreadable_file", f"{type(exc).__name__}: {exc}")],
                        (f, {"done": True, "error": str(exc)}),
                    )
            self.emit(Batch(self.name, "idle", None, None))
            if not self.cfg.watch:
                return
            self._stop.wait(self.cfg.poll_interval_seconds)

    def restore(self, positions: dict[str, Any]) -> None:
        super().restore(positions)
        self.read_to = {}  # (a restored agent reads on from what was processed)

    def _position(self, key: str) -> Any:
        """Where to read on from: what was handed over, else what a restored checkpoint says."""
        pos = self.read_to.get(key)
        return self.positions.get(key) if pos is None else pos

    def _head(self, f: str, gz: bool) -> bytes:
        """The file's first :data:`_HEAD` bytes of content (decompressed for ``.gz``; less for a shorter file)."""
        try:
            with (gzip.open(f, "rb") if gz else open(f, "rb")) as fh:
                return fh.read(_HEAD)
        except (OSError, EOFError, zlib.error):
            return b""

    def _same_content(
        self, f: str, st: os.stat_result, head: bytes, pos: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """``pos`` if the file now at ``f`` (its first KiB ``head``) is the one it was read from (or it has no
        fingerprint); else None, the position retired for the rotated file's copy. A file without a position takes
        the one of a file read before that it is: the same inode (renamed), or — for a copy, e.g. compressed — the
        head of a file rotated away (only those: scrape files of one exporter share their first KiB)."""
        if pos is not None:
            fp = pos.get("fp")
            if fp is None:
                return pos
            n = int(pos.get("fp_len", 0))
            if len(head) >= n and _fingerprint(head[:n]) == fp:
                return pos
            if len(self._retired) >= _RETIRED_MAX:
                del self._retired[next(iter(self._retired))]
            self._retired[fp, n] = pos
            log.info("file source %s: %s is another file now (rotated): read from its start", self.name, f)
            return None
        if not self.cfg.watch:
            return None  # (read once, in one go: no file is rotated under it)
        same = None
        for p in [*self._retired.values(), *self.read_to.values(), *self.positions.values()]:
            if isinstance(p, dict) and p.get("ino") == st.st_ino and p.get("dev") == st.st_dev:
                same = p  # renamed
                break
        else:
            for (fp, n), p in self._retired.items():
                if _HEAD_MIN <= n <= len(head) and _fingerprint(head[:n]) == fp:
                    same = p  # a copy of a file rotated away
                    break
        if same is None:
            return None
        log.info("file source %s: %s holds a file read before (renamed or copied): read on", self.name, f)
        return {k: v for k, v in same.items() if k not in ("mtime_ns", "size", "eof", "ino", "dev")}

    def _read_if_new(self, f: str) -> None:
        st = os.stat(f)
        pos = self._position(f)
        fmt = self.cfg.format if self.cfg.format != "auto" else format_of(f)
        gz = f.endswith(".gz")
        snapshot = getattr(self.decoder, "snapshot", False)
        lines = fmt in ("jsonl", "text") and not snapshot
        head = b""
        if lines and not (
            pos is not None and pos.get("mtime_ns") == st.st_mtime_ns and pos.get("size") == st.st_size
        ):  # (a changed or new line file: is it the one its position was read from?)
            head = self._head(f, gz)
            pos = self._same_content(f, st, head, pos)
        if pos is not None:
            unchanged = pos.get("mtime_ns") == st.st_mtime_ns and pos.get("size") == st.st_size
            # Done with it, or read to its end and untouched since: nothing to open again. (A billing
            # file is a snapshot: a changed one is read again and replaces what it said before.)
            if pos.get("done") and (unchanged or ((gz or fmt in ("csv", "parquet")) and not snapshot)):
                return
            if pos.get("document") is not None and (pos.get("done") or unchanged):
                return  # a whole JSON document is read once: reading a changed one again would count it twice
            if unchanged and pos.get("eof"):
                return
            if not gz and fmt in ("jsonl", "text") and st.st_size < pos.get("offset", 0):
                pos = None  # truncated / rotated: read again from the start
        if snapshot and not self._settled(f, st):
            return  # a billing file still being written: read once it has settled
        ctx = DecodeContext(self.name, f, default_ts=st.st_mtime, **self.ctx_defaults)
        meta: dict[str, Any] = {"mtime_ns": st.st_mtime_ns, "size": st.st_size}
        if lines:
            head = head or self._head(f, gz)  # (read above unless its position said unchanged)
            meta.update(fp=_fingerprint(head), fp_len=len(head), ino=st.st_ino, dev=st.st_dev)
        elif snapshot and fmt in ("jsonl", "text"):
            # A billing decoder reads whole CSV / Parquet exports: a line file here is refused whole, once.
            reason = f"decoder {self.decoder.type_name!r} reads CSV or Parquet billing exports, not {fmt} files"
            self.bad(f, [BadRecord(f.encode(), "unsupported_format", reason)], (f, {**meta, "done": True}))
            return
        if fmt == "jsonl" and f.lower().endswith((".json", ".json.gz")) and (pos or {}).get("offset", 0) == 0:
            records = self._document(f, meta)
            if records is not None:
                self._read_document(f, records, ctx, (pos or {}).get("document", 0), meta)
                return
        if fmt in ("jsonl", "text"):
            self._read_lines(f, gz, ctx, pos.get("offset", 0) if pos else 0, meta)
        elif fmt == "csv":
            self._read_table(f, ctx, "csv", pos.get("batch", 0) if pos else 0, meta)
        else:
            self._read_table(f, ctx, "parquet", pos.get("batch", 0) if pos else 0, meta)

    # -- billing files -----------------------------------------------------------------------
    def _settled(self, f: str, st: os.stat_result) -> bool:
        """Watching: a billing file is read once its size and mtime are what the previous poll saw, and it was last
        modified ``settle_seconds`` ago or has been seen unchanged that long (a copy that keeps its source's mtime
        sets it when done). Read at once without ``watch``."""
        if not self.cfg.watch:
            return True
        sig, now = (st.st_size, st.st_mtime_ns), time.monotonic()
        seen = self._seen.get(f)
        if seen is None or seen[:2] != sig:
            self._seen[f] = (*sig, now)
            return False
        settle = self.cfg.settle_seconds
        return now - seen[2] >= settle or time.time() - st.st_mtime >= settle

    def _read_deliveries(self, files: list[str]) -> list[str]:
        """Billing files in an export's layout (see :func:`agent.sources.exports.local_deliveries`): each period's
        newest delivery is read whole (its split parts together) and replaces the period's previous one; manifests
        are metadata. Returns the other files (each a delivery of its own)."""
        from agent.sources.exports import local_deliveries

        plan = local_deliveries(files, [self.cfg.path, *self.cfg.more_paths])
        for note in plan.notes:
            period = note.split(": ", 1)[0]
            if self.set_aside.get(period) != note:
                self.set_aside[period] = note
                log.info("%s: %s", self.name, note)
        for d in plan.deliveries:
            if self.stopping:
                return []
            try:
                self._read_delivery(d.period, d.delivery, d.files, d.manifest)
            except Exception as exc:  # one bad delivery never stops the source
                log.exception("file source %s: cannot read %s", self.name, d.period)
                self.bad(d.period, [BadRecord(d.period.encode(), "unreadable_file", f"{type(exc).__name__}: {exc}")])
        return plan.singles

    def _read_delivery(self, period: str, delivery: str, files: list[str], manifest: str | None) -> None:
        from agent.decoders.billing.base import DeliveryError
        from agent.decoders.billing.delivery import Delivery, read_delivery

        stats = {f: os.stat(f) for f in files}
        sig = {f: [st.st_mtime_ns, st.st_size] for f, st in stats.items()}
        pos = self._position(period)
        if pos is not None and pos.get("delivery") == delivery and pos.get("files") == sig:
            return  # applied already
        if not all([self._settled(f, st) for f, st in stats.items()]):  # (each file's observation recorded)
            return
        where = manifest or period
        ctx = DecodeContext(self.name, where, default_ts=max(st.st_mtime for st in stats.values()), **self.ctx_defaults)
        meta = {"delivery": delivery, "files": sig, "done": True}
        try:
            table, bad, rows = read_delivery([(f, f) for f in files], self.decoder, ctx)  # type: ignore[arg-type]
        except DeliveryError as exc:
            self.bad(where, [BadRecord(where.encode(), exc.kind, exc.reason)], (period, {**meta, "error": exc.reason}))
            return
        if bad:
            self.bad(where, bad)
        log.info("%s: delivery %s of %s: %d line items, %d files", self.name, delivery, period, rows, len(files))
        self.emit(
            Batch(self.name, "snapshot", Delivery(period, delivery, table, rows, files), ctx, (period, meta), rows)
        )

    # -- line formats ----------------------------------------------------------------------
    def _read_lines(self, f: str, gz: bool, ctx: DecodeContext, offset: int, meta: dict[str, Any]) -> None:
        limit = self.cfg.max_record_bytes
        with open(f, "rb") as raw:
            if not gz:
                raw.seek(offset)
            blocks = _gunzip(raw, self.cfg.chunk_bytes) if gz else iter(lambda: raw.read(self.cfg.chunk_bytes), b"")
            carry = b""
            consumed = offset  # content offset just after the last complete line
            skip = offset if gz else 0
            long: _LongLine | None = None  # a line past the limit whose end is not read yet (carry is then empty)
            try:
                for data in blocks:
                    if skip:
                        if len(data) <= skip:
                            skip -= len(data)
                            continue
                        data, skip = data[skip:], 0
                    if self.stopping:
                        return
                    if long is not None:
                        end = data.find(b"\n")
                        if end < 0:
                            long.size += len(data)
                            continue
                        long.size += end
                        consumed += long.size + 1
                        pos = (f, {**meta, "offset": consumed, "done": False})
                        self.bad(f, [long.record(limit)], pos)
                        long, data = None, data[end + 1 :]
                        if not data:
                            continue
                    block = carry + data if carry else data
                    lines = block.split(b"\n")
                    carry = lines.pop()
                    consumed += len(block) - len(carry)
                    # Past the first line, lines lie within ``data``: when it is short, only the first can be long.
                    if (
                        len(block) > limit
                        and lines
                        and (len(lines[0]) > limit if len(data) <= limit else max(map(len, lines)) > limit)
                    ):
                        # Dead-lettered ahead of the batch that commits the position past them.
                        self.bad(f, [_LongLine(ln[:limit], len(ln)).record(limit) for ln in lines if len(ln) > limit])
                        lines = [ln for ln in lines if len(ln) <= limit]
                    if len(carry) > limit:  # keep the head for the dead-letter file, not the line
                        long, carry = _LongLine(carry[:limit], len(carry)), b""
                    if lines:
                        pos = (f, {**meta, "offset": consumed, "done": False})
                        self.emit(Batch(self.name, "lines", lines, ctx, pos, len(lines)))
            except (EOFError, zlib.error, OSError) as exc:
                # A cut-off or corrupt file: every complete line was passed on; the tail is dead-lettered.
                kind = "truncated_gzip" if gz else "read_error"
                tail = carry if long is None else long.head
                size = len(carry) if long is None else long.size
                reason = f"file ends mid-stream after {consumed + size} bytes of content: {exc}"
                if long is not None:
                    reason += f" (its last line, {size} bytes so far, is over max_record_bytes: the first {limit} kept)"
                self.bad(f, [BadRecord(tail, kind, reason)], (f, {**meta, "offset": consumed, "done": True}))
                return
        if self.stopping:
            return
        end_of_input = gz or not self.cfg.watch  # else a partial last line waits for the next poll
        if long is not None and end_of_input:
            consumed += long.size
            self.bad(f, [long.record(limit)], (f, {**meta, "offset": consumed, "done": True, "eof": True}))
            return
        if carry and end_of_input:  # a last line without a newline (a blank one is counted by the decoder)
            consumed += len(carry)
            pos = (f, {**meta, "offset": consumed, "done": True, "eof": True})
            self.emit(Batch(self.name, "lines", [carry], ctx, pos, 1))
            return
        self.emit(
            Batch(self.name, "lines", [], ctx, (f, {**meta, "offset": consumed, "done": end_of_input, "eof": True}))
        )

    def _document(self, f: str, meta: dict[str, Any]) -> list[bytes] | None:
        """The records of a ``.json`` file that is one JSON document (see :func:`json_document`); a document too
        large is refused with one dead-letter record (and no records)."""
        try:
            return json_document(f, self.cfg.max_record_bytes)
        except DocumentTooLarge as exc:
            self.bad(f, [BadRecord(exc.head, "record_too_large", str(exc))], (f, {**meta, "done": True}))
            return []

    def _read_document(
        self, f: str, records: list[bytes], ctx: DecodeContext, start: int, meta: dict[str, Any]
    ) -> None:
        """A whole document's records, in batches (a restart goes on after the last batch passed on)."""
        for i in range(start, len(records), _DOCUMENT_BATCH):
            if self.stopping:
                return
            batch = records[i : i + _DOCUMENT_BATCH]
            done = i + len(batch) >= len(records)
            pos = (f, {**meta, "document": i + len(batch), "done": done, "eof": done})
            self.emit(Batch(self.name, "lines", batch, ctx, pos, len(batch)))
        if not records:  # an empty array, or a document refused above
            self.emit(Batch(self.name, "lines", [], ctx, (f, {**meta, "document": 0, "done": True, "eof": True})))

    # -- tabular formats -------------------------------------------------------------------
    def _read_snapshot(self, f: str, ctx: DecodeContext, fmt: str, meta: dict[str, Any]) -> None:
        """A billing file: read whole, then applied as one snapshot (or refused whole)."""
        from agent.decoders.billing.base import DeliveryError
        from agent.decoders.billing.delivery import Delivery, read_file

        try:
            table, bad, rows = read_file(f, self.decoder, ctx, fmt)  # type: ignore[arg-type]
        except DeliveryError as exc:
            self.bad(f, [BadRecord(f.encode(), exc.kind, exc.reason)], (f, {**meta, "done": True, "error": exc.reason}))
            return
        if bad:
            self.bad(f, bad)
        delivery = Delivery(f, f"{meta['mtime_ns']}:{meta['size']}", table, rows, [f])
        self.emit(Batch(self.name, "snapshot", delivery, ctx, (f, {**meta, "done": True}), rows))

    def _read_table(self, f: str, ctx: DecodeContext, fmt: str, start_batch: int, meta: dict[str, Any]) -> None:
        if getattr(self.decoder, "snapshot", False):
            self._read_snapshot(f, ctx, fmt, meta)
            return
        if not getattr(self.decoder, "tabular", False):
            self.bad(
                f,
                [
                    BadRecord(
                        f.encode(), "unsupported_format", f"decoder {self.decoder.type_name!r} cannot read {fmt} files"
                    )
                ],
                (f, {**meta, "done": True}),
            )
            return
        try:
            batches = self._iter_batches(f, fmt)
            i = 0
            for batch in batches:
                if self.stopping:
                    return
                if i >= start_batch and batch.num_rows:
                    self.emit(
                        Batch(
                            self.name, "table", batch, ctx, (f, {**meta, "batch": i + 1, "done": False}), batch.num_rows
                        )
                    )
                i += 1
        except (pa.ArrowInvalid, OSError, EOFError, zlib.error) as exc:
            self.bad(
                f,
                [BadRecord(f.encode(), "corrupt_file", f"{fmt} file unreadable after batch {i}: {exc}")],
                (f, {**meta, "done": True}),
            )
            return
        self.emit(Batch(self.name, "table", None, ctx, (f, {**meta, "batch": i, "done": True})))

    def _iter_batches(self, f: str, fmt: str) -> Any:
        if fmt == "parquet":
            yield from pq.ParquetFile(f).iter_batches(batch_size=65536)
            return
        opts = pacsv.ReadOptions(block_size=self.cfg.chunk_bytes * 4)
        conv = pacsv.ConvertOptions(strings_can_be_null=True, null_values=["", "NULL", "null"])
        src = pa.input_stream(f, compression="gzip" if f.endswith(".gz") else None)
        try:
            yield from pacsv.open_csv(src, read_options=opts, convert_options=conv)
        except pa.ArrowInvalid:
            # A later block disagrees with the inferred column types: read everything as text
            # and let the decoder sort good rows from bad ones.
            src.close()
            src = pa.input_stream(f, compression="gzip" if f.endswith(".gz") else None)
            names = pacsv.open_csv(
                pa.input_stream(f, compression="gzip" if f.endswith(".gz") else None), read_options=opts
            ).schema.names
            conv = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True)
            yield pacsv.read_csv(src, read_options=opts, convert_options=conv).combine_chunks()
        finally:
            src.close()


class DocumentTooLarge(ValueError):
    def __init__(self, f: str, head: bytes):
        super().__init__(
            f"{f} is no JSON lines and over {_DOCUMENT_MAX >> 20} MiB: a whole JSON document that large is not read; "
            "write it as JSON lines (one record a line)"
        )
        self.head = head


def _fingerprint(head: bytes) -> str:
    return hashlib.blake2b(head, digest_size=12).hexdigest()


def json_document(f: str, first_line_max: int) -> list[bytes] | None:
    """The records of a file that is one JSON document over several lines (each with its original bytes: a top-level
    array's elements, an object's ``records`` list, else the object); None where it is JSON lines (its first line is
    a JSON value alone, or the file one line), or not one JSON value either (read line by line, each bad line
    dead-lettered), or unreadable as a whole (the line reader says what). Raises :class:`DocumentTooLarge`."""
    gz = f.endswith(".gz")
    try:
        with gzip.open(f, "rb") if gz else open(f, "rb") as fh:
            head = fh.readline(first_line_max + 1)
            first = head[3:] if head.startswith(BOM) else head
            if not first.lstrip().startswith((b"{", b"[")) or not fh.peek(1):
                return None
            try:
                msgspec.json.decode(first)
                return None  # a JSON value alone: JSON lines
            except msgspec.DecodeError:
                pass
            content = first + fh.read(_DOCUMENT_MAX + 1 - len(head))
    except (EOFError, zlib.error, OSError):
        return None
    if len(content) > _DOCUMENT_MAX:
        raise DocumentTooLarge(f, content[:1024])
    try:
        if content.lstrip().startswith(b"["):
            return [bytes(r) for r in _RAWS.decode(content)]
        records = _FIELDS.decode(content).get("records")
        if records is not None and bytes(records).lstrip().startswith(b"["):
            return [bytes(r) for r in _RAWS.decode(records)]
        return [content]
    except msgspec.DecodeError:
        return None


class _LongLine:
    """A line longer than ``max_record_bytes``: its first bytes and its length (so far)."""

    __slots__ = ("head", "size")

    def __init__(self, head: bytes, size: int):
        self.head = head
        self.size = size

    def record(self, limit: int) -> BadRecord:
        reason = f"line of {self.size} bytes is over max_record_bytes={limit}: its first {limit} bytes are kept"
        return BadRecord(self.head, "record_too_large", reason)


def _gunzip(raw: io.BufferedReader, chunk: int) -> Iterator[bytes]:
    """Decompress gzip (also multi-member) incrementally, so a truncated file yields all its complete data.

    At most ``chunk`` bytes come out at a time, however well the input compresses. Raises
    ``EOFError`` at the end of a truncated file and ``zlib.error`` on corrupt data.
    """
    d = zlib.decompressobj(wbits=31)
    fed = False  # the current member has received input
    while comp := raw.read(max(4096, chunk // 4)):
        while comp:
            if d.eof:  # the previous member is complete: the next one starts here
                if not comp.strip(b"\x00"):
                    break  # trailing zero padding, as gzip tolerates
                d, fed = zlib.decompressobj(wbits=31), False
            out = d.decompress(comp, chunk)
            fed = True
            if out:
                yield out
            comp = d.unused_data if d.eof else d.unconsumed_tail
    if fed and not d.eof:
        while out := d.decompress(b"", chunk):  # what the cut-off input still holds
            yield out
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
