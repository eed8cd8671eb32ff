"""The backtest report: one row per episode with its money, a total, hits and misses, labelled plots."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.alerts import Point, Unit
from agent.report import BAND_SPAN_MAX, Episode, series_figure

MONEY = re.compile(r"^-?\$\d{1,3}(,\d{3})*\.\d{2}$")


class Tables(HTMLParser):
    """Rows of each table by id: a list of cells (text and attributes) per row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[dict[str, Any]]]] = {}
        self.ids: dict[str, str] = {}  # element id → its text
        self._table: str | None = None
        self._cell: dict[str, Any] | None = None
        self._id: str | None = None
        self.row_attrs: dict[str, list[dict[str, Any]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
            self.row_attrs[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
            self.row_attrs[self._table].append(a)
        elif tag in ("td", "th") and self._table is not None:
            self._cell = {"text": "", **a}
            self.tables[self._table][-1].append(self._cell)
        elif tag == "img" and self._cell is not None:
            self._cell["img"] = a.get("src")
        elif a.get("id"):
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "p":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._id is not None:
            self.ids[self._id] += data


def _money(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


@pytest.fixture
def report(demo_backtest: tuple[Path, Path, str]) -> tuple[Path, Path]:
    """The report and alerts of `finops-agent backtest --report --expected` over the demo month on the embedded
    default (conftest's ``demo_backtest``: run once, test_backtest reads it too)."""
    alerts, report_dir, _ = demo_backtest
    return report_dir, alerts


def test_one_row_per_episode_with_money_a_total_and_hits(report: tuple[Path, Path], demo_month: Path) -> None:
    report_dir, alerts_path = report
    page = Tables()
    page.feed((report_dir / "index.html").read_text(encoding="utf-8"))
    docs = [orjson.loads(x) for x in alerts_path.read_bytes().splitlines()]
    ids = list(dict.fromkeys(d["id"] for d in docs))
    assert len(docs) > len(ids)  # several notifications per episode (escalations, resolutions) ...
    header, *rows = page.tables["episodes"]
    names = [c["text"] for c in header]
    episode_ids = [a["data-id"] for a in page.row_attrs["episodes"][1:]]
    assert sorted(episode_ids) == sorted(ids)  # ... one row each
    col = {n: i for i, n in enumerate(names)}
    assert {"started (UTC)", "ended (UTC)", "duration", "peak severity", "impact", "injected anomaly"} <= set(col)
    assert all("sortable" in c.get("class", "") for c in header[: col["impact"] + 1])
    impacts = []
    for r in rows:
        text = r[col["impact"]]["text"]
        assert MONEY.match(text), text
        assert float(r[col["impact"]]["data-sort"]) == pytest.approx(_money(text), abs=0.006)
        impacts.append(_money(text))
        assert r[col["plot"]]["img"] and (report_dir / r[col["plot"]]["img"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A resolved episode's row carries the episode's total (its resolution), not a window's impact.
    resolved = {d["id"]: d for d in docs if d["status"] == "resolved"}
    by_id = dict(zip(episode_ids, impacts, strict=True))
    assert resolved
    for eid, d in resolved.items():
        assert by_id[eid] == pytest.approx(d["episode"]["impact_usd"], abs=0.006)
    # Peak severity: the highest any notification of the episode had.
    rank = {"warning": 0, "error": 1, "critical": 2}
    for eid, r in zip(episode_ids, rows, strict=True):
        assert r[col["peak severity"]]["text"] == max((d["severity"] for d in docs if d["id"] == eid), key=rank.get)
    # The total at the top is the sum of the rows.
    total = re.search(r"Total impact: (-?\$[\d,]+\.\d\d)", page.ids["total"])
    assert total and _money(total.group(1)) == pytest.approx(sum(impacts), abs=0.01 * len(impacts))
    assert f"over {len(ids)} alert episodes" in page.ids["total"]
    # Hit or miss per injected anomaly (the demo's every anomaly is caught).
    manifest = orjson.loads((demo_month / "anomalies.json").read_bytes())
    _, *expected = page.tables["expected"]
    assert [r[0]["text"] for r in expected] == [a["name"] for a in manifest["anomalies"]]
    assert [r[5]["text"] for r in expected] == ["hit"] * len(manifest["anomalies"])
    false = [r for r in rows if r[col["injected anomaly"]]["text"] == "false positive"]
    assert f"{len(false)} episode" in page.ids["hits"] and len(false) <= 3


def test_a_missed_anomaly_reads_miss(report: tuple[Path, Path], demo_month: Path, tmp_path: Path) -> None:
    from agent.backtest import PointCollector
    from agent.report import write_report

    alerts = [orjson.loads(x) for x in report[1].read_bytes().splitlines()]
    collector = PointCollector()
    collector.alerts = alerts
    fake = {
        "anomalies": [
            {
                "name": "never",
                "detector": "token_spend",
                "series": {"team": "nobody"},
                "start": "2020-01-01T00:00:00Z",
                "end": "2020-01-02T00:00:00Z",
            }
        ]
    }
    (tmp_path / "a.json").write_bytes(orjson.dumps(fake))
    write_report(str(tmp_path / "r"), collector, {}, expected=str(tmp_path / "a.json"))
    page = Tables()
    page.feed((tmp_path / "r" / "index.html").read_text(encoding="utf-8"))
    assert [(r[0]["text"], r[5]["text"]) for r in page.tables["expected"][1:]] == [("never", "miss")]
    assert page.ids["hits"].startswith("0 of 1 injected anomalies caught")


def _points(n: int, *, warm: int, lower: float, upper: float, anomalous_at: int) -> list[Point]:
    t0 = 1_790_000_000.0 - 1_790_000_000.0 % 86400
    return [
        Point(
            "d",
            "seasonal",
            "token_cost_usd",
            (("team", "a"),),
            t0 + i * 3600,
            t0 + (i + 1) * 3600,
            300.0 if i == anomalous_at else 100.0,
            100.0,
            lower,
            upper,
            0.9 if i == anomalous_at else 0.1,
            i == anomalous_at,
            200.0 if i == anomalous_at else 0.0,
            unit="usd",
            warming_up=i < warm,
        )
        for i in range(n)
    ]


def test_the_plot_has_units_utc_dates_warm_up_and_an_unclipped_band() -> None:
    pts = _points(72, warm=24, lower=40.0, upper=160.0, anomalous_at=50)
    unit = Unit.of("token_cost_usd", None, 1, 3600)
    ep = Episode(
        "x", "d", {"team": "a"}, pts[50].window_start, pts[50].window_end, False, "error", 4005.768, "s", unit, 3600.0
    )
    fig = series_figure(pts, [ep], unit, "d: token_cost_usd team=a")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "$/h" and "UTC" in ax.get_xlabel()
    fmt = ax.xaxis.get_major_formatter()
    assert "%Y" in fmt.fmt and fmt.tz is not None  # year and UTC on the dates
    lo, hi = ax.get_ylim()
    assert lo <= 40.0 and hi >= 300.0  # band and data inside the plot
    texts = [t.get_text() for t in ax.texts]
    assert "$4,005.77" in texts  # the episode's impact written on it
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "warm-up" in legend and "expected band" in legend
    # Warm-up shading spans the first 24 windows.
    import matplotlib.dates as mdates

    spans = [p for p in ax.patches if p.get_facecolor()[:3] == pytest.approx((0.85, 0.85, 0.85))]
    assert len(spans) == 1
    x0, x1 = (mdates.num2date(v).timestamp() for v in (spans[0].get_x(), spans[0].get_x() + spans[0].get_width()))
    assert (x0, x1) == (pytest.approx(pts[0].window_start), pytest.approx(pts[24].window_start))


def test_a_huge_band_is_clipped_and_said_so_other_units_label_their_axis() -> None:
    pts = _points(30, warm=0, lower=-1e12, upper=1e12, anomalous_at=20)
    unit = Unit.of("gpu_idle_hours", "gpu_hours", 1, 3600)
    fig = series_figure(pts, [], unit, "t")
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    assert hi < 1e6 and math.isfinite(lo)  # not flattened by the band
    assert any("band clipped" in t.get_text() and f"{BAND_SPAN_MAX:g}" in t.get_text() for t in ax.texts)
    assert ax.get_ylabel() == "% idle" and hi >= 300 * 100  # a share is drawn in percent
    assert Unit.of("token_cost_usd", "tokens", 1000, 3600).axis == "$ per 1k tokens"
    assert Unit.of("gpu_hours", None, 1, 3600).axis == "GPU-hours/h"
