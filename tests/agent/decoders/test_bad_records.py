"""A failure costs exactly the records that fail, in every line decoder.

Each decoder gets one batch of good records mixed with every kind of bad one we could think of;
the good records' totals must be exact and every bad record must come back once, with its
original bytes and a clear kind. What we decided for bytes that are not plainly good or bad:

- a leading UTF-8 byte-order mark is removed: the record decodes (if it is bad for another reason,
  the dead-letter file still gets its original bytes, BOM included);
- a trailing ``\\r`` (CRLF line endings) is whitespace: the record decodes;
- duplicate keys in a JSON object: the last one wins, as in orjson, msgspec, Python's ``json`` and
  JavaScript's ``JSON.parse`` (RFC 8259 leaves it open), in the batch path and the per-record path
  alike; duplicate label names in a Prometheus sample are refused, as Prometheus refuses them;
- a blank (whitespace-only) line is no record: it comes back as :data:`BLANK`, which the pipeline
  counts (``finops_agent_blank_lines_total``) and neither logs nor dead-letters.

Truncated gzip members are read by the file source: see ``tests/agent/sources/test_file.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from agent.decoders.base import BLANK, BOM, BadRecord, DecodeContext, Decoded, Decoder
from agent.decoders.bedrock import BedrockConfig, BedrockDecoder
from agent.decoders.dcgm import UTIL_SIGNALS, DcgmConfig, DcgmDecoder
from agent.decoders.generic_json import JsonConfig, JsonDecoder
from agent.model import Observation, parse_time
from tests.agent.decoders.test_bedrock import log

DEEP = b"[" * 5000 + b"]" * 5000
T0 = parse_time("2026-10-01T10:00:00Z")


@dataclass
class Case:
    """A line format: its decoder, good records with what each adds to the totals, and bad records."""

    make: Callable[[], Decoder]
    good: Callable[[int], tuple[bytes, tuple[float, float]]]  # i → (line, (records, amount))
    totals: Callable[[list[Observation]], tuple[float, float]]  # independent of the decoder's cells
    harmless: list[tuple[bytes, tuple[float, float]]]
    bad: list[tuple[bytes, str]]
    ctx: DecodeContext


# -- Bedrock ----------------------------------------------------------------------------------
def _bedrock_good(i: int) -> tuple[bytes, tuple[float, float]]:
    tokens = 100 + i
    line = log(timestamp=f"2026-10-01T10:{i % 60:02d}:00Z", input={"inputTokenCount": tokens})
    return line, (1, tokens)


def _bedrock_totals(obs: list[Observation]) -> tuple[float, float]:
    return sum(o.values[0] for o in obs), sum(o.values[1] for o in obs)


def _dup_input(tokens: int) -> bytes:
    good = log(timestamp="2026-10-01T10:30:00Z", input={"inputTokenCount": tokens})
    return good.replace(b'"input":', b'"input":{"inputTokenCount":999999},"input":', 1)


BEDROCK = Case(
    make=lambda: BedrockDecoder(BedrockConfig(type="bedrock", tag_dimensions={"team": "team"})),
    good=_bedrock_good,
    totals=_bedrock_totals,
    harmless=[
        (BOM + log(input={"inputTokenCount": 7}), (1, 7)),
        (log(input={"inputTokenCount": 11}) + b"\r", (1, 11)),
        (_dup_input(13), (1, 13)),  # the last "input" wins
    ],
    bad=[
        (log(requestMetadata={"team": "a", "deep": orjson.Fragment(DEEP)}), "too_deep"),  # a field it reads
        (log(trace=orjson.Fragment(DEEP)), "too_deep"),  # a field it skips
        (log().replace(b'"inputTokenCount":1000', b'"inputTokenCount":1' + b"0" * 30), "absurd_value"),
        (log().replace(b'"inputTokenCount":1000', b'"inputTokenCount":1' + b"0" * 5000), "absurd_value"),
        (log().replace(b'"inputTokenCount":1000', b'"inputTokenCount":1e400'), "absurd_value"),
        (log(input={"inputTokenCount": -1}), "negative_value"),
        (log(input={"inputTokenCount": "many"}), "schema"),
        (log(input={"inputTokenCount": 1.5}), "schema"),
        (log(timestamp=1790848800), "schema"),
        (log(requestMetadata={"team": 7}), "schema"),
        (log().replace(b"search", b"se\xffrch"), "malformed_json"),  # invalid UTF-8
        (log().replace(b"search", b"se\x00rch"), "malformed_json"),  # a raw NUL byte
        (log() + b"\x00", "malformed_json"),
        (b"\x00\x00\x00", "malformed_json"),
        (log()[:-40], "malformed_json"),  # truncated
        (log() + b"," + log(), "malformed_json"),  # two documents on one line
        (BOM + log()[:-40], "malformed_json"),  # its original bytes keep the BOM
    ],
    ctx=DecodeContext("t", bucket_seconds=60, min_ts=T0 - 86400, max_ts=T0 + 86400),
)


# -- dcgm-exporter text -----------------------------------------------------------------------
def _dcgm_good(i: int) -> tuple[bytes, tuple[float, float]]:
    util = i % 101
    line = f'DCGM_FI_DEV_GPU_UTIL{{gpu="{i % 8}",Hostname="n{i // 8}",modelName="NVIDIA L4"}} {util} 1790848800000'
    return line.encode(), (1, util)


def _dcgm_totals(obs: list[Observation]) -> tuple[float, float]:
    util = [o for o in obs if o.signals == UTIL_SIGNALS]
    return len(util), sum(o.values[4] for o in util)  # utilisation × hours, one-hour scrapes


_S = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="h1",modelName="NVIDIA L4"}'  # (no good sample's series)
DCGM = Case(
    make=lambda: DcgmDecoder(DcgmConfig(type="dcgm", scrape_interval_seconds=3600)),
    good=_dcgm_good,
    totals=_dcgm_totals,
    harmless=[
        (BOM + _S.encode() + b" 40 1790848800000", (1, 40)),
        (_S.replace('gpu="0"', 'gpu="1"').encode() + b" 30 1790848800000\r", (1, 30)),  # (a sample twice: once)
        (b"# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\r", (0, 0)),
    ],
    bad=[
        (b"DCGM_FI_DEV_GPU_UTIL" + b"{" * 5000 + b"}" * 5000 + b" 50 1790848800000", "malformed_text"),
        (_S.encode() + b" 1e400 1790848800000", "non_finite"),
        (b'DCGM_FI_DEV_FB_USED{gpu="0",Hostname="n1"} 1e15 1790848800000', "absurd_value"),
        (b'DCGM_FI_DEV_POWER_USAGE{gpu="0",Hostname="n1"} 1e12 1790848800000', "absurd_value"),
        (_S.encode() + b" 50 1" + b"0" * 40, "timestamp_out_of_range"),
        (_S.encode() + b" seven 1790848800000", "schema"),
        (_S.encode() + b" 50 noon", "malformed_text"),
        (b'DCGM_FI_DEV_GPU_UTIL{gpu="\xff"} 50 1790848800000', "malformed_text"),  # invalid UTF-8
        (b'DCGM_FI_DEV_GPU_UTIL{gpu="0\x00"} 50 1790848800000', "malformed_text"),  # NUL byte
        (b'DCGM_FI_DEV_GPU_UTIL{gpu="0",gpu="1"} 50 1790848800000', "malformed_text"),  # duplicate label
        (b'DCGM_FI_DEV_GPU_UTIL{gpu="0" Hostname="n1"} 50 1790848800000', "malformed_text"),
        (BOM + b"DCGM_FI_DEV_GPU_UTIL{", "malformed_text"),
    ],
    ctx=DecodeContext("t", bucket_seconds=60, min_ts=T0 - 86400, max_ts=T0 + 86400),
)


# -- generic JSON -----------------------------------------------------------------------------
def _json(cost: Any = 1.5, **over: Any) -> bytes:
    doc = {"ts": "2026-10-01T10:00:05Z", "cost": {"usd": cost}, "labels": {"team": "a"}}
    doc.update(over)
    return orjson.dumps(doc)


def _json_good(i: int) -> tuple[bytes, tuple[float, float]]:
    cost = (i % 16) * 0.25  # exact in binary: the sum is exact whatever the order
    return _json(cost, labels={"team": f"t{i % 5}"}), (1, cost)


def _json_totals(obs: list[Observation]) -> tuple[float, float]:
    return len(obs), sum(o.values[0] for o in obs)


JSON = Case(
    make=lambda: JsonDecoder(
        JsonConfig(type="json", time_field="ts", values={"cost_usd": "cost.usd"}, dimensions={"team": "labels.team"})
    ),
    good=_json_good,
    totals=_json_totals,
    harmless=[
        (BOM + _json(2.0), (1, 2.0)),
        (_json(4.0) + b"\r", (1, 4.0)),
        (_json(8.0).replace(b'"cost":', b'"cost":{"usd":1000.0},"cost":', 1), (1, 8.0)),  # the last "cost" wins
    ],
    bad=[
        (_json(deep=orjson.Fragment(DEEP)), "too_deep"),
        (_json().replace(b"1.5", b"1e999"), "malformed_json"),  # no double holds it
        (_json(1e15), "absurd_value"),
        (_json().replace(b"1.5", b"1" + b"0" * 30), "absurd_value"),
        (_json("lots"), "schema"),
        (_json(ts=True), "schema"),
        (_json(labels={"team": {"name": "a"}}), "schema"),
        (_json().replace(b'"a"', b'"\xff"'), "malformed_json"),  # invalid UTF-8
        (_json().replace(b'"a"', b'"\x00"'), "malformed_json"),  # NUL byte
        (_json() + b"\x00", "malformed_json"),
        (_json()[:-5], "malformed_json"),
        (BOM + _json()[:-5], "malformed_json"),  # its original bytes keep the BOM
    ],
    ctx=DecodeContext("t", bucket_seconds=60, min_ts=T0 - 86400, max_ts=T0 + 86400),
)

CASES = {"bedrock": BEDROCK, "dcgm": DCGM, "json": JSON}
BLANKS = [b"", b"   ", b"\r", b"\t \r"]


def _check(case: Case, lines: list[bytes], obs: list[Observation], bad: list[BadRecord], expected: Any) -> None:
    """Totals exact; each bad record back once, with its kind and original bytes; blank lines as BLANK."""
    assert case.totals(obs) == expected
    want = sorted((raw, kind) for raw, kind in case.bad if any(raw is ln for ln in lines))
    got = sorted((b.raw, b.kind) for b in bad if b.kind != BLANK)
    assert got == want, [(k, raw[:60], [b.reason for b in bad if b.raw is raw]) for raw, k in got]
    assert all(b.reason for b in bad)
    assert sorted(b.raw for b in bad if b.kind == BLANK) == sorted(ln for ln in lines if ln in BLANKS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_batch_of_every_bad_kind_costs_only_the_bad_records(name: str) -> None:
    case = CASES[name]
    good = [case.good(i) for i in range(300)]
    lines = [ln for ln, _ in good] + [ln for ln, _ in case.harmless] + [ln for ln, _ in case.bad] + BLANKS
    random.Random(12).shuffle(lines)
    expected = tuple(sum(c[k] for _, c in good + case.harmless) for k in (0, 1))
    dec = case.make()
    obs, bad = dec.decode_lines(lines, case.ctx)
    _check(case, lines, obs, bad, expected)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("kind", ["each bad kind alone", "harmless only"])
def test_one_bad_record_in_a_large_batch(name: str, kind: str) -> None:
    """The issue's case: one line nested thousands deep cost a whole batch of 1,481 good records."""
    case = CASES[name]
    good = [case.good(i) for i in range(1481)]
    extra = [(raw, None) for raw, _ in case.bad] if kind == "each bad kind alone" else [(case.harmless[0][0], None)]
    for raw, _ in extra:
        lines = [ln for ln, _ in good]
        lines.insert(700, raw)
        expected = tuple(sum(c[k] for _, c in good) for k in (0, 1))
        if kind == "harmless only":
            expected = tuple(e + h for e, h in zip(expected, case.harmless[0][1], strict=True))
        obs, bad = case.make().decode_lines(lines, case.ctx)
        _check(case, lines, obs, bad, expected)


