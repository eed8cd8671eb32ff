"""Pictures for the README: a Slack message and the Grafana dashboard, drawn from what the agent really produces.

    python -m scripts.screenshots --out docs/images

1. The seeded demo month (``agent.demo``) goes through ``backtest`` with the embedded default config.
2. **Slack**: the Block Kit message the Slack sink sends for the month's largest spend alert
   (:func:`sinks.slack.slack_message`, with a Grafana link), drawn block by block as Slack lays it out.
3. **Grafana**: every closed window's point is written as OpenMetrics, loaded into a real Prometheus with
   ``promtool tsdb create-blocks-from openmetrics``, and each panel of the dashboard's anomaly rows
   (``deploy/helm/finops-agent/dashboards/finops-agent.json``) is drawn where its ``gridPos`` puts it, from its own
   PromQL queries run by that Prometheus (``query_range`` over the month). No Grafana runs here: the panels are drawn
   with matplotlib, in Grafana's dark theme; the agent's own counters are not in a backfill, so the health rows are
   left out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "helm" / "finops-agent" / "dashboards" / "finops-agent.json"
ANOMALY_PANELS = 7  # the first rows: alerts, band, score, impact (the rest is the agent's own counters)


def backtest(work: Path) -> tuple[list[dict[str, Any]], dict[tuple[str, Any], list[Any]]]:
    from agent import demo
    from agent.backtest import PointCollector, backtest_config, input_span, route_inputs, with_span
    from agent.config import load_config
    from agent.pipeline import Agent
    from agent.state import MemoryStateStore

    demo.generate(work / "demo")
    cfg = load_config(None)
    routed = route_inputs(cfg, [str(work / "demo" / "bedrock")])
    bt = backtest_config(cfg, routed, str(work / "alerts.jsonl"))
    bt, clock = with_span(bt, input_span(bt))
    got = PointCollector()
    agent = Agent(bt, extra_sinks={"_collector": got}, state_store=MemoryStateStore(), now=clock)
    agent.start()
    agent.wait_finished()
    agent.stop(flush_windows=True)
    return got.alerts, got.points


# -- Slack -------------------------------------------------------------------------------------------------------


def draw_slack(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sinks.slack import slack_message

    link = {"href": "https://grafana.example.com/d/finops-agent", "text": "Open in Grafana"}
    msg = slack_message(doc, [link])
    lines: list[tuple[str, str]] = []  # (style, text)

    def mrkdwn(text: str) -> list[tuple[str, str]]:
        out = []
        for raw in text.split("\n"):
            bold = raw.count("*") >= 2  # (mrkdwn's *bold*)
            plain = raw.replace("*", "").replace("`", "").replace(":white_check_mark:", "(ok)")
            for emoji in (":rotating_light:", ":red_circle:", ":warning:"):  # (no emoji font here)
                plain = plain.replace(emoji, "(!)")
            for part in textwrap.wrap(plain, 92) or [""]:
                out.append(("bold" if bold else "text", part))
        return out

    for block in msg["blocks"]:
        if block["type"] == "section" and "text" in block:
            lines += mrkdwn(block["text"]["text"])
        elif block["type"] == "section":
            fields = [f["text"].split("\n", 1) for f in block["fields"]]
            for i in range(0, len(fields), 2):
                pair = fields[i : i + 2]
                lines.append(("field-name", "".join(f"{n.strip('*'):<46}" for n, _ in pair)))
                lines.append(("text", "".join(f"{v:<46}" for _, v in pair)))
        elif block["type"] == "context":
            lines.append(("subtle", block["elements"][0]["text"].replace("`", "")))
        elif block["type"] == "actions":
            lines.append(("button", "  ".join(f"[ {e['text']['text']} ]" for e in block["elements"])))
        lines.append(("gap", ""))
    height = 0.55 + 0.22 * len(lines)
    fig = plt.figure(figsize=(9.6, height), dpi=110)
    fig.patch.set_facecolor("white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.add_patch(plt.Rectangle((0.018, 0.04), 0.006, 0.92, color="#e01e5a", transform=ax.transAxes))
    ax.text(0.05, 1 - 0.3 / height, "FinOps Anomaly Agent", weight="bold", fontsize=11, transform=ax.transAxes)
    ax.text(0.30, 1 - 0.3 / height, "APP  10:07 AM", color="#616061", fontsize=8, transform=ax.transAxes)
    y = 1 - 0.6 / height
    for style, text in lines:
        if style == "gap":
            y -= 0.08 / height
            continue
        kw: dict[str, Any] = {"fontsize": 9.5, "family": "DejaVu Sans"}
        if style == "bold":
            kw["weight"] = "bold"
        elif style == "field-name":
            kw.update(weight="bold", family="DejaVu Sans Mono", fontsize=9)
        elif style == "subtle":
            kw.update(color="#616061", fontsize=8.5)
        elif style == "button":
            kw.update(color="#1264a3", weight="bold")
        if style == "text" and "  " in text:
            kw["family"] = "DejaVu Sans Mono"
            kw["fontsize"] = 9
        ax.text(0.05, y, text.replace("$", r"\$"), transform=ax.transAxes, va="top", **kw)  # ($: not TeX)
        y -= 0.22 / height
    fig.savefig(out, facecolor="white")
    plt.close(fig)


# -- Grafana -----------------------------------------------------------------------------------------------------


def openmetrics(points: dict[tuple[str, Any], list[Any]], alerts: list[dict[str, Any]]) -> str:
    """Every point as the samples the Prometheus sink exports for it, at its window's end."""
    firing: dict[tuple[str, tuple[Any, ...]], list[tuple[float, float]]] = {}
    for a in alerts:
        if a.get("kind") != "spend":
            continue
        key = (a["detector"], tuple(a["series"].items()))
        firing.setdefault(key, []).append((_ts(a["window_start"]), 1.0 if a["status"] == "firing" else 0.0))
    fams = {
        "finops_anomaly_score": "score",
        "finops_observed_value": "observed",
        "finops_expected_value": "expected",
        "finops_expected_lower": "lower",
        "finops_expected_upper": "upper",
        "finops_impact_usd": "impact_usd",
    }
    out: list[str] = []
    for name, attr in fams.items():
        out.append(f"# TYPE {name} gauge")
        for (_det, _series), pts in points.items():
            for p in pts:
                v = getattr(p, attr)
                if v is None or v != v:
                    continue
                out.append(f"{name}{{{_labels(p)}}} {float(v)} {p.window_end:.0f}")
    out.append("# TYPE finops_alerts_firing gauge")
    for (_det, _series), pts in points.items():
        key = (pts[0].detector, tuple(pts[0].series))
        changes = sorted(firing.get(key, []))
        for p in pts:
            state = 0.0
            for t, v in changes:
                if t <= p.window_start:
                    state = v
            out.append(f'finops_alerts_firing{{{_labels(p)},silenced="false"}} {state} {p.window_end:.0f}')
    out.append("# EOF")
    return "\n".join(out) + "\n"


