"""Cost-shaped benchmark: seeded billing and token series with labelled anomalies, through the agent's detectors.

Each seed generates 116 days (Monday 5 January to 1 May 2026: three whole months) of

- **per-minute token spend** for 10 teams (two models each; office-hours, batch-night or
  round-the-clock shapes, weekends, growth, bursty noise), fed minute by minute into the
  embedded default config's ``token_spend`` and ``unit_cost`` detectors (which roll them up
  into their hourly windows exactly as the agent does), and
- **hourly billed cost** for 12 cloud services (daily and weekly shapes, growth, noise, and for
  four of them a monthly fee billed at 00:00 UTC on the 1st as its own line, ``charge_category``
  ``Purchase`` as in a bill: normal, not an anomaly), fed into the default ``cloud_spend`` detector;

with one labelled anomaly injected into most series after a three-week warm-up: a **spike**
(1–4 hours at 3–8×), a **level shift** (1.8–3× for good), a **slow drift** (up to 2–3× over
1–2 weeks), a **gradual leak** (forgotten resources adding 10–25 % of the usual hourly spend
every day, around the clock), a **new series** (a team or service that did not exist) or, for
teams, a **data gap** (their records stop for 1–3 days);

and **small teams** (8 per seed, $10–$500 a month, log-uniform), whose calls arrive one by one
(Poisson, $0.001–$0.01 a call: a small team's quiet hours have no record at all), with a
**model switch** (each call costs 2–4× for good, tokens unchanged), **prompt bloat** (1.5–3×
the tokens and cost per call for good), a **runaway loop** (10–20× the calls for 1–3 hours) or
a **data gap**.

The token detectors are also asked for early warnings every minute (``early_check_seconds``
60), as the agent does on live input: time to detect runs from the anomaly's start to the
alert (an early warning's moment in its window; else the window's end plus the default
``allowed_lateness_seconds``). A data gap is detected by a data-gap alert only.

An alert is an episode's first ``firing`` document. It detects an anomaly when it fires on the
anomaly's series inside its label window (the anomaly itself; plus two days for a level shift,
a drift's ramp plus two days, the first two weeks of a leak, the first day of a new series).
Every other alert is a false positive. Time to detect runs from the anomaly's start to the end
of the alerting window (when the agent sends it).

Budgets: each team's budget is 1.2× its uninjected month (so drifts, shifts and leaks push some
over); a ``budget`` detector with the team budgets runs over the same token series. A team-month
is positive when its actual spend exceeds the budget; reported are precision and recall of
budget alerts per team-month, the lead time from the alert to the day the budget was actually
exceeded, and the error and interval coverage of the month-end forecast on the 10th.

Usage: ``python -m bench.cost_shaped [--seeds 5]``.
"""

from __future__ import annotations

import argparse
import calendar
import pickle
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.config import load_config
from agent.detect import DetectorRunner
from agent.model import cell, make_dims
from agent.registry import components
from bench.common import machine
from detectors.budget import BudgetConfig, BudgetDetector

START = float(calendar.timegm((2026, 1, 5, 0, 0, 0)))  # a Monday
DAYS = 116  # to 1 May: February, March and April are whole months
MIN = 60.0
H = 3600.0
D = 86400.0
BIG_KINDS = ("spike", "level_shift", "drift", "leak", "new_series", "data_gap")
SMALL_KINDS = ("model_switch", "prompt_bloat", "runaway", "data_gap")
KINDS = (*BIG_KINDS, *SMALL_KINDS[:-1])
SMALL_TEAMS = 8
SMALL_PRICE = 0.00025  # USD per 1k tokens of a small team's usual model
TOKEN_DETECTORS = ("token_spend", "unit_cost")
BILLING_DETECTORS = ("cloud_spend",)
PRICES = {"haiku": 0.00025, "sonnet": 0.003}  # USD per 1k tokens
FEE_SERVICES = 4  # services billed a fee at 00:00 UTC on the 1st


