"""The Event Hubs source at the SDK boundary.

Event Hubs has no emulator here. What runs is the SDK itself — ``EventHubConsumerClient``, its ``EventProcessor``
(load balancing, ownership, checkpoints) and ``BlobCheckpointStore`` on a real Azurite — with only the AMQP link
replaced: :class:`Hub` holds each partition's events as the service would deliver them (pyamqp messages with the
service's annotations: sequence number, offset, enqueued time, and the last-enqueued delivery annotations), and
:class:`Link` is the partition consumer the processor creates. Bodies are shaped like Azure Monitor's diagnostic
export (``{"records": [...]}``, see ``../shared/data/eventhubs/``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.eventhub import EventData, EventHubConsumerClient
from azure.eventhub._pyamqp.message import Message

from agent.config import load_config_text
from agent.pipeline import Agent
from tests.conftest import wait_until

T0 = 1_760_000_400.0  # 2025-10-09 09:00 UTC, an hour start


class Hub:
    """The partitions of one event hub: what the service holds, appended to by the test."""

    def __init__(self, partitions: int = 2):
        self.logs: dict[str, list[Message]] = {str(p): [] for p in range(partitions)}
        self.lock = threading.Lock()
        self.reads: dict[str, list[int]] = {p: [] for p in self.logs}  # sequence numbers delivered, per partition

    def send(self, partition: int, body: bytes, enqueued: float) -> None:
        pid = str(partition)
        with self.lock:
            seq = len(self.logs[pid])
            self.logs[pid].append(
                Message(
                    data=[body],
                    message_annotations={
                        b"x-opt-sequence-number": seq,
                        b"x-opt-offset": str(seq * 512).encode(),  # offsets are byte positions, not counts
                        b"x-opt-enqueued-time": int(enqueued * 1000),
                    },
                )
            )

    def after(self, pid: str, position: Any, inclusive: bool) -> int:
        """The index of the first event a link opened at ``position`` delivers (the service's rule)."""
        if position in ("-1", "@earliest"):
            return 0
        if position == "@latest":
            return len(self.logs[pid])
        offset = int(position)
        for i, m in enumerate(self.logs[pid]):
            o = int(m.message_annotations[b"x-opt-offset"])
            if o > offset or (inclusive and o == offset):
                return i
        return len(self.logs[pid])


class Link:
    """A partition consumer as the processor drives it: ``receive`` hands over a batch of events, or an empty one
    after ``max_wait_time``, through the processor's callback."""

    def __init__(self, hub: Hub, pid: str, position: Any, on_received: Any, inclusive: bool):
        self.hub, self.pid, self.on_received = hub, pid, on_received
        self.next = hub.after(pid, position, inclusive)
        self.stop = False
        self.running = True

    def receive(self, batch: bool, max_batch_size: int, max_wait_time: float | None) -> None:
        with self.hub.lock:
            log = self.hub.logs[self.pid]
            msgs = log[self.next : self.next + max_batch_size]
            end = len(log) - 1
        if not msgs:
            time.sleep(min(max_wait_time or 0.05, 0.05))
            self.on_received([])
            return
        self.next += len(msgs)
        events = []
        for m in msgs:
            m = m._replace(delivery_annotations={b"last_enqueued_sequence_number": end})
            events.append(EventData._from_message(m))
            self.hub.reads[self.pid].append(m.message_annotations[b"x-opt-sequence-number"])
        self.on_received(events)

    def close(self) -> None:
        self.running = False


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Hub:
    h = Hub()

    def create(self: Any, consumer_group: str, partition_id: str, position: Any, on_received: Any, **kw: Any) -> Link:
        return Link(h, partition_id, position, on_received, bool(kw.get("event_position_inclusive")))

    monkeypatch.setattr(EventHubConsumerClient, "_create_consumer", create)
    monkeypatch.setattr(EventHubConsumerClient, "get_partition_ids", lambda self: sorted(h.logs))
    return h


CONN = "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0LWtleS1uZXZlci1sb2dnZWQ=;EntityPath=insights-metrics"


def records(t: float, team: str, costs: list[float]) -> bytes:
    """One Event Hubs event as Azure Monitor's diagnostic export writes it: several records in an envelope."""
    recs = [
        {"time": time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(t + i)), "team": team, "cost": c}
        for i, c in enumerate(costs)
    ]
    return orjson.dumps({"records": recs})


