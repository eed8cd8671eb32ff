"""AWS Bedrock model invocation logs → token counts and token cost.

One JSON document per call (``schemaType: ModelInvocationLog``). Decoded with typed msgspec
structs that hold only the fields the agent needs; a whole batch of lines is decoded in one
call and only a failing batch is re-decoded line by line to find the bad records.

Signals: ``requests``, ``input_tokens``, ``output_tokens``, ``cached_input_tokens``,
``tokens``, ``token_cost_usd``. Dimensions: ``provider=aws``, ``service=bedrock``,
``billing_account``, ``region``, ``model``, ``operation`` (optional) and one dimension per
``tag_dimensions`` entry, read from ``requestMetadata``.
"""

from __future__ import annotations

import datetime as _dt
import sys
from typing import Any, Literal

import msgspec
from pydantic import Field

from agent.decoders.base import BadRecord, DecodeContext, Decoded, Decoder
from agent.model import Dims, Observation, make_dims
from agent.pricing import TokenPriceTable, normalize_model_id
from agent.registry import ComponentConfig, register


class BedrockConfig(ComponentConfig):
    type: Literal["bedrock"]
    tag_dimensions: dict[str, str] = Field(
        default_factory=dict, description="dimension name → requestMetadata key (e.g. team: team)"
    )
    include_operation: bool = False
    max_tokens_per_record: int = Field(10_000_000, gt=0, description="larger counts are absurd and rejected")


class _Input(msgspec.Struct):
    inputTokenCount: int = 0
    cacheReadInputTokenCount: int = 0
    cacheWriteInputTokenCount: int = 0


class _Output(msgspec.Struct):
    outputTokenCount: int = 0


class _Log(msgspec.Struct):
    timestamp: _dt.datetime
    accountId: str
    region: str
    modelId: str
    input: _Input
    output: _Output
    operation: str = ""
    requestMetadata: dict[str, str] | None = None


SIGNALS = ("requests", "input_tokens", "output_tokens", "cached_input_tokens", "tokens", "token_cost_usd")


@register("decoder", "bedrock", BedrockConfig)
class BedrockDecoder(Decoder):
    type_name = "bedrock"

    def __init__(self, cfg: BedrockConfig, *, pricing: Any = None, **_: Any):
        self.cfg = cfg
        self.prices = TokenPriceTable.from_config(pricing)
        self._one = msgspec.json.Decoder(_Log)
        self._many = msgspec.json.Decoder(list[_Log])
        self._tags = tuple(cfg.tag_dimensions.items())
        # (account, region, model, operation, tag values...) → (dims, in, out, cached, priced)
        self._cache: dict[tuple[str, ...], tuple[Dims, float, float, float, bool]] = {}
        self.unknown_models: dict[str, int] = {}

    @classmethod
    def sniff(cls, sample: bytes) -> bool:
        return b"ModelInvocationLog" in sample or (b'"modelId"' in sample and b'"inputTokenCount"' in sample)

    def _key_info(self, log: _Log) -> tuple[Dims, float, float, float, bool]:
        md = log.requestMetadata
        tag_vals = tuple((md.get(src, "") if md else "") for _dim, src in self._tags)
        key = (log.accountId, log.region, log.modelId, log.operation if self.cfg.include_operation else "", *tag_vals)
        info = self._cache.get(key)
        if info is None:
            model = normalize_model_id(log.modelId)
            pairs = [
                ("provider", "aws"),
                ("service", "bedrock"),
                ("billing_account", log.accountId),
                ("region", log.region),
                ("model", model),
            ]
            if self.cfg.include_operation:
                pairs.append(("operation", log.operation))
            pairs.extend((dim, val) for (dim, _src), val in zip(self._tags, tag_vals, strict=True))
            price = self.prices.lookup(log.modelId)
            if price is None:
                info = (make_dims(pairs), 0.0, 0.0, 0.0, False)
            else:
                info = (make_dims(pairs), price.input, price.output, price.cached_input, True)
            if len(self._cache) < 200_000:
                self._cache[key] = info
        return info

    def decode_lines(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        lines = [ln for ln in lines if ln.strip()]
        if not lines:
            return [], []
        try:
            logs: list[_Log] = self._many.decode(b"[" + b",".join(lines) + b"]")
            if len(logs) != len(lines):
                raise msgspec.DecodeError("record count mismatch")
            pairs = list(zip(logs, lines, strict=True))
            bad: list[BadRecord] = []
        except (msgspec.DecodeError, msgspec.ValidationError):
            pairs, bad = [], []
            for ln in lines:
                try:
                    pairs.append((self._one.decode(ln), ln))
                except msgspec.ValidationError as exc:
                    bad.append(BadRecord(ln, "schema", f"invalid Bedrock log: {exc}"))
                except msgspec.DecodeError as exc:
                    bad.append(BadRecord(ln, "malformed_json", f"malformed JSON: {exc}"))
        out: list[Observation] = []
        append = out.append
        lo, hi = ctx.min_ts, ctx.max_ts
        max_tok = self.cfg.max_tokens_per_record
        utc = _dt.UTC
        for log, raw in pairs:
            t = log.timestamp
            if t.tzinfo is None:
                t = t.replace(tzinfo=utc)
            ts = t.timestamp()
            if not lo <= ts <= hi:
                bad.append(
                    BadRecord(
                        raw, "timestamp_out_of_range", f"timestamp {log.timestamp.isoformat()} outside accepted range"
                    )
                )
                continue
            i = log.input
            tin = i.inputTokenCount
            tcr = i.cacheReadInputTokenCount
            tout = log.output.outputTokenCount
            if tin < 0 or tout < 0 or tcr < 0 or i.cacheWriteInputTokenCount < 0:
                bad.append(BadRecord(raw, "negative_value", "negative token count"))
                continue
            if tin + tout + tcr + i.cacheWriteInputTokenCount > max_tok:
                bad.append(BadRecord(raw, "absurd_value", f"token count above max_tokens_per_record={max_tok}"))
                continue
            dims, p_in, p_out, p_cached, priced = self._key_info(log)
            tin_all = tin + i.cacheWriteInputTokenCount
            cost = tin_all * p_in + tout * p_out + tcr * p_cached
            if not priced:
                m = log.modelId
                self.unknown_models[m] = self.unknown_models.get(m, 0) + 1
                bad.append(
                    BadRecord(
                        raw, "unknown_model", f"no price for model {sys.intern(m)!r}; tokens counted, cost not", True
                    )
                )
            append(Observation(ts, dims, SIGNALS, (1.0, tin_all, tout, tcr, tin_all + tout + tcr, cost)))
        return out, bad

    def prices_unknown(self) -> dict[str, int]:
        return dict(self.unknown_models)
