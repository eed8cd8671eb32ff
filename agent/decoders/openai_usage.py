"""OpenAI organization Usage API and Costs API buckets → token counts, token cost and cost.

One record is one *bucket* of ``GET /v1/organization/usage/completions`` (``/embeddings``) or
``GET /v1/organization/costs``, as the API returns it inside ``data[]``::

    {"object": "bucket", "start_time": 1730419200, "end_time": 1730422800,
     "results": [{"object": "organization.usage.completions.result", "input_tokens": 1000,
                  "output_tokens": 500, "input_cached_tokens": 800, "num_model_requests": 5,
                  "model": "gpt-4o-mini-2024-07-18", "project_id": "proj_abc", "api_key_id": null, ...}]}

Every result becomes one observation stamped with the bucket's ``start_time`` (the source,
:mod:`agent.sources.openai_usage`, hands over whole, settled buckets only). The kind of a result is
its ``object`` (the source fills it in where the API left it out).

Usage signals (completions, embeddings): ``requests`` (``num_model_requests``), ``input_tokens``
(input tokens *not* read from the cache: OpenAI's ``input_tokens`` less ``input_cached_tokens``),
``cached_input_tokens``, ``output_tokens``, ``tokens`` (their sum, i.e. OpenAI's input plus output)
and ``token_cost_usd``, priced per model with :class:`~agent.pricing.TokenPriceTable` (a dated
version such as ``gpt-4o-mini-2024-07-18`` takes its base model's price; results with
``batch: true`` cost ``batch_price_ratio`` of it, the Batch API's discount). A model without a price
has its tokens counted and its cost left out, reported as ``unknown_model``. Audio tokens count as
far as OpenAI includes them in ``input_tokens`` / ``output_tokens``.

Costs signal: ``cost_usd`` (``amount.value``; an amount in another currency is refused as
``unsupported_currency``; credits are negative and legal).

Dimensions: ``provider=openai``, ``service=openai``, ``model``, ``project`` (``project_id``, or its
name from ``project_names``), ``api_key`` (``api_key_id``), ``user`` (``user_id``), ``batch``
(``true``/``false``), ``line_item`` (costs), each present when the source's ``group_by`` asks the
API for it, plus ``constant_dimensions``.

A record that is not a bucket (malformed JSON, no ``start_time``, ``results`` not a list) is
dead-lettered whole; a result that is not usable (a count that is negative, not an integer or absurd,
a cost that is not a finite number) is dead-lettered alone, with its bucket's time in the reason, and
the bucket's other results are kept.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import orjson
from pydantic import Field

from agent.decoders.base import BadRecord, DecodeContext, Decoded, Decoder, Emits, time_problem
from agent.decoders.bedrock import SIGNALS as USAGE_SIGNALS  # the token signals, one order for every token decoder
from agent.model import Cell, Observation, cell, make_dims, parse_time
from agent.pricing import TokenPriceTable
from agent.registry import ComponentConfig, register


class OpenAIUsageConfig(ComponentConfig):
    type: Literal["openai_usage"]
    project_names: dict[str, str] = Field(
        default_factory=dict, description="project id → name for the project dimension (e.g. proj_abc: search)"
    )
    constant_dimensions: dict[str, str] = Field(default_factory=dict, description="added to every observation")
    batch_price_ratio: float = Field(
        0.5, ge=0, le=1, description="share of the list price a Batch API result costs (with group_by: [batch])"
    )
    max_tokens_per_result: int = Field(
        10**12, gt=0, description="tokens or requests in one result above this are absurd and refused"
    )
    max_abs_cost_usd: float = Field(1e9, gt=0, description="a cost of larger magnitude is absurd and refused")


COST_SIGNALS = ("cost_usd",)
DIMENSIONS = ("provider", "service", "model", "project", "api_key", "user", "batch", "line_item")

COMPLETIONS = "organization.usage.completions.result"
EMBEDDINGS = "organization.usage.embeddings.result"
COSTS = "organization.costs.result"
#: Result object of each endpoint the source reads.
ENDPOINT_OBJECTS = {"completions": COMPLETIONS, "embeddings": EMBEDDINGS, "costs": COSTS}
#: Count fields a result of each kind must carry (other counts default to 0).
_REQUIRED = {
    COMPLETIONS: ("input_tokens", "output_tokens", "num_model_requests"),
    EMBEDDINGS: ("input_tokens", "num_model_requests"),
}


class _Refused(Exception):
    """A result (or bucket) that cannot be used: ``kind`` and ``reason`` for the dead-letter file."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@register("decoder", "openai_usage", OpenAIUsageConfig)
