"""Command line: ``finops-agent run | validate | backtest | silence``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.config import ConfigError, StartupError, load_config
from agent.registry import PluginError
from agent.secrets import check_secret_files

log = logging.getLogger("agent")

EXIT_CONFIG = 2


def _load(path: str | None) -> Any:
    try:
        return load_config(path)
    except ConfigError as exc:
        where = path or "<embedded default>"
        print(f"{where}: {_plural(len(exc.errors), 'configuration error')}", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    n = {k: len(getattr(cfg, k)) for k in ("sources", "detectors", "sinks")}
    print(
        f"{args.config or '<embedded default>'}: valid ({_plural(n['sources'], 'source')}, "
        f"{_plural(n['detectors'], 'detector')}, {_plural(n['sinks'], 'sink')})"
    )
    if args.config is not None:  # (the embedded default makes its inboxes at start)
        from agent.sources.file import empty_file_sources

        for line in empty_file_sources(cfg):
            print(f"  warning: {line}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.pipeline import Agent
    from agent.telemetry import setup_logging

    cfg = _load(args.config)
    setup_logging(args.log_format or cfg.telemetry.log_format, cfg.telemetry.log_level)
    if args.config is None:
        _ensure_demo()
        _ensure_inboxes(cfg)
    unreadable = check_secret_files(cfg)
    if unreadable:  # every one of them, before anything starts (the HTTP server, the state's restore)
        return _cannot_start(args.config, StartupError("\n  ".join(unreadable)), None)
    agent = None
    try:
        agent = Agent(cfg, sink_kwargs={"force_json": args.json})
    except StartupError as exc:
        return _cannot_start(args.config, exc, agent)
    stop = threading.Event()
    hup = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()
        if agent is not None:  # (the agent running now: a reload replaces it)
            agent.interrupt()

    def on_hup(_signum: int, _frame: Any) -> None:
        hup.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        agent.start()
    except StartupError as exc:
        return _cannot_start(args.config, exc, agent)
    url = agent.metrics_url()
    log.info(
        "agent running: %d sources, %d detectors, %d sinks%s",
        len(cfg.sources),
        len(agent.runners),
        len(agent.sinks),
        f"; metrics on {url}" if url else "",
    )
    from agent.reload import ConfigWatch, reload

    watch = ConfigWatch(args.config) if args.config else None
    next_look = 0.0
    while not stop.wait(0.5):
        if agent.error is not None:
            agent.stop()
            return 1
        now = time.monotonic()
        changed = False
        if watch is not None and now >= next_look:  # a ConfigMap volume is updated in place
            next_look = now + args.config_check_seconds
            changed = watch.changed()
        if hup.is_set() or changed:
            if hup.is_set():
                log.info("received SIGHUP: reloading %s", args.config or "the embedded default")
            hup.clear()
            if args.config is None:
                log.info("the embedded default cannot change: nothing to reload")
                continue
            agent, cfg = reload(
                agent,
                cfg,
                args.config,
                lambda c: Agent(c, sink_kwargs={"force_json": args.json}),
                args.shutdown_timeout,
            )
    agent.stop(timeout=args.shutdown_timeout)
    log.info("stopped cleanly")
    return 0


def _cannot_start(path: str | None, exc: StartupError, agent: Any) -> int:
    """A component could not start because of what its config names: one line, exit 2, no traceback."""
    print(f"{path or '<embedded default>'}: cannot start", file=sys.stderr)
    print(f"  {exc}", file=sys.stderr)
    if agent is not None:
        agent.stop(timeout=5.0)
    return EXIT_CONFIG


def _ensure_demo() -> None:
    import datetime as dt
    import os

    from orjson import loads as orjson_loads

    from agent import demo

    out = Path(os.environ.get("FINOPS_DEMO_DIR", "demo-data"))
    manifest = out / "anomalies.json"
    if not manifest.exists():
        log.info("generating the demo month in %s (seeded; once)", out)
        demo.generate(out)
    elif b'"otel_data_points"' not in manifest.read_bytes():  # written before the Azure OpenAI and OTel samples
        import shutil
        import tempfile

        log.info("the demo month in %s predates its Azure OpenAI and OpenTelemetry samples: adding them", out)
        start = orjson_loads(manifest.read_bytes()).get("start")
        with tempfile.TemporaryDirectory(dir=out) as tmp:  # the same month again; only what was missing moves over
            demo.generate(tmp, dt.date.fromisoformat(start) if start else None)
            for part in ("azure-openai", "otel", "anomalies.json"):
                if (out / part).is_dir():
                    shutil.rmtree(out / part)
                shutil.move(str(Path(tmp) / part), str(out / part))


def _ensure_inboxes(cfg: Any) -> None:
    """The embedded default watches ./inbox/<kind>/ (FINOPS_INBOX): create those folders so users can drop files."""
    for name, src in cfg.sources.items():
        if src.type == "file" and src.watch and not any(ch in src.path for ch in "*?[") and not Path(src.path).exists():
            Path(src.path).mkdir(parents=True, exist_ok=True)
            log.info("%s: watching %s/ for new files", name, src.path)


def cmd_backtest(args: argparse.Namespace) -> int:
    from agent.backtest import format_summary, run_backtest

    cfg = _load(args.config)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.expected is not None:  # checked before the replay, not after it
        from agent.report import load_expected

        if args.report is None:
            print("backtest: --expected marks hits and misses in the report: add --report DIR", file=sys.stderr)
            return EXIT_CONFIG
        try:
            load_expected(args.expected)
        except (OSError, ValueError) as exc:
            what = f"{args.expected}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            print(f"backtest: --expected {what}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        summary = run_backtest(
            cfg,
            args.input,
            args.alerts_out,
            report_dir=args.report,
            progress=sys.stderr.isatty() and not args.quiet,
            expected=args.expected,
        )
    except ValueError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(format_summary(summary, args.alerts_out, args.report))
    return 0


def version() -> str:
    """The installed distribution's version (``pip install -e .`` included)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("finops-agent")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless the help names its own), examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.required or action.default in (None, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


