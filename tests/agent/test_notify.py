"""The notifier (agent/notify.py): routes, grouping, silences and repeats, on a clock the test moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, load_config_text
from agent.notify import Notifier
from agent.silences import Matcher, Silence, Silences, configured_silences
from agent.telemetry import Telemetry
from tests.sinks.test_pagerduty import doc

BASE = """
sources: {s: {type: file, path: x, decoder: {type: bedrock, tag_dimensions: {team: team}}}}
detectors: {token_spend: {type: seasonal, signal: token_cost_usd, group_by: [team]}}
sinks:
  pd: {type: pagerduty, routing_key: k}
  chat: {type: slack, url: 'https://hooks.slack.com/services/T/B/X'}
  am: {type: alertmanager, urls: ['http://127.0.0.1:9093']}
  metrics: {type: prometheus, port: 0}
"""


class Got:
    """A sink that records what it is given."""

    def __init__(self, name: str, *, pages: bool = True, groups_itself: bool = False):
        self.name, self.pages, self.groups_itself = name, pages, groups_itself
        self.docs: list[dict[str, Any]] = []

    def on_alert(self, d: dict[str, Any]) -> None:
        self.docs.append(d)


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def notifier(
    route: str | None, tmp_path: Path | None = None, silences: list[Silence] | None = None
) -> tuple[Notifier, dict[str, Got], Clock]:
    cfg = load_config_text(BASE + (route or ""))
    clock = Clock()
    sinks = {
        "pd": Got("pd"),
        "chat": Got("chat"),
        "am": Got("am", groups_itself=True),
        "metrics": Got("metrics", pages=False),
    }
    n = Notifier(
        cfg.route,
        Silences(silences or configured_silences(cfg.silences), str(tmp_path / "s.json") if tmp_path else None, clock),
        sinks,
        telemetry=Telemetry(),
        state_dir=str(tmp_path) if tmp_path else None,
        clock=clock,
    )
    return n, sinks, clock


def alert(i: int, team: str = "", status: str = "firing", **kw: Any) -> dict[str, Any]:
    return doc(id=f"{i:032x}", series={"team": team or f"t{i}"}, status=status, **kw)


def test_without_a_route_every_paging_sink_gets_every_alert_at_once() -> None:
    n, sinks, _ = notifier(None)
    n.on_alert(alert(1))
    n.on_alert(alert(1, status="resolved"))
    for name in ("pd", "chat", "am", "metrics"):
        assert [d["status"] for d in sinks[name].docs] == ["firing", "resolved"], name
    assert sinks["metrics"].docs[0]["silenced"] is False


ROUTE = """
route:
  sinks: [chat]
  group_by: [detector]
  group_wait_seconds: 30
  group_interval_seconds: 300
  repeat_interval_seconds: 3600
  routes:
    - matchers: ['severity=~"critical|error"', team!=t-sandbox]
      sinks: [pd, am]
      min_impact_usd: 100
      continue: true
    - matchers: [team=~"t.*"]