def config(tmp: Path, store: str | None, name: str = "a") -> Any:
    ckpt = f'\n    checkpoint_store: {{container: ehcheckpoints, connection_string: "{store}"}}' if store else ""
    text = f"""
sources:
  hub:
    type: eventhubs
    connection_string: "{CONN}"
    consumer_group: finops
    max_wait_time_seconds: 0.1
    load_balancing_interval_seconds: 0.5
    partition_ownership_expiration_interval_seconds: 3{ckpt}
    decoder: {{type: json, time_field: time, values: {{cost_usd: cost}}, dimensions: {{team: team}}}}
detectors:
  spend: {{type: threshold, signal: cost_usd, upper: 1000000, group_by: [team], window_seconds: 3600}}
sinks:
  out: {{type: jsonl, path: {tmp / name}/alerts.jsonl}}
state: {{type: local, directory: {tmp / name}, checkpoint_interval_seconds: 0.2, idle_grace_seconds: 0}}
dead_letter: {{path: {tmp / name}/dead-letter.jsonl}}
pipeline: {{max_age_days: 0, idle_timeout_seconds: null, allowed_lateness_seconds: 0}}
"""
    return load_config_text(text)


def received(agent: Agent) -> float:
    return agent.telemetry.registry.get_sample_value("finops_agent_events_received_total", {"component": "hub"}) or 0.0


def discarded(agent: Agent, reason: str) -> float:
    v = agent.telemetry.registry.get_sample_value(
        "finops_agent_events_discarded_total", {"component": "hub", "reason": reason}
    )
    return v or 0.0


@pytest.fixture
def container(azurite: Any) -> Iterator[str]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    c = service.get_container_client("ehcheckpoints")
    if c.exists():
        c.delete_container()
        assert wait_until(lambda: not c.exists(), 10)
    service.create_container("ehcheckpoints")
    yield azurite.connection_string


def checkpoints(conn: str) -> dict[str, int]:
    """The sequence number of each partition's checkpoint, read from the store as another replica would."""
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

    store = BlobCheckpointStore.from_connection_string(conn, "ehcheckpoints")
    return {
        c["partition_id"]: c["sequence_number"]
        for c in store.list_checkpoints("127.0.0.1", "insights-metrics", "finops")
    }


def owners(conn: str) -> dict[str, str]:
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

    store = BlobCheckpointStore.from_connection_string(conn, "ehcheckpoints")
    return {o["partition_id"]: o["owner_id"] for o in store.list_ownership("127.0.0.1", "insights-metrics", "finops")}


def test_envelopes_are_unpacked_windows_close_and_checkpoints_follow_the_durable_state(
    hub: Hub, container: str, tmp_path: Path
) -> None:
    from agent.backtest import PointCollector

    for h in range(3):  # three hours, two partitions, each event a batch of two records
        for p in (0, 1):
            for k in range(3):
                hub.send(p, records(T0 + h * 3600 + k * 60 + p, f"team-{p}", [1.0, 2.0]), T0 + h * 3600 + k * 60)
    col = PointCollector()
    agent = Agent(config(tmp_path, container), extra_sinks={"collector": col})
    agent.start()
    try:
        assert wait_until(lambda: received(agent) == 36, 20)
        # Hours 0 and 1 closed (hour 2 is open): each team's window holds 3 events × (1 + 2).
        assert wait_until(lambda: sum(len(v) for v in col.points.values()) == 4, 20)
        for (_det, series), pts in col.points.items():
            assert [p.observed for p in pts] == [9.0, 9.0], series
        # The Event Hubs checkpoint is written once the state holding the events is on disk: the last sequence
        # number of each partition (8), not before.
        assert wait_until(lambda: checkpoints(container) == {"0": 8, "1": 8}, 20)
        state = agent.store.load()
        assert state is not None
        assert state["sources"]["hub"]["insights-metrics/0"][0] == 8
        lag = agent.telemetry.registry.get_sample_value(
            "finops_agent_consumer_lag", {"source": "hub", "topic": "insights-metrics", "partition": "0"}
        )
        assert lag == 0
    finally:
        agent.stop()


