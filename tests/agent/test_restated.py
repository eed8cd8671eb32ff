"""Billing restatements at the runner (agent/lifecycle.py, agent/deliveries.py): an old hour the bill now says was
anomalous is told once and resolved; a delivery is one update per alert; a live episode is left to its windows."""

from __future__ import annotations

from agent.deliveries import coalesce
from agent.detect import DetectorRunner
from agent.model import cell, make_dims
from tests.agent.test_detect import SIG, H, feed, runner
from tests.agent.test_early import base


def restate(r: DetectorRunner, hours: range, factor: float) -> list[dict]:
    """A delivery restating ``hours`` at ``factor`` × their usual values: its documents, as the agent sends them."""
    events: list[dict] = []
    for h in hours:
        cells = {
            cell(make_dims({"team": "a", "model": m}), SIG): [base(h) * share * factor, 1000.0]
            for m, share in (("haiku", 0.3), ("sonnet", 0.7))
        }
        acc: dict = {}
        r.rollup(cells, acc, capped=False)
        events += r.restate(h * H, acc)[1]
    return coalesce(events + r.settle_restated())


def test_an_old_day_restated_anomalous_is_told_once_and_resolved_and_its_reversal_says_nothing() -> None:
    r = runner()
    assert [e for e in feed(r, range(0, 24 * 12), base) if e["status"] == "firing"] == []
    docs = restate(r, range(24 * 8, 24 * 9), 3.0)  # the bill now says day 8 cost three times as much
    assert [(d["status"], d["restated"]) for d in docs] == [("firing", True), ("resolved", True)]
    assert docs[0]["id"] == docs[1]["id"] and docs[0]["summary"].startswith("(restated) ")
    assert "as restated by the bill" in docs[1]["summary"] and "from 1970-01-09T" in docs[1]["summary"]
    assert docs[1]["episode"]["points"] >= 12 and docs[1]["episode"]["impact_usd"] > 1000
    assert not r.episodes  # nothing left firing with no window of its own to close
    assert restate(r, range(24 * 8, 24 * 9), 1.0) == []  # restated back: already resolved, nothing to say


def test_a_restatement_leaves_a_live_episode_to_its_own_windows_one_update_a_delivery() -> None:
    r = runner()
    feed(r, range(0, 24 * 9), base)
    spike = [e for e in feed(r, range(24 * 9, 24 * 9 + 2), lambda h: base(h) * 6) if e["status"] == "firing"]
    assert len(spike) == 1 and r.episodes
    docs = restate(r, range(24 * 9, 24 * 9 + 2), 8.0)  # its two hours restated higher still
    assert [(d["status"], d["id"]) for d in docs] == [("firing", spike[0]["id"])]  # one revision, not two
    assert docs[0]["revision"] == spike[0]["revision"] + 2 and r.episodes  # still firing: its windows decide
    ended = [e for e in feed(r, range(24 * 9 + 2, 24 * 9 + 6), base) if e["status"] == "resolved"]
    assert [e["id"] for e in ended] == [spike[0]["id"]]