_CONFIG_HELP = "YAML config file (default: the embedded demo config, config/default.yaml)"

_RUN_EXAMPLES = """examples:
  finops-agent run                            # the demo: embedded config, demo month, ./inbox/<kind>/ watched
  finops-agent run -c config/examples/bedrock-logs-dir.yaml --log-format json
"""
_VALIDATE_EXAMPLES = """examples:
  finops-agent validate                       # the embedded default
  finops-agent validate -c config/examples/aws-data-export-s3.yaml
"""
_BACKTEST_EXAMPLES = """examples:
  finops-agent backtest -i demo-data/bedrock demo-data/dcgm --alerts-out out/alerts.jsonl \\
      --report out/report --expected demo-data/anomalies.json
  finops-agent backtest -c my.yaml -i bedrock=logs/2025-06/ --alerts-out out/june.jsonl
"""


_SILENCE_EXAMPLES = """examples:
  finops-agent silence add team=research --duration 7d --comment "eval week" --author ana
  finops-agent silence add 'model=~"claude.*"' team=ml --ends 2026-12-10T00:00:00Z --comment migration --author bob
  finops-agent silence list
  finops-agent silence expire 5b1c0e9e-8d6a-4c55-9a4e-2f1c7a3d9b10
"""

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` → seconds (a unit is required: ``2`` could be anything).

    >>> parse_duration("7d"), parse_duration("90s")
    (604800.0, 90.0)
    """
    text = text.strip()
    unit = _DURATION.get(text[-1:].lower())
    try:
        if unit is None:
            raise ValueError
        value = float(text[:-1]) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration with its unit (90s, 30m, 12h, 7d, 2w)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration is positive")
    return value


def cmd_silence(args: argparse.Namespace) -> int:
    """Talk to a running agent's API: make, list or expire silences."""
    import urllib.error
    import urllib.request

    import orjson

    token = os.environ.get("FINOPS_API_TOKEN", "")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"--token-file {args.token_file}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_CONFIG
    if not token:
        print(
            "no API token: give --token-file FILE or set FINOPS_API_TOKEN (the agent's http.api_token)", file=sys.stderr
        )
        return EXIT_CONFIG
    base = args.url.rstrip("/") + "/api/v1/silences"
    body = None
    method, url = "GET", base
    if args.action == "add":
        if not args.matchers or not args.comment or not args.author or not (args.duration or args.ends):
            print("silence add needs matchers, --comment, --author and --duration or --ends", file=sys.stderr)
            return EXIT_CONFIG
        raw: dict[str, Any] = {"matchers": args.matchers, "comment": args.comment, "created_by": args.author}
        if args.ends:
            raw["ends_at"] = args.ends
        else:
            raw["duration_seconds"] = args.duration
        if args.starts:
            raw["starts_at"] = args.starts
        method, body = "POST", orjson.dumps(raw)
    elif args.action == "expire":
        if not args.matchers:
            print("silence expire needs the silence's id", file=sys.stderr)
            return EXIT_CONFIG
        method, url = "DELETE", f"{base}/{args.matchers[0]}"
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (the agent's address)
            answer = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        said = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(orjson.JSONDecodeError):
            said = orjson.loads(said).get("error", said)
        print(f"{method} {url}: HTTP {exc.code}: {said}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{method} {url}: {getattr(exc, 'reason', exc)} (is the agent running there? --url)", file=sys.stderr)
        return 1
    if answer == []:
        print("no silences")
    for s in answer if isinstance(answer, list) else [answer]:
        print(
            f"{s['id']}  {s['status']:<8} {s['starts_at']} → {s['ends_at']}  {', '.join(s['matchers'])}  "
            f"by {s['created_by']}: {s['comment']} ({s['origin']})"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="finops-agent",
        description="FinOps Anomaly Agent: cost anomalies from token logs, GPU metrics and billing exports.",
        epilog="examples:\n  finops-agent run\n  finops-agent validate -c my.yaml\n"
        "  finops-agent backtest -i demo-data/bedrock --alerts-out out/alerts.jsonl\n"
        "  finops-agent COMMAND --help                 # options of a command",
        formatter_class=HelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser(
        "run",
        help="run the agent (default: the embedded config, no external service)",
        description="Run the agent until SIGTERM / SIGINT. SIGHUP, or a change of the config file, reloads the "
        "config without losing state (an invalid one is refused: the agent runs on).",
        epilog=_RUN_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    r.add_argument("--config", "-c", metavar="FILE", help=_CONFIG_HELP)
    r.add_argument("config_path", nargs="?", metavar="FILE", help="the same as --config FILE (default: none)")
    r.add_argument(
        "--json", action="store_true", help="the console sink prints each alert as a JSON line, not a readable line"
    )
    r.add_argument(
        "--log-format",
        choices=["auto", "text", "json"],
        help="log line format: auto is text on a terminal, JSON lines otherwise (default: the config's "
        "telemetry.log_format, auto)",
    )
    r.add_argument(
        "--shutdown-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="seconds to flush sinks and checkpoint state after SIGTERM",
    )
    r.add_argument(
        "--config-check-seconds",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between looks at whether the config file changed (a ConfigMap update): it is then reloaded, "
        "as on SIGHUP, without losing state",
    )
    r.set_defaults(func=cmd_run)
    v = sub.add_parser(
        "validate",
        help="validate a config exactly as start-up does; exit 2 when invalid",
        description="Validate a config exactly as start-up does (no I/O): one 'path: message' line per error "
        "on stderr, exit 0 when valid, 2 otherwise.",
        epilog=_VALIDATE_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    v.add_argument("--config", "-c", metavar="FILE", help=_CONFIG_HELP)
    v.add_argument("config_path", nargs="?", metavar="FILE", help="the same as --config FILE (default: none)")
    v.set_defaults(func=cmd_validate)
    b = sub.add_parser(
        "backtest",
        help="replay files through the pipeline in event time",
        description="Replay files through the same pipeline in event time and write the alerts it raises.",
        epilog=_BACKTEST_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    b.add_argument("--config", "-c", metavar="FILE", help=_CONFIG_HELP)
    b.add_argument(
        "--input",
        "-i",
        nargs="+",
        action="extend",  # (-i a -i b: both, not the last one)
        required=True,
        metavar="PATH",
        help="required: files to replay: PATH or SOURCE=PATH (a file, a glob or a directory); "
        "a plain PATH goes to the source whose decoder reads it",
    )
    b.add_argument("--alerts-out", required=True, metavar="FILE", help="required: write one alert JSON per line here")
    b.add_argument(
        "--report", metavar="DIR", help="write a PNG plot per alerted series and index.html here (default: no report)"
    )
    b.add_argument(
        "--expected",
        metavar="FILE",
        help="the demo's anomalies.json format: marks each injected anomaly hit or missed in the report "
        "(default: none)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress line on a terminal")
    b.set_defaults(func=cmd_backtest)
    s = sub.add_parser(
        "silence",
        help="make, list or expire silences on a running agent (its API)",
        description="Make, list or expire silences through a running agent's API (/api/v1/silences), with its "
        "bearer token. A silenced alert is still computed and on /metrics, but not notified.",
        epilog=_SILENCE_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    s.add_argument("action", choices=["add", "list", "expire"], help="required: what to do")
    s.add_argument(
        "matchers",
        nargs="*",
        metavar="MATCHER",
        help="add: the matchers (team=research, 'severity=~\"critical|error\"'); expire: the silence's id "
        "(default: none)",
    )
    s.add_argument("--duration", type=parse_duration, metavar="D", help="add: how long (90m, 12h, 7d; default: none)")
    s.add_argument("--ends", metavar="TIME", help="add: when it ends, instead of --duration (default: none)")
    s.add_argument("--starts", metavar="TIME", help="add: when it starts (default: now)")
    s.add_argument("--comment", help="add: why (default: none; required)")
    s.add_argument("--author", help="add: who (default: none; required)")
    s.add_argument("--url", default="http://127.0.0.1:9464", help="the agent's HTTP address")
    s.add_argument(
        "--token-file",
        metavar="FILE",
        help="a file holding the API token (default: the token itself in $FINOPS_API_TOKEN)",
    )
    s.set_defaults(func=cmd_silence)
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    path = getattr(args, "config_path", None)
    if path is not None:
        if args.config is not None and args.config != path:
            parser.error(f"two configs given: --config {args.config} and {path}")
        args.config = path
    try:
        return int(args.func(args))
    except PluginError as exc:  # a plugin that cannot be imported: one line, which plugin and why
        print(f"cannot load a component: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    raise SystemExit(main())