def test_a_restart_resumes_from_the_checkpoint_and_skips_what_the_state_already_counts(
    hub: Hub, container: str, tmp_path: Path
) -> None:
    for k in range(5):
        hub.send(0, records(T0 + k, "t", [1.0]), T0 + k)
    agent = Agent(config(tmp_path, container))
    agent.start()
    try:
        assert wait_until(lambda: received(agent) == 5, 20)
        assert wait_until(lambda: checkpoints(container).get("0") == 4, 20)
    finally:
        agent.stop()
    # The state says sequence 4 is counted, but the checkpoint store lost its last write (a crash between the two):
    # the SDK starts after sequence 1 and the events the state counts already are skipped, not counted twice.
    from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

    store = BlobCheckpointStore.from_connection_string(container, "ehcheckpoints")
    store.update_checkpoint(
        {
            "fully_qualified_namespace": "127.0.0.1",
            "eventhub_name": "insights-metrics",
            "consumer_group": "finops",
            "partition_id": "0",
            "offset": str(1 * 512),
            "sequence_number": 1,
        }
    )
    for k in range(5, 8):
        hub.send(0, records(T0 + k, "t", [1.0]), T0 + k)
    again = Agent(config(tmp_path, container))
    again.start()
    try:
        assert wait_until(lambda: received(again) == 3, 20)
        assert wait_until(lambda: checkpoints(container).get("0") == 7, 20)
        assert discarded(again, "replayed") == 3  # sequences 2, 3, 4
        time.sleep(0.5)
        assert received(again) == 3
    finally:
        again.stop()


def test_two_replicas_share_partitions_through_the_checkpoint_store_and_nothing_is_counted_twice(
    hub: Hub, container: str, tmp_path: Path
) -> None:
    for k in range(4):
        for p in (0, 1):
            hub.send(p, records(T0 + k, f"team-{p}", [1.0]), T0 + k)
    a = Agent(config(tmp_path, container, "a"))
    a.start()
    b: Agent | None = None
    try:
        assert wait_until(lambda: received(a) == 8, 20)
        assert wait_until(lambda: checkpoints(container) == {"0": 3, "1": 3}, 20)
        b = Agent(config(tmp_path, container, "b"))
        b.start()
        # The SDK's load balancing gives the second replica one of the two partitions (ownership moves).
        assert wait_until(lambda: len(set(owners(container).values())) == 2, 30)
        assert wait_until(lambda: a.sources["hub"].owned.assigned and len(a.sources["hub"].owned.assigned) == 1, 30)
        for k in range(4, 10):
            for p in (0, 1):
                hub.send(p, records(T0 + k, f"team-{p}", [1.0]), T0 + k)
        assert wait_until(lambda: received(a) + received(b) == 20, 30)
        # a stops: its partition goes to b, which starts from a's final checkpoint.
        a.stop()
        for k in range(10, 12):
            for p in (0, 1):
                hub.send(p, records(T0 + k, f"team-{p}", [1.0]), T0 + k)
        assert wait_until(lambda: len(b.sources["hub"].owned.assigned) == 2, 30)
        assert wait_until(lambda: received(a) + received(b) == 24, 30)
        assert wait_until(lambda: checkpoints(container) == {"0": 11, "1": 11}, 20)
        time.sleep(0.5)
        assert received(a) + received(b) == 24  # every event counted once: none twice, none lost
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_bad_bodies_are_dead_lettered_with_their_partition_and_the_rest_counted(
    hub: Hub, container: str, tmp_path: Path
) -> None:
    hub.send(0, b"not json at all", T0)
    hub.send(0, records(T0 + 1, "t", [1.0, 2.0]), T0 + 1)
    hub.send(0, b'{"records": [{"time": "2025-10-09T09:00:03Z", "team": "t", "cost": "x"}]}', T0 + 2)
    hub.send(0, b"x" * (2 << 20), T0 + 3)  # over max_record_bytes
    agent = Agent(config(tmp_path, container))
    agent.start()
    try:
        assert wait_until(lambda: (tmp_path / "a" / "dead-letter.jsonl").exists(), 20)
        assert wait_until(lambda: len((tmp_path / "a" / "dead-letter.jsonl").read_text().splitlines()) == 3, 20)
        assert wait_until(lambda: checkpoints(container).get("0") == 3, 20)
    finally:
        agent.stop()
    dead = [json.loads(line) for line in (tmp_path / "a" / "dead-letter.jsonl").read_text().splitlines()]
    kinds = sorted(d["kind"] for d in dead)
    assert "record_too_large" in kinds and len(kinds) == 3
    assert all(d["location"] == "insights-metrics/0" for d in dead), dead
    assert "c2VjcmV0" not in (tmp_path / "a" / "dead-letter.jsonl").read_text()


