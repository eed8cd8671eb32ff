"""The backtest report: a table of alert episodes and a plot per alerted series (``--report DIR``)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.backtest import PointCollector


def write_report(
    report_dir: str, collector: PointCollector, summary: dict[str, Any], expected: str | None = None
) -> None:
    """Write ``index.html`` and a PNG per alerted series; ``expected``: an ``anomalies.json`` (hits and misses)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("the backtest report needs matplotlib: pip install 'finops-agent[report]'") from exc
    import datetime as dt

    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    firing = [a for a in collector.alerts if a["status"] == "firing"]
    by_series: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for a in firing:
        by_series.setdefault((a["detector"], tuple(a["series"].items())), []).append(a)
    rows = []
    for (det, series), alerts in sorted(by_series.items(), key=lambda kv: kv[1][0]["started_at"]):
        pts = collector.points.get((det, series), [])
        label = ",".join(f"{k}={v}" for k, v in series) or "all"
        fname = _safe(f"{det}__{label}") + ".png"
        fig, ax = plt.subplots(figsize=(11, 3.6), dpi=100)
        xs = mdates.date2num([dt.datetime.fromtimestamp(p.window_start, dt.UTC) for p in pts])
        obs = [p.observed for p in pts]
        exp = [p.expected for p in pts]
        lo = [p.lower if math.isfinite(p.lower) else math.nan for p in pts]
        hi = [p.upper if math.isfinite(p.upper) else math.nan for p in pts]
        ax.fill_between(xs, lo, hi, color="tab:blue", alpha=0.15, label="expected band")
        ax.plot(xs, exp, color="tab:blue", lw=1, label="expected")
        ax.plot(xs, obs, color="black", lw=0.8, label="observed")
        ax_x = [x for x, p in zip(xs, pts, strict=True) if p.anomalous]
        ax_y = [p.observed for p in pts if p.anomalous]
        ax.scatter(ax_x, ax_y, color="red", s=14, zorder=3, label="anomalous")
        for a in alerts:
            started = dt.datetime.fromisoformat(a["started_at"].replace("Z", "+00:00"))
            ax.axvline(float(mdates.date2num(started)), color="red", lw=0.8, ls="--")
        ax.set_title(f"{det}: {pts[0].signal if pts else ''} {label}", fontsize=10)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ymax = max([v for v in obs if math.isfinite(v)] + [1e-9])
        ax.set_ylim(bottom=min(0, min(obs, default=0)), top=ymax * 1.15)
        ax.legend(loc="upper left", fontsize=7, ncol=4)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / fname)
        plt.close(fig)
        for a in alerts:
            rows.append((a, fname))
    items = "\n".join(
        f"<tr><td>{html.escape(a['started_at'])}</td><td>{html.escape(a['severity'])}</td>"
        f"<td>{html.escape(a['detector'])}</td>"
        f"<td>{html.escape(','.join(f'{k}={v}' for k, v in a['series'].items()))}</td>"
        f"<td>{a['impact_usd'] if a['impact_usd'] is not None else ''}</td><td>{html.escape(a['summary'])}</td>"
        f'<td><a href="{html.escape(f)}"><img src="{html.escape(f)}" width="360"></a></td></tr>'
        for a, f in rows
    )
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>FinOps Anomaly Agent backtest</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}}</style></head><body>
<h1>Backtest report</h1>
<p>{summary["records"]:,} records in {summary["seconds"]:.1f} s ({summary["records_per_second"]:,.0f} records/s);
{summary["points"]:,} points scored; {len(firing)} alerts; {summary["dead_letter"]} records dead-lettered.</p>
<table><tr><th>started</th><th>severity</th><th>detector</th><th>series</th><th>impact USD</th>
<th>summary</th><th>plot</th></tr>
{items}
</table></body></html>"""
    (out / "index.html").write_text(doc, encoding="utf-8")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in name)[:150] or "series"
