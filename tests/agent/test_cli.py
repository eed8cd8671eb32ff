"""The command line: version, help text (defaults, units, examples) and what each command passes on."""

from __future__ import annotations

import argparse
import shlex
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from agent import cli

UNITS = ("seconds", "bytes", "percent", "usd")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"finops-agent {version('finops-agent')}"


def test_every_option_of_every_subcommand_has_help_with_its_default_and_unit() -> None:
    subs = _subcommands()
    assert set(subs) == {"run", "validate", "backtest", "silence"}
    for name, parser in subs.items():
        formatter = cli.HelpFormatter(prog=f"finops-agent {name}")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action) or ""
            where = f"{name} {'/'.join(action.option_strings)}"
            assert text.strip(), f"{where}: no help text"
            assert "default" in text or (action.required and text.startswith("required")), f"{where}: {text!r}"
            if action.type in (int, float):
                assert any(u in text.lower() for u in UNITS), f"{where}: no unit in {text!r}"
    assert "seconds to flush sinks and checkpoint state after SIGTERM (default: 20.0)" in " ".join(
        subs["run"].format_help().split()
    )


def _examples(help_text: str) -> list[list[str]]:
    """The example command lines at the end of a help text (continuation lines joined, comments dropped)."""
    block = help_text.split("\nexamples:\n", 1)[1]
    joined = block.replace("\\\n", " ")
    return [shlex.split(line.split("#", 1)[0]) for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["run", "validate", "backtest", "silence"])
def test_each_subcommands_help_ends_with_examples_that_parse(name: str) -> None:
    text = _subcommands()[name].format_help()
    examples = _examples(text)
    assert examples and all(ex[:2] == ["finops-agent", name] for ex in examples), examples
    assert text.rstrip().splitlines()[-1].strip().startswith(f"finops-agent {name}")
    for ex in examples:
        args = cli.build_parser().parse_args(ex[1:])
        assert args.command == name


def test_top_level_help_lists_the_commands_and_ends_with_examples() -> None:
    text = cli.build_parser().format_help()
    assert "--version" in text and all(c in text for c in ("run", "validate", "backtest"))
    for ex in _examples(text):
        assert ex[0] == "finops-agent"


def test_backtest_passes_expected_to_the_replay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import agent.backtest

    seen: dict[str, Any] = {}

    def fake(cfg: Any, inputs: list[str], alerts_out: str, **kw: Any) -> dict[str, Any]:
        seen.update(inputs=inputs, alerts_out=alerts_out, **kw)
        raise ValueError("stop here")  # the summary print belongs to the real replay

    monkeypatch.setattr(agent.backtest, "run_backtest", fake)
    out = str(tmp_path / "a.jsonl")
    expected = tmp_path / "anomalies.json"
    expected.write_text('{"anomalies": []}')
    argv = ["backtest", "-i", "x.jsonl", "--alerts-out", out, "--report", "r", "--expected", str(expected)]
    assert cli.main(argv) == cli.EXIT_CONFIG
    assert seen["expected"] == str(expected) and seen["report_dir"] == "r"
    assert seen["inputs"] == ["x.jsonl"] and seen["alerts_out"] == out
    assert cli.main(argv[:-2]) == cli.EXIT_CONFIG
    assert seen["expected"] is None


