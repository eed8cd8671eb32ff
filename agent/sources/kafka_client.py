"""Kafka client helpers shared by the Kafka source and the scale-out: building clients that wait for the
brokers, telling fatal errors from retryable ones, client options (TLS, SASL), bounded closes and metadata reads."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from agent.telemetry import describe

if TYPE_CHECKING:
    from agent.sources.kafka import KafkaConfig

log = logging.getLogger("agent.sources.kafka")
T = TypeVar("T")


def require_kafka() -> Any:
    try:
        import kafka
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise RuntimeError("the kafka source needs kafka-python: pip install 'finops-agent[kafka]'") from exc
    return kafka


class FatalKafkaError(RuntimeError):
    """An error that waiting does not cure (credentials, authorization, a deleted topic): the agent stops."""


def fatal_reason(exc: BaseException) -> str | None:
    """Why ``exc`` stops the agent, or None for errors that are retried (an unreachable broker, timeouts...).

    >>> from kafka.errors import KafkaTimeoutError, SaslAuthenticationFailedError, TopicAuthorizationFailedError
    >>> fatal_reason(KafkaTimeoutError("flush")) is None
    True
    >>> fatal_reason(SaslAuthenticationFailedError("bad password"))
    'SASL authentication failed (check the credentials): SaslAuthenticationFailedError: ...bad password'
    >>> fatal_reason(TopicAuthorizationFailedError()).split(":")[0]
    'not authorized (check the ACLs of this principal)'
    """
    from kafka import errors

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:  # the cause may be wrapped
        seen.add(id(cur))
        what = describe(cur)
        if isinstance(cur, FatalKafkaError):
            return str(cur)
        if isinstance(cur, errors.SaslAuthenticationFailedError):
            return f"SASL authentication failed (check the credentials): {what}"
        if isinstance(cur, errors.AuthorizationError):
            return f"not authorized (check the ACLs of this principal): {what}"
        cur = cur.__cause__ or cur.__context__
    return None


def retrying(
    attempt: Callable[[], T], what: str, stop: threading.Event, count: Callable[[str], None] | None = None
) -> T | None:
    """``attempt()`` until it succeeds, waiting for the brokers however long: retried with backoff (1 s doubling to
    30 s), each error type logged once and counted with ``count``; a fatal error (credentials, authorization)
    raises. None when ``stop`` is set first. kafka-python's clients contact the brokers when they are built, so
    building one while the brokers are away fails after its bootstrap timeout: an agent started during an outage
    (a pod rescheduled) must wait for them, not die."""
    backoff, failing = 1.0, None
    while not stop.is_set():
        try:
            result = attempt()
        except Exception as exc:
            if fatal_reason(exc):
                raise
            kind = type(exc).__name__
            if count is not None:
                count(kind)
            if kind != failing:
                log.warning("%s: cannot reach the Kafka brokers (%s); retrying with backoff", what, describe(exc))
                failing = kind
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        if failing is not None:
            log.info("%s: connected", what)
        return result
    return None


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """kafka-python options for security (shared by the consumer, producer and admin client)."""
    from agent.config import read_secret

    opts: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        opts.update(
            ssl_cafile=cfg.ssl_cafile,
            ssl_certfile=cfg.ssl_certfile,
            ssl_keyfile=cfg.ssl_keyfile,
            ssl_check_hostname=cfg.ssl_check_hostname,
        )
    if cfg.sasl_mechanism:
        opts["sasl_mechanism"] = cfg.sasl_mechanism
        if cfg.sasl_mechanism == "OAUTHBEARER":
            module, _, attr = (cfg.oauth_token_provider or "").partition(":")
            opts["sasl_oauth_token_provider"] = getattr(importlib.import_module(module), attr)()
        else:
            opts["sasl_plain_username"] = cfg.sasl_username
            opts["sasl_plain_password"] = read_secret(cfg.sasl_password, cfg.sasl_password_file, "sasl_password_file")
    return opts


REQUEST_TIMEOUT_MS = 5_000  # a blocking client call on the consumer thread (end offsets, commit)
POSITION_TIMEOUT_MS = 1_000  # position() may look up the committed offset: in an outage, never wait long
CLOSE_TIMEOUT_MS = 5_000  # each of: the final commit, leaving the group, the producer's last flush


def close_producer(producer: Any, timeout: float, what: str) -> None:
    """Close a producer within ``timeout`` even when the broker is away: records it still holds are dropped
    (nothing committed relies on them; a restart re-reads their input from the last committed offsets)."""
    try:
        producer.close(timeout)
        return
    except Exception as exc:  # kafka-python's close() flushes first, and raises when that times out
        log.warning("%s: producer closed with records not acknowledged (%s)", what, describe(exc))
    sender = getattr(producer, "_sender", None)
    if sender is not None and sender.is_alive():
        sender.force_close()
    unregister = getattr(producer, "_unregister_cleanup", None)
    if unregister is not None:
        unregister()  # its atexit hook would flush again at interpreter exit
    producer._closed = True


def cached_partitions(consumer: Any, topic: str) -> set[int]:
    """A topic's partitions from the client's metadata cache. kafka-python's ``partitions_for_topic`` waits without a
    bound for a metadata refresh when the cache lacks the topic, which can hang a consumer thread around an outage;
    this raises a retryable ``KafkaTimeoutError`` instead (the caller's loop tries again with backoff)."""
    from kafka.errors import KafkaTimeoutError

    cluster = getattr(consumer, "_cluster", None)
    parts = cluster.partitions_for_topic(topic) if cluster is not None else consumer.partitions_for_topic(topic)
    if not parts:
        if cluster is not None:
            cluster.request_update()
        raise KafkaTimeoutError(f"no metadata for topic {topic} yet")
    return set(parts)
