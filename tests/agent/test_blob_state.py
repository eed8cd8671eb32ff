"""``state.type: blob``: the agent's state in an Azure Blob under a lease, against a real Azurite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.blob_state import BlobStateConfig, BlobStateStore, StateLeaseLost
from agent.config import ConfigError, load_config_text


@pytest.fixture
def conn(azurite: Any) -> Iterator[str]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    c = service.get_container_client("statetest")
    if c.exists():
        for b in c.list_blobs():  # a lease left by an earlier test is broken first
            bc = c.get_blob_client(b.name)
            if b.lease.state == "leased":
                from azure.storage.blob import BlobLeaseClient

                BlobLeaseClient(bc).break_lease(lease_break_period=0)
            bc.delete_blob()
    yield azurite.connection_string


def store(conn: str, blob: str = "agent/state.pkl") -> BlobStateStore:
    return BlobStateStore(BlobStateConfig(container="statetest", connection_string=conn, blob=blob, lease_seconds=15))


def test_one_replica_holds_the_state_the_other_waits_and_takes_it_over_when_released(conn: str) -> None:
    a, b = store(conn), store(conn)
    assert a.acquire(threading.Event()) and a.holding
    assert a.load() is None  # nothing saved yet
    a.save({"sources": {"hub": {"insights/0": (41, "20992")}}, "runners": {}})
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    t0 = time.monotonic()
    assert not b.acquire(stop, poll_seconds=0.2)  # held by a: b waits (until told to stop)
    assert time.monotonic() - t0 >= 0.9 and not b.holding
    with pytest.raises(StateLeaseLost):  # a standby never writes
        b.save({"runners": {}})
    a.release()
    assert b.acquire(threading.Event(), poll_seconds=0.2) and b.holding
    state = b.load()
    assert state is not None and state["sources"]["hub"]["insights/0"] == (41, "20992")
    b.release()


def test_a_broken_lease_stops_the_writer_before_it_overwrites_the_new_holders_state(conn: str) -> None:
    from azure.storage.blob import BlobLeaseClient, BlobServiceClient

    a = store(conn, "agent/broken.pkl")
    lost: list[BaseException] = []
    a.on_lost = lost.append
    assert a.acquire(threading.Event())
    a.save({"runners": {}, "n": 1})
    blob = BlobServiceClient.from_connection_string(conn).get_blob_client("statetest", "agent/broken.pkl")
    BlobLeaseClient(blob).break_lease(lease_break_period=0)  # an operator, or another replica after an expiry
    b = store(conn, "agent/broken.pkl")
    assert b.acquire(threading.Event(), poll_seconds=0.2)
    b.save({"runners": {}, "n": 2})
    with pytest.raises(StateLeaseLost):
        a.save({"runners": {}, "n": 3})  # refused by the service: the lease is b's
    assert lost and isinstance(lost[0], StateLeaseLost) and getattr(lost[0], "fatal", False)
    assert b.load() == {"runners": {}, "n": 2, "version": 1}
    b.release()


def test_state_type_blob_needs_its_blob_and_the_blob_needs_the_type() -> None:
    base = "sources: {f: {type: file, path: x, decoder: {type: json, values: {c: c}}}}\n"
    base += "detectors: {d: {type: threshold, signal: c, upper: 1}}\nsinks: {c: {type: console}}\n"
    with pytest.raises(ConfigError) as err:
        load_config_text(base + "state: {type: blob}\n")
    assert "state:" in str(err.value) and "type blob and blob go together" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config_text(
            base + "state: {type: blob, blob: {container: stx, account_url: 'https://a.example', lease_seconds: 5}}\n"
        )
    assert "state.blob.lease_seconds" in str(err.value)
    cfg = load_config_text(base + "state: {type: blob, blob: {container: stx, account_url: 'https://a.example'}}\n")
    assert cfg.state.blob is not None and cfg.state.blob.lease_seconds == 30