def test_bedrock_happy_path_is_one_batch_decode_and_unknown_models_count_once(monkeypatch: Any) -> None:
    dec = BEDROCK.make()
    calls: list[int] = []
    batch = dec.decode_batch

    def spy(lines: list[bytes], ctx: DecodeContext) -> Decoded:
        calls.append(len(lines))
        return batch(lines, ctx)

    monkeypatch.setattr(dec, "decode_batch", spy)
    lines = [log(), log(modelId="acme.unpriced-v1")]
    obs, bad = dec.decode_lines(lines, BEDROCK.ctx)
    assert calls == [2] and [b.kind for b in bad] == ["unknown_model"]
    # A failing batch runs again record by record: the unknown model is still counted once.
    calls.clear()
    obs, bad = dec.decode_lines([*lines, BEDROCK.bad[0][0]], BEDROCK.ctx)
    assert calls == [3, 1, 1, 1]
    assert sorted(b.kind for b in bad) == ["too_deep", "unknown_model"]
    assert dec.prices_unknown() == {"acme.unpriced-v1": 2}
    # Blank lines alone do not send a batch record by record: the rest is decoded as one batch again.
    calls.clear()
    obs, bad = dec.decode_lines([lines[0], b"", lines[0], b"  "], BEDROCK.ctx)
    assert calls == [4, 2] and [b.kind for b in bad] == [BLANK, BLANK] and obs[0].values[0] == 2


