"""The Kafka source's dead-letter topic: undecodable records sent with their original key, value and headers plus
``error``, ``source_topic``, ``source_partition`` and ``source_offset`` headers, acknowledged before a checkpoint
commits past them; the topic created at start where it is missing."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from agent.decoders.base import BadRecord
from agent.sources.kafka_client import fatal_reason
from agent.telemetry import describe

log = logging.getLogger("agent.sources.kafka")

Sent = tuple[Any, BadRecord, str]  # (the producer's future, the record, "topic/partition")


class RecordMeta(dict[int, Any]):
    """A batch's per-record metadata for the dead-letter topic (key, headers, topic, partition, offset by the
    ``id`` of the value handed to the decoder), made from the fetched messages on first use: a batch without a
    dead letter never builds it."""

    def __init__(self, tp: Any, msgs: list[Any]):
        super().__init__()
        self._src: tuple[Any, list[Any]] | None = (tp, msgs)

    def get(self, key: int, default: Any = None) -> Any:
        if self._src is not None:
            tp, msgs = self._src
            self._src = None
            for m in msgs:
                v = m.value if m.value is not None else b""
                self[id(v)] = (m.key, m.headers, tp.topic, tp.partition, m.offset)
        return super().get(key, default)


def send(producer: Any, topic: str, meta: Any, bad: list[BadRecord], sent: list[Sent]) -> list[BadRecord]:
    """Send ``bad`` to ``topic`` (futures appended to ``sent``); return the records without metadata (for the
    dead-letter file)."""
    rest = []
    for r in bad:
        m = meta.get(id(r.raw))
        if m is None:
            rest.append(r)
            continue
        key, headers, src_topic, partition, offset = m
        extra = [
            ("error", f"{r.kind}: {r.reason}"[:1000].encode()),
            ("source_topic", src_topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
        ]
        future = producer.send(topic, key=key, value=r.raw, headers=list(headers or []) + extra)
        sent.append((future, r, f"{src_topic}/{partition}"))
    return rest


def acknowledge(
    producer: Any, sent: list[Sent], timeout: float, who: str, to_file: Callable[[str, BadRecord], None]
) -> None:
    """Wait for the records ``sent`` (raises ``KafkaTimeoutError`` while the broker cannot be reached: the
    checkpoint is retried later, and a fatal error as it is). A record the topic refused goes to ``to_file`` with
    the topic's error."""
    producer.flush(timeout)
    for future, r, where in sent:
        if future.failed():
            exc = future.exception
            if fatal_reason(exc):
                raise exc
            reason = f"{r.reason}; dead-letter topic refused it: {describe(exc)}"[:1000]
            log.warning("%s: %s", who, reason)
            to_file(where, dataclasses.replace(r, reason=reason))


def ensure_topic(kafka: Any, opts: dict[str, Any], topic: str, who: str) -> None:
    """Create the dead-letter topic if it is missing (the broker's default partitions and replication), so the
    first bad record neither waits on a broker's auto-creation (often disabled) nor logs the client's "topic not
    found" error. Where it cannot be created (no permission), say so once: records wait for it."""
    admin = None
    try:
        admin = kafka.admin.KafkaAdminClient(**opts)
        admin.create_topics([kafka.admin.NewTopic(topic)])
        log.info("%s: created the dead-letter topic %s", who, topic)
    except kafka.errors.TopicAlreadyExistsError:
        pass
    except Exception as exc:  # (authorization, a broker that refuses): producing will tell if it is missing
        log.warning(
            "%s: could not create the dead-letter topic %s (%s); bad records are sent to it once it exists",
            who,
            topic,
            describe(exc),
        )
    finally:
        if admin is not None:
            admin.close()
