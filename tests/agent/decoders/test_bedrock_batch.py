"""The Bedrock decoder's batch path (one decode per line, folded at once) gives what record-by-record decoding gives."""

from __future__ import annotations

import random

import orjson

from agent.decoders.base import DecodeContext
from agent.model import parse_time
from tests.agent.decoders.test_bedrock import ctx, decoder, log

MODELS = ["anthropic.claude-3-5-sonnet-20241022-v2:0", "amazon.nova-lite-v1:0", "vendor.unpriced-model-v9"]


def lines(n: int, seed: int = 3) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        minute, second = rng.randrange(50), rng.randrange(60)  # out of order within the batch
        out.append(
            log(
                timestamp=f"2026-10-01T10:{minute:02d}:{second:02d}Z",
                modelId=rng.choice(MODELS),
                requestMetadata={"team": rng.choice(["a", "b", "c"])},
                input={"inputTokenCount": rng.randrange(1000), "cacheReadInputTokenCount": rng.randrange(50)},
                output={"outputTokenCount": rng.randrange(100)},
            )
        )
    return out


def totals(obs: list) -> dict:
    out: dict = {}
    for ts, cell, vals in obs:
        acc = out.setdefault((ts, cell), [0.0] * len(vals))
        for i, v in enumerate(vals):
            acc[i] += v
    return {k: [round(v, 9) for v in vs] for k, vs in out.items()}


def test_batch_equals_record_by_record_with_late_and_unpriced_records() -> None:
    batch = lines(300)
    c1 = ctx(late_before=parse_time("2026-10-01T10:10:00Z"))
    c2 = ctx(late_before=parse_time("2026-10-01T10:10:00Z"))
    obs, bad = decoder().decode_lines(batch, c1)
    one, one_bad = [], []
    d = decoder()
    for raw in batch:
        o, b = d.decode_lines([raw], c2)
        one += o
        one_bad += b
    assert totals(obs) == totals(one)
    key = lambda b: (b.raw, b.kind)  # noqa: E731
    assert sorted(bad, key=key) == sorted(one_bad, key=key)
    assert {b.kind for b in bad} == {"late", "unknown_model"}
    assert c1.max_event_time == c2.max_event_time == max(parse_time(orjson.loads(r)["timestamp"]) for r in batch)


def test_a_bad_line_mid_batch_costs_that_line_alone() -> None:
    batch = lines(20)
    batch[7] = batch[7][:-5]  # cut off
    batch[12] = batch[12] + b" " + batch[12]  # two documents on one line
    obs, bad = decoder().decode_lines(batch, ctx())
    assert sorted(b.raw for b in bad if b.kind == "malformed_json") == sorted([batch[7], batch[12]])
    good, _ = decoder().decode_lines([r for i, r in enumerate(batch) if i not in (7, 12)], ctx())
    assert totals(obs) == totals(good)


def test_a_batch_of_late_records_is_decoded_twice_not_once_per_cell() -> None:
    """Dead-lettering late records finds each cell's lines in one more pass over the batch (a replay after a
    restore can make a whole batch late: once per cell, that was quadratic)."""
    batch = lines(600)
    d = decoder()

    class Counting:
        def __init__(self, inner: object) -> None:
            self.inner, self.calls = inner, 0

        def decode(self, raw: bytes) -> object:
            self.calls += 1
            return self.inner.decode(raw)  # type: ignore[attr-defined]

    d._one = counting = Counting(d._one)
    obs, bad = d.decode_lines(batch, ctx(late_before=parse_time("2026-10-02T00:00:00Z")))
    assert obs == [] and len(bad) == 600 and {b.kind for b in bad} == {"late"}
    assert sorted(b.raw for b in bad) == sorted(batch)
    assert counting.calls == 2 * len(batch)


def test_runs_of_one_minute_mixed_with_other_time_forms_bucket_as_record_by_record() -> None:
    """A record in the minute of the canonical time before it skips the minute lookup: a non-canonical time, a bad one
    or one in another bucket between them must not make a later record take the wrong bucket."""
    times = [
        "2026-10-01T10:05:01Z",
        "2026-10-01T10:05:02Z",
        "2026-10-01T10:05:03+00:00",  # non-canonical, same minute
        "2026-10-01T10:05:04Z",
        "2026-10-01T11:05:04Z",  # another hour's bucket
        "2026-10-01T10:05:05Z",
        "2026-10-01T10:05:5xZ",  # canonical length, bad seconds, valid minute prefix
        "2026-10-01T10:0x:05Z",  # canonical length, bad minute: a schema error
        "2026-10-01T10:05:06Z",
        "2026-10-01T11:05:04+00:00",  # non-canonical, another bucket
        "2026-10-01T10:05:06Z",
        "2026-10-01T10:06:00Z",
        "2026-10-01T10:05:59Z",
        "2026-10-01T10:0\U0010ffff:00Z",
        "2026-10-01T10:05:07Z",
    ]
    batch = [
        log(timestamp=t, requestMetadata={"team": "ab"[i % 2]}, input={"inputTokenCount": i + 1})
        for i, t in enumerate(times)
    ]
    for seconds in (60.0, 3600.0, 30.0):
        obs, bad = decoder().decode_lines(batch, DecodeContext("t", bucket_seconds=seconds))
        one, one_bad = [], []
        d = decoder()
        for raw in batch:
            o, b = d.decode_lines([raw], DecodeContext("t", bucket_seconds=seconds))
            one += o
            one_bad += b
        assert totals(obs) == totals(one) and len(totals(obs)) >= 3
        assert sorted((b.raw, b.kind) for b in bad) == sorted((b.raw, b.kind) for b in one_bad)
        assert {b.kind for b in bad} == {"schema"}
