from __future__ import annotations

import math

import orjson
import pytest

from agent.config import PricingConfig
from agent.decoders.base import DecodeContext
from agent.decoders.bedrock import SIGNALS, BedrockConfig, BedrockDecoder
from agent.model import parse_time
from agent.pricing import TokenPriceTable, normalize_model_id

SONNET = "anthropic.claude-3-5-sonnet-20241022-v2:0"


def log(**over: object) -> bytes:
    rec: dict[str, object] = {
        "schemaType": "ModelInvocationLog",
        "schemaVersion": "1.0",
        "timestamp": "2026-10-01T10:15:30Z",
        "accountId": "111122223333",
        "identity": {"arn": "arn:aws:sts::111122223333:assumed-role/app/s"},
        "region": "us-east-1",
        "requestId": "r-1",
        "operation": "Converse",
        "modelId": SONNET,
        "input": {"inputTokenCount": 1000, "cacheReadInputTokenCount": 200},
        "output": {"outputTokenCount": 100},
        "requestMetadata": {"team": "search", "env": "prod"},
    }
    rec.update(over)
    return orjson.dumps(rec)


def decoder(**cfg: object) -> BedrockDecoder:
    return BedrockDecoder(BedrockConfig(type="bedrock", tag_dimensions={"team": "team"}, **cfg))  # type: ignore[arg-type]


def ctx(**kw: object) -> DecodeContext:
    return DecodeContext("t", bucket_seconds=60, **kw)  # type: ignore[arg-type]


def test_tokens_and_cost_per_model_account_region_team() -> None:
    lines = [log(), log(timestamp="2026-10-01T10:15:59Z"), log(requestMetadata={"team": "ads"})]
    obs, bad = decoder().decode_lines(lines, ctx())
    assert bad == []
    by_team = {dict(o.dims)["team"]: o for o in obs}
    s = by_team["search"]
    assert s.signals == SIGNALS
    assert s.ts == parse_time("2026-10-01T10:15:00Z")  # the minute bucket
    requests, tin, tout, cached, tokens, cost, saved = s.values
    assert (requests, tin, tout, cached, tokens) == (2, 2000, 200, 400, 2600)
    assert cost == pytest.approx(2 * (1000 * 3e-6 + 100 * 15e-6 + 200 * 0.3e-6))
    assert saved == pytest.approx(400 * (3e-6 - 0.3e-6))  # what the 400 cached tokens did not cost
    assert dict(s.dims) == {
        "provider": "aws",
        "service": "bedrock",
        "billing_account": "111122223333",
        "region": "us-east-1",
        "model": SONNET,
        "team": "search",
    }
    assert by_team["ads"].values[0] == 1


def test_a_call_without_the_tag_is_untagged_not_blank() -> None:
    lines = [log(requestMetadata={"env": "prod"}), log(requestMetadata={"team": ""}), log(requestMetadata=None)]
    lines = [ln.replace(b',"requestMetadata":null', b"") for ln in lines]
    obs, bad = decoder().decode_lines(lines, ctx())
    assert bad == []
    assert {dict(o.dims)["team"] for o in obs} == {"(untagged)"}
    assert sum(o.values[0] for o in obs) == 3


def test_sub_minute_buckets() -> None:
    lines = [
        log(timestamp="2026-10-01T10:15:05Z"),
        log(timestamp="2026-10-01T10:15:30Z"),
        log(timestamp="2026-10-01T10:15:31Z"),
    ]
    obs, bad = decoder().decode_lines(lines, DecodeContext("t", bucket_seconds=30))
    assert bad == []
    t0 = parse_time("2026-10-01T10:15:00Z")
    assert sorted((o.ts, o.values[0]) for o in obs) == [(t0, 1), (t0 + 30, 2)]