def test_config_needs_one_way_to_authenticate() -> None:
    from agent.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config_text(
            """
sources:
  hub: {type: eventhubs, fully_qualified_namespace: ns.servicebus.windows.net, decoder: {type: json, values: {c: c}}}
detectors: {d: {type: threshold, signal: c, upper: 1}}
"""
        )
    assert "sources.hub" in str(err.value) and "eventhub_name" in str(err.value)


def test_a_standby_takes_the_state_over_from_the_blob_and_nothing_is_counted_twice(
    hub: Hub, container: str, tmp_path: Path
) -> None:
    """``state.type: blob``: one replica holds the state (a lease on its blob), the other waits as a standby, alive
    and not ready; when the first stops, the standby restores its state and reads on from its checkpoints: the
    window that spans the hand-over holds every event of both, once."""
    from agent.backtest import PointCollector

    def blob_config(name: str) -> Any:
        cfg = config(tmp_path, container, name)
        blob = {"container": "agentstate", "connection_string": container, "lease_seconds": 15}
        from agent.blob_state import BlobStateConfig

        return cfg.model_copy(
            update={"state": cfg.state.model_copy(update={"type": "blob", "blob": BlobStateConfig(**blob)})}
        )

    for k in range(3):  # hour 0 (partly) and nothing later yet: the window stays open
        for p in (0, 1):
            hub.send(p, records(T0 + k * 60, f"team-{p}", [1.0]), T0 + k * 60)
    a = Agent(blob_config("a"))
    a.start()
    col = PointCollector()
    b = Agent(blob_config("b"), extra_sinks={"collector": col})
    starting = threading.Thread(target=b.start, daemon=True)  # a standby's start waits for the state
    try:
        assert wait_until(lambda: received(a) == 6, 20)
        starting.start()
        assert wait_until(lambda: (b.health.standby_reason or "").startswith("standby"), 20)
        assert b.health.alive() and b.health.ready()  # ready as a standby: a rollout does not wait on it
        assert received(b) == 0 and not b.sources["hub"].owned.assigned  # it reads nothing meanwhile
        a.stop()  # the final checkpoint, the Event Hubs checkpoints, then the lease: the standby takes over
        starting.join(30)
        assert not starting.is_alive() and b.health.standby_reason is None
        assert wait_until(b.health.ready, 20), b.health.not_ready()
        for k in range(3, 6):  # the rest of hour 0, then hour 1 closes it
            for p in (0, 1):
                hub.send(p, records(T0 + k * 60, f"team-{p}", [1.0]), T0 + k * 60)
        # (This test runs without lateness or idle grace: a partition's next hour would close the other's hour 0
        # if that one's events were not read yet.)
        assert wait_until(lambda: received(b) == 6, 30)
        for p in (0, 1):
            hub.send(p, records(T0 + 3600 + 600, f"team-{p}", [1.0]), T0 + 3600 + 600)
        assert wait_until(lambda: received(b) == 8, 30)
        assert wait_until(lambda: sum(len(v) for v in col.points.values()) == 2, 30)
        # Hour 0 of each team: 3 events counted by a, 3 by b, in one window: the state followed.
        assert sorted(pts[0].observed for pts in col.points.values()) == [6.0, 6.0], (
            {k: [(p.window_start, p.observed) for p in v] for k, v in col.points.items()},
            discarded(b, "replayed"),
        )
        assert received(a) + received(b) == 14
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{type: eventhubs, connection_string: 'Endpoint=sb://x/;EntityPath=h', fully_qualified_namespace: "
            "ns.servicebus.windows.net, eventhub_name: h}",
            "not both",
        ),
        (
            "{type: eventhubs, fully_qualified_namespace: 'https://ns.servicebus.windows.net/', eventhub_name: h}",
            "the host name",
        ),
        ("{type: eventhubs, connection_string: 'Endpoint=sb://x/;EntityPath=h', eventhub_name: other}", "EntityPath"),
        ("{type: eventhubs, connection_string: 'Endpoint=sb://x/'}", "eventhub_name is required"),
        ("{type: eventhubs, connection_string: 'SharedAccessKey=k'}", "no Endpoint"),
        (
            "{type: eventhubs, connection_string: 'Endpoint=sb://x/;EntityPath=h', "
            "checkpoint_store: {container: ckpt, account_url: 'ftp://a'}}",
            "account_url",
        ),
    ],
)
def test_config_errors_name_the_problem_and_its_path(source: str, message: str) -> None:
    from agent.config import ConfigError

    text = f"""
sources:
  hub: {source[:-1]}, decoder: {{type: json, values: {{c: c}}}}}}
detectors: {{d: {{type: threshold, signal: c, upper: 1}}}}
sinks: {{c: {{type: console}}}}
"""
    with pytest.raises(ConfigError) as err:
        load_config_text(text)
    assert "sources.hub" in str(err.value) and message in str(err.value), str(err.value)