def _labels(p: Any) -> str:
    labels = {"detector": p.detector, "signal": p.signal, "unit": p.unit, **dict(p.series)}
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def _ts(iso: str) -> float:
    from agent.model import parse_time

    return parse_time(iso)


def query_range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{q}", timeout=30) as resp:  # noqa: S310 (loopback)
        body = json.loads(resp.read())
    return list(body["data"]["result"])


def draw_dashboard(url: str, start: float, end: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"][:ANOMALY_PANELS]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_w, unit_h = 0.62, 0.36
    fig = plt.figure(figsize=(24 * unit_w, rows * unit_h + 0.8), dpi=90)
    bg, panel_bg, fg = "#111217", "#181b1f", "#ccccdc"
    fig.patch.set_facecolor(bg)
    fig.text(
        0.01,
        1 - 0.12 / (rows * unit_h + 0.8),
        f"{dash['title']}  ·  detector: All  ·  the demo month",
        color=fg,
        fontsize=12,
        weight="bold",
        va="top",
    )
    total_h = rows * unit_h + 0.8
    colors = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#ffb357"]
    for p in panels:
        g = p["gridPos"]
        left, width = 0.03 + g["x"] / 24 * 0.965 + 0.004, g["w"] / 24 * 0.965 - 0.012
        bottom = 1 - (0.7 + (g["y"] + g["h"]) * unit_h) / total_h + 0.006
        height = g["h"] * unit_h / total_h - 0.03
        ax = fig.add_axes((left, bottom, width, height))
        ax.set_facecolor(panel_bg)
        for s in ax.spines.values():
            s.set_color("#2c3235")
        ax.set_title(p["title"], color=fg, fontsize=9.5, loc="left")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        step = 3600.0
        series = []
        for t in p["targets"]:
            expr = t["expr"].replace("$detector", ".*").replace("$__rate_interval", "5m")
            for r in query_range(url, expr, start, end, step):
                series.append((t, r))
        if p["type"] == "stat":
            ax.set_xticks([])
            ax.set_yticks([])
            peak = max((float(v[1]) for _, r in series for v in r["values"]), default=None)
            unit = p["fieldConfig"]["defaults"]["unit"]
            text = "No data" if peak is None else (f"${peak:,.0f}" if unit == "currencyUSD" else f"{peak:,.0f}")
            ax.text(
                0.5,
                0.45,
                text,
                color="#73bf69" if peak else fg,
                fontsize=22,
                ha="center",
                va="center",
                weight="bold",
                transform=ax.transAxes,
            )
            ax.text(
                0.5,
                0.12,
                "peak over the month" if peak is not None else "",
                color="#8e8e8e",
                fontsize=7,
                ha="center",
                transform=ax.transAxes,
            )
            continue
        for i, (t, r) in enumerate(series[:24]):
            xs = [mdates.date2num(_dt(float(v[0]))) for v in r["values"]]
            ys = [float(v[1]) for v in r["values"]]
            legend = t.get("legendFormat", "")
            for k, v in r["metric"].items():
                legend = legend.replace("{{" + k + "}}", v)
            style: dict[str, Any] = {"lw": 0.9}
            if legend.endswith(("lower", "upper")):
                style = {"lw": 0.6, "ls": "--", "alpha": 0.6}
            ax.plot(xs, ys, color=colors[i % len(colors)], label=legend if i < 8 else None, **style)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
        if series:
            ax.legend(fontsize=6, loc="upper left", facecolor=panel_bg, edgecolor="#2c3235", labelcolor=fg, ncol=2)
        else:
            ax.text(0.5, 0.5, "No data", color=fg, ha="center", transform=ax.transAxes)
    fig.savefig(out, facecolor=bg)
    plt.close(fig)


def _dt(t: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC)


def main(argv: list[str] | None = None) -> int:
    from scripts.prom_services import Prometheus, install, require

    ap = argparse.ArgumentParser(prog="python -m scripts.screenshots")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    install()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        alerts, points = backtest(work)
        spend = [a for a in alerts if a["status"] == "firing" and a.get("kind") == "spend" and a["top_contributors"]]
        doc = max(spend, key=lambda a: abs(a.get("impact_usd") or 0.0))
        draw_slack(doc, args.out / "slack-message.png")
        (work / "points.om").write_text(openmetrics(points, alerts))
        subprocess.run(
            [
                require("promtool"),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(work / "points.om"),
                str(work / "prom" / "data"),
            ],
            check=True,
            capture_output=True,
        )
        ends = [p.window_end for pts in points.values() for p in pts]
        start, end = min(ends), max(ends)
        prom = Prometheus(
            work / "prom",
            {"global": {"scrape_interval": "1m"}},
            args=("--storage.tsdb.retention.time=100y", "--query.lookback-delta=2h"),
        )
        prom.start()
        try:
            draw_dashboard(prom.url, start, end, args.out / "grafana-dashboard.png")
        finally:
            prom.stop()
    print(f"wrote {args.out / 'slack-message.png'} and {args.out / 'grafana-dashboard.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
