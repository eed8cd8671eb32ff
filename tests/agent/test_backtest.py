"""The demo month through `finops-agent backtest`: every injected anomaly found, at most 3 false alerts."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agent.backtest import route_inputs
from agent.config import load_config
from agent.model import parse_time
from tests.conftest import ROOT


@pytest.fixture
def backtest_run(demo_backtest: tuple[Path, Path, str]) -> tuple[Path, Path, str]:
    """`finops-agent backtest` of the demo month (conftest's ``demo_backtest``: run once, test_report reads it too)."""
    return demo_backtest


def test_finds_every_injected_anomaly_with_few_false_alerts(demo_month: Path, backtest_run: tuple) -> None:
    alerts_path, _report, stdout = backtest_run
    assert "records" in stdout and "alert episodes firing" in stdout
    manifest = orjson.loads((demo_month / "anomalies.json").read_bytes())
    docs = [orjson.loads(x) for x in alerts_path.read_bytes().splitlines()]
    firing = {}
    for d in docs:
        if d["status"] == "firing":
            firing.setdefault(d["id"], d)
    # An alert is true when its series is an injected anomaly's and it starts during it (a model switch
    # raises both the unit cost and the team's spend: both alerts are true).
    false = [
        a["summary"]
        for a in firing.values()
        if not any(
            m["series"] == a["series"] and m["start"] - 3600 <= parse_time(a["started_at"]) <= m["end"] + 3600
            for m in manifest["anomalies"]
        )
    ]
    for m in manifest["anomalies"]:
        caught = [
            a
            for a in firing.values()
            if a["detector"] == m["detector"]
            and a["series"] == m["series"]
            and m["start"] - 3600 <= parse_time(a["started_at"]) <= m["end"]
        ]
        assert caught, f"{m['name']} not alerted by {m['detector']}"
        assert all(a["impact_usd"] and a["impact_usd"] > 0 for a in caught), m["name"]
    assert len(false) <= 3, false
    # Each alert document carries money and root cause.
    spike = next(
        a for a in firing.values() if a["detector"] == "token_spend" and a["series"] == {"team": "support-bot"}
    )
    assert spike["observed"] > spike["upper"] and spike["expected"] > 0
    assert spike["top_contributors"] and spike["top_contributors"][0]["delta"] > 0
    # Resolved documents pair with firing ones by id.
    resolved = {d["id"] for d in docs if d["status"] == "resolved"}
    assert resolved <= set(firing)


def test_report_is_pngs_and_html(backtest_run: tuple) -> None:
    alerts_path, report, _ = backtest_run
    pngs = sorted(report.glob("*.png"))
    assert len(pngs) >= 4
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    html = (report / "index.html").read_text()
    assert html.startswith("<!doctype html>")
    for p in pngs:
        assert p.name in html


def test_inputs_are_routed_by_content(demo_month: Path) -> None:
    cfg = load_config(None)
    routed = route_inputs(cfg, [str(demo_month / "dcgm"), str(demo_month / "bedrock")])
    assert set(routed) == {"demo_tokens", "demo_gpus"}
    routed = route_inputs(cfg, [f"inbox_gpus={demo_month / 'dcgm'}"])
    assert routed == {"inbox_gpus": [str(demo_month / "dcgm")]}
    with pytest.raises(ValueError, match="no such file"):
        route_inputs(cfg, ["/nonexistent/path"])
    with pytest.raises(ValueError, match="no source named 'nosuch' in the config"):
        route_inputs(cfg, [f"nosuch={demo_month / 'dcgm'}"])
    # A gzip file cut after a few bytes, or not gzip at all: sniffing reads what it can and never raises.
    first = sorted((demo_month / "bedrock").iterdir())[0]
    cut = demo_month.parent / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(gzip.decompress(first.read_bytes())[:100_000])[:60])
    fake = demo_month.parent / "plain.jsonl.gz"
    fake.write_bytes(b'{"not": "gzip"}\n' * 300)
    for path in (cut, fake):
        try:
            route_inputs(cfg, [str(path)])
        except ValueError as exc:
            assert "cannot tell which source reads it" in str(exc)
    (demo_month.parent / "empty-dir").mkdir(exist_ok=True)
    with pytest.raises(ValueError, match="holds no files"):
        route_inputs(cfg, [str(demo_month.parent / "empty-dir")])


