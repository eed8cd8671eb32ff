"""The cost-shaped benchmark: its generator injects what its labels say, and one seed runs end to end."""

from __future__ import annotations

import time

import numpy as np

from bench.cost_shaped import DAYS, FEE_SERVICES, KINDS, MIN, START, D, H, generate, run_seed, summarize


def test_injections_are_where_the_labels_say() -> None:
    sc = generate(3)
    tm = START + np.arange(DAYS * 1440) * MIN
    assert {a.kind for a in sc.anomalies} == set(KINDS)
    for an in sc.anomalies:
        assert START + 21 * D <= an.start < an.end
        team = dict(an.series).get("team")
        if team is None:
            continue
        if team in sc.small:  # a small team: calls one by one; its anomaly within its label window
            usd, tokens, model = sc.small[team]
            inside, before = (tm >= an.start) & (tm < an.end), tm < an.start
            assert an.group == "small teams" and not model[before].any()
            if an.kind == "data_gap":
                assert np.isnan(usd[inside]).all() and not np.isnan(usd[before]).all()
            elif an.kind == "model_switch":  # dearer calls, the same tokens
                assert model[inside].all()
            continue
        y, clean = sc.token[team], sc.clean_token[team]
        before, after = tm < an.start, (tm >= an.start) & (tm < an.start + H)
        if an.kind != "new_series":
            np.testing.assert_array_equal(y[before], clean[before])
        if an.kind == "data_gap":
            assert np.isnan(y[(tm >= an.start) & (tm < an.end)]).all()
        elif an.kind == "new_series":
            assert np.isnan(y[before]).all() and not np.isnan(y[~before]).any()
        elif an.kind == "spike":
            assert (y[after] >= 3 * clean[after] - 1e-12).all()


def test_fees_are_billed_at_midnight_on_the_first_as_their_own_lines() -> None:
    """A fee-billed service's monthly fee: its own (Purchase) line at 00:00 UTC on the 1st, 20–200 usual hours."""
    sc = generate(1)
    th = START + np.arange(DAYS * 24) * H
    first = np.array([time.gmtime(t).tm_mday == 1 and t % D == 0 for t in th])
    assert sorted(sc.fees) == [f"svc-{i}" for i in range(FEE_SERVICES)]
    for name, fee in sc.fees.items():
        assert (fee[~first] == 0).all() and (fee[first] > 0).all()
        usage = sc.billing[name]
        assert fee[first].min() > 10 * np.nanmedian(usage)


def test_one_seed_through_the_default_detectors() -> None:
    s = summarize([run_seed(0)])
    found: dict[str, int] = {}
    for k in s["kinds"].values():
        found[k["kind"]] = found.get(k["kind"], 0) + k["detected"]
    assert found["spike"] >= 1 and found["level_shift"] >= 1 and found["new_series"] >= 1, found
    assert s["true_alerts"] > s["false_alerts"]
    assert s["budget"]["hits"] >= 1 and s["budget"]["over"] >= 1