"""


def test_an_incident_across_fifty_series_is_one_notification_listing_them() -> None:
    n, sinks, clock = notifier(ROUTE)
    for i in range(50):
        n.on_alert(alert(i))
    n.tick()
    assert sinks["pd"].docs == [] and sinks["chat"].docs == []  # waiting for its group (group_wait)
    assert len(sinks["am"].docs) == 50  # Alertmanager groups by itself: it gets them one by one
    clock.t += 31
    n.tick()
    (pd,) = sinks["pd"].docs
    assert pd["kind"] == "group" and pd["status"] == "firing" and len(pd["alerts"]) == 50
    assert pd["series"] == {"detector": "token_spend"} and pd["impact_usd"] == 50 * 520.0
    assert (
        pd["summary"].startswith("[detector=token_spend] 50 alert(s) firing: token_spend team=")
        and "and 45 more" in pd["summary"]
    )
    (chat,) = sinks["chat"].docs  # the second child route matched too (continue: true): the chat's group
    assert len(chat["alerts"]) == 50 and chat["id"] != pd["id"]
    # One more joins: sent with the group's next interval, not at once.
    n.on_alert(alert(50))
    clock.t += 60
    n.tick()
    assert len(sinks["pd"].docs) == 1
    clock.t += 300
    n.tick()
    assert len(sinks["pd"].docs) == 2 and len(sinks["pd"].docs[1]["alerts"]) == 51
    assert sinks["pd"].docs[1]["id"] == pd["id"] and sinks["pd"].docs[1]["revision"] == 1
    # All resolve: one resolved notification.
    for i in range(51):
        n.on_alert(alert(i, status="resolved"))
    clock.t += 300
    n.tick()
    last = sinks["pd"].docs[-1]
    assert last["status"] == "resolved" and len(last["alerts"]) == 51 and len(sinks["pd"].docs) == 3
    assert not n.groups


def test_matchers_min_impact_and_continue_pick_the_routes() -> None:
    n, sinks, clock = notifier(ROUTE)
    n.on_alert(alert(1, team="t-sandbox"))  # not for the pager (team!=sandbox); the second child takes it
    n.on_alert(alert(2, severity="warning"))  # not for the pager (severity)
    small = alert(3, impact_usd=5.0, projected_daily_impact_usd=50.0, episode={"impact_usd": 5.0})
    n.on_alert(small)  # under the pager's min_impact_usd
    clock.t += 31
    n.tick()
    assert sinks["pd"].docs == [] and sinks["am"].docs == []
    (chat,) = sinks["chat"].docs
    assert sorted(a["series"]["team"] for a in chat["alerts"]) == ["t-sandbox", "t2", "t3"]


def test_a_silence_suppresses_and_its_expiry_restores(tmp_path: Path) -> None:
    n, sinks, clock = notifier(None, tmp_path)
    s = Silence("s1", ["team=research"], clock.t, clock.t + 3600, "planned: research doubles spend", "alice")
    n.silences.add(s)
    n.on_alert(alert(1, team="research"))
    n.on_alert(alert(2, team="search"))
    assert [d["series"]["team"] for d in sinks["pd"].docs] == ["search"]
    shown = [d for d in sinks["metrics"].docs if d["series"]["team"] == "research"]
    assert shown[0]["silenced"] is True and shown[0]["silenced_by"] == ["s1"]  # computed and shown, not paged
    clock.t += 1800
    n.tick()
    assert len(sinks["pd"].docs) == 1
    clock.t += 1801  # the silence is over: the alert still fires, so it is notified now
    n.tick()
    assert [d["series"]["team"] for d in sinks["pd"].docs] == ["search", "research"]
    assert sinks["metrics"].docs[-1]["silenced"] is False


def test_an_alert_silenced_all_along_resolves_without_a_word() -> None:
    n, sinks, clock = notifier(None)
    n.silences.add(Silence("s1", ["team=research"], clock.t, clock.t + 3600, "planned", "alice"))
    n.on_alert(alert(1, team="research"))
    n.on_alert(alert(1, team="research", status="resolved"))
    assert sinks["pd"].docs == [] and len(sinks["metrics"].docs) == 2


def test_repeat_interval_renotifies_while_firing() -> None:
    n, sinks, clock = notifier("route: {group_by: ['...'], repeat_interval_seconds: 600}\n")
    n.on_alert(alert(1))
    assert len(sinks["pd"].docs) == 1  # no grouping: at once
    clock.t += 599
    n.tick()
    assert len(sinks["pd"].docs) == 1
    clock.t += 2
    n.tick()
    assert [d.get("repeat") for d in sinks["pd"].docs] == [0, 1]
    n.on_alert(alert(1, status="resolved"))
    clock.t += 1200
    n.tick()
    assert [d["status"] for d in sinks["pd"].docs] == ["firing", "firing", "resolved"]


def test_a_group_waiting_survives_a_restart_and_is_sent_once(tmp_path: Path) -> None:
    n, sinks, clock = notifier(ROUTE, tmp_path)
    n.on_alert(alert(1))
    # The process dies before group_wait: a new one from the same directory sends the group, once.
    n2, sinks2, clock2 = notifier(ROUTE, tmp_path)
    clock2.t = clock.t + 31
    n2.tick()
    assert len(sinks2["pd"].docs) == 1 and sinks2["pd"].docs[0]["alerts"][0]["id"] == f"{1:032x}"
    n3, sinks3, clock3 = notifier(ROUTE, tmp_path)
    clock3.t = clock.t + 62
    n3.tick()
    assert sinks3["pd"].docs == []


def test_a_clean_stop_sends_what_waits_for_its_group() -> None:
    n, sinks, _ = notifier(ROUTE)
    n.on_alert(alert(1))
    n.stop(flush=True)
    assert len(sinks["pd"].docs) == 1


def test_routes_and_silences_are_checked_with_their_paths() -> None:
    bad = """
