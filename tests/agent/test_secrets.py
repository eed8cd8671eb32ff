"""Secret files named by the config: every unreadable or empty one reported at start, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.config import load_config_text
from agent.secrets import check_secret_files

CONFIG = """
sources: {s: {type: file, path: SOURCE, decoder: {type: bedrock}}}
detectors: {d: {type: seasonal, signal: token_cost_usd}}
sinks:
  hook: {type: webhook, url: "https://hooks.example.com/x", secret_file: /nonexistent/hook-secret}
  pd: {type: pagerduty, routing_key_file: EMPTY}
  ok: {type: webhook, url: "https://hooks.example.com/y", secret_file: GOOD}
state: {directory: STATE}
"""


def _config(tmp_path: Path) -> str:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "good").write_text("s3cr3t-never-printed\n")
    return (
        CONFIG.replace("SOURCE", str(tmp_path / "in"))
        .replace("EMPTY", str(tmp_path / "empty"))
        .replace("GOOD", str(tmp_path / "good"))
        .replace("STATE", str(tmp_path / "state"))
    )


def test_every_unreadable_or_empty_secret_file_is_listed_with_its_path(tmp_path: Path) -> None:
    errors = check_secret_files(load_config_text(_config(tmp_path)))
    assert errors == [
        "sinks.hook.secret_file: cannot read /nonexistent/hook-secret: No such file or directory",
        f"sinks.pd.routing_key_file: {tmp_path / 'empty'} is empty",
    ]


def test_run_reports_them_all_and_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(_config(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "agent", "run", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2, out.stderr
    assert "sinks.hook.secret_file: cannot read /nonexistent/hook-secret" in out.stderr
    assert "sinks.pd.routing_key_file:" in out.stderr and "is empty" in out.stderr
    assert "s3cr3t" not in out.stderr + out.stdout and "Traceback" not in out.stderr
    assert not (tmp_path / "state").exists()  # nothing started: no state restored or written