class _Fragile(Decoder):
    """A decoder with a bug that some records trigger: the base class must confine it to them."""

    type_name = "fragile"

    def __init__(self) -> None:
        self.seen = 0

    def decode_batch(self, lines: list[bytes], ctx: DecodeContext) -> Decoded:
        out, bad = [], []
        for raw in lines:
            if raw == b"boom":
                raise KeyError("boom")
            if raw.startswith(b"deep"):
                raise RecursionError("maximum recursion depth exceeded")
            if raw == b"junk":
                bad.append(BadRecord(raw, "schema", "junk"))
                continue
            out.append(Observation(0.0, None, (float(raw),)))  # type: ignore[arg-type]
        self.seen += len(lines)  # state changes only once nothing can raise
        return out, bad


def test_any_exception_costs_only_its_record() -> None:
    dec = _Fragile()
    lines = [b"1", b"boom", b"2", BOM + b"junk", b"deep", b"", b"4"]
    obs, bad = dec.decode_lines(lines, DecodeContext("t"))
    assert sum(o.values[0] for o in obs) == 7.0
    assert [(b.raw, b.kind) for b in bad] == [
        (b"", BLANK),
        (b"boom", "decoder_error"),
        (BOM + b"junk", "schema"),  # the record was decoded without its BOM; its original bytes come back
        (b"deep", "too_deep"),
    ]
    assert "KeyError" in bad[1].reason
    assert dec.seen == 4  # the records that decoded without raising, once each


def test_a_decoder_without_line_support_says_so() -> None:
    class TableOnly(Decoder):
        type_name = "table-only"

    with pytest.raises(TypeError, match="does not read line formats"):
        TableOnly().decode_lines([b"x"], DecodeContext("t"))
