"""Bedrock token counts that are missing or null, and cache writes' price."""

from __future__ import annotations

import math

import orjson
import pytest

from agent.config import PricingConfig
from agent.decoders.base import DecodeContext
from agent.decoders.bedrock import BedrockConfig, BedrockDecoder
from agent.model import parse_time

SONNET = "anthropic.claude-3-5-sonnet-20241022-v2:0"


def log(drop: tuple[str, ...] = (), **over: object) -> bytes:
    rec: dict[str, object] = {
        "schemaType": "ModelInvocationLog",
        "timestamp": "2026-10-01T10:15:30Z",
        "accountId": "111122223333",
        "region": "us-east-1",
        "modelId": SONNET,
        "input": {"inputTokenCount": 1000},
        "output": {"outputTokenCount": 100},
        "requestMetadata": {"team": "search"},
    }
    rec.update(over)
    for k in drop:
        del rec[k]
    return orjson.dumps(rec)


def decode(lines: list[bytes], pricing: PricingConfig | None = None, **kw: object) -> tuple[list, list]:
    dec = BedrockDecoder(BedrockConfig(type="bedrock", tag_dimensions={"team": "team"}), pricing=pricing)
    return dec.decode_lines(lines, DecodeContext("t", bucket_seconds=60, **kw))  # type: ignore[arg-type]


def totals(obs: list) -> tuple[float, ...]:
    return tuple(sum(o.values[i] for o in obs) for i in range(7))


def test_null_cache_counts_are_no_cache_use_not_a_bad_record() -> None:
    lines = [
        log(input={"inputTokenCount": 1000, "cacheReadInputTokenCount": None, "cacheWriteInputTokenCount": None}),
        log(input={"inputTokenCount": 1000, "cacheReadInputTokenCount": 500}),
    ]
    obs, bad = decode(lines)
    assert bad == []
    requests, tin, tout, cached, tokens, _cost, _saved = totals(obs)
    assert (requests, tin, tout, cached, tokens) == (2, 2000, 200, 500, 2700)


@pytest.mark.parametrize(
    ("line", "missing", "counted"),
    [
        (log(output={}), "outputTokenCount", (1, 1000, 0)),
        (log(input={}), "inputTokenCount", (1, 0, 100)),
        (log(input={"inputTokenCount": None}), "inputTokenCount", (1, 0, 100)),
        (log(drop=("input",)), "inputTokenCount", (1, 0, 100)),
        (log(drop=("output",)), "outputTokenCount", (1, 1000, 0)),
        (log(input={}, output={}), "inputTokenCount and outputTokenCount", (1, 0, 0)),
    ],
)
def test_a_missing_token_count_is_counted_partly_and_reported_never_silently_zero(
    line: bytes, missing: str, counted: tuple[int, int, int]
) -> None:
    good = log(timestamp="2026-10-01T10:16:00Z")
    obs, bad = decode([good, line])
    assert [(b.kind, b.partial, b.raw) for b in bad] == [("missing_tokens", True, line)]
    assert f"no {missing} " in bad[0].reason
    requests, tin, tout = totals(obs)[:3]
    assert (requests, tin, tout) == (1 + counted[0], 1000 + counted[1], 100 + counted[2])


def test_a_record_missing_tokens_that_is_late_or_unpriced_is_reported_once() -> None:
    late = log(output={}, timestamp="2026-10-01T09:00:00Z")
    unpriced = log(output={}, modelId="acme.mystery-v1")
    obs, bad = decode([late, unpriced, log()], late_before=parse_time("2026-10-01T10:00:00Z"))
    assert sorted((b.kind, b.raw) for b in bad) == sorted([("late", late), ("unknown_model", unpriced)])


def test_cache_writes_are_priced_at_the_cache_write_price_where_the_table_has_one() -> None:
    line = log(input={"inputTokenCount": 1000, "cacheWriteInputTokenCount": 2000})
    obs, bad = decode([line])  # the bundled table has no cache-write price: the input price
    assert bad == [] and totals(obs)[1] == 3000
    assert math.isclose(totals(obs)[5], 3000 * 3e-6 + 100 * 15e-6)
    prices = PricingConfig(token_prices={SONNET: {"input": 3.0, "output": 15.0, "cache_write_input": 3.75}})
    obs, bad = decode([line], prices)
    assert bad == [] and totals(obs)[1] == 3000  # cache writes stay input tokens
    assert math.isclose(totals(obs)[5], 1000 * 3e-6 + 2000 * 3.75e-6 + 100 * 15e-6)
