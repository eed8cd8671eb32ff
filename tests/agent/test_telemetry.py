"""The agent's logging: the Kafka client's repeated lines are held back."""

from __future__ import annotations

import logging

from agent.telemetry import ClientLogLimit


def test_the_kafka_clients_repeated_lines_pass_once_a_minute_with_a_count() -> None:
    now = [1000.0]
    limit = ClientLogLimit(interval=60.0, clock=lambda: now[0])

    def rec(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, ("x",), None)

    first = [limit.filter(rec("kafka.cluster", "No node available: %s")) for _ in range(5)]
    assert first == [True, False, False, False, False]
    assert limit.filter(rec("kafka.net.manager", "Connection failed: %s"))  # another message passes
    assert limit.filter(rec("agent.sources.kafka", "No node available: %s"))  # the agent's own lines all pass
    assert limit.filter(rec("agent.sources.kafka", "No node available: %s"))
    now[0] += 61  # a minute later
    later = rec("kafka.cluster", "No node available: %s")
    assert limit.filter(later) and later.getMessage() == "No node available: x (and 4 more like it in 61 s)"