route:
  sinks: [pager]
  routes:
    - matchers: ['team=~"(unclosed"']
silences:
  - {matchers: [team=research], starts_at: '2026-12-10T00:00:00Z', ends_at: '2026-12-03T00:00:00Z',
     comment: c, created_by: a}
  - {matchers: ['bad matcher'], ends_at: soon, comment: '', created_by: a}
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(BASE + bad)
    text = "\n".join(exc.value.errors)
    assert "route.routes[0].matchers: " in text and "not a regular expression" in text
    assert "silences[1].matchers: " in text and "silences[1].ends_at: " in text and "silences[1].comment: " in text
    first_silence = bad.split("silences:\n  - ")[1].split("\n  - ")[0]
    with pytest.raises(ConfigError) as exc:
        load_config_text(BASE + "route: {sinks: [pdd]}\nsilences: [" + first_silence + "]\n")
    assert exc.value.errors == [
        "route.sinks[0]: no sink 'pdd' (did you mean 'pd'?)",
        "silences[0].ends_at: before its starts_at",
    ]


def test_matchers_read_like_alertmanagers() -> None:
    assert Matcher.parse('team="a b"').matches({"team": "a b"})
    assert Matcher.parse("model!~claude.*").matches({"model": "gpt-4o"})
    with pytest.raises(ValueError, match="not a matcher"):
        Matcher.parse("team")


def test_a_silence_made_while_an_alert_fires_mutes_its_repeats_and_tells_metrics_and_alertmanager() -> None:
    n, sinks, clock = notifier(ROUTE)
    n.on_alert(alert(1, team="research"))
    n.on_alert(alert(2, team="search"))
    clock.t += 31
    n.tick()
    assert len(sinks["pd"].docs) == 1 and len(sinks["pd"].docs[0]["alerts"]) == 2
    n.silences.add(Silence("s1", ["team=research"], clock.t, clock.t + 7200, "stop paging", "carol"))
    n.tick()
    assert sinks["metrics"].docs[-1]["silenced"] is True and sinks["metrics"].docs[-1]["series"]["team"] == "research"
    assert sinks["am"].docs[-1]["silenced"] is True  # it stops re-sending it
    clock.t += 3601  # the group's repeat lists the search team only
    n.tick()
    assert [a["series"]["team"] for a in sinks["pd"].docs[-1]["alerts"]] == ["search"]
    clock.t += 3600  # the silence is over, the alert still fires: notified again
    n.tick()
    clock.t += 301
    n.tick()
    assert sorted(a["series"]["team"] for a in sinks["pd"].docs[-1]["alerts"]) == ["research", "search"]


def test_matchers_that_alertmanager_refuses_are_refused() -> None:
    for bad in ('severity=~"critical|error', "team==research", 'team=research"'):
        with pytest.raises(ValueError):
            Matcher.parse(bad)


def test_a_route_groups_by_labels_alerts_have() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config_text(BASE + "route: {group_by: [detector, tem], routes: [{group_by: ['...', team]}]}\n")
    assert exc.value.errors == [
        "route.group_by[1]: no alert has the label 'tem' (did you mean 'team'?)",
        "route.routes[0].group_by: '...' (no grouping) stands alone",
    ]