@dataclass
class Anomaly:
    kind: str
    series: tuple[tuple[str, str], ...]  # the detector's series: (("team", "t3"),) or provider/service
    start: float
    end: float  # end of the label window
    detected_at: float | None = None
    group: str = "big teams"  # big teams, small teams, services


@dataclass
class Scenario:
    token: dict[str, np.ndarray]  # team → per-minute USD (NaN before a new team exists)
    clean_token: dict[str, np.ndarray]  # the same without the injected anomaly
    billing: dict[str, np.ndarray]  # service → hourly USD (usage)
    fees: dict[str, np.ndarray] = field(default_factory=dict)  # service → hourly USD of Purchase lines (a fee)
    anomalies: list[Anomaly] = field(default_factory=list)
    # small team → (per-minute USD, tokens, model index: 0 its usual model, 1 after a model switch); NaN: no call
    small: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


def _shape(rng: np.random.Generator, t: np.ndarray, kind: str) -> np.ndarray:
    """Daily × weekly multiplicative shape at epoch seconds ``t``."""
    hour = (t % D) / H
    dow = ((t // D).astype(int) + 3) % 7  # 0 = Monday
    weekend = dow >= 5
    if kind == "office":
        day = 0.2 + 1.6 * np.exp(-0.5 * ((hour - 14) / 3.0) ** 2)
        week = np.where(weekend, rng.uniform(0.2, 0.4), 1.0)
    elif kind == "batch":
        day = 1.0 + 2.0 * ((hour >= 1) & (hour < 4))
        week = np.where(weekend, rng.uniform(0.7, 1.0), 1.0)
    elif kind == "flat":
        day = np.ones_like(hour)
        week = np.ones_like(hour)
    else:
        day = 1.0 + 0.3 * np.sin(2 * np.pi * (hour - 9) / 24)
        week = np.where(weekend, rng.uniform(0.6, 1.0), 1.0)
    return np.asarray(day * week, dtype=float)


def _inject(
    rng: np.random.Generator, kind: str, t: np.ndarray, y: np.ndarray, usual: float, step: float
) -> tuple[np.ndarray, float, float]:
    """Injects one anomaly into ``y`` (at cadence ``step``): the new values, start and label end."""
    start = START + rng.uniform(21, DAYS - 21) * D
    start -= start % step
    if kind == "spike":
        hours = int(rng.integers(1, 5))
        end = start + hours * H
        y = np.where((t >= start) & (t < end), y * rng.uniform(3, 8), y)
    elif kind == "level_shift":
        end = start + 2 * D
        y = np.where(t >= start, y * rng.uniform(1.8, 3.0), y)
    elif kind == "drift":
        ramp = rng.uniform(7, 14) * D
        top = rng.uniform(2.0, 3.0)
        frac = np.clip((t - start) / ramp, 0, 1)
        y = y * np.where(t >= start, 1 + (top - 1) * frac, 1.0)
        end = start + ramp + 2 * D
    elif kind == "leak":
        per_day = rng.uniform(0.10, 0.25) * usual * step / H  # added per window, each day more
        days = np.floor((t - start) / D) + 1
        y = y + np.where(t >= start, per_day * days, 0.0)
        end = start + 14 * D
    elif kind == "new_series":
        end = start + D
        y = np.where(t >= start, y, np.nan)
    elif kind == "data_gap":
        end = start + rng.uniform(1, 3) * D
        y = np.where((t >= start) & (t < end), np.nan, y)
    else:
        raise ValueError(kind)
    return y, float(start), float(end)


def generate(seed: int, teams: int = 10, services: int = 12) -> Scenario:
    rng = np.random.default_rng(seed)
    kinds = [*BIG_KINDS, "none"]
    tm = START + np.arange(DAYS * 1440) * MIN
    th = START + np.arange(DAYS * 24) * H
    sc = Scenario({}, {}, {})
    for i in range(teams):
        name = f"team-{i}"
        hourly = float(np.exp(rng.normal(np.log(30), 0.9)))  # usual USD per hour
        shape = _shape(rng, tm, ("office", "batch", "global")[i % 3])
        growth = 1 + rng.uniform(0, 0.3) * (tm - START) / (30 * D)
        burst = np.repeat(rng.lognormal(0, 0.1, DAYS * 24), 60)  # hour-level variation
        y = hourly / 60 * shape * growth * burst * rng.lognormal(-0.125, 0.5, tm.size)  # minute noise
        kind = kinds[(i + seed) % len(kinds)]
        sc.clean_token[name] = y
        if kind != "none":
            y, s, e = _inject(rng, kind, tm, y, hourly, MIN)
            sc.anomalies.append(Anomaly(kind, (("team", name),), s, e))
        sc.token[name] = y
    for i in range(services):
        name = f"svc-{i}"
        hourly = float(np.exp(rng.normal(np.log(80), 1.0)))
        shape = _shape(rng, th, ("global", "office", "global", "batch")[i % 4] if i % 2 else "flat")
        growth = 1 + rng.uniform(0, 0.15) * (th - START) / (30 * D)
        y = hourly * shape * growth * rng.lognormal(0, rng.uniform(0.03, 0.1), th.size)
        if i < FEE_SERVICES:
            first = np.array([time.gmtime(t).tm_mday == 1 and t % D == 0 for t in th])
            sc.fees[name] = np.where(first, hourly * rng.uniform(20, 200), 0.0)
        kind = kinds[(i + seed + 2) % len(kinds)]
        kind = "none" if kind == "data_gap" else kind  # (services: bills come whole or late, not with gaps)
        if kind != "none":
            y, s, e = _inject(rng, kind, th, y, hourly, H)
            sc.anomalies.append(Anomaly(kind, (("provider", "aws"), ("service", name)), s, e, group="services"))
        sc.billing[name] = y
    for i in range(SMALL_TEAMS):
        _small_team(rng, sc, f"small-{i}", SMALL_KINDS[(i + seed) % len(SMALL_KINDS)] if i % 5 != 4 else "none", tm)
    return sc


def _small_team(rng: np.random.Generator, sc: Scenario, name: str, kind: str, tm: np.ndarray) -> None:
    """A team spending $10–$500 a month in single calls (Poisson per minute), with its anomaly."""
    monthly = float(np.exp(rng.uniform(np.log(10), np.log(500))))
    per_call = float(np.exp(rng.uniform(np.log(0.001), np.log(0.01))))
    shape = _shape(rng, tm, ("office", "global", "batch")[int(rng.integers(3))])
    rate = monthly / (30.4 * 1440) / per_call * shape / shape.mean()  # calls a minute
    series = (("team", name),)
    start = START + rng.uniform(21, DAYS - 21) * D
    start -= start % MIN
    cost_k = np.ones(tm.size)
    tok_k = np.ones(tm.size)
    end = start
    if kind == "runaway":
        end = start + rng.uniform(1, 3) * H
        rate = np.where((tm >= start) & (tm < end), rate * rng.uniform(10, 20), rate)
    elif kind == "model_switch":
        end = start + 2 * D
        cost_k = np.where(tm >= start, rng.uniform(2, 4), 1.0)
    elif kind == "prompt_bloat":
        end = start + 2 * D
        tok_k = cost_k = np.where(tm >= start, rng.uniform(1.5, 3), 1.0)
    calls = rng.poisson(rate)
    cost = calls * per_call * rng.lognormal(-0.045, 0.3, tm.size)
    tokens = cost / SMALL_PRICE * 1000 * tok_k
    usd = np.where(calls > 0, cost * cost_k, np.nan)
    if kind == "data_gap":
        end = start + rng.uniform(1, 3) * D
        usd = np.where((tm >= start) & (tm < end), np.nan, usd)
    model = (cost_k > 1) & (tok_k == 1)  # a model switch: the dearer model
    sc.small[name] = (usd, np.where(usd == usd, tokens, np.nan), model.astype(np.int8))
    if kind != "none":
        sc.anomalies.append(Anomaly(kind, series, float(start), float(end), group="small teams"))


def _runners(budgets: dict[str, float], without: tuple[str, ...] = ()) -> dict[str, DetectorRunner]:
    """The default config's detectors; ``without``: rules turned off to measure what they bring (``early``,
    ``percent``, ``exclude``: the bill's fees counted as spend)."""
    cfg = load_config(None)
    out = {}
    for name in (*TOKEN_DETECTORS, *BILLING_DETECTORS):
        dcfg = cfg.detectors[name]
        if "early" in without:
            dcfg = dcfg.model_copy(update={"early_warning": False})
        if "percent" in without:
            dcfg = dcfg.model_copy(update={"min_impact_percent": None})
        if "exclude" in without:
            dcfg = dcfg.model_copy(update={"exclude": {}})
        proto = components("detector")[dcfg.type][1].from_config(dcfg)
        out[name] = DetectorRunner(name, dcfg, proto, cfg.alerting)
    bcfg = BudgetConfig(
        type="budget", signal="token_cost_usd", group_by=["team"], monthly_budget_usd=1e12, budgets_usd=budgets
    )
    out["budget"] = DetectorRunner("budget", bcfg, BudgetDetector.from_config(bcfg), cfg.alerting)
    return out


def _month_totals(t: np.ndarray, y: np.ndarray) -> dict[int, float]:
    months = np.array([time.gmtime(s).tm_mon for s in t[::1440]]).repeat(1440)[: t.size]
    return {int(m): float(np.nansum(y[months == m])) for m in np.unique(months)}


@dataclass
class SeedResult:
    alerts: list[dict[str, Any]]
    anomalies: list[Anomaly]
    points: int
    seconds: float
    budget_rows: list[dict[str, Any]]
    state_bytes: dict[str, int]  # largest pickled model per detector


def run_seed(seed: int, without: tuple[str, ...] = ()) -> SeedResult:
    sc = generate(seed)
    tm = START + np.arange(DAYS * 1440) * MIN
    # Budgets: 1.2× each team's uninjected month (only whole months: February, March, April).
    clean_months = {team: _month_totals(tm, y) for team, y in sc.clean_token.items()}
    budgets = {team: 1.2 * statistics.fmean(m[k] for k in (2, 3, 4)) for team, m in clean_months.items()}
    runners = _runners(budgets, without)
    tok = [runners[n] for n in (*TOKEN_DETECTORS, "budget")]
    bill = runners["cloud_spend"]
    sig = ("token_cost_usd", "tokens")
    cells = {(team, m): cell(make_dims({"team": team, "model": m}), sig) for team in sc.token for m in PRICES}
    bcells = {
        (s, kind): cell(
            make_dims(
                {"provider": "aws", "service": s, "sub_account": "111", "region": "us-east-1", "charge_category": kind}
            ),
            ("billing_cost_usd",),
        )
        for s in sc.billing
        for kind in ("Usage", "Purchase")
    }
    share = {"haiku": 0.3, "sonnet": 0.7}
    small = list(sc.small)
    scells = {
        (team, m): cell(make_dims({"team": team, "model": m}), sig) for team in small for m in ("usual", "dearer")
    }
    s_usd = np.stack([sc.small[t][0] for t in small]) if small else np.zeros((0, tm.size))
    s_tok = np.stack([sc.small[t][1] for t in small]) if small else np.zeros((0, tm.size))
    s_mod = np.stack([sc.small[t][2] for t in small]) if small else np.zeros((0, tm.size), dtype=np.int8)
    early = [r for r in tok if r.early_enabled]
    docs: list[dict[str, Any]] = []
    forecasts: dict[tuple[str, int], tuple[float, float, float]] = {}
    tk = np.stack([sc.token[t] for t in sc.token])  # teams × minutes
    names = list(sc.token)
    points = 0
    t0 = time.perf_counter()
    for i in range(DAYS * 24):
        hour = START + i * H
        block = tk[:, i * 60 : (i + 1) * 60]
        su, st, sm = (a[:, i * 60 : (i + 1) * 60] for a in (s_usd, s_tok, s_mod))
        for k in range(60):
            minute = hour + k * MIN
            bucket = {}
            for j, team in enumerate(names):
                v = block[j, k]
                if v == v:  # not NaN: the team exists
                    for m, p in PRICES.items():
                        usd = float(v) * share[m]
                        bucket[cells[team, m]] = [usd, usd / p * 1000]
            for j, team in enumerate(small):
                v = su[j, k]
                if v == v:
                    bucket[scells[team, "dearer" if sm[j, k] else "usual"]] = [float(v), float(st[j, k])]
            for r in tok:
                r.add_bucket(minute, bucket)
            for r in early:  # the agent checks open windows every early_check_seconds (60) of event time
                docs.extend(e for e in r.early(minute + MIN, [])[1] if e["status"] == "firing")
        for name, y in sc.billing.items():
            line = {bcells[name, "Usage"]: [float(y[i])]} if y[i] == y[i] else {}
            fee = sc.fees.get(name)
            if fee is not None and fee[i]:
                line[bcells[name, "Purchase"]] = [float(fee[i])]
            if line:
                bill.add_bucket(hour, line)
        g = time.gmtime(hour)
        if g.tm_mday == 10 and g.tm_hour == 0:  # the forecast on the 10th, before the day's first hour
            for key, model in runners["budget"].models.items():
                x = {"t": hour - H, "t_end": hour, "y": 0.0}
                forecasts[key[0], g.tm_mon] = model.forecast(x)
        for r in runners.values():
            pts, evs = r.close_until(hour + H)
            points += len(pts)
            docs.extend(e for e in evs if e["status"] == "firing")
    seconds = time.perf_counter() - t0
    first: dict[str, dict[str, Any]] = {}
    for d in docs:
        first.setdefault(d["id"], d)
    alerts = list(first.values())
    budget_rows = _budget_rows(sc, tm, budgets, [a for a in alerts if a["detector"] == "budget"], forecasts)
    state_bytes = {name: max(len(pickle.dumps(m)) for m in r.models.values()) for name, r in runners.items()}
    groups = {("team", t): "small teams" for t in sc.small}
    for a in alerts:
        first_dim = next(iter(a["series"].items()), None)
        a["group"] = groups.get(first_dim, "big teams" if "team" in a["series"] else "services")
    return SeedResult(
        [a for a in alerts if a["detector"] != "budget"], sc.anomalies, points, seconds, budget_rows, state_bytes
    )


def _epoch(iso: str) -> float:
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


def _budget_rows(
    sc: Scenario,
    tm: np.ndarray,
    budgets: dict[str, float],
    alerts: list[dict[str, Any]],
    forecasts: dict[tuple[str, int], tuple[float, float, float]],
) -> list[dict[str, Any]]:
    rows = []
    for team, y in sc.token.items():
        for month in (2, 3, 4):
            start = calendar.timegm((2026, month, 1, 0, 0, 0))
            end = calendar.timegm((2026, month + 1, 1, 0, 0, 0))
            sel = (tm >= start) & (tm < end)
            cum = np.nancumsum(y[sel])
            over_at = float(tm[sel][np.argmax(cum >= budgets[team])]) if cum[-1] >= budgets[team] else None
            alerted = [
                _epoch(a["window_end"])
                for a in alerts
                if a["series"]["team"] == team and start <= _epoch(a["window_start"]) < end
            ]
            disturbed = any(
                dict(an.series).get("team") == team
                and (an.start < end and an.end > start or (an.kind == "leak" and an.start < end))
                for an in sc.anomalies
            )
            rows.append(
                {
                    "disturbed": disturbed,
                    "team": team,
                    "month": month,
                    "actual": float(cum[-1]),
                    "budget": budgets[team],
                    "over_at": over_at,
                    "alert_at": min(alerted) if alerted else None,
                    "forecast": forecasts.get((team, month)),
                }
            )
    return rows


def summarize(results: list[SeedResult]) -> dict[str, Any]:
    """Detection and budget figures over all seeds (matches alerts to anomalies in place)."""
    by_kind: dict[str, list[Anomaly]] = defaultdict(list)
    tp = fp = fee_fp = 0
    fp_by_detector: dict[str, int] = defaultdict(int)
    budget_hits: dict[str, int] = defaultdict(int)
    by_group: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lateness = load_config(None).pipeline.allowed_lateness_seconds
    for res in results:
        for an in res.anomalies:
            by_kind[an.kind].append(an)
            by_group[an.group]["injected"] += 1
        for a in res.alerts:
            series = tuple(a["series"].items())
            w0, w1 = _epoch(a["window_start"]), _epoch(a["window_end"])
            gap = a.get("kind") == "data_gap"
            # When the agent sends it: an early warning at its moment in the window, else after the window closes.
            sent = w0 + a["window_progress"] * (w1 - w0) if a.get("early") else w1 + lateness
            hit = [
                an
                for an in res.anomalies
                if an.series == series and w1 > an.start and w0 < an.end and (an.kind == "data_gap" or not gap)
            ]
            if hit:
                tp += 1
                by_group[a["group"]]["true_alerts"] += 1
                for an in hit:
                    if (an.kind == "data_gap") == gap and (an.detected_at is None or sent < an.detected_at):
                        an.detected_at = max(sent, an.start)
            else:
                fp += 1
                by_group[a["group"]]["false_alerts"] += 1
                fp_by_detector[a["detector"]] += 1
                g = time.gmtime(w0)
                fee_fp += g.tm_mday == 1 and g.tm_hour == 0
        for an in res.anomalies:  # token anomalies that a team's budget alert followed within a month
            team = dict(an.series).get("team")
            budget_hits[an.kind, an.group] += any(
                r["team"] == team and r["alert_at"] is not None and an.start < r["alert_at"] < an.start + 31 * D
                for r in res.budget_rows
            )
    for res in results:
        for an in res.anomalies:
            by_group[an.group]["detected"] += an.detected_at is not None
    kinds = {}  # "kind (group)": a spike in a stream and in a bill are detected on different clocks
    for kind in (*BIG_KINDS, *SMALL_KINDS[:-1]):
        for group in ("big teams", "small teams", "services"):
            ans = [an for an in by_kind[kind] if an.group == group]
            if not ans:
                continue
            ttd = [(an.detected_at - an.start) / 60 for an in ans if an.detected_at is not None]
            kinds[f"{kind} ({group})"] = {
                "kind": kind,
                "injected": len(ans),
                "detected": len(ttd),
                "median_minutes": statistics.median(ttd) if ttd else None,
                "token_injected": sum("team" in dict(an.series) for an in ans),
                "budget_followed": budget_hits[kind, group],
            }
    rows = [r for res in results for r in res.budget_rows]
    pos = [r for r in rows if r["over_at"] is not None]
    alerted = [r for r in rows if r["alert_at"] is not None]
    hit = [r for r in pos if r["alert_at"] is not None]
    fc = [r for r in rows if r["forecast"] is not None]
    quiet = [r for r in fc if not r["disturbed"]]
    return {
        "kinds": kinds,
        "groups": {g: dict(v) for g, v in by_group.items()},
        "alerts": tp + fp,
        "true_alerts": tp,
        "false_alerts": fp,
        "false_by_detector": dict(fp_by_detector),
        "false_on_fee_hours": fee_fp,
        "series_weeks": 22 * DAYS / 7 * len(results),
        "budget": {
            "team_months": len(rows),
            "over": len(pos),
            "alerted": len(alerted),
            "hits": len(hit),
            "lead_days": [(r["over_at"] - r["alert_at"]) / D for r in hit],
            "forecast_error": [abs(r["forecast"][0] - r["actual"]) / r["actual"] for r in quiet],
            "forecast_inside": sum(r["forecast"][1] <= r["actual"] <= r["forecast"][2] for r in quiet),
            "forecast_months": len(quiet),
        },
    }


def _minutes(m: float | None) -> str:
    if m is None:
        return "-"
    return f"{m:.0f} min" if m < 180 else f"{m / 60:.1f} h"


def report(results: list[SeedResult]) -> dict[str, Any]:
    s = summarize(results)
    print(
        f"{'anomaly':26} {'injected':>8} {'detected':>8} {'recall':>7} {'median time to detect':>22}"
        "   budget alert followed"
    )
    for kind, k in s["kinds"].items():
        print(
            f"{kind:26} {k['injected']:8d} {k['detected']:8d} {k['detected'] / max(k['injected'], 1):7.0%}"
            f" {_minutes(k['median_minutes']):>22}   {k['budget_followed']}/{k['token_injected']} token series"
        )
    total = sum(k["injected"] for k in s["kinds"].values())
    found = sum(k["detected"] for k in s["kinds"].values())
    print(f"{'all':26} {total:8d} {found:8d} {found / max(total, 1):7.0%}")
    for group, g in sorted(s["groups"].items()):
        found, injected, true = g.get("detected", 0), g.get("injected", 0), g.get("true_alerts", 0)
        alerts = true + g.get("false_alerts", 0)
        print(
            f"{group:26} recall {found}/{injected} ({found / max(injected, 1):.0%}),"
            f" precision {true}/{alerts} ({true / max(alerts, 1):.0%})"
        )
    print(
        f"alerts: {s['alerts']} ({s['true_alerts']} on an anomaly, {s['false_alerts']} false: {s['false_by_detector']};"
        f" {s['false_on_fee_hours']} of them on a 1st-of-month fee hour) → precision"
        f" {s['true_alerts'] / max(s['alerts'], 1):.0%}; {s['false_alerts'] / s['series_weeks']:.3f} false alerts"
        " per series-week"
    )
    b = s["budget"]
    leads = b["lead_days"]
    print(
        f"budget: {b['team_months']} team-months, {b['over']} over budget; {b['alerted']} alerted → precision"
        f" {b['hits'] / max(b['alerted'], 1):.0%}, recall {b['hits'] / max(b['over'], 1):.0%}; alert before the"
        f" budget was spent: median {statistics.median(leads) if leads else float('nan'):.1f} days"
        f" (min {min(leads) if leads else float('nan'):.1f})"
    )
    err = b["forecast_error"]
    print(
        f"month-end forecast on the 10th, team-months without an anomaly: median error"
        f" {statistics.median(err) if err else float('nan'):.1%}, the 90% interval holds the actual month in"
        f" {b['forecast_inside']}/{b['forecast_months']} ({b['forecast_inside'] / max(b['forecast_months'], 1):.0%})"
    )
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--without",
        choices=("early", "percent", "exclude"),
        action="append",
        default=[],
        help="turn a rule of the default config off, to measure what it brings (repeatable)",
    )
    args = ap.parse_args(argv)
    results = []
    for seed in range(args.seeds):
        results.append(run_seed(seed, tuple(args.without)))
    points = sum(r.points for r in results)
    secs = sum(r.seconds for r in results)
    print(f"machine: {machine()}")
    print(
        f"{args.seeds} seeds × (10 teams per minute + 12 services per hour) × {DAYS} days; default detectors"
        f" {', '.join((*TOKEN_DETECTORS, *BILLING_DETECTORS))} + a budget per team; {points:,} points,"
        f" {secs / points * 1e6:.1f} µs/point including the per-minute roll-up"
    )
    sizes = {name: max(r.state_bytes[name] for r in results) for name in results[0].state_bytes}
    print("largest pickled state per series: " + ", ".join(f"{n} {b:,} bytes" for n, b in sizes.items()))
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
