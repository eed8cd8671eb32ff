"""Command line: ``finops-agent run | validate | backtest``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from agent.config import ConfigError, load_config

log = logging.getLogger("agent")

EXIT_CONFIG = 2


def _load(path: str | None) -> Any:
    try:
        return load_config(path)
    except ConfigError as exc:
        where = path or "<embedded default>"
        print(f"{where}: {len(exc.errors)} configuration error(s)", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    n = {k: len(getattr(cfg, k)) for k in ("sources", "detectors", "sinks")}
    print(
        f"{args.config or '<embedded default>'}: valid ({n['sources']} sources, {n['detectors']} detectors, "
        f"{n['sinks']} sinks)"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.pipeline import Agent
    from agent.telemetry import setup_logging

    cfg = _load(args.config)
    setup_logging(args.log_format or cfg.telemetry.log_format, cfg.telemetry.log_level)
    if args.config is None:
        _ensure_demo()
    agent = Agent(cfg, sink_kwargs={"force_json": args.json})
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    port = agent.metrics_port()
    log.info(
        "agent running: %d sources, %d detectors, %d sinks%s",
        len(agent.sources),
        len(agent.runners),
        len(agent.sinks),
        f"; metrics on http://{_addr(cfg)}:{port}/metrics" if port else "",
    )
    while not stop.wait(0.5):
        if agent.error is not None:
            agent.stop()
            return 1
    agent.stop(timeout=args.shutdown_timeout)
    log.info("stopped cleanly")
    return 0


def _addr(cfg: Any) -> str:
    for s in cfg.sinks.values():
        if s.type == "prometheus":
            return str(s.listen_address)
    return "127.0.0.1"


def _ensure_demo() -> None:
    import os

    from agent import demo

    out = Path(os.environ.get("FINOPS_DEMO_DIR", "demo-data"))
    if not (out / "anomalies.json").exists():
        log.info("generating the demo month in %s (seeded; once)", out)
        demo.generate(out)


def cmd_backtest(args: argparse.Namespace) -> int:
    from agent.backtest import run_backtest

    cfg = _load(args.config)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run_backtest(
            cfg, args.input, args.alerts_out, report_dir=args.report, progress=sys.stderr.isatty() and not args.quiet
        )
    except ValueError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"backtest: {summary['records']} records in {summary['seconds']:.1f}s "
        f"({summary['records_per_second']:,.0f}/s), {summary['points']} points, "
        f"{summary['firing']} alerts firing, {summary['resolved']} resolved → {args.alerts_out}"
        + (f"; report in {args.report}/index.html" if args.report else "")
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="finops-agent", description="FinOps Anomaly Agent")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the agent (default: the embedded config, no external service)")
    r.add_argument("--config", "-c")
    r.add_argument("--json", action="store_true", help="console sink prints JSON lines")
    r.add_argument("--log-format", choices=["text", "json"])
    r.add_argument("--shutdown-timeout", type=float, default=20.0)
    r.set_defaults(func=cmd_run)
    v = sub.add_parser("validate", help="validate a config exactly as start-up does; exit 2 when invalid")
    v.add_argument("--config", "-c")
    v.set_defaults(func=cmd_validate)
    b = sub.add_parser("backtest", help="replay files through the pipeline in event time")
    b.add_argument("--config", "-c")
    b.add_argument("--input", "-i", nargs="+", required=True, help="PATH or SOURCE=PATH (file, glob, directory)")
    b.add_argument("--alerts-out", required=True)
    b.add_argument("--report", help="write PNG plots per alerted series and index.html here")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_backtest)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