def test_a_group_told_firing_is_told_resolved_even_when_its_alert_was_silenced_meanwhile() -> None:
    """New-user review: a silence made while a grouped alert fired deleted its group, so PagerDuty and Slack never
    heard it resolve (the incident stayed open); a silence ending before the resolution opened a second incident."""
    for ends_first in (False, True):
        n, sinks, clock = notifier(ROUTE)
        n.on_alert(alert(1, team="research"))
        clock.t += 31
        n.tick()
        (told,) = sinks["pd"].docs
        n.silences.add(Silence("s1", ["team=research"], clock.t, clock.t + 7200, "known", "carol"))
        n.tick()
        clock.t += 3601
        n.tick()
        assert len(sinks["pd"].docs) == 1  # muted: no repeat while silenced
        if ends_first:
            clock.t += 3600  # the silence ends, the alert still fires: the same incident, repeated (not a new one)
            n.tick()
            assert [(d["id"], d["status"]) for d in sinks["pd"].docs] == [(told["id"], "firing")] * 2
        n.on_alert(alert(1, team="research", status="resolved"))
        clock.t += 301
        n.tick()
        assert {d["id"] for d in sinks["pd"].docs} == {told["id"]}
        assert [d["status"] for d in sinks["pd"].docs][-2:] == ["firing", "resolved"]
        assert not n.groups


def test_a_group_that_fired_and_resolved_before_its_first_notification_sends_nothing() -> None:
    """New-user review: a catch-up's episode that fired and resolved within group_wait reached PagerDuty as a lone
    "resolve" (and Slack as "resolved") for an incident it never opened. The direct sinks still see both."""
    n, sinks, clock = notifier(ROUTE)
    n.on_alert(alert(1))
    n.on_alert(alert(1, status="resolved"))
    clock.t += 31
    n.tick()
    assert sinks["pd"].docs == [] and sinks["chat"].docs == [] and not n.groups
    assert [d["status"] for d in sinks["metrics"].docs] == ["firing", "resolved"]


def test_a_groups_id_carries_the_id_namespace() -> None:
    """Two agents (prod-eu, prod-us) paging one PagerDuty service: their groups made in the same second must not
    share a dedup_key."""
    ids = []
    for ns in ("prod-eu", "prod-us"):
        n, sinks, clock = notifier(ROUTE)
        n.namespace = ns
        n.on_alert(alert(1))
        clock.t += 31
        n.tick()
        ids.append(sinks["pd"].docs[0]["id"])
    assert ids[0] != ids[1]


def test_a_resolved_group_says_what_each_alert_said() -> None:
    n, sinks, clock = notifier(ROUTE)
    n.on_alert(alert(1))
    clock.t += 31
    n.tick()
    n.on_alert(alert(1, status="resolved", summary="[token_spend] team=t1: marked expected by ana: launch week"))
    clock.t += 301
    n.tick()
    assert "marked expected by ana: launch week" in sinks["pd"].docs[-1]["summary"]


def test_a_replay_judges_silences_at_the_alerts_event_time() -> None:
    """New-user review: a backtest judged configured silences against today's clock (a November silence did not
    silence November's alert, a December one silenced it)."""
    nov = Silence("nov", ["team=t1"], 1_794_614_400.0, 1_794_700_800.0, "c", "a")  # 2026-11-14 → 15 (UTC)
    for event_time, silenced in ((False, False), (True, True)):
        n, sinks, _ = notifier(None, silences=[nov])
        n.event_time = event_time
        n.on_alert(alert(1, window_start="2026-11-14T10:00:00Z", window_end="2026-11-14T11:00:00Z"))
        assert sinks["metrics"].docs[-1]["silenced"] is silenced