def test_backtest_takes_billing_exports_directly(data_dir: Path, tmp_path: Path) -> None:
    """FOCUS, legacy CUR and Azure files are recognised by their header; a CUR 2.0 Parquet month with an
    injected GPU spike (two weeks of generated line items, p5 usage ×6 in one hour) alerts on it."""
    import orjson

    from scripts import billing_data

    billing = data_dir / "billing"
    samples = [
        str(billing / n) for n in ("focus-1.0-sample.csv", "aws-cur-legacy-sample.csv", "azure-ea-actual-small.csv")
    ]
    cur2 = tmp_path / "cur2.parquet"
    billing_data.write_parquet(str(cur2), 60_000, month="2026-10", hours=14 * 24, spikes={(300, "AmazonEC2"): 6.0})
    cfg = load_config(None)
    assert route_inputs(cfg, [*samples, str(cur2)]) == {"inbox_billing": [*samples, str(cur2)]}
    alerts = tmp_path / "alerts.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "agent", "backtest", "-i", str(cur2), "--alerts-out", str(alerts), "--quiet"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr
    firing = [a for a in map(orjson.loads, alerts.read_bytes().splitlines()) if a["status"] == "firing"]
    spike = "2026-10-13T12:00:00Z"  # hour 300 of the month
    assert {(a["detector"], a["window_start"]) for a in firing} >= {("cloud_spend", spike)}
    assert all(a["window_start"] == spike for a in firing), [(a["detector"], a["window_start"]) for a in firing]


