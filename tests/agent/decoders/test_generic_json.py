from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from agent.decoders.base import DecodeContext
from agent.decoders.generic_json import JsonConfig, JsonDecoder
from agent.model import parse_time


def dec(**kw: object) -> JsonDecoder:
    cfg = {
        "type": "json",
        "time_field": "ts",
        "values": {"cost_usd": "cost.usd", "tokens": "usage.total"},
        "dimensions": {"team": "labels.team", "model": "model"},
        "constant_dimensions": {"provider": "openai"},
    }
    cfg.update(kw)
    return JsonDecoder(JsonConfig(**cfg))  # type: ignore[arg-type]


def test_json_lines_by_field_paths() -> None:
    doc = {
        "ts": "2026-10-01T10:00:05Z",
        "cost": {"usd": 1.25},
        "usage": {"total": 900},
        "labels": {"team": "a"},
        "model": "gpt-4o",
    }
    obs, bad = dec().decode_lines([orjson.dumps(doc), orjson.dumps({**doc, "ts": 1790849705000})], DecodeContext("t"))
    assert bad == []
    assert [o.values for o in obs] == [(1.25, 900.0), (1.25, 900.0)]
    assert obs[0].ts == parse_time("2026-10-01T10:00:05Z") and obs[1].ts == 1790849705.0
    assert dict(obs[0].dims) == {"provider": "openai", "team": "a", "model": "gpt-4o"}


def test_json_bad_records() -> None:
    ok = {"ts": "2026-10-01T10:00:05Z", "cost": {"usd": -3.0}, "usage": {"total": 1}}  # a credit: legal
    lines = [
        orjson.dumps(ok),
        b"{not json",
        orjson.dumps({**ok, "ts": None}),
        orjson.dumps({**ok, "cost": {"usd": "lots"}}),
        orjson.dumps({**ok, "usage": {}}),
        b'{"ts": "2026-10-01T10:00:05Z", "cost": {"usd": 1e999}, "usage": {"total": 1}}',  # overflows: malformed
        orjson.dumps({**ok, "cost": {"usd": "NaN"}}),
        orjson.dumps({**ok, "cost": {"usd": 1e15}}),
        orjson.dumps({**ok, "ts": "2126-01-01T00:00:00Z"}),
    ]
    obs, bad = dec().decode_lines(lines, DecodeContext("t", max_ts=parse_time("2030-01-01T00:00:00Z")))
    assert len(obs) == 1 and obs[0].values[0] == -3.0
    assert [b.kind for b in bad] == [
        "malformed_json",
        "schema",
        "schema",
        "schema",
        "malformed_json",
        "non_finite",
        "absurd_value",
        "timestamp_out_of_range",
    ]
    obs, bad = dec(allow_negative=False).decode_lines(lines[:1], DecodeContext("t"))
    assert not obs and bad[0].kind == "negative_value"


def test_tabular_columnar_group_by_with_bad_rows() -> None:
    table = pa.table(
        {
            "ts": ["2026-10-01T10:00:05Z", "2026-10-01T10:00:55Z", "2026-10-01T10:01:10Z", "2026-10-01T10:00:30Z"],
            "cost.usd": [1.0, 2.0, 4.0, 8.0],
            "usage.total": [10, 20, 40, 80],
            "labels.team": ["a", "a", "a", "b"],
            "model": ["m", "m", "m", "m"],
        }
    )
    obs, bad = dec().decode_table(table, DecodeContext("t", bucket_seconds=60))
    assert bad == []
    got = {(o.ts, dict(o.dims)["team"]): o.values for o in obs}
    t0 = parse_time("2026-10-01T10:00:00Z")
    assert got == {(t0, "a"): (3.0, 30.0), (t0 + 60, "a"): (4.0, 40.0), (t0, "b"): (8.0, 80.0)}
    # A value column that is not numeric everywhere: bad rows are found, good rows kept.
    table2 = table.set_column(1, "cost.usd", pa.array(["1.0", "oops", "4.0", "8.0"]))
    obs, bad = dec().decode_table(table2, DecodeContext("t", bucket_seconds=60))
    assert [b.kind for b in bad] == ["schema"] and b"oops" in bad[0].raw
    assert sum(o.values[0] for o in obs) == pytest.approx(13.0)