def test_matchers_name_labels_alerts_have_and_severities_that_exist() -> None:
    """New-user review: a route matching `teem=support-bot` or `severity=critcal`, or a silence of `tem=research`,
    was valid and never matched; `contine:` was told to use the Python name `continue_`, which was then accepted."""
    bad = """
route:
  routes:
    - {matchers: [teem=support-bot, severity=critcal, 'severity=~"critical|error"', source=s], contine: true}
    - {matchers: [team=a], continue_: true}
silences:
  - {matchers: [tem=research, detector=token_spnd, 'detector=source:s'], ends_at: '2026-12-31T00:00:00Z',
     comment: c, created_by: a}
"""
    with pytest.raises(ConfigError) as exc:
        load_config_text(BASE + bad)
    assert sorted(exc.value.errors) == sorted(
        [
            "route.routes[0].contine: unknown key (did you mean 'continue'?)",
            "route.routes[1].continue_: unknown key (did you mean 'continue'?)",
        ]
    )
    ok = bad.replace("contine", "continue").replace("    - {matchers: [team=a], continue_: true}\n", "")
    with pytest.raises(ConfigError) as exc:
        load_config_text(BASE + ok)
    assert exc.value.errors == [
        "route.routes[0].matchers[0]: no alert has the label 'teem' (did you mean 'team'?)",
        "route.routes[0].matchers[1]: no alert has severity 'critcal' (did you mean 'critical'?)",
        "silences[0].matchers[0]: no alert has the label 'tem' (did you mean 'team'?)",
        "silences[0].matchers[1]: no alert has detector 'token_spnd' (did you mean 'token_spend'?)",
    ]


def test_a_muted_group_survives_a_restart_and_still_tells_the_resolution(tmp_path: Path) -> None:
    """Re-check of the review's fixes: a group saved with nothing due (infinity, null in JSON) broke every tick
    after a restart, and its resolution left only at the next stop."""
    n, sinks, clock = notifier(ROUTE, tmp_path)
    n.on_alert(alert(1, team="research"))
    clock.t += 31
    n.tick()
    n.silences.add(Silence("s1", ["team=research"], clock.t, clock.t + 7200, "known", "carol"))
    n.tick()
    again, sinks2, clock2 = notifier(ROUTE, tmp_path)  # a restart: the notifier's state from its file
    clock2.t = clock.t + 60
    again.tick()
    again.on_alert(alert(1, team="research", status="resolved"))
    clock2.t += 301
    again.tick()
    assert [d["status"] for d in sinks2["pd"].docs] == ["resolved"]
    assert sinks2["pd"].docs[0]["id"] == sinks["pd"].docs[0]["id"]


def test_a_group_told_resolved_tells_a_silenced_alert_afresh_when_its_silence_ends() -> None:
    """Re-check: two alerts paged as one group; one silenced; the other resolved (the group is told resolved). When
    the silence ends and the first still fires, it is notified then (a new group), and its resolution follows."""
    n, sinks, clock = notifier(ROUTE)
    n.on_alert(alert(1, team="helpdesk"))
    n.on_alert(alert(2, team="support"))
    clock.t += 31
    n.tick()
    first = sinks["pd"].docs[0]["id"]
    n.silences.add(Silence("s1", ["team=helpdesk"], clock.t, clock.t + 3600, "known", "carol"))
    n.tick()
    n.on_alert(alert(2, team="support", status="resolved"))
    clock.t += 301
    n.tick()
    assert [(d["id"], d["status"]) for d in sinks["pd"].docs] == [(first, "firing"), (first, "resolved")]
    clock.t += 3600  # the silence ends, helpdesk still fires: told again, as a new incident
    n.tick()
    clock.t += 31
    n.tick()
    fresh = sinks["pd"].docs[-1]
    assert fresh["status"] == "firing" and fresh["id"] != first
    assert [a["series"]["team"] for a in fresh["alerts"]] == ["helpdesk"]
    n.on_alert(alert(1, team="helpdesk", status="resolved"))
    clock.t += 301
    n.tick()
    assert (sinks["pd"].docs[-1]["id"], sinks["pd"].docs[-1]["status"]) == (fresh["id"], "resolved")
    assert len(sinks["pd"].docs) == 4 and not n.groups


def test_a_planned_change_silence_made_mid_incident_tells_the_detector() -> None:
    n, _sinks, clock = notifier(ROUTE)
    told: list[tuple[str, str]] = []
    n.planned = lambda d, s: told.append((d["id"], s.id))
    n.on_alert(alert(1, team="research", kind="spend"))
    clock.t += 31
    n.tick()
    plan = Silence("p1", ["team=research"], clock.t, clock.t + 7200, "doubles from today", "ana", planned_change=True)
    n.silences.add(plan)
    n.tick()
    assert told == [(alert(1)["id"], "p1")]
