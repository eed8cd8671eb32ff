"""AWS Bedrock model invocation logs → token counts and token cost.

One JSON document per call (``schemaType: ModelInvocationLog``). Decoded with typed msgspec
structs that hold only the fields the agent needs (``requestMetadata`` included: a struct is
generated with just the configured tag keys); a batch's lines are decoded one by one, each record folded into
its cell at once, and only a failing batch is decoded again record by record to find the bad records (by
:meth:`Decoder.decode_lines`, whatever the failure: a line nested too deeply for the decoder's
recursion costs that line alone). Records are
summed per (bucket, account, region, model, tags) inside the batch, and prices are applied to
the sums, so the per-record work is a decode, a dictionary update and a few additions.

Token counts: ``inputTokenCount`` and ``outputTokenCount`` are required; a record without one (missing, null, or an
empty ``input`` / ``output`` object) is counted with what it has (its request, its other tokens) and reported as a
partial bad record of kind ``missing_tokens`` (dead-lettered, logged once, counted), never taken silently for 0
tokens. ``cacheReadInputTokenCount`` and ``cacheWriteInputTokenCount`` are optional: missing or null is 0. Cache
writes are part of ``input_tokens`` and priced at the model's ``cache_write_input`` price (the input price where the
table has none, as the bundled table has none).

Signals: ``requests``, ``input_tokens``, ``output_tokens``, ``cached_input_tokens``,
``tokens``, ``token_cost_usd``, ``cache_savings_usd``. Dimensions: ``provider=aws``, ``service=bedrock``,
``billing_account``, ``region``, ``model``, ``operation`` (optional) and one dimension per
``tag_dimensions`` entry, read from ``requestMetadata``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec
from pydantic import Field

from agent.decoders.base import LATE, LATE_REASON, BadRecord, DecodeContext, Decoded, Decoder, Emits
from agent.model import UNTAGGED, Cell, Observation, cell, make_dims, parse_time
from agent.pricing import TokenPriceTable, normalize_model_id
from agent.registry import ComponentConfig, register


class BedrockConfig(ComponentConfig):
    type: Literal["bedrock"]
    tag_dimensions: dict[str, str] = Field(
        default_factory=dict, description="dimension name → requestMetadata key (e.g. team: team)"
    )
    include_operation: bool = False
    max_tokens_per_record: int = Field(
        10_000_000, gt=0, description="a larger token count in any field is absurd and rejected"
    )


#: The token signals every token decoder emits, in this order. ``cache_savings_usd``: what the prompt cache saved
#: (cached tokens × (input price − cached price)); per token it falls when a cache is lost (the default
#: ``prompt_cache`` detector), and the fall is the dollars an hour the lost cache costs.
SIGNALS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "tokens",
    "token_cost_usd",
    "cache_savings_usd",
)
_OUT_OF_RANGE = -math.inf


def _log_struct(tag_keys: list[str], max_tokens: int, operation: bool) -> tuple[type, type]:
    # null is read as missing: None. A missing input or output token count stays None (the record is counted partly and
    # reported, never taken for 0 tokens); a missing cache count is 0 (no cache use).
    count = Annotated[int, msgspec.Meta(ge=0, le=max_tokens)] | None
    inp = msgspec.defstruct(
        "Input",
        [
            ("inputTokenCount", count, None),
            ("cacheReadInputTokenCount", count, 0),
            ("cacheWriteInputTokenCount", count, 0),
        ],
        gc=False,
    )
    out = msgspec.defstruct("Output", [("outputTokenCount", count, None)], gc=False)
    fields = [(f"t{i}", str, "") for i in range(len(tag_keys))]
    meta = msgspec.defstruct(
        "RequestMetadata", fields, rename={f"t{i}": k for i, k in enumerate(tag_keys)}, frozen=True, gc=False
    )
    log = msgspec.defstruct(
        "ModelInvocationLog",
        [
            ("timestamp", str),
            ("accountId", str),
            ("region", str),
            ("modelId", str),
            ("input", inp, msgspec.field(default_factory=inp)),
            ("output", out, msgspec.field(default_factory=out)),
            ("requestMetadata", meta, msgspec.field(default_factory=meta)),
            # decoded only when it becomes a dimension: every field costs on the hot path
            *([("operation", str, "")] if operation else []),
        ],
        gc=False,  # no reference cycles possible: keep millions of records out of the cyclic GC
    )
    return log, meta


@register("decoder", "bedrock", BedrockConfig)
class BedrockDecoder(Decoder):
    type_name = "bedrock"

    def __init__(self, cfg: BedrockConfig, *, pricing: Any = None, **_: Any):
        self.cfg = cfg
        self.prices = TokenPriceTable.from_config(pricing)
        self._tags = tuple(cfg.tag_dimensions.items())
        log_t, _meta = _log_struct([src for _dim, src in self._tags], cfg.max_tokens_per_record, cfg.include_operation)
        self._op = cfg.include_operation
        self._one: Any = msgspec.json.Decoder(log_t)
        # (account, region, model id, operation, metadata) → (cell, in, out, cached, cache write, priced)
        self._info: dict[tuple[Any, ...], tuple[Cell, float, float, float, float, bool]] = {}
        # "YYYY-MM-DDTHH:MM" → bucket start (or _OUT_OF_RANGE), per (bucket size, bounds)
        self._minutes: dict[str, float] = {}
        self._minutes_for: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.unknown_models: dict[str, int] = {}

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        return b"ModelInvocationLog" in sample or (b'"modelId"' in sample and b'"inputTokenCount"' in sample)

    @classmethod
    def emits(cls, cfg: BedrockConfig) -> Emits:
        dims = {"provider", "service", "billing_account", "region", "model", *cfg.tag_dimensions}
        if cfg.include_operation:
            dims.add("operation")
        return Emits(frozenset(SIGNALS), frozenset(dims))

    def _info_for(self, key: tuple[Any, ...]) -> tuple[Cell, float, float, float, float, bool]:
        info = self._info.get(key)
        if info is None:
            account, region, model_id, operation, md = key
            pairs = [
                ("provider", "aws"),
                ("service", "bedrock"),
                ("billing_account", account),
                ("region", region),
                ("model", normalize_model_id(model_id)),
            ]
            if self.cfg.include_operation:
                pairs.append(("operation", operation))
            pairs.extend((dim, getattr(md, f"t{i}") or UNTAGGED) for i, (dim, _src) in enumerate(self._tags))
            price = self.prices.lookup(model_id)
            c = cell(make_dims(pairs), SIGNALS)
            if price is None:
                info = (c, 0.0, 0.0, 0.0, 0.0, False)
            else:
                info = (c, price.input, price.output, price.cached_input, price.cache_write_input, True)
            if len(self._info) < 200_000:
                self._info[key] = info
        return info

    def record_problem(self, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, msgspec.ValidationError):
            msg = str(exc)
            if ">= 0" in msg:
                kind = "negative_value"
            elif "<= " in msg or "out of range" in msg:  # over max_tokens_per_record, or beyond any integer
                kind = "absurd_value"
            else:
                kind = "schema"
            return kind, f"invalid Bedrock log: {msg}"
        if isinstance(exc, msgspec.DecodeError):
            return "malformed_json", f"malformed JSON: {exc}"
        return super().record_problem(exc)

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        """One msgspec call per line; raises on any bad line (then the batch runs once per line).

        Lines are decoded one at a time and each record is folded into its cell and dropped at once: no
        joined copy of the batch (a copy of every byte, as costly as half the parse on a busy machine),
        and each record's objects are freed while still in the cache instead of all together at the end.
        """
        bad: list[BadRecord] = []
        raws = lines
        # Hot loop: one dictionary update per record. A time is resolved to its bucket through a
        # cache keyed by its minute prefix ("YYYY-MM-DDTHH:MM" of canonical "...:SSZ" strings) or
        # by the whole string; invalid or out-of-range times map to -inf and are sorted out below.
        bounds = (ctx.bucket_seconds, ctx.min_ts, ctx.max_ts)
        if bounds != self._minutes_for:
            self._minutes, self._minutes_for = {}, bounds
        mget = self._minutes.get
        op = self._op
        # Canonical "YYYY-MM-DDTHH:MM:SSZ" times share a cache entry per minute when buckets are whole
        # minutes, per second otherwise.
        plen = 16 if ctx.bucket_seconds % 60 == 0 else 19
        by_bucket: dict[float, dict[tuple[Any, ...], list[int]]] = {}
        bget = by_bucket.get
        last_b: float | None = None
        acc: dict[tuple[Any, ...], list[int]] = {}
        smax = ""  # the batch's newest timestamp (canonical UTC strings sort as times)
        missing = 0  # records without an input or output token count
        # The last canonical time's cache prefix ``lo`` and ``hi`` (``lo`` with its last character raised by one): a
        # string is in [lo, hi) exactly when it starts with ``lo``, so a canonical time with the prefix of the last one
        # (the same minute, or second) keeps its bucket for two comparisons, not a slice and a cache lookup.
        lo = hi = ""
        for log in map(self._one.decode, lines):
            s = log.timestamp
            if s > smax:
                smax = s
            if not (lo <= s < hi and len(s) == 20):
                if len(s) == 20:
                    t = lo = s[:plen]
                    hi = t[:-1] + chr(min(ord(t[-1]) + 1, 0x10FFFF))  # (U+10FFFF last: never a hit)
                else:
                    t, lo, hi = s, "", ""
                b = mget(t)
                if b is None:
                    b = self._bucket(t, ctx)
                if b != last_b:
                    acc = bget(b)  # type: ignore[assignment]
                    if acc is None:
                        acc = by_bucket[b] = {}
                    last_b = b
            inp = log.input
            tin = inp.inputTokenCount
            tout = log.output.outputTokenCount
            tcr = inp.cacheReadInputTokenCount
            tcw = inp.cacheWriteInputTokenCount
            if tin is None or tout is None or tcr is None or tcw is None:  # rare: missing or null counts
                if tin is None or tout is None:
                    missing += 1
                tin, tout, tcr, tcw = tin or 0, tout or 0, tcr or 0, tcw or 0
            key = (log.accountId, log.region, log.modelId, log.operation if op else "", log.requestMetadata)
            cell = acc.get(key)
            if cell is None:
                acc[key] = [1, tin + tcw, tout, tcr, tcw]
            else:
                cell[0] += 1
                cell[1] += tin + tcw
                cell[2] += tout
                cell[3] += tcr
                cell[4] += tcw
        out: list[Observation] = []
        append = out.append
        late_before = ctx.late_before
        newest = _OUT_OF_RANGE  # the newest bucket with accepted records
        iget = self._info.get
        unknown: dict[str, int] = {}  # merged into unknown_models once nothing can raise (this may run again)
        index: list[dict[tuple[float, tuple[Any, ...]], list[tuple[bytes, Any]]]] = []  # made on first need
        for b, acc in by_bucket.items():
            if b < late_before or b == _OUT_OF_RANGE:
                for key in acc:
                    for raw, lg in _records_where(index, raws, self._one, b, key, self._bucket, ctx):
                        bad.append(self._time_problem(raw, lg.timestamp, ctx, b))
                continue
            if b > newest:
                newest = b
            for key, (n, tin, tout, tcr, tcw) in acc.items():
                info = iget(key) or self._info_for(key)
                c, p_in, p_out, p_cached, p_write, priced = info
                if not priced:
                    model_id = key[2]
                    unknown[model_id] = unknown.get(model_id, 0) + n
                    bad.extend(
                        BadRecord(
                            raw,
                            "unknown_model",
                            f"no price for model {model_id!r}; tokens counted, cost not",
                            partial=True,
                            subject=model_id,
                        )
                        for raw, _lg in _records_where(index, raws, self._one, b, key, self._bucket, ctx)
                    )
                cost = (tin - tcw) * p_in + tcw * p_write + tout * p_out + tcr * p_cached
                append(Observation(b, c, (n, tin, tout, tcr, tin + tout + tcr, cost, tcr * (p_in - p_cached))))
        if missing:
            bad.extend(self._missing_tokens(raws, ctx))
        for model_id, n in unknown.items():
            self.unknown_models[model_id] = self.unknown_models.get(model_id, 0) + n
        if newest != _OUT_OF_RANGE:
            ctx.max_event_time = max(ctx.max_event_time, self._newest_time(smax, newest, ctx))
        return out, bad

    def _missing_tokens(self, raws: list[bytes], ctx: DecodeContext) -> list[BadRecord]:
        """The accepted records of a batch without an input or output token count (decoded again: rare): counted with
        the tokens they have (their request and its known tokens are real), reported ``partial`` so that a missing
        count is never taken silently for 0 tokens. (Late and out-of-range records are reported as such instead.)"""
        out: list[BadRecord] = []
        plen = 16 if ctx.bucket_seconds % 60 == 0 else 19
        for raw in raws:
            lg = self._one.decode(raw)
            tin, tout = lg.input.inputTokenCount, lg.output.outputTokenCount
            if tin is not None and tout is not None:
                continue
            s = lg.timestamp
            b = self._bucket(s[:plen] if len(s) == 20 else s, ctx)
            if b == _OUT_OF_RANGE or b < ctx.late_before or self.prices.lookup(lg.modelId) is None:
                continue  # (an unpriced model's record is reported as such: its cost is not counted at all)
            why = " and ".join(f for f, v in (("inputTokenCount", tin), ("outputTokenCount", tout)) if v is None)
            out.append(
                BadRecord(
                    raw,
                    "missing_tokens",
                    f"no {why} (missing or null): the request and the tokens it reports are counted, "
                    f"the missing count is not (cost undercounted)",
                    partial=True,
                )
            )
        return out

    def _newest_time(self, s: str, newest: float, ctx: DecodeContext) -> float:
        """The latest event time of the batch's accepted records: its newest timestamp ``s`` (canonical UTC strings
        sort as times), if it falls in the newest accepted bucket; else that bucket's start (what the observations
        say)."""
        try:
            ts = parse_time(s)
        except ValueError:
            return newest
        return ts if newest <= ts < newest + ctx.bucket_seconds else newest

    def _time_problem(self, raw: bytes, s: str, ctx: DecodeContext, b: float) -> BadRecord:
        if b != _OUT_OF_RANGE:
            return BadRecord(raw, LATE, LATE_REASON)
        try:
            parse_time(s)
        except ValueError as exc:
            return BadRecord(raw, "schema", f"timestamp {s!r}: {exc}")
        return BadRecord(raw, "timestamp_out_of_range", f"timestamp {s} outside the accepted range")

    def _bucket(self, t: str, ctx: DecodeContext) -> float:
        """Bucket start of a minute prefix or a full timestamp; -inf when invalid or out of range."""
        b = self._minutes.get(t)
        if b is None:
            try:
                ts = parse_time(t + ":00Z" if len(t) == 16 else t + "Z" if len(t) == 19 else t)
            except ValueError:
                ts = math.nan
            if ctx.min_ts <= ts <= ctx.max_ts:
                b = ts - ts % ctx.bucket_seconds
            else:
                b = _OUT_OF_RANGE
            if len(self._minutes) < 100_000:
                self._minutes[t] = b
        return b

    def prices_unknown(self) -> dict[str, int]:
        return dict(self.unknown_models)


def _records_where(
    index: list[dict[tuple[float, tuple[Any, ...]], list[tuple[bytes, Any]]]],
    raws: list[bytes],
    one: Any,
    b: float,
    key: tuple[Any, ...],
    bucket: Any,
    ctx: DecodeContext,
) -> list[tuple[bytes, Any]]:
    """Original lines (in order) of the records aggregated under bucket ``b`` and ``key`` (dead-letter paths). The
    batch is decoded again once, on the first call, into ``index`` (every line decoded once already): a batch of
    late records costs two decodes, not one per cell."""
    if not index:
        by_cell: dict[tuple[float, tuple[Any, ...]], list[tuple[bytes, Any]]] = {}
        plen = 16 if ctx.bucket_seconds % 60 == 0 else 19
        for raw in raws:
            lg = one.decode(raw)
            s = lg.timestamp
            k = (lg.accountId, lg.region, lg.modelId, getattr(lg, "operation", ""), lg.requestMetadata)
            by_cell.setdefault((bucket(s[:plen] if len(s) == 20 else s, ctx), k), []).append((raw, lg))
        index.append(by_cell)
    return index[0].get((b, key), [])