def test_azure_monitor_envelopes_through_the_sdk_are_decoded_as_azure_openai_usage(
    hub: Hub, container: str, tmp_path: Path
) -> None:
    """The envelope a diagnostic setting sends (the shared recorded sample, whose metric the agent does not read)
    and the same shape carrying an Azure OpenAI account's token metrics, through the SDK's EventData into the
    ``azure_openai`` decoder: tokens counted and priced, the other metric left out and counted as such."""
    from tests.conftest import shared_data

    sample = (shared_data() / "eventhubs" / "azure-monitor-metrics-records.json").read_bytes()
    account = "/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG-AI/PROVIDERS/MICROSOFT.COGNITIVESERVICES/ACCOUNTS/OAI-CHAT-WEU"
    base = orjson.loads(sample)["records"][0]
    tokens = [
        {**base, "resourceId": account, "metricName": name, "total": total, "count": 1, "time": when}
        for when in ("2025-07-14T12:45:00.0000000Z", "2025-07-14T12:46:00.0000000Z")
        for name, total in (("InputTokens", 200_000), ("OutputTokens", 20_000), ("ModelRequests", 40))
    ]
    hub.send(0, sample, T0)
    hub.send(1, orjson.dumps({"records": tokens}), T0)
    decoder = {"type": "azure_openai", "deployments": {"oai-chat-weu": "gpt-4o"}}

    text = f"""
sources:
  hub:
    type: eventhubs
    connection_string: "{CONN}"
    consumer_group: finops
    max_wait_time_seconds: 0.1
    checkpoint_store: {{container: ehcheckpoints, connection_string: "{container}"}}
    decoder: {orjson.dumps(decoder).decode()}
detectors:
  spend: {{type: threshold, signal: token_cost_usd, upper: 1000000, group_by: [account, model], window_seconds: 60}}
sinks:
  out: {{type: jsonl, path: {tmp_path}/alerts.jsonl}}
state: {{type: local, directory: {tmp_path}/s, checkpoint_interval_seconds: 0.2, idle_grace_seconds: 0}}
pipeline: {{max_age_days: 0, idle_timeout_seconds: null, allowed_lateness_seconds: 0}}
"""
    from agent.backtest import PointCollector

    col = PointCollector()
    agent = Agent(load_config_text(text), extra_sinks={"collector": col})
    agent.start()
    try:
        assert wait_until(lambda: discarded(agent, "ignored_other_metric") == 1, 20)  # dependencies/duration
        assert wait_until(lambda: col.points, 20)  # 12:45 closed by 12:46
        ((_det, series), pts), *_ = col.points.items()
        assert dict(series) == {"account": "oai-chat-weu", "model": "gpt-4o"}
        assert pts[0].observed == pytest.approx(200_000 * 2.5e-6 + 20_000 * 10e-6)  # gpt-4o: $0.70 that minute
        assert wait_until(lambda: checkpoints(container) == {"0": 0, "1": 0}, 20)
    finally:
        agent.stop()