class OpenAIUsageDecoder(Decoder):
    """One bucket a record: each of its results → one observation at the bucket's start.

    >>> dec = OpenAIUsageDecoder(OpenAIUsageConfig(type="openai_usage"))
    >>> line = (b'{"object":"bucket","start_time":1730419200,"end_time":1730422800,"results":[{"object":'
    ...         b'"organization.usage.completions.result","input_tokens":1000,"output_tokens":500,'
    ...         b'"input_cached_tokens":800,"num_model_requests":5,"model":"gpt-4o-mini-2024-07-18"}]}')
    >>> [(o.ts, dict(o.dims)["model"], o.values[:5]) for o in dec.decode_lines([line], DecodeContext("t"))[0]]
    [(1730419200.0, 'gpt-4o-mini-2024-07-18', (5.0, 200.0, 500.0, 800.0, 1500.0))]
    """

    type_name = "openai_usage"

    def __init__(self, cfg: OpenAIUsageConfig, *, pricing: Any = None, **_: Any):
        self.cfg = cfg
        self.prices = TokenPriceTable.from_config(pricing)
        self._const = tuple(cfg.constant_dimensions.items())
        self._cells: dict[tuple[Any, ...], Cell] = {}
        self.unknown_models: dict[str, int] = {}

    @classmethod
    def emits(cls, cfg: OpenAIUsageConfig) -> Emits:
        dims = frozenset({*DIMENSIONS, *cfg.constant_dimensions})
        return Emits(
            frozenset({*USAGE_SIGNALS, *COST_SIGNALS}), dims, (frozenset(USAGE_SIGNALS), frozenset(COST_SIGNALS))
        )

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        return b'"organization.usage.' in sample or b'"organization.costs.result"' in sample

    def record_problem(self, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, orjson.JSONDecodeError):
            return ("too_deep" if "depth limit" in str(exc) else "malformed_json"), f"malformed JSON: {exc}"
        return super().record_problem(exc)

    def prices_unknown(self) -> dict[str, int]:
        return dict(self.unknown_models)

    # -- decoding ---------------------------------------------------------------------------
    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        """Bucket by bucket; a line that is not JSON raises (the batch is then decoded record by record)."""
        docs = [orjson.loads(raw) for raw in lines]  # (raises before anything is changed)
        out: list[Observation] = []
        bad: list[BadRecord] = []
        unknown: dict[str, int] = {}
        newest = -math.inf
        for raw, doc in _buckets(lines, docs):
            try:
                start, end, results = self._bucket(doc, ctx)
            except _Refused as exc:
                bad.append(BadRecord(raw, exc.kind, exc.reason))
                continue
            accepted = False
            for i, res in enumerate(results):
                where = f"bucket {_iso(start)} results[{i}]"
                try:
                    ob, unpriced = self._result(res, start)
                except _Refused as exc:
                    bad.append(BadRecord(_dump(res), exc.kind, f"{where}: {exc.reason}"))
                    continue
                out.append(ob)
                accepted = True
                if unpriced is not None:
                    unknown[unpriced] = unknown.get(unpriced, 0) + 1
                    reason = f"{where}: no price for model {unpriced!r}; tokens counted, cost not"
                    bad.append(BadRecord(_dump(res), "unknown_model", reason, partial=True, subject=unpriced))
            if accepted:
                newest = max(newest, end)
        for model, n in unknown.items():
            self.unknown_models[model] = self.unknown_models.get(model, 0) + n
        if newest > ctx.max_event_time:
            # Everything up to the bucket's end has been seen (observations are stamped at its start).
            ctx.max_event_time = newest
        return out, bad

    def _bucket(self, doc: Any, ctx: DecodeContext) -> tuple[float, float, list[Any]]:
        """(start, end, results) of a bucket; raises :class:`_Refused` for one that is not usable."""
        if not isinstance(doc, dict):
            raise _Refused("schema", f"a bucket is a JSON object, not {type(doc).__name__}")
        if doc.get("object", "bucket") != "bucket":
            raise _Refused("schema", f"object {doc.get('object')!r} is not a bucket")
        start = _time(doc, "start_time")
        end = _time(doc, "end_time") if doc.get("end_time") is not None else start
        if end < start:
            raise _Refused("schema", f"end_time {_iso(end)} is before start_time {_iso(start)}")
        results = doc.get("results")
        if not isinstance(results, list):
            raise _Refused("schema", f"bucket {_iso(start)}: results is {type(results).__name__}, not a list")
        problem = time_problem(start, ctx)
        if problem is not None:
            raise _Refused("timestamp_out_of_range", f"bucket {_iso(start)}: {problem}")
        if start - start % ctx.bucket_seconds < ctx.late_before:
            raise _Refused("late", f"bucket {_iso(start)}: event time older than the watermark minus allowed lateness")
        return start, end, results

    def _result(self, res: Any, ts: float) -> tuple[Observation, str | None]:
        """One result → (observation, the model when it has no price)."""
        if not isinstance(res, dict):
            raise _Refused("schema", f"a result is a JSON object, not {type(res).__name__}")
        obj = res.get("object")
        if obj == COSTS:
            return self._cost(res, ts), None
        if obj not in _REQUIRED:
            raise _Refused("unsupported_result", f"result object {obj!r} is not completions, embeddings or costs usage")
        counts = {f: self._count(res, f, f in _REQUIRED[obj]) for f in _COUNTS}
        cached = counts["input_cached_tokens"]
        inp = counts["input_tokens"]
        if cached > inp:
            raise _Refused("schema", f"input_cached_tokens {cached} is more than input_tokens {inp}")
        uncached, out = inp - cached, counts["output_tokens"]
        model = _text(res, "model")
        batch = res.get("batch")
        if batch is not None and not isinstance(batch, bool):
            raise _Refused("schema", f"batch is {batch!r}, not true, false or null")
        c = self._cell(
            USAGE_SIGNALS,
            model,
            _text(res, "project_id"),
            _text(res, "api_key_id"),
            _text(res, "user_id"),
            "" if batch is None else str(batch).lower(),
            "",
        )
        unpriced: str | None = None
        cost = saved = 0.0
        price = self.prices.lookup(model) if model else None
        if price is None:
            unpriced = model or "(no model: group_by lacks model)"
        else:
            cost = uncached * price.input + cached * price.cached_input + out * price.output
            saved = cached * (price.input - price.cached_input)
            if batch:
                cost *= self.cfg.batch_price_ratio
                saved *= self.cfg.batch_price_ratio
        values = (float(counts["num_model_requests"]), float(uncached), float(out), float(cached), float(inp + out))
        return Observation(ts, c, (*values, cost, saved)), unpriced

    def _cost(self, res: dict[str, Any], ts: float) -> Observation:
        amount = res.get("amount")
        if not isinstance(amount, dict):
            raise _Refused("schema", "amount is missing or not an object")
        value = amount.get("value")
        if isinstance(value, str):  # (a decimal as a string: accepted)
            try:
                value = float(value)
            except ValueError:
                raise _Refused("schema", f"amount.value {value!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Refused("schema", f"amount.value is {value!r}, not a number")
        if not math.isfinite(value) or abs(value) > self.cfg.max_abs_cost_usd:
            raise _Refused("absurd_value", f"amount.value {value!r} is not finite or beyond max_abs_cost_usd")
        currency = str(amount.get("currency") or "usd").lower()
        if currency != "usd":
            raise _Refused("unsupported_currency", f"amount in {currency!r}: only usd is supported")
        c = self._cell(COST_SIGNALS, "", _text(res, "project_id"), "", "", "", _text(res, "line_item"))
        return Observation(ts, c, (float(value),))

    def _count(self, res: dict[str, Any], name: str, required: bool) -> int:
        v = res.get(name)
        if v is None:
            if required:
                raise _Refused("schema", f"missing {name}")
            return 0
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Refused("schema", f"{name} is {v!r}, not an integer")
        if v < 0:
            raise _Refused("negative_value", f"{name} is {v}, negative")
        if v > self.cfg.max_tokens_per_result:
            raise _Refused("absurd_value", f"{name} is {v}, over max_tokens_per_result")
        return v

    def _cell(
        self, signals: tuple[str, ...], model: str, project: str, api_key: str, user: str, batch: str, line_item: str
    ) -> Cell:
        key = (signals, model, project, api_key, user, batch, line_item)
        c = self._cells.get(key)
        if c is None:
            pairs = [
                ("provider", "openai"),
                ("service", "openai"),
                ("model", model),
                ("project", self.cfg.project_names.get(project, project)),
                ("api_key", api_key),
                ("user", user),
                ("batch", batch),
                ("line_item", line_item),
                *self._const,
            ]
            c = cell(make_dims(pairs), signals)
            if len(self._cells) < 100_000:
                self._cells[key] = c
        return c


_COUNTS = ("input_tokens", "output_tokens", "input_cached_tokens", "num_model_requests")


def _time(doc: dict[str, Any], name: str) -> float:
    v = doc.get(name)
    if v is None:
        raise _Refused("schema", f"missing {name}")
    try:
        return parse_time(v)
    except (ValueError, TypeError) as exc:
        raise _Refused("schema", f"{name} {v!r}: {exc}") from None


def _text(res: dict[str, Any], name: str) -> str:
    v = res.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _Refused("schema", f"{name} is {v!r}, not a string")
    return v


def _dump(res: Any) -> bytes:
    try:
        return orjson.dumps(res)
    except TypeError:
        return repr(res).encode()


def _buckets(lines: list[bytes], docs: list[Any]) -> list[tuple[bytes, Any]]:
    """(raw, bucket) of each record: a whole API response saved to a file (``{"object": "page", "data": [...]}``, as
    ``curl …/v1/organization/usage/completions > page.json`` writes it) is its buckets, each with its own JSON as raw.

    >>> page = {"object": "page", "data": [{"start_time": 1}, {"start_time": 2}], "has_more": False}
    >>> [d["start_time"] for _r, d in _buckets([b""], [page])]
    [1, 2]
    """
    out: list[tuple[bytes, Any]] = []
    for raw, doc in zip(lines, docs, strict=True):
        if isinstance(doc, dict) and doc.get("object") == "page" and isinstance(doc.get("data"), list):
            out.extend((orjson.dumps(b), b) for b in doc["data"])
        else:
            out.append((raw, doc))
    return out