def test_inference_profile_arn_and_non_canonical_times() -> None:
    arn = f"arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.{SONNET}"
    lines = [log(modelId=arn, timestamp="2026-10-01T12:15:30+02:00"), log(timestamp="2026-10-01T10:15:30.123Z")]
    obs, bad = decoder().decode_lines(lines, ctx())
    assert bad == []
    # Both in the 10:15 UTC bucket, in the same cell (the ARN names the same base model).
    assert {o.ts for o in obs} == {parse_time("2026-10-01T10:15:00Z")}
    assert len({o.cell for o in obs}) == 1 and sum(o.values[0] for o in obs) == 2
    assert dict(obs[0].dims)["model"] == SONNET
    assert normalize_model_id(arn) == SONNET


def test_every_kind_of_bad_record_is_reported_and_good_ones_kept() -> None:
    good = log()
    lines = [
        good,
        b'{"schemaType": "ModelInvocationLog", "timestamp": ',  # truncated JSON
        b"\xff\xfe garbage",
        log(input={"inputTokenCount": "many"}),  # wrong type
        orjson.dumps({"timestamp": "2026-10-01T10:00:00Z", "modelId": SONNET}),  # missing fields
        log(input={"inputTokenCount": -5}),
        log(output={"outputTokenCount": 10**12}),
        log(input={"inputTokenCount": 1.5e300}),
        b'{"timestamp": NaN}',
        log(timestamp="1999-01-01T00:00:00Z"),
        log(timestamp="2126-01-01T00:00:00Z"),
        log(timestamp="yesterday"),
        log(modelId="acme.mystery-model-v9"),
    ]
    c = ctx(min_ts=parse_time("2020-01-01T00:00:00Z"), max_ts=parse_time("2030-01-01T00:00:00Z"))
    dec = decoder()
    obs, bad = dec.decode_lines(lines, c)
    kinds = sorted(b.kind for b in bad)
    assert kinds == sorted(
        [
            "malformed_json",
            "malformed_json",
            "schema",
            "schema",
            "negative_value",
            "absurd_value",
            "schema",
            "malformed_json",
            "timestamp_out_of_range",
            "timestamp_out_of_range",
            "schema",
            "unknown_model",
        ]
    ), [(b.kind, b.reason) for b in bad]
    assert all(b.raw in lines for b in bad)
    unknown = next(b for b in bad if b.kind == "unknown_model")
    assert unknown.partial and "acme.mystery-model-v9" in unknown.reason
    # The good record and the unknown model's tokens are processed; the unknown model costs nothing.
    assert sum(o.values[0] for o in obs) == 2
    mystery = next(o for o in obs if dict(o.dims)["model"] == "acme.mystery-model-v9")
    assert mystery.values[4] == 1300 and mystery.values[5] == 0.0
    assert dec.prices_unknown() == {"acme.mystery-model-v9": 1}


def test_late_records_keep_their_original_bytes() -> None:
    lines = [log(timestamp="2026-10-01T10:15:30Z"), log(timestamp="2026-10-01T11:00:00Z")]
    obs, bad = decoder().decode_lines(lines, ctx(late_before=parse_time("2026-10-01T11:00:00Z")))
    assert [b.kind for b in bad] == ["late"] and bad[0].raw == lines[0]
    assert len(obs) == 1


def test_price_table_source_and_overrides(tmp_path: object) -> None:
    table = TokenPriceTable.from_config(None)
    assert table.meta["as_of"] and table.meta["source"]
    assert table.lookup(SONNET) is not None
    cfg = PricingConfig(token_prices={SONNET: {"input": 1.0, "output": 2.0}, "my.model": {"input": 4, "output": 8}})
    table = TokenPriceTable.from_config(cfg)
    p = table.lookup(SONNET)
    assert p is not None and math.isclose(p.input, 1e-6) and math.isclose(p.output, 2e-6)
    assert table.lookup("my.model") is not None


def test_litellm_price_file(tmp_path: object) -> None:
    from pathlib import Path

    f = Path(str(tmp_path)) / "litellm.json"
    f.write_bytes(
        orjson.dumps(
            {
                "sample_spec": {"max_tokens": 1},
                "acme.model-v1": {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6, "mode": "chat"},
            }
        )
    )
    table = TokenPriceTable.from_config(PricingConfig(token_price_file=str(f)))
    p = table.lookup("acme.model-v1")
    assert p is not None and math.isclose(p.output, 8e-6) and math.isclose(p.cached_input, 2e-6)
