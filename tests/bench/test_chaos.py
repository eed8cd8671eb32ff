"""The fault-injection harness's fixed set (``python -m bench.chaos --fixed``): two replicas of the agent as real
processes, a SIGTERM, a kill -9, a broker outage and a slow webhook receiver, against a one-process backtest."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import chaos
from scripts.kafka_broker import KafkaBroker


@pytest.mark.timeout(900)
@pytest.mark.parametrize("p", chaos.fixed_plans(), ids=lambda p: f"seed{p.seed}")
def test_the_invariants_hold_under_the_fixed_faults(p: chaos.Plan, kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    outcome = chaos.run(p, kafka_broker, tmp_path)
    print(chaos.table([outcome]))
    assert outcome.ok, f"{outcome.problems} (logs in {tmp_path})"
    assert outcome.alerts > 0 and outcome.series > 0  # the comparison had something to compare