def test_validate_reports_detectors_that_can_never_fire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources: {logs: {type: file, path: x, decoder: {type: bedrock, tag_dimensions: {team: team}}}}\n"
        "detectors: {idle: {type: threshold, signal: gpu_idle_hours, upper: 0.5, group_by: [teamm]}}\n"
        "sinks: {c: {type: console}}\n"
    )
    with pytest.raises(SystemExit) as exc:
        cli.main(["validate", "-c", str(cfg)])
    assert exc.value.code == cli.EXIT_CONFIG
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{cfg}: 1 configuration error"
    assert err[1].startswith("  detectors.idle.signal: no configured source emits 'gpu_idle_hours'; sources emit: ")
    cfg.write_text(cfg.read_text().replace("gpu_idle_hours", "requests").replace("teamm", "team"))
    assert cli.main(["validate", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out == (
        f"{cfg}: valid (1 source, 1 detector, 1 sink)\n"
        "  warning: sources.logs.path: no such file or directory: x (nothing to read)\n"
    )


def test_expected_is_checked_before_the_replay(tmp_path: Path) -> None:
    """A missing or malformed --expected file, or --expected without --report, stops at once with exit 2."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "in.jsonl").write_bytes(b"")
    (tmp_path / "bad.json").write_text('{"nope": 1}')
    base = [sys.executable, "-m", "agent", "backtest", "-i", str(tmp_path / "in.jsonl"), "--alerts-out",
            str(tmp_path / "a.jsonl")]  # fmt: skip
    cases = [
        (["--report", str(tmp_path / "r"), "--expected", str(tmp_path / "missing.json")], "No such file"),
        (["--report", str(tmp_path / "r"), "--expected", str(tmp_path / "bad.json")], "list of anomalies"),
        (["--expected", str(tmp_path / "bad.json")], "add --report DIR"),
    ]
    for extra, says in cases:
        res = subprocess.run([*base, *extra], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert not (tmp_path / "a.jsonl").exists()  # nothing was replayed


def _plugin_site(tmp_path: Path, module: str, code: str | None) -> dict[str, str]:
    """A distribution with an entry point in finops_agent.components, installed on PYTHONPATH."""
    import os

    site = tmp_path / "site"
    info = site / "toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[finops_agent.components]\ntoy = {module}\n")
    if code is not None:
        (site / f"{module}.py").write_text(code)
    return {**os.environ, "PYTHONPATH": str(site)}


PLUGIN = """
from typing import Literal
from agent.registry import register
from sinks.delivery import QueuedSink, QueuedSinkConfig, Result

class LinesConfig(QueuedSinkConfig):
    type: Literal["lines"]
    path: str

@register("sink", "lines", LinesConfig)
class Lines(QueuedSink):
    def render(self, doc): return doc["id"].encode()
    def send(self, body, alert_id): return Result("ok")
"""


def test_a_plugin_is_found_by_its_entry_point_and_a_broken_one_named_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources: {s: {type: file, path: /nonexistent, decoder: {type: bedrock}}}\n"
        "detectors: {d: {type: seasonal, signal: token_cost_usd}}\n"
        f"sinks: {{out: {{type: lines, path: {tmp_path / 'out.txt'}}}}}\n"
    )
    cmd = [sys.executable, "-m", "agent", "validate", "-c", str(cfg)]
    good_env = _plugin_site(tmp_path / "a", "toy_lines_sink", PLUGIN)
    bad_env = _plugin_site(tmp_path / "b", "no_x", None)
    ok = subprocess.run(cmd, env=good_env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(cmd, env=bad_env, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == (
        "cannot load a component: plugin toy = 'no_x' (entry points finops_agent.components): No module named 'no_x'"
    )


def test_a_demo_month_from_before_the_azure_and_otel_samples_gets_them_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orjson

    from agent import cli

    old = tmp_path / "demo"
    (old / "bedrock").mkdir(parents=True)
    (old / "bedrock" / "invocations-2026-11-02.jsonl.gz").write_bytes(b"kept as it is")
    manifest = {"start": "2026-11-02", "days": 30, "seed": 7, "bedrock_records": 1, "anomalies": []}
    (old / "anomalies.json").write_bytes(orjson.dumps(manifest))
    before = (old / "bedrock" / "invocations-2026-11-02.jsonl.gz").stat().st_mtime_ns
    monkeypatch.setenv("FINOPS_DEMO_DIR", str(old))
    cli._ensure_demo()
    assert sorted(p.name for p in (old / "azure-openai").iterdir())[0] == "metrics-2026-11-02.jsonl.gz"
    assert any((old / "otel").iterdir())
    assert (old / "bedrock" / "invocations-2026-11-02.jsonl.gz").read_bytes() == b"kept as it is"
    assert (old / "bedrock" / "invocations-2026-11-02.jsonl.gz").stat().st_mtime_ns == before  # not read again
    assert "otel_prompt_bloat" in (old / "anomalies.json").read_text()
    assert [p.name for p in old.iterdir() if p.name.startswith("tmp")] == []  # (the scratch month is gone)
