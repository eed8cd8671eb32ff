"""Kafka consumption: the agent against a bare kafka-python consumer, and live alert latency.

1. 1M Bedrock log records (~560 bytes) on a 6-partition topic of a local Kafka 4.x broker
   (``scripts/kafka_broker.py``, or ``$KAFKA_BOOTSTRAP_SERVERS``).
   (a) a bare kafka-python consumer that only polls and reads each value;
   (b) the agent: Kafka source → Bedrock decoder → aggregation → seasonal detectors →
       checkpoints (local state, offsets committed after each checkpoint).
   Prints records/s for both and (b)/(a) (issue 19's targets: ≥ 0.75 scale-out, ≥ 0.85 local state).
2. Alert latency under load: a producer in another process (so that it does not share the agent's
   interpreter lock) streams live records (event time = now) at a steady rate while probes (a
   team's single expensive call) are sent; a 1-second threshold detector alerts on them; latency =
   probe produced → signed webhook received by a local HTTP server. Prints p50 and p99 and the
   load rate the producer reached (target p99 < 1 s at 30,000 records/s).

Usage: ``python -m bench.kafka [--records 1000000] [--probes 20] [--load-rate 3000] [--skip throughput|latency]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from agent.config import load_config_text
from agent.pipeline import Agent
from bench.common import bedrock_lines, machine
from scripts.kafka_broker import KafkaBroker, create_topic

AGENT = """
sources:
  tokens:
    type: kafka
    bootstrap_servers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: {group}
    decoder: {{type: bedrock, tag_dimensions: {{team: team, feature: feature}}}}
detectors:
{detectors}
sinks:
  {sink}
state: {{type: {state_type}, directory: {state}, checkpoint_interval_seconds: 5}}
dead_letter: {{path: {state}/dlq.jsonl}}
pipeline: {{max_age_days: 3650, allowed_lateness_seconds: {lateness}}}
"""

THROUGHPUT_DETECTORS = """
  token_spend: {type: seasonal, signal: token_cost_usd, group_by: [team], window_seconds: 3600}
  unit_cost: {type: seasonal, signal: token_cost_usd, per: tokens, per_scale: 1000, group_by: [team],
              window_seconds: 3600}"""

LATENCY_DETECTORS = """  probe: {type: threshold, signal: requests, group_by: [team], upper: 0.5, window_seconds: 1,
          min_impact_usd: 0, fill_missing: true}"""


def new_topic(bootstrap: str, partitions: int = 6) -> str:
    return create_topic(bootstrap, partitions, prefix="bench")


def produce_file(bootstrap: str, topic: str, path: Path) -> tuple[int, float]:
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20, acks=1)
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            p.send(topic, value=line.rstrip(b"\n"))
            n += 1
    p.flush(300)
    p.close()
    return n, time.perf_counter() - t0


def bare_consume(bootstrap: str, topic: str, n: int) -> tuple[float, float, float]:
    """Records/s from subscribe to the last record, from the first record to the last, and per CPU second (this
    process's, every thread)."""
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bare-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    got = 0
    t0, c0 = time.perf_counter(), time.process_time()
    first = None
    size = 0  # read every value, as a consumer that does anything must
    while got < n:
        for _tp, msgs in c.poll(timeout_ms=500).items():
            if first is None:
                first = time.perf_counter()
            for m in msgs:
                size += len(m.value)
            got += len(msgs)
    end, cpu = time.perf_counter(), time.process_time() - c0
    c.close()
    return n / (end - t0), n / (end - (first or t0)), n / cpu


def agent_config(
    bootstrap: str, topic: str, detectors: str, sink: str, state: Path, lateness: float, state_type: str = "kafka"
) -> Any:
    """The agent reading ``topic`` in a fresh consumer group (state ``kafka``: the scale-out default)."""
    text = AGENT.format(
        state_type=state_type,
        bootstrap=bootstrap,
        topic=topic,
        group=f"agent-{uuid.uuid4().hex[:6]}",
        detectors=detectors,
        sink=sink,
        state=state,
        lateness=lateness,
    )
    return load_config_text(text)


def agent_consume(
    bootstrap: str, topic: str, n: int, work: Path, state_type: str = "kafka"
) -> tuple[float, float, float]:
    """Records/s from start() to the last record, from the first record to the last, and per CPU second (this
    process's, every thread)."""
    # A fresh directory: a rerun with --dir restores nothing of the last one.
    state = Path(tempfile.mkdtemp(prefix=f"state-{state_type}-", dir=work))
    agent = Agent(agent_config(bootstrap, topic, THROUGHPUT_DETECTORS, "out: {type: console}", state, 300, state_type))
    t0, c0 = time.perf_counter(), time.process_time()
    first = None
    agent.start()
    while agent.records_in < n:
        if agent.error is not None:
            raise RuntimeError("agent failed") from agent.error
        if first is None and agent.records_in:
            first = time.perf_counter()
        time.sleep(0.005)
    end, cpu = time.perf_counter(), time.process_time() - c0
    agent.stop()
    return n / (end - t0), n / (end - (first or t0)), n / cpu


def live_record(team: str, rng: random.Random, tokens: int | None = None) -> bytes:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps(
        {
            "schemaType": "ModelInvocationLog",
            "timestamp": now,
            "accountId": "111122223333",
            "region": "us-east-1",
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "input": {"inputTokenCount": tokens or rng.randrange(100, 5000)},
            "output": {"outputTokenCount": 100},
            "requestMetadata": {"team": team, "feature": "f0"},
        }
    )


def latency(
    bootstrap: str, work: Path, probes: int, load_rate: int, state_type: str = "kafka"
) -> tuple[list[float], float]:
    """Probe latencies (s) and the background load reached (records/s) while they were sent."""
    topic = new_topic(bootstrap)
    received: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            doc = orjson.loads(body)
            if doc["status"] == "firing" and doc["series"].get("team", "").startswith("probe"):
                received.setdefault(doc["series"]["team"], time.time())
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *a: Any) -> None:  # noqa: A002
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    hook = f"hook: {{type: webhook, url: '{url}', secret: s}}"
    agent = Agent(
        agent_config(
            bootstrap,
            topic,
            LATENCY_DETECTORS,
            hook,
            Path(tempfile.mkdtemp(prefix="state-lat-", dir=work)),
            0,
            state_type,
        )
    )
    agent.start()
    # The background load comes from another process: a producer of tens of thousands of records a second in the
    # agent's own process would hold its interpreter lock as long as the agent does.
    mp = multiprocessing.get_context("spawn")
    stop = mp.Event()
    produced = mp.Value("q", 0)
    loader = mp.Process(target=load, args=(bootstrap, topic, load_rate, stop, produced), daemon=True)
    loader.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    while not agent.health.ready():
        time.sleep(0.1)
    time.sleep(3)
    load_started, load_before = time.time(), produced.value
    sent: dict[str, float] = {}
    rng = random.Random(2)
    for i in range(probes):
        team = f"probe-{i:03d}"
        sent[team] = time.time()
        producer.send(topic, value=live_record(team, rng, tokens=10_000), partition=i % 6)
        producer.flush()
        time.sleep(2.0)
    time.sleep(3)
    stop.set()
    load_seconds = time.time() - load_started
    loader.join(10)
    producer.close()
    agent.stop()
    server.shutdown()
    missing = [t for t in sent if t not in received]
    if missing:
        raise RuntimeError(f"probes never alerted: {missing}")
    return [received[t] - sent[t] for t in sent], (produced.value - load_before) / load_seconds


