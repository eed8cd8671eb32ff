"""The backtest report (``--report DIR``): one row per alert episode and a plot per alerted series.

``index.html`` (no external assets: it opens offline) starts with the total dollar impact of all
episodes, then one row per episode (not per notification): start, end, duration, peak severity
and the episode's total impact, sortable by clicking a column header. With ``expected`` (an
``anomalies.json`` as written by :mod:`agent.demo`), a second table says for each injected
anomaly whether an episode caught it, and episodes that match no injected anomaly are marked as
false positives.

Each PNG shows one series: observed, expected and its band, the anomalous windows, each episode
shaded with its dollar impact written on it, the detector's warm-up shaded grey, the series' unit
on the y-axis and dates with year in UTC on the x-axis. The band is never cut off by the plot,
except where it reaches more than :data:`BAND_SPAN_MAX` times the data's own range beyond the
data (an infinite or a huge band would flatten the series into a line): there the band is drawn
up to that limit and the plot says so.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from agent.alerts import Point, Unit
from agent.model import parse_time

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from agent.backtest import PointCollector

BAND_SPAN_MAX = 3.0  # the band is drawn at most this many data ranges beyond the data
_RANK = {"warning": 0, "error": 1, "critical": 2}


@dataclass
class Episode:
    """One alert episode, from its notifications (and the points, while it is still open)."""

    id: str
    detector: str
    series: dict[str, str]
    start: float
    end: float
    open: bool
    severity: str  # the highest it reached
    impact_usd: float  # the whole episode's
    summary: str  # its first notification's
    unit: Unit
    window: float
    matches: list[str] = field(default_factory=list)  # injected anomalies it caught (with ``expected``)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.series.items()) or "all"


def episodes(collector: PointCollector) -> list[Episode]:
    """The alert episodes of a backtest, in start order.

    A resolved episode's impact is the one its resolution reports (the runner's own total). One
    still open when the input ended sums its anomalous windows since it started (for a month-to-date
    series, a budget, the latest window's overrun), each window counted once (a restated window
    replaces its earlier value).
    """
    docs: dict[str, list[dict[str, Any]]] = {}
    for d in collector.alerts:
        docs.setdefault(d["id"], []).append(d)
    out = []
    for eid, ds in docs.items():
        first, last = ds[0], ds[-1]
        window = parse_time(first["window_end"]) - parse_time(first["window_start"])
        unit = _unit(first, window)
        start = parse_time(first["started_at"])
        severity = max((d["severity"] for d in ds), key=lambda s: _RANK.get(s, -1))
        if first.get("kind") == "data_gap":  # no dollar figure: spend went unreported
            end = parse_time(last["window_end"])
            impact = 0.0
            is_open = last["status"] != "resolved"
        elif last["status"] == "resolved":
            end = parse_time(last["window_end"])
            impact = (last.get("episode") or {}).get("impact_usd") or 0.0
            is_open = False
        else:
            key = (first["detector"], tuple(first["series"].items()))
            since: dict[float, Point] = {}
            for p in collector.points.get(key, []):
                if p.window_start >= start:
                    since[p.window_start] = p
            anomalous = [p for _, p in sorted(since.items()) if p.anomalous]
            end = anomalous[-1].window_end if anomalous else parse_time(last["window_end"])
            impacts = [p.impact_usd for p in anomalous if p.impact_usd is not None]
            if unit.label.endswith("month_to_date"):
                impact = impacts[-1] if impacts else 0.0
            else:
                impact = sum(impacts)
            is_open = True
        first_firing = next((d for d in ds if d["status"] == "firing"), first)
        out.append(
            Episode(
                eid,
                first["detector"],
                dict(first["series"]),
                start,
                end,
                is_open,
                severity,
                float(impact),
                first_firing["summary"],
                unit,
                window,
            )
        )
    out.sort(key=lambda e: (e.start, e.detector, e.label))
    return out


def _unit(doc: dict[str, Any], window: float) -> Unit:
    return Unit.of(
        doc["signal"],
        doc.get("per"),
        float(doc.get("per_scale") or 1.0),
        window,
        month_to_date=str(doc.get("unit_label", "")).endswith("month_to_date"),
    )


# -- expected anomalies ----------------------------------------------------------------------------
def load_expected(path: str) -> list[dict[str, Any]]:
    """Injected anomalies: ``{"anomalies": [{name, detector, series, start, end}]}`` (or the list alone);
    times in epoch seconds or ISO-8601."""
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    items = raw.get("anomalies") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise ValueError(f'{path}: expected {{"anomalies": [...]}} or a list of anomalies')
    out = []
    for i, a in enumerate(items):
        try:
            out.append(
                {
                    "name": str(a.get("name") or f"anomaly {i + 1}"),
                    "detector": a.get("detector"),
                    "series": {str(k): str(v) for k, v in (a.get("series") or {}).items()},
                    "start": parse_time(a["start"]),
                    "end": parse_time(a["end"]),
                }
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{path}: anomaly {i + 1}: {exc!r} (expected name, detector, series, start, end)") from exc
    return out


def _overlaps(ep: Episode, a: dict[str, Any]) -> bool:
    """Same series (every dimension the anomaly names) and overlapping in time, give or take a window."""
    if any(ep.series.get(k) != v for k, v in a["series"].items()):
        return False
    return ep.start <= a["end"] + ep.window and ep.end >= a["start"] - ep.window


def match_expected(eps: list[Episode], expected: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[Episode]]]:
    """For each injected anomaly, the episodes that caught it: its detector (where it names one),
    its series, overlapping its span. An episode of another detector on that series and span is
    explained by the anomaly too (a model switch raises the unit cost and the spend), not a false
    positive; :attr:`Episode.matches` lists what explains each episode."""
    out = []
    for a in expected:
        hits = []
        for ep in eps:
            if _overlaps(ep, a):
                ep.matches.append(a["name"])
                if a["detector"] in (None, ep.detector):
                    hits.append(ep)
        out.append((a, hits))
    return out


# -- the plot --------------------------------------------------------------------------------------
def series_figure(points: list[Point], eps: list[Episode], unit: Unit, title: str) -> Figure:
    """One series' plot (a matplotlib Figure, not yet saved)."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8), dpi=100)
    ax = fig.add_subplot()
    k = unit.scale
    xs = [mdates.date2num(_utc(p.window_start)) for p in points]
    obs = [p.observed * k for p in points]
    exp = [p.expected * k for p in points]
    lo = [p.lower * k if math.isfinite(p.lower) else math.nan for p in points]
    hi = [p.upper * k if math.isfinite(p.upper) else math.nan for p in points]
    data = [v for v in obs + exp if math.isfinite(v)] or [0.0]
    d_lo, d_hi = min(data), max(data)
    span = max(d_hi - d_lo, abs(d_hi) * 0.1, 1e-9)
    cap_lo, cap_hi = d_lo - BAND_SPAN_MAX * span, d_hi + BAND_SPAN_MAX * span
    clipped = any(v < cap_lo for v in lo) or any(v > cap_hi for v in hi)
    lo_c = [max(v, cap_lo) for v in lo]  # (NaN stays NaN: an unbounded side is not drawn)
    hi_c = [min(v, cap_hi) for v in hi]
    # Warm-up: the windows scored before the series' model had learned enough to judge it.
    for a, b in _runs([p.warming_up for p in points]):
        ax.axvspan(xs[a], xs[b] + _days(points[b].window_end - points[b].window_start), color="0.85", lw=0, zorder=0)
    if any(p.warming_up for p in points):
        ax.plot([], [], color="0.85", lw=6, label="warm-up")
    ax.fill_between(xs, lo_c, hi_c, color="tab:blue", alpha=0.15, lw=0, label="expected band")
    # A fixed bound (a threshold rule) is the "expected" value of its points: call it the limit.
    is_limit = bool(points) and all(p.expected in (p.upper, p.lower) for p in points)
    ax.plot(xs, exp, color="tab:blue", lw=1, label="limit" if is_limit else "expected")
    ax.plot(xs, obs, color="black", lw=0.8, label="observed")
    ax.scatter(
        [x for x, p in zip(xs, points, strict=True) if p.anomalous],
        [p.observed * k for p in points if p.anomalous],
        color="red",
        s=14,
        zorder=3,
        label="anomalous",
    )
    y_all = [v for v in data + lo_c + hi_c if math.isfinite(v)]
    y_min, y_max = min(y_all + [0.0]), max(y_all)
    pad = (y_max - y_min) * 0.18 or 1.0
    ax.set_ylim(y_min - (pad * 0.3 if y_min < 0 else 0.0), y_max + pad)  # room above for the impacts
    for ep in eps:
        x0, x1 = mdates.date2num(_utc(ep.start)), mdates.date2num(_utc(ep.end))
        ax.axvspan(x0, x1, color="red", alpha=0.12, lw=0, zorder=0)
        ax.annotate(
            _money(ep.impact_usd) + (" (open)" if ep.open else ""),
            xy=(x0, y_max + pad * 0.5),
            fontsize=8,
            color="darkred",
            ha="left",
            va="center",
        )
    if clipped:
        ax.text(
            0.995,
            0.02,
            f"band clipped at {BAND_SPAN_MAX:g}× the data's range",
            transform=ax.transAxes,
            ha="right",
            fontsize=7,
            color="tab:blue",
        )
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit.axis)
    ax.set_xlabel("time (UTC)")
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(tz=dt.UTC, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d\n%H:%M", tz=dt.UTC))
    ax.legend(loc="upper left", fontsize=7, ncol=5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Index ranges ``(first, last)`` of consecutive True values."""
    runs, start = [], None
    for i, f in enumerate(flags + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def _days(seconds: float) -> float:
    return seconds / 86400.0


# -- the page --------------------------------------------------------------------------------------
def write_report(
    report_dir: str, collector: PointCollector, summary: dict[str, Any], expected: str | None = None
) -> None:
    """Write ``index.html`` and a PNG per alerted series; ``expected``: an ``anomalies.json`` (hits and misses)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise SystemExit("the backtest report needs matplotlib: pip install 'finops-agent[report]'") from exc
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    eps = episodes(collector)
    matched = match_expected(eps, load_expected(expected)) if expected else None
    plots: dict[str, str] = {}
    by_series: dict[tuple[str, tuple[tuple[str, str], ...]], list[Episode]] = {}
    for ep in eps:
        by_series.setdefault((ep.detector, tuple(ep.series.items())), []).append(ep)
    for (det, series), its in by_series.items():
        pts = collector.points.get((det, series), [])
        fname = _safe(f"{det}__{its[0].label}") + ".png"
        signal = pts[0].signal if pts else ""
        fig = series_figure(pts, its, its[0].unit, f"{det}: {signal} {its[0].label}")
        fig.savefig(out / fname)
        for ep in its:
            plots[ep.id] = fname
    total = sum(e.impact_usd for e in eps)
    rows = "\n".join(_row(e, plots.get(e.id, ""), matched is not None) for e in eps)
    expected_html = _expected_table(matched, eps) if matched is not None else ""
    hit_col = "<th>injected anomaly</th>" if matched is not None else ""
    records = summary.get("records", 0)
    unit = summary.get("unit", "record")  # input lines, table rows, or records
    plural = "s" if len(eps) != 1 else ""
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>FinOps Anomaly Agent backtest</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}}
th.sortable{{cursor:pointer;background:#f3f3f3}}th.sortable:after{{content:" \\2195";color:#999}}
td.num{{text-align:right;white-space:nowrap}}.miss{{color:#b00}}.hit{{color:#070}}</style></head><body>
<h1>Backtest report</h1>
<p id="total"><strong>Total impact: {_money(total)}</strong> over {len(eps)} alert episode{plural}.</p>
<p>{records:,} {unit}s read in {summary.get("seconds", 0.0):.1f} s ({summary.get("records_per_second", 0.0):,.0f}/s);
{summary.get("points", 0):,} points scored; {summary.get("dead_letter", 0)} records dead-lettered.</p>
{expected_html}
<h2>Alert episodes</h2>
<table id="episodes" class="sortable"><thead><tr>
<th class="sortable">started (UTC)</th><th class="sortable">ended (UTC)</th><th class="sortable">duration</th>
<th class="sortable">detector</th><th class="sortable">series</th><th class="sortable">peak severity</th>
<th class="sortable">impact</th>{hit_col}<th>first alert</th><th>plot</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<script>
document.querySelectorAll("table.sortable").forEach(function (table) {{
  table.querySelectorAll("th.sortable").forEach(function (th, col) {{
    th.addEventListener("click", function () {{
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("data-dir") !== "asc";
      th.setAttribute("data-dir", asc ? "asc" : "desc");
      function key(r) {{ var c = r.cells[col]; return c.getAttribute("data-sort") || c.textContent; }}
      rows.sort(function (a, b) {{
        var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny) && String(nx) === x && String(ny) === y) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      }});
      rows.forEach(function (r) {{ body.appendChild(r); }});
    }});
  }});
}});
</script></body></html>"""
    (out / "index.html").write_text(doc, encoding="utf-8")


def _row(e: Episode, plot: str, with_hits: bool) -> str:
    esc = html.escape
    ended = "open" if e.open else _iso(e.end)
    hit = ""
    if with_hits:
        hit = f"<td>{esc(', '.join(e.matches))}</td>" if e.matches else '<td class="miss">false positive</td>'
    img = f'<a href="{esc(plot)}"><img src="{esc(plot)}" width="360"></a>' if plot else ""
    return (
        f'<tr data-id="{esc(e.id)}"><td data-sort="{e.start:.0f}">{_iso(e.start)}</td>'
        f'<td data-sort="{e.end:.0f}">{ended}{" (at " + _iso(e.end) + ")" if e.open else ""}</td>'
        f'<td data-sort="{e.end - e.start:.0f}">{_span(e.end - e.start)}</td>'
        f"<td>{esc(e.detector)}</td><td>{esc(e.label)}</td>"
        f'<td data-sort="{_RANK.get(e.severity, -1)}">{esc(e.severity)}</td>'
        f'<td class="num" data-sort="{e.impact_usd:.6f}">{_money(e.impact_usd)}</td>{hit}'
        f"<td>{esc(e.summary)}</td><td>{img}</td></tr>"
    )


def _expected_table(matched: list[tuple[dict[str, Any], list[Episode]]], eps: list[Episode]) -> str:
    esc = html.escape
    rows = []
    for a, hits in matched:
        series = ", ".join(f"{k}={v}" for k, v in a["series"].items()) or "all"
        result = '<td class="hit">hit</td>' if hits else '<td class="miss">miss</td>'
        caught = "; ".join(f"{h.detector} {_iso(h.start)} {_money(h.impact_usd)}" for h in hits)
        rows.append(
            f'<tr data-anomaly="{esc(a["name"])}"><td>{esc(a["name"])}</td><td>{esc(str(a["detector"] or ""))}</td>'
            f"<td>{esc(series)}</td><td>{_iso(a['start'])}</td><td>{_iso(a['end'])}</td>{result}"
            f"<td>{esc(caught)}</td></tr>"
        )
    n_hit = sum(1 for _, h in matched if h)
    false = sum(1 for e in eps if not e.matches)
    return f"""<h2>Injected anomalies</h2>
<p id="hits">{n_hit} of {len(matched)} injected anomalies caught; {false} episode{"s" if false != 1 else ""} match
no injected anomaly (false positives).</p>
<table id="expected"><thead><tr><th>anomaly</th><th>detector</th><th>series</th><th>from (UTC)</th>
<th>to (UTC)</th><th>result</th><th>caught by</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table>"""


def _money(v: float) -> str:
    """``4005.768`` → "$4,005.77", ``-12.5`` → "-$12.50"."""
    return f"{'-' if v < 0 else ''}${abs(v):,.2f}"


def _iso(t: float) -> str:
    return _utc(t).strftime("%Y-%m-%d %H:%M")


def _span(seconds: float) -> str:
    """``93600`` → "1 d 2 h"; ``5400`` → "1 h 30 min"."""
    m = int(round(seconds / 60))
    d, m = divmod(m, 1440)
    h, m = divmod(m, 60)
    parts = [f"{d} d"] * bool(d) + [f"{h} h"] * bool(h) + [f"{m} min"] * bool(m)
    return " ".join(parts) or "0 min"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in name)[:150] or "series"
