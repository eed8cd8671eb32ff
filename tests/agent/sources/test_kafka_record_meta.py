"""A Kafka batch's per-record metadata for the dead-letter topic is made from the fetched messages on first use."""

from __future__ import annotations

from collections import namedtuple

from agent.sources.kafka_dead_letters import RecordMeta

TP = namedtuple("TP", "topic partition")
Msg = namedtuple("Msg", "key value headers offset")


def test_built_on_first_lookup_by_the_id_of_each_value() -> None:
    msgs = [Msg(b"k1", b"v1", [("h", b"1")], 10), Msg(None, None, None, 11), Msg(b"k3", b"v3", [], 12)]
    meta = RecordMeta(TP("in", 2), msgs)
    assert len(meta) == 0  # nothing built for a batch without dead letters
    assert meta.get(id(msgs[2].value)) == (b"k3", [], "in", 2, 12)
    assert meta.get(id(msgs[0].value)) == (b"k1", [("h", b"1")], "in", 2, 10)
    assert meta.get(id(b"")) == (None, None, "in", 2, 11)  # a record without a value is decoded as b""
    assert meta.get(id(object())) is None
