"""``finops_agent_events_received_total`` counts records: a blank line is no record (new-user review: 7 lines, one of
them blank, gave +7 received beside +1 blank line)."""

from __future__ import annotations

from pathlib import Path

from tests.agent.test_bad_input import _config, _run, _sample

JSON = "{type: json, time_field: ts, values: {cost_usd: cost}, dimensions: {team: team}}"


def test_blank_lines_are_not_received_records_and_the_counts_reconcile(tmp_path: Path) -> None:
    inbox, dlq = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    good = [b'{"ts": "2026-10-01T10:%02d:00Z", "cost": 1, "team": "a"}' % m for m in range(5)]
    lines = [*good[:2], b"", *good[2:], b"{not json"]  # 7 lines: 5 good, 1 blank, 1 malformed
    (inbox / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    agent, _collector = _run(_config(inbox, dlq, JSON, "cost_usd"))

    received = _sample(agent, "finops_agent_events_received_total", component="tokens")
    blank = _sample(agent, "finops_agent_blank_lines_total", component="tokens")
    discarded = _sample(agent, "finops_agent_events_discarded_total", component="tokens", reason="malformed_json")
    observations = _sample(agent, "finops_agent_observations_total", component="tokens")
    assert (received, blank, discarded, observations) == (6, 1, 1, 5)
    assert received + blank == len(lines) and received == observations + discarded
