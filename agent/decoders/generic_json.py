"""Generic decoder for users' own events, configured by field paths.

JSON lines are read with orjson; CSV and Parquet record batches are decoded in columnar form
with pyarrow (cast, floor to the aggregation bucket, ``group_by`` + ``sum``), so no Python code
runs per row unless a batch holds bad rows, which are then located row by row.

A record whose time falls in a window the aggregation has sealed is dead-lettered as ``late`` with its original
bytes (a CSV or Parquet row, which has no bytes of its own, as the JSON of its values), like every other bad record
(see :mod:`agent.decoders.base`).

Example::

    decoder:
      type: json
      time_field: ts                # dotted path; ISO-8601, epoch s or ms
      values: {cost_usd: cost.amount, tokens: usage.total_tokens}
      dimensions: {team: labels.team, model: model}
      constant_dimensions: {provider: openai}
"""

from __future__ import annotations

import math
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from agent.decoders.base import BLANK, LATE, LATE_REASON, BadRecord, DecodeContext, Decoded, Decoder, Emits
from agent.model import Observation, cell, make_dims, parse_time
from agent.registry import ComponentConfig, register

_MISSING = object()


class JsonConfig(ComponentConfig):
    type: Literal["json"]
    time_field: str = "timestamp"
    values: dict[str, str] = Field(min_length=1, description="signal name → field path of a number")
    dimensions: dict[str, str] = Field(default_factory=dict, description="dimension name → field path")
    constant_dimensions: dict[str, str] = Field(default_factory=dict)
    allow_negative: bool = Field(True, description="credits and refunds are negative and legal by default")
    max_abs_value: float = Field(1e12, gt=0, description="larger magnitudes are absurd and rejected")

    @field_validator("values", "dimensions")
    @classmethod
    def _paths(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if not path or any(not part for part in path.split(".")):
                raise ValueError(f"{name}: invalid field path {path!r}")
        return v


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    if len(path) > 1 and isinstance(doc, dict):
        flat = doc.get(".".join(path), _MISSING)  # flat CSV / Parquet column named "a.b"
        if flat is not _MISSING:
            return flat
    for part in path:
        if not isinstance(doc, dict):
            return _MISSING
        doc = doc.get(part, _MISSING)
        if doc is _MISSING:
            return _MISSING
    return doc


@register("decoder", "json", JsonConfig)
class JsonDecoder(Decoder):
    type_name = "json"
    tabular = True

    @classmethod
    def emits(cls, cfg: JsonConfig) -> Emits:
        return Emits(frozenset(cfg.values), frozenset({*cfg.dimensions, *cfg.constant_dimensions}))

    def __init__(self, cfg: JsonConfig, **_: Any):
        self.cfg = cfg
        self.signals = tuple(cfg.values)
        self._value_paths = tuple(tuple(p.split(".")) for p in cfg.values.values())
        self._dim_paths = tuple((k, tuple(p.split("."))) for k, p in cfg.dimensions.items())
        self._time_path = tuple(cfg.time_field.split("."))
        self._const = tuple(cfg.constant_dimensions.items())

    # ---- JSON lines -------------------------------------------------------------------------
    def record_problem(self, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, orjson.JSONDecodeError):
            return ("too_deep" if "depth limit" in str(exc) else "malformed_json"), f"malformed JSON: {exc}"
        return super().record_problem(exc)

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        """Line by line; a line that is not JSON raises (the batch is then decoded record by record)."""
        out: list[Observation] = []
        bad: list[BadRecord] = []
        for raw in lines:
            if not raw.strip():
                bad.append(BadRecord(raw, BLANK, "blank line"))
                continue
            doc = orjson.loads(raw)
            obs, problem = self._from_doc(doc, ctx)
            if obs is None:
                kind, reason = problem  # type: ignore[misc]
                bad.append(BadRecord(raw, kind, reason))
            else:
                out.append(obs)
        return out, bad

    def _from_doc(self, doc: Any, ctx: DecodeContext) -> tuple[Observation | None, tuple[str, str] | None]:
        t = _get(doc, self._time_path)
        if t is _MISSING or t is None:
            return None, ("schema", f"missing field {self.cfg.time_field!r}")
        try:
            ts = parse_time(t)
        except (ValueError, TypeError) as exc:
            return None, ("schema", f"{self.cfg.time_field}: invalid time: {exc}")
        if not ctx.min_ts <= ts <= ctx.max_ts:
            return None, ("timestamp_out_of_range", f"{self.cfg.time_field}: timestamp outside accepted range")
        if ts - ts % ctx.bucket_seconds < ctx.late_before:  # (base.is_late, inline: the hot path)
            return None, (LATE, LATE_REASON)
        values = []
        for name, path in zip(self.signals, self._value_paths, strict=True):
            v = _get(doc, path)
            if v is _MISSING or v is None:
                return None, ("schema", f"missing field {'.'.join(path)!r} for signal {name}")
            if isinstance(v, bool) or not isinstance(v, int | float):
                try:
                    v = float(v) if isinstance(v, str) else _MISSING
                except ValueError:
                    v = _MISSING
                if v is _MISSING:
                    return None, ("schema", f"{'.'.join(path)}: not a number")
            fv = float(v)
            problem = self._value_problem(fv, ".".join(path))
            if problem:
                return None, problem
            values.append(fv)
        pairs = list(self._const)
        for dim, path in self._dim_paths:
            d = _get(doc, path)
            if isinstance(d, dict | list):
                return None, ("schema", f"{'.'.join(path)}: dimension {dim} is not a scalar")
            if d is not _MISSING and d is not None:
                pairs.append((dim, str(d)))
        return Observation(ts, cell(make_dims(pairs), self.signals), tuple(values)), None

    def _value_problem(self, v: float, path: str) -> tuple[str, str] | None:
        if math.isnan(v) or math.isinf(v):
            return ("non_finite", f"{path}: value is not finite")
        if v < 0 and not self.cfg.allow_negative:
            return ("negative_value", f"{path}: negative value {v}")
        if abs(v) > self.cfg.max_abs_value:
            return ("absurd_value", f"{path}: |value| above max_abs_value={self.cfg.max_abs_value:g}")
        return None

    # ---- CSV / Parquet ----------------------------------------------------------------------
    def decode_table(self, batch: Any, ctx: DecodeContext) -> Decoded:
        """Columnar path: one pyarrow ``group_by`` per record batch."""
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        names = set(table.column_names)
        missing = [p for p in (self.cfg.time_field, *self.cfg.values.values()) if p not in names]
        if missing:
            reason = f"missing column(s) {', '.join(missing)}"
            return [], [BadRecord(_row_bytes(table, i), "schema", reason) for i in range(table.num_rows)]
        try:
            ts = _epoch_seconds(table.column(self.cfg.time_field))
            vals = [pc.cast(table.column(p), pa.float64()) for p in self.cfg.values.values()]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            return self._decode_rows(table, ctx)
        ok = pc.and_(pc.greater_equal(ts, ctx.min_ts), pc.less_equal(ts, ctx.max_ts))
        for v in vals:
            finite = pc.is_finite(v)
            ok = pc.and_(ok, finite)
            ok = pc.and_(ok, pc.less_equal(pc.abs(v), self.cfg.max_abs_value))
            if not self.cfg.allow_negative:
                ok = pc.and_(ok, pc.greater_equal(v, 0))
        if ctx.late_before > -math.inf:  # a late row goes the slow way, dead-lettered as late (base.is_late)
            starts = pc.multiply(pc.floor(pc.divide(ts, ctx.bucket_seconds)), ctx.bucket_seconds)
            ok = pc.and_(ok, pc.greater_equal(starts, ctx.late_before))
        ok = pc.fill_null(ok, False)
        bad: list[BadRecord] = []
        n_ok = pc.sum(ok).as_py() or 0
        if n_ok < table.num_rows:
            bad_idx = pc.indices_nonzero(pc.invert(ok)).to_pylist()
            sub = table.take(bad_idx)
            _obs, bad = self._decode_rows(sub, ctx)
            keep = pc.indices_nonzero(ok)
            table = table.take(keep)
            ts = pc.take(ts, keep)
            vals = [pc.take(v, keep) for v in vals]
        if table.num_rows == 0:
            return [], bad
        newest = pc.max(ts).as_py()  # the observations say bucket starts; the watermark follows the records
        if newest is not None:
            ctx.max_event_time = max(ctx.max_event_time, float(newest))
        bucket = ctx.bucket_seconds
        cols: dict[str, Any] = {"__b": pc.multiply(pc.floor(pc.divide(ts, bucket)), bucket)}
        dim_cols = []
        for dim, name in self.cfg.dimensions.items():
            if name in names:
                cols["__d_" + dim] = pc.cast(table.column(name), pa.string())
                dim_cols.append(dim)
        for i, v in enumerate(vals):
            cols[f"__v{i}"] = v
        grouped = (
            pa.table(cols)
            .group_by(["__b", *("__d_" + d for d in dim_cols)])
            .aggregate([(f"__v{i}", "sum") for i in range(len(vals))])
        )
        g = grouped.to_pydict()
        out: list[Observation] = []
        const = list(self._const)
        for r in range(grouped.num_rows):
            pairs = const + [(d, g["__d_" + d][r]) for d in dim_cols if g["__d_" + d][r] is not None]
            out.append(
                Observation(
                    float(g["__b"][r]),
                    cell(make_dims(pairs), self.signals),
                    tuple(float(g[f"__v{i}_sum"][r]) for i in range(len(vals))),
                )
            )
        return out, bad

    def _decode_rows(self, table: pa.Table, ctx: DecodeContext) -> Decoded:
        """Slow path for batches that hold bad rows: decode each row as a JSON document."""
        out: list[Observation] = []
        bad: list[BadRecord] = []
        for row in table.to_pylist():
            obs, problem = self._from_doc(row, ctx)
            if obs is None:
                kind, reason = problem  # type: ignore[misc]
                bad.append(BadRecord(orjson.dumps(row, default=str), kind, reason))
            else:
                out.append(obs)
        return out, bad


def _row_bytes(table: pa.Table, i: int) -> bytes:
    return orjson.dumps(table.slice(i, 1).to_pylist()[0], default=str)


def _epoch_seconds(col: Any) -> Any:
    t = col.type
    if pa.types.is_timestamp(t):
        return pc.divide(pc.cast(pc.cast(col, pa.timestamp("us", "UTC")), pa.int64()), 1e6)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        f = pc.cast(col, pa.float64())
        mx = pc.max(f).as_py() or 0
        if mx > 1e14:
            return pc.divide(f, 1e6)
        if mx > 1e11:
            return pc.divide(f, 1e3)
        return f
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        parsed = pc.strptime(pc.replace_substring_regex(col, r"Z$", "+0000"), "%Y-%m-%dT%H:%M:%S%z", "us")
        return _epoch_seconds(parsed)
    raise ValueError(f"unsupported time column type {t}")