def test_backtest_judges_timestamps_against_its_input_span(tmp_path: Path) -> None:
    """A 1970 and a 2099 record among a week of 2023 logs are dead-lettered as out of range: no 1970 window is
    opened or alerted (a live agent judges against its clock; a backtest against its input's span)."""
    import datetime as dt

    from agent.backtest import format_summary, run_backtest
    from tests.agent.decoders.test_bedrock import log

    t0 = dt.datetime(2023, 3, 6, tzinfo=dt.UTC)
    lines = [
        log(timestamp=(t0 + dt.timedelta(minutes=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"), requestId=f"r{i}")
        for i in range(7 * 24 * 60 // 7)
    ]
    lines.insert(10, log(timestamp="1970-01-01T00:00:05Z", requestId="old"))
    lines.append(log(timestamp="2099-06-01T00:00:00Z", requestId="future"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "calls.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    cfg = load_config(None)
    alerts = tmp_path / "alerts.jsonl"
    summary = run_backtest(cfg, [str(tmp_path / "in")], str(alerts))
    assert summary["records"] == len(lines)
    lo, hi = summary["span"]
    assert t0.timestamp() <= lo < hi <= t0.timestamp() + 7 * 86400
    dead = [orjson.loads(x) for x in Path(summary["dead_letter_path"]).read_bytes().splitlines()]
    assert sorted(orjson.loads(d["original"])["requestId"] for d in dead) == ["future", "old"]
    assert {d["kind"] for d in dead} == {"timestamp_out_of_range"}
    docs = [orjson.loads(x) for x in alerts.read_bytes().splitlines()]
    assert all(d["window_start"].startswith("2023-") for d in docs), [d["window_start"] for d in docs]
    text = format_summary(summary, str(alerts))
    assert f"{len(lines):,} lines read" in text
    assert "2 records dead-lettered (timestamp_out_of_range 2)" in text and summary["dead_letter_path"] in text


def test_backtest_summary_says_what_min_impact_held_back(demo_month: Path, tmp_path: Path) -> None:
    """With a floor above every incident, the summary says how many anomalous points it held back and the
    largest, rather than a bare "0 alerts firing"."""
    text = (ROOT / "config" / "default.yaml").read_text().replace("min_impact_usd: 20\n", "min_impact_usd: 100000\n")
    text = text.replace("min_impact_percent: 50  # or half", "# (no percent rule) half")
    cfg_path = tmp_path / "floor.yaml"
    cfg_path.write_text(text)
    alerts = tmp_path / "alerts.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "agent", "backtest", "-c", str(cfg_path), "-i", str(demo_month / "bedrock"),
         "--alerts-out", str(alerts), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "FINOPS_WEBHOOK_SECRET": "s3cr3t-for-tests"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    held = [ln for ln in res.stdout.splitlines() if ln.strip().startswith("[token_spend]")]
    assert len(held) == 1, res.stdout
    assert "anomalous points were not alerted because their impact was under min_impact_usd" in held[0]
    manifest = orjson.loads((demo_month / "anomalies.json").read_bytes())
    teams = {m["series"]["team"] for m in manifest["anomalies"] if "team" in m["series"]}  # spend moves in both
    assert any("(largest: $" in held[0] and held[0].endswith(f" on team={t})") for t in teams), (held, teams)
    firing = [d for d in map(orjson.loads, alerts.read_bytes().splitlines()) if d["status"] == "firing"]
    assert not [d for d in firing if d["detector"] == "token_spend"]


def test_backtest_replays_export_files_through_an_export_sources_decoder(tmp_path: Path) -> None:
    """`backtest` with the S3 Data Export example config (an `s3_export` source) reads a local CUR 2.0 file
    through that source's decoder and alerts on the injected hour."""
    from scripts import billing_data

    cur2 = tmp_path / "cur2.parquet"
    billing_data.write_parquet(str(cur2), 60_000, month="2026-10", hours=14 * 24, spikes={(300, "AmazonEC2"): 6.0})
    alerts = tmp_path / "alerts.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "agent", "backtest", "-c", str(ROOT / "config/examples/aws-data-export-s3.yaml"),
         "-i", str(cur2), "--alerts-out", str(alerts), "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
        env={**os.environ, "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/T0/B0/x"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    firing = [a for a in map(orjson.loads, alerts.read_bytes().splitlines()) if a["status"] == "firing"]
    assert ("spend_by_service", "2026-10-13T12:00:00Z") in {(a["detector"], a["window_start"]) for a in firing}


def test_a_billing_row_far_outside_the_bills_span_is_set_aside(data_dir: Path, tmp_path: Path) -> None:
    """A FOCUS export whose one line says 1970: the backtest samples the bill's hours for its span and sets the
    1970 hour aside as timestamp_out_of_range, so no 1970 window opens; the other lines are all kept."""
    from agent.backtest import run_backtest

    lines = (data_dir / "billing" / "focus-1.0-sample.csv").read_bytes().splitlines(keepends=True)
    old, new = b'"2024-09-18 23:00:00","2024-09-18 22:00:00"', b'"1970-01-01 01:00:00","1970-01-01 00:00:00"'
    first = lines[1].replace(old, new)
    assert first != lines[1]
    bill = tmp_path / "focus.csv"
    bill.write_bytes(b"".join([lines[0], first, *lines[2:]]))
    collector_out = tmp_path / "alerts.jsonl"
    summary = run_backtest(load_config(None), [str(bill)], str(collector_out))
    assert summary["records"] == len(lines) - 1
    lo, _hi = summary["span"]
    assert lo > parse_time("2024-01-01T00:00:00Z")
    dead = [orjson.loads(x) for x in Path(summary["dead_letter_path"]).read_bytes().splitlines()]
    assert [(d["kind"], orjson.loads(d["original"])["ts"]) for d in dead] == [("timestamp_out_of_range", 0)]
    assert "charge hour 1970-01-01T00:00Z" in dead[0]["reason"]


def test_a_tiny_input_with_absurd_timestamps_and_overlapping_files(tmp_path: Path) -> None:
    """Five good calls and a 1970 and a 2099 one: the span ignores the absurd two, however few the samples.
    Two files covering the same hour, each sorted, are both summed (a backtest waits a day for stragglers)."""
    from agent.backtest import run_backtest
    from tests.agent.decoders.test_bedrock import log

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    good = [log(timestamp=f"2026-03-02T10:{m:02d}:00Z", requestId=f"g{m}") for m in (1, 12, 23, 34, 45)]
    odd = [log(timestamp="1970-01-01T00:00:00Z", requestId="old"), log(timestamp="2099-12-31T23:59:00Z")]
    (tiny / "a.jsonl").write_bytes(b"\n".join([odd[0], *good, odd[1]]) + b"\n")
    summary = run_backtest(load_config(None), [str(tiny)], str(tmp_path / "a.jsonl"))
    assert summary["span"] == (parse_time("2026-03-02T10:01:00Z"), parse_time("2026-03-02T10:45:00Z"))
    assert summary["discarded"] == {"timestamp_out_of_range": 2}

    hourly = tmp_path / "2026" / "03" / "02" / "10"
    hourly.mkdir(parents=True)
    for part in ("a", "b"):  # two sorted files of the same hour, the second read after the first
        lines = [log(timestamp=f"2026-03-02T10:{m:02d}:00Z", requestId=f"{part}{m}") for m in range(0, 60, 2)]
        (hourly / f"{part}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "2026" / "03" / "02" / "11").mkdir()
    (tmp_path / "2026" / "03" / "02" / "11" / "c.jsonl").write_bytes(log(timestamp="2026-03-02T11:30:00Z") + b"\n")
    summary = run_backtest(load_config(None), [str(tmp_path / "2026")], str(tmp_path / "b.jsonl"))
    assert summary["records"] == 61 and summary["dead_letter"] == 0, summary["discarded"]


def test_an_episode_follows_a_fading_incident_to_its_end(demo_month: Path, backtest_run: tuple) -> None:
    """The runaway agent loop costs most in its first hour and less each hour after (each still far above
    normal): its one episode stays open while the spend is outside the usual band — a window under
    min_impact_usd included — and the resolution carries the whole incident's impact."""
    alerts_path, _report, _ = backtest_run
    manifest = orjson.loads((demo_month / "anomalies.json").read_bytes())
    loop = next(m for m in manifest["anomalies"] if m["detector"] == "token_spend")
    docs = [orjson.loads(x) for x in alerts_path.read_bytes().splitlines()]
    mine = [d for d in docs if d["detector"] == "token_spend" and d["series"] == loop["series"]]
    assert len({d["id"] for d in mine}) == 1
    assert not [d for d in docs if d["early"]]  # a backtest reads a backlog: its alerts come as windows close
    firing = next(d for d in mine if d["status"] == "firing")
    resolved = next(d for d in mine if d["status"] == "resolved")
    assert parse_time(resolved["resolved_at"]) - loop["start"] >= 0.75 * (loop["end"] - loop["start"])
    assert resolved["episode"]["points"] >= 4
    assert resolved["impact_usd"] >= 2.5 * firing["impact_usd"]


def test_the_summary_says_what_where_and_exclude_left_out(data_dir: Path, tmp_path: Path) -> None:
    """The default cloud_spend leaves a bill's Tax lines out; a `where` whose value no line has counts nothing, and
    the summary says so rather than a silent "0 points"."""
    import yaml

    from agent.backtest import format_summary, run_backtest
    from agent.config import default_config_text, load_config_text

    bill = str(data_dir / "billing" / "aws-cur-legacy-sample.csv")
    summary = run_backtest(load_config(None), [bill], str(tmp_path / "a.jsonl"))
    f = summary["filters"]["cloud_spend"]
    assert f["left_out"] >= 1 and f["counted"] >= 1, f  # its Tax lines
    assert f"[cloud_spend] where / exclude left out {f['left_out']:,} of" in format_summary(summary, "a.jsonl")
    raw = yaml.safe_load(default_config_text())
    raw["detectors"]["cloud_spend"].pop("exclude")
    raw["detectors"]["cloud_spend"]["where"] = {"charge_category": ["SomeNewLineType"]}
    cfg = load_config_text(yaml.safe_dump(raw), env={})
    summary = run_backtest(cfg, [bill], str(tmp_path / "b.jsonl"))
    assert summary["filters"]["cloud_spend"]["counted"] == 0
    assert "it counted none (check the values" in format_summary(summary, "b.jsonl")


def test_the_summary_counts_every_dead_lettered_kind_and_names_what_it_read(tmp_path: Path) -> None:
    """The dead-letter breakdown sums to the dead-lettered count (unknown_model included, partial kinds marked);
    a detector that saw no data says nothing about its filters; line files are counted as lines."""
    from agent.backtest import format_summary, run_backtest
    from tests.agent.decoders.test_bedrock import log

    lines = [
        log(timestamp="2026-03-02T10:00:00Z"),
        log(timestamp="2026-03-02T10:01:00Z", modelId="acme.mystery-v1"),
        log(timestamp="2026-03-02T10:02:00Z", output={}),
        b'{"truncated": ',
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    summary = run_backtest(load_config(None), [f"inbox_tokens={tmp_path / 'in'}"], str(tmp_path / "a.jsonl"))
    text = format_summary(summary, "a.jsonl")
    assert summary["dead_letter"] == 3
    assert "4 lines read" in text
    dead = next(ln for ln in text.splitlines() if "dead-lettered" in ln)
    assert dead.startswith("  3 records dead-lettered (")
    for kind in ("malformed_json 1", "missing_tokens 1 (counted in part)", "unknown_model 1 (counted in part)"):
        assert kind in dead
    assert "[cloud_spend]" not in text  # no billing input: nothing about its where / exclude


def test_several_inputs_for_one_source_keep_its_name(tmp_path: Path) -> None:
    from agent.backtest import run_backtest
    from tests.agent.decoders.test_bedrock import log

    for i, day in enumerate(("2026-03-02", "2026-03-03")):
        (tmp_path / f"in{i}").mkdir()
        (tmp_path / f"in{i}" / "a.jsonl").write_bytes(log(timestamp=f"{day}T10:00:00Z") + b"\n")
    inputs = [f"inbox_tokens={tmp_path / 'in0'}", f"inbox_tokens={tmp_path / 'in1'}"]
    cfg = load_config(None)
    summary = run_backtest(cfg, inputs, str(tmp_path / "a.jsonl"))
    assert summary["records"] == 2
    from agent.backtest import backtest_config

    assert list(backtest_config(cfg, {"inbox_tokens": inputs}, str(tmp_path / "b.jsonl")).sources) == ["inbox_tokens"]


def test_an_envelope_line_dead_lettered_record_by_record_is_said_so(tmp_path: Path) -> None:
    from agent.backtest import format_summary, run_backtest

    bad = {
        "time": "2026-03-02T10:00:00Z",
        "resourceId": "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.COGNITIVESERVICES/ACCOUNTS/OAI",
        "metricName": "InputTokens",
        "timeGrain": "PT1M",
        "total": -5,
    }
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(orjson.dumps({"records": [bad, bad, bad]}) + b"\n")
    summary = run_backtest(load_config(None), [f"demo_azure_openai={tmp_path / 'in'}"], str(tmp_path / "a.jsonl"))
    text = format_summary(summary, "a.jsonl")
    assert summary["dead_letter"] == 3 and "1 line read" in text
    assert "a line can hold several records (an envelope), each dead-lettered on its own" in text
