"""Late records are dead-lettered with their original bytes, whatever the decoder (new-user review: the generic
``json`` decoder's late records were dead-lettered as the ``repr`` of an observation)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from agent.decoders.base import LATE, DecodeContext
from agent.decoders.dcgm_otlp import DcgmOtlpConfig, DcgmOtlpDecoder
from agent.decoders.generic_json import JsonConfig, JsonDecoder
from agent.model import parse_time
from tests.agent.decoders.test_dcgm_otlp import export, gauge_point
from tests.agent.test_bad_input import _config, _run, _sample, _total

T0 = parse_time("2026-10-01T00:00:00Z")
JSON = "{type: json, time_field: ts, values: {cost_usd: cost}, dimensions: {team: team}}"


def _dead(dlq: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in dlq.read_bytes().splitlines()] if dlq.exists() else []


def test_a_late_json_record_is_dead_lettered_with_its_bytes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    good = [b'{"ts": "2026-10-01T%02d:10:00Z", "cost": 1.5, "team": "a"}' % h for h in range(10)]
    late = b'{"ts": "2026-10-01T00:05:00Z",  "cost": 0.1, "team": "b"}'  # after 09:10 the 00:00 hour is sealed
    (inbox / "a.jsonl").write_bytes(b"\n".join(good) + b"\n")
    (inbox / "b.jsonl").write_bytes(late + b"\n")
    caplog.set_level(logging.WARNING, logger="agent")
    agent, collector = _run(_config(inbox, dlq, JSON, "cost_usd"))

    entries = _dead(dlq)
    assert [e["kind"] for e in entries] == [LATE]
    assert base64.b64decode(str(entries[0]["original_b64"])) == late
    assert entries[0]["original"] == late.decode()
    assert _sample(agent, "finops_agent_events_discarded_total", component="tokens", reason=LATE) == 1
    assert _total(collector, "cost_usd") == pytest.approx(15.0)  # the late record is not counted
    samples = [r.__dict__.get("sample", "") for r in caplog.records if r.__dict__.get("kind") == LATE]
    assert samples == [late.decode()]


def test_a_late_gpu_sample_is_dead_lettered_with_its_line(tmp_path: Path) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    line = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n1",modelName="NVIDIA L4"} 50 %d'
    good = [(line % ((T0 + 3600 * h + 600) * 1000)).encode() for h in range(10)]
    late = (line % ((T0 + 300) * 1000)).replace('gpu="0"', 'gpu="1"').encode()
    (inbox / "a.prom").write_bytes(b"\n".join(good) + b"\n")
    (inbox / "b.prom").write_bytes(late + b"\n")
    agent, collector = _run(_config(inbox, dlq, "{type: dcgm, scrape_interval_seconds: 60}", "gpu_hours"))

    entries = _dead(dlq)
    assert [e["kind"] for e in entries] == [LATE]
    assert base64.b64decode(str(entries[0]["original_b64"])) == late
    assert _sample(agent, "finops_agent_events_discarded_total", component="tokens", reason=LATE) == 1
    assert _total(collector, "gpu_hours") == pytest.approx(10 / 60)


def test_late_csv_rows_are_dead_lettered_and_the_others_counted() -> None:
    dec = JsonDecoder(
        JsonConfig(type="json", time_field="ts", values={"cost_usd": "cost"}, dimensions={"team": "team"})
    )
    table = pa.table({"ts": [T0 + 30, T0 + 3700, T0 + 3800], "cost": [1.0, 2.0, 4.0], "team": ["a", "a", "b"]})
    ctx = DecodeContext("s", bucket_seconds=3600.0, late_before=T0 + 3600)
    obs, bad = dec.decode_table(table, ctx)
    assert sorted(o.values[0] for o in obs) == [2.0, 4.0]
    assert [(b.kind, orjson.loads(b.raw)["cost"]) for b in bad] == [(LATE, 1.0)]


def test_json_lines_late_in_the_batch_and_record_by_record() -> None:
    dec = JsonDecoder(JsonConfig(type="json", time_field="ts", values={"cost_usd": "cost"}))
    late, ok = b'{"ts": %d, "cost": 1}' % (T0 + 59), b'{"ts": %d, "cost": 2}' % (T0 + 60)
    ctx = DecodeContext("s", bucket_seconds=60.0, late_before=T0 + 60)
    for lines in ([late, ok], [late, b"{not json", ok]):  # the batch; a failing batch, decoded record by record
        obs, bad = dec.decode_lines(lines, ctx)
        assert [o.values for o in obs] == [(2.0,)]
        assert [(b.kind, b.raw) for b in bad if b.kind == LATE] == [(LATE, late)]


def test_an_otlp_message_partly_late_is_dead_lettered_once_and_its_other_samples_counted() -> None:
    dec = DcgmOtlpDecoder(DcgmOtlpConfig(type="dcgm_otlp", scrape_interval_seconds=60))
    gpu = {"gpu": "0", "UUID": "GPU-0", "modelName": "NVIDIA L4", "Hostname": "n1"}
    points = [gauge_point({**gpu, "gpu": str(g)}, 50.0, T0 + 3600 + 30 - 3600 * (g < 2)) for g in range(4)]
    msg = export({"DCGM_FI_DEV_GPU_UTIL": points}, T0 + 3600)
    ctx = DecodeContext("s", bucket_seconds=3600.0, late_before=T0 + 3600)
    obs, bad = dec.decode_lines([msg], ctx)
    assert len(obs) == 2 and all(o.ts >= T0 + 3600 for o in obs)
    assert [(b.kind, b.raw, b.partial) for b in bad] == [(LATE, msg, True)]
    assert "(and 1 more)" in bad[0].reason
    whole = export({"DCGM_FI_DEV_GPU_UTIL": points[:2]}, T0)  # only late samples: not partial
    dec2 = DcgmOtlpDecoder(DcgmOtlpConfig(type="dcgm_otlp", scrape_interval_seconds=60))
    obs, bad = dec2.decode_lines([whole], ctx)
    assert obs == [] and [(b.kind, b.raw, b.partial) for b in bad] == [(LATE, whole, False)]