def load(bootstrap: str, topic: str, load_rate: int, stop: Any, produced: Any) -> None:
    """Live records on every partition at ``load_rate`` records/s until ``stop`` (a process of its own)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, batch_size=1 << 18)
    rng = random.Random(1)
    interval = 1.0 / load_rate
    nxt = time.perf_counter()
    n = 0
    while not stop.is_set():
        for p in range(6):  # every partition keeps moving: the watermark is the slowest partition's
            producer.send(topic, value=live_record(f"team-{rng.randrange(20):02d}", rng), partition=p)
        n += 6
        if n % 600 == 0:
            produced.value = n
        nxt += 6 * interval
        delay = nxt - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    produced.value = n
    producer.close(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--load-rate", type=int, default=3000, help="records/s of live background load")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--skip", choices=["throughput", "latency"], action="append", default=[], help="leave a part out")
    args = ap.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="finops-kbench-"))
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if existing else KafkaBroker(work / "kafka", heap="1g").start()
    bootstrap = existing or broker.bootstrap  # type: ignore[union-attr]
    try:
        print(f"machine: {machine()}")
        if "throughput" not in args.skip:
            path = bedrock_lines(work / f"bedrock-{args.records}.jsonl", args.records)
            topic = new_topic(bootstrap)
            n, secs = produce_file(bootstrap, topic, path)
            print(f"produced {n:,} records ({path.stat().st_size / n:.0f} bytes each) to 6 partitions in {secs:.1f}s")
            bare = bare_consume(bootstrap, topic, n)
            full = agent_consume(bootstrap, topic, n, work)
            local = agent_consume(bootstrap, topic, n, work, "local")
            print(
                "records/s, from start to the last record | from the first record to the last (steady state) | per "
                "CPU second of this process (every thread; moves less than wall time on a busy shared machine):"
            )
            print(f"(a) bare kafka-python consumer: {bare[0]:,.0f} | {bare[1]:,.0f} | {bare[2]:,.0f}")
            print(
                "(b) agent (decode, pre-aggregate, repartition, detect, checkpoints): "
                f"{full[0]:,.0f} | {full[1]:,.0f} | {full[2]:,.0f}"
            )
            print(
                f"(b)/(a) = {full[0] / bare[0]:.2f} | {full[1] / bare[1]:.2f} | {full[2] / bare[2]:.2f} (target ≥ 0.75)"
            )
            print(
                "(b') agent with local state, no repartition hop (one replica): "
                f"{local[0]:,.0f} | {local[1]:,.0f} | {local[2]:,.0f}"
            )
            print(
                f"(b')/(a) = {local[0] / bare[0]:.2f} | {local[1] / bare[1]:.2f} | {local[2] / bare[2]:.2f} "
                "(target ≥ 0.85)"
            )
        if "latency" in args.skip:
            return 0
        lats, reached = latency(bootstrap, work, args.probes, args.load_rate)
        lat = sorted(lats)
        p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
        print(
            f"alert latency under {args.load_rate:,} records/s live load ({reached:,.0f}/s reached, from another "
            f"process; {len(lat)} probes, produced → webhook received): p50 {statistics.median(lat):.2f}s, "
            f"p99 {p99:.2f}s, max {lat[-1]:.2f}s (target p99 < 1 s)"
        )
    finally:
        if broker is not None:
            broker.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
