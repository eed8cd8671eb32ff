"""`make run` as a newcomer runs it: the inboxes exist, the signed webhook reaches the local receiver, Ctrl-C stops
everything cleanly with no stray error line; and what the README suggests writing is git-ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

from tests.conftest import ROOT, free_port, wait_until


def test_make_run_creates_the_inboxes_and_stops_cleanly_on_ctrl_c(demo_month: Path, tmp_path: Path) -> None:
    echo = free_port()
    env = {
        **os.environ,
        "FINOPS_DEMO_DIR": str(demo_month),
        "FINOPS_INBOX": str(tmp_path / "inbox"),
        "FINOPS_STATE_DIR": str(tmp_path / "state"),
        "FINOPS_METRICS_PORT": str(free_port()),
        "FINOPS_WEBHOOK_URL": f"http://127.0.0.1:{echo}/alerts",
        "FINOPS_WEBHOOK_SECRET": "a-secret-of-the-test",
        "WEBHOOK_ECHO_PORT": str(echo),
    }
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: any("webhook-echo: signature ok" in ln for ln in lines), 90), "\n".join(lines[-30:])
        for kind in ("bedrock", "dcgm", "billing"):
            assert (tmp_path / "inbox" / kind).is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets SIGINT
        rc = proc.wait(60)
        reader.join(5)
    text = "\n".join(lines)
    # make re-raises the SIGINT it got once its recipe has finished (as any interrupted foreground command,
    # silently); the recipe itself ended cleanly.
    assert rc in (0, -signal.SIGINT), text[-3000:]
    assert "stopped cleanly" in text
    assert "BAD SIGNATURE" not in text
    for stray in ("cat:", "make: ***", "Traceback", "No such file"):
        assert stray not in text, stray


def test_what_the_readme_writes_is_git_ignored() -> None:
    paths = ["out/alerts.jsonl", "out/report/index.html", "inbox/bedrock/a.jsonl", "demo-data/anomalies.json",
             ".agent-state/agent-state.pkl", "alerts.jsonl.dead-letter.jsonl", ".venv/bin/python"]  # fmt: skip
    res = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert res.stdout.split() == paths, res.stdout + res.stderr
