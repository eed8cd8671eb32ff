"""Fault-injection harness for the Kafka path: the same answer whatever happens (issue 13).

A seeded month of Bedrock logs is produced unkeyed to a partitioned topic, a day at a time, while one or two
agent replicas (real ``finops-agent run`` processes, ``state.type: kafka``) consume it and deliver alerts to a
real webhook receiver on loopback. Faults chosen by the seed strike meanwhile: ``kill -9`` of a replica at a
random moment (restarted after a pause), SIGTERM of one of two replicas (restarted later), broker outages of
random length (the broker is stopped and started again on its directory and address), and a slow webhook
receiver. When every window that can close has closed, the replicas are stopped and the run is checked against
a one-process backtest of the same records:

1. the same firing alert ids;
2. no alert event (id, status, severity: an escalation is its own event) delivered twice, except a delivery the
   run could not have checkpointed (at-least-once: a replica killed, or a broker outage, between the delivery and
   the checkpoint of its window); those are counted as ``re-sent``;
3. every series' learned-window count, last learned window and model equal to the backtest's (read from the
   changelog topic, numbers to 1e-9);
4. nothing dead-lettered that the backtest kept.

    python -m bench.chaos --seeds 20          # seeds 1..20, a table at the end; exit 1 if any failed
    python -m bench.chaos --only 3 17         # those seeds
    python -m bench.chaos --fixed             # the short fixed set that `make test` runs

``--workdir`` keeps every replica's log, its dead letters and, on a failure, the changelog as text.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import math
import os
import pickle
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

DETECTORS = """
detectors:
  token_spend:
    type: seasonal
    signal: token_cost_usd
    group_by: [team]
    contributors_by: [model]
    window_seconds: 3600
    min_impact_usd: 20
    new_series_usd: 25
    early_warning: false  # Kafka scale-out tasks do not warn early yet: a local reference must not either
  unit_cost:
    type: seasonal
    signal: token_cost_usd
    per: tokens
    per_scale: 1000
    group_by: [team]
    window_seconds: 3600
    min_impact_usd: 5
"""

REPLICA = """
sources:
  tokens:
    type: kafka
    bootstrap_servers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: {topic}
    session_timeout_ms: 10000
    decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}
{detectors}
sinks:
  hook: {{type: webhook, url: "{url}", timeout_seconds: 5, backoff_cap_seconds: 2}}
  metrics: {{type: prometheus, port: {port}}}
state: {{type: kafka, directory: {state}, partitions: {partitions}, checkpoint_interval_seconds: 1}}
dead_letter: {{path: {state}/dead-letter.jsonl}}
pipeline: {{max_age_days: 3650}}
telemetry: {{log_format: text, log_level: INFO}}
"""

BACKTEST = """
sources:
  tokens: {{type: file, path: {path}, decoder: {{type: bedrock, tag_dimensions: {{team: team}}}}}}
{detectors}
sinks:
  console: {{type: console}}
state: {{type: memory}}
dead_letter: {{path: {dead}}}
pipeline: {{max_age_days: 3650}}
"""


@dataclasses.dataclass
class Fault:
    at: float  # seconds after the first day is produced
    kind: str  # kill | term | outage | slow
    replica: int = 0
    length: float = 0.0  # down for (kill, term, outage) or slow for (slow), seconds

    def __str__(self) -> str:
        who = f" r{self.replica}" if self.kind in ("kill", "term") else ""
        return f"{self.kind}{who}@{self.at:.0f}s/{self.length:.0f}s"


@dataclasses.dataclass
class Plan:
    seed: int
    replicas: int
    partitions: int
    days: int
    pace: float  # seconds between days produced
    faults: list[Fault]


def plan(seed: int, days: int = 30) -> Plan:
    """The run a seed stands for: replicas, partitions and faults, all drawn from ``random.Random(seed)``."""
    rng = random.Random(seed)
    replicas = rng.choice((1, 2, 2))
    pace = 1.5
    span = days * pace
    faults: list[Fault] = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("kill", "kill", "term", "outage", "outage", "slow"))
        if kind == "term" and replicas == 1:
            kind = "kill"
        length = {
            "kill": rng.uniform(1, 15),
            "term": rng.uniform(5, 30),
            "outage": rng.choice((rng.uniform(5, 30), rng.uniform(30, 120))),
            "slow": rng.uniform(10, 40),
        }[kind]
        faults.append(Fault(rng.uniform(1, span), kind, rng.randrange(replicas), length))
    faults.sort(key=lambda f: f.at)
    return Plan(seed, replicas, rng.choice((3, 6, 12)), days, pace, faults)


def fixed_plans() -> list[Plan]:
    """What ``make test`` runs: two replicas with a SIGTERM, a kill -9, a 20 s outage and a slow receiver."""
    return [
        Plan(
            101,
            2,
            6,
            21,
            1.5,
            [Fault(4, "term", 1, 6), Fault(9, "slow", 0, 15), Fault(12, "kill", 0, 3), Fault(16, "outage", 0, 20)],
        ),
    ]


# -- the webhook receiver ------------------------------------------------------------------------------------------
class Receiver:
    """Records every delivery (alert id, status); answers after ``delay`` seconds (a slow receiver)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, str, dict[str, Any]]] = []
        self.paths: list[str] = []  # which replica delivered (each posts to /hook/<index>)
        self.delay = 0.0
        self.lock = threading.Lock()
        holder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if holder.delay:
                    time.sleep(holder.delay)
                doc = json.loads(body)
                with holder.lock:
                    holder.deliveries.append((doc["id"], doc["status"], doc))
                    holder.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    """One ``finops-agent run`` process; restarted on the same state directory (its outbox)."""

    def __init__(self, index: int, workdir: Path, config: str):
        self.index = index
        self.dir = workdir / f"replica-{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.config = self.dir / "config.yaml"
        text = config.replace("{port}", str(self.port)).replace("{state}", str(self.dir / "state"))
        self.config.write_text(text.replace("/hook", f"/hook/{index}"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.dir / "agent.log", "ab")  # noqa: SIM115 - the child holds it
        log.write(f"\n=== start {self.starts} at {time.time():.1f}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "-c", str(self.config), "--shutdown-timeout", "20"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int, wait: float = 40.0) -> int | None:
        if not self.running():
            return None
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


# -- the reference ---------------------------------------------------------------------------------------------------
def backtest(lines: list[bytes], workdir: Path) -> tuple[Any, dict[str, Any]]:
    """One process over the same records (file source, memory state): its collector and runners."""
    from agent.backtest import PointCollector
    from agent.config import load_config_text
    from agent.pipeline import Agent
    from agent.state import MemoryStateStore

    src = workdir / "backtest-in"
    src.mkdir(parents=True, exist_ok=True)
    (src / "month.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    text = BACKTEST.format(path=src, detectors=DETECTORS, dead=workdir / "backtest-dead-letter.jsonl")
    got = PointCollector()
    one = Agent(load_config_text(text), extra_sinks={"c": got}, state_store=MemoryStateStore())
    one.sinks.pop("console")
    one.start()
    try:
        if not one.wait_finished(600):
            raise RuntimeError("the backtest did not finish in 600 s")
    finally:
        one.stop(flush_windows=False)
    return got, one.runners


def _dead_letters(path: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    if path.exists():
        for line in path.read_bytes().splitlines():
            if line.strip():
                doc = json.loads(line)
                out[str(doc.get("reason_kind") or doc.get("kind") or doc.get("reason", "?")).split(":")[0]] += 1
    return out


def _close(a: Any, b: Any, path: str = "") -> str | None:
    """Where two model states differ (numbers to 1e-9 relative, float32 arrays to 1e-5), or None."""
    from array import array

    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            d = _close(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, (array, list, tuple)) and isinstance(b, (array, list, tuple)):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        rel = 1e-5 if isinstance(a, array) and a.typecode == "f" else 1e-9
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _close(x, y, f"{path}[{i}]") if not isinstance(x, float) else None
            if isinstance(x, float) and not (
                (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)
            ):
                return f"{path}[{i}]: {x} != {y}"
            if d:
                return d
        return None
    if isinstance(a, float) and isinstance(b, (int, float)):
        if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
            return None
        return f"{path}: {a} != {b}"
    if hasattr(a, "__dict__") and type(a) is type(b):  # a model: its attributes (arrays compared as numbers)
        return _close(vars(a), vars(b), path)
    return None if a == b else f"{path}: {a!r} != {b!r}"


def changelog(bootstrap: str, prefix: str, partitions: int) -> dict[bytes, bytes]:
    from agent.sources.kafka_scale import read_partitions

    topic = f"{prefix}-changelog"
    records = read_partitions({"bootstrap_servers": [bootstrap]}, [(topic, p) for p in range(partitions)])
    out: dict[bytes, bytes] = {}
    for recs in records.values():
        out.update(recs)
    return out


def task_progress(bootstrap: str, prefix: str, partitions: int) -> list[float]:
    """Each task's closed_until, from its changelog meta record (-inf: none yet)."""
    from agent.scaleout import parse_record_key

    out = {p: -math.inf for p in range(partitions)}
    for key, value in changelog(bootstrap, prefix, partitions).items():
        parsed = parse_record_key(key)
        if parsed is not None and parsed[1] is None and parsed[0].startswith("repartition/"):
            out[int(parsed[0].split("/")[1])] = pickle.loads(value)["closed_until"]
    return list(out.values())


class Delivery:
    """The month's records to the input topic, each exactly once, whatever the broker does meanwhile.

    Each record carries its index as key. kafka-python's producer can stay stuck after a broker restart (it
    neither sends nor expires its batches): :meth:`ensure` waits for the acknowledgements, and where they do
    not come, drops that producer, reads back which keys the topic holds and sends only the missing ones.
    """

    def __init__(self, bootstrap: str, topic: str):
        self.bs, self.topic = bootstrap, topic
        self.sent: dict[int, tuple[int, bytes]] = {}  # index -> (partition, value)
        self.futures: dict[int, Any] = {}
        self.resends = 0
        self.producer = self._producer()

    def _producer(self) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=self.bs, linger_ms=20, batch_size=256 * 1024, retries=2**31 - 1)

    def send(self, index: int, partition: int, value: bytes) -> None:
        from kafka.errors import KafkaTimeoutError

        self.sent[index] = (partition, value)
        with contextlib.suppress(KafkaTimeoutError):  # the broker away: sent again by ensure()
            self.futures[index] = self.producer.send(self.topic, key=b"%d" % index, value=value, partition=partition)

    def _present(self) -> set[int]:
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(bootstrap_servers=self.bs, enable_auto_commit=False, consumer_timeout_ms=5000)
        try:
            tps = [TopicPartition(self.topic, i) for i in sorted({pt for pt, _ in self.sent.values()})]
            ends = c.end_offsets(tps)
            c.assign(tps)
            c.seek_to_beginning(*tps)
            keys: set[int] = set()
            deadline = time.monotonic() + 60
            while any(c.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise TimeoutError("reading the topic back")
                for recs in c.poll(timeout_ms=1000).values():
                    keys.update(int(r.key) for r in recs)
            return keys
        finally:
            c.close()

    def ensure(self, log: Any, within: float = 900.0) -> None:
        from kafka.errors import KafkaError, KafkaTimeoutError

        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(KafkaTimeoutError, KafkaError):  # kafka-python 3 raises when it times out
                self.producer.flush(60)
            if len(self.futures) == len(self.sent) and all(f.succeeded() for f in self.futures.values()):
                self.producer.close(timeout=10)
                return
            with contextlib.suppress(Exception):
                self.producer.close(timeout=0)  # stuck or failed: drop its batches, then see what arrived
            self.futures = {}
            try:
                self.producer = self._producer()  # raises while the broker is away ("Unable to bootstrap")
                missing = sorted(set(self.sent) - self._present())
            except Exception as exc:  # the broker still away: look again
                log(f"  producer: cannot read the topic back yet ({type(exc).__name__}); looking again")
                time.sleep(5)
                continue
            if not missing:
                self.producer.close(timeout=10)
                return
            log(f"  producer: {len(missing)} record(s) not acknowledged; sending them again with a new producer")
            self.resends += len(missing)
            for i in missing:
                self.send(i, *self.sent[i])
        raise RuntimeError("the harness could not deliver the month to the topic")


# -- one run ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    plan: Plan
    ok: bool
    seconds: float
    alerts: int = 0
    series: int = 0
    resent: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


def month(seed: int, days: int, workdir: Path) -> list[bytes]:
    """A seeded month of Bedrock invocation logs (the demo generator: teams, models, injected incidents)."""
    from agent import demo

    out = workdir / "month"
    if not (out / "anomalies.json").exists():
        demo.generate(out, days=days, seed=seed)
    lines: list[bytes] = []
    for f in sorted((out / "bedrock").glob("*.jsonl.gz")):
        lines.extend(x for x in gzip.decompress(f.read_bytes()).splitlines() if x)
    return lines


def run(p: Plan, broker: Any, workdir: Path, log: Any = print) -> Outcome:

    from agent.model import parse_time
    from scripts.kafka_broker import create_topic

    t_begin = time.monotonic()
    if workdir.exists():  # a fresh run: no replica may find an earlier run's outbox or dead letters
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    lines = month(p.seed, p.days, workdir)
    by_day: dict[int, list[bytes]] = {}
    t0 = min(parse_time(json.loads(x)["timestamp"]) for x in lines[:2000])
    day0 = t0 - t0 % 86400
    for x in lines:
        by_day.setdefault(int((parse_time(json.loads(x)["timestamp"]) - day0) // 86400), []).append(x)
    ref, runners = backtest(lines, workdir)
    bs = broker.bootstrap
    topic = create_topic(bs, 6)
    recv = Receiver()
    config = REPLICA.format(
        bootstrap=bs,
        topic=topic,
        detectors=DETECTORS,
        url=recv.url,
        partitions=p.partitions,
        port="{port}",
        state="{state}",
    )
    replicas = [Replica(i, workdir, config) for i in range(p.replicas)]
    outcome = Outcome(p, False, 0.0)
    delivery = Delivery(bs, topic)
    timers: list[threading.Thread] = []
    killed_or_outage: list[tuple[float, float]] = []  # (from, to) wall times of kill -9s and outages

    def fault(f: Fault) -> None:
        start = time.time()
        if f.kind == "slow":
            recv.delay = 1.0
            time.sleep(f.length)
            recv.delay = 0.0
        elif f.kind == "outage":
            broker.stop()
            time.sleep(f.length)
            broker.start()
        else:
            r = replicas[f.replica]
            r.signal(signal.SIGKILL if f.kind == "kill" else signal.SIGTERM)
            time.sleep(f.length)
            r.start()
        if f.kind in ("kill", "outage"):
            killed_or_outage.append((start, time.time()))
        log(f"  seed {p.seed}: {f} done")

    try:
        for r in replicas:
            r.start()
        t_run = time.monotonic()
        pending = list(p.faults)
        for day in sorted(by_day):
            while pending and time.monotonic() - t_run >= pending[0].at:
                t = threading.Thread(target=fault, args=(pending.pop(0),), daemon=True)
                t.start()
                timers.append(t)
            for i, line in enumerate(by_day[day]):
                delivery.send(len(delivery.sent), i % 6, line)
            time.sleep(p.pace)
        for f in pending:
            t = threading.Thread(target=fault, args=(f,), daemon=True)
            t.start()
            timers.append(t)
        delivery.ensure(log)
        for t in timers:
            t.join(600)
        # Every window the streaming run can close (allowed lateness keeps the last hours open), closed by every
        # task and written to the changelog; then a quiet moment for the last deliveries.
        want = max(r.closed_until for r in runners.values())  # what the backtest closed
        deadline = time.monotonic() + 300
        while True:
            marks = task_progress(bs, topic, p.partitions)
            if min(marks) >= want:
                break
            for r in replicas:
                if not r.running():
                    outcome.problems.append(f"replica {r.index} exited ({r.proc and r.proc.returncode}); see its log")
                    r.start()
            if time.monotonic() > deadline:
                outcome.problems.append(f"windows not closed after 300 s: tasks at {marks}, want {want}")
                break
            time.sleep(2)
        time.sleep(3)
        for r in replicas:
            code = r.signal(signal.SIGTERM)
            if code not in (0, None):
                outcome.problems.append(f"replica {r.index} stopped with exit code {code}")
        _check(p, ref, runners, recv, bs, topic, replicas, workdir, killed_or_outage, outcome)
    finally:
        for r in replicas:
            if r.running():
                r.signal(signal.SIGKILL)
        recv.close()
        if not broker.running():
            broker.start()
    outcome.ok = not outcome.problems
    outcome.seconds = time.monotonic() - t_begin
    if not outcome.ok:
        _dump_changelog(bs, topic, p.partitions, workdir / "changelog.txt")
    return outcome


def _cutoff(ref: Any) -> float:
    """The end of the last window the streaming run is sure to close: two windows before the backtest's last."""
    last = max(pt.window_start for pts in ref.points.values() for pt in pts)
    return last - 3600


def _check(
    p: Plan,
    ref: Any,
    runners: dict[str, Any],
    recv: Receiver,
    bs: str,
    prefix: str,
    replicas: list[Replica],
    workdir: Path,
    unsafe: list[tuple[float, float]],
    out: Outcome,
) -> None:
    from agent.model import parse_time
    from agent.scaleout import parse_record_key

    cutoff = _cutoff(ref)

    def closed_before(d: dict[str, Any]) -> bool:
        return parse_time(d["started_at"]) + 3600 <= cutoff

    want = {d["id"] for d in ref.alerts if d["status"] == "firing" and closed_before(d)}
    got = {i for i, s, d in recv.deliveries if s == "firing" and closed_before(d)}
    out.alerts = len(want)
    if want != got:
        out.problems.append(f"firing ids differ: missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}")

    # An event (id, status; an escalation is a firing event of a higher severity, a restatement a new revision)
    # delivered twice: allowed only as at-least-once re-sends after a kill -9 or an outage.
    def event(d: dict[str, Any]) -> tuple[Any, ...]:
        return d["id"], d["status"], d["severity"], d.get("revision")

    seen = Counter(event(d) for _, _, d in recv.deliveries)
    twice = [k for k, n in seen.items() if n > 1]
    if twice and not unsafe:
        by = {k: [recv.paths[i] for i, d in enumerate(recv.deliveries) if event(d[2]) == k] for k in twice[:3]}
        out.problems.append(f"delivered twice without a kill or an outage: {by}")
    out.resent = sum(seen[k] - 1 for k in twice)
    # Every series' learned windows and model, from the changelog, against the backtest's runners.
    state: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
    for key, value in changelog(bs, prefix, p.partitions).items():
        parsed = parse_record_key(key)
        if parsed is not None and parsed[1] is not None and parsed[2] is not None:
            state[(parsed[1], parsed[2])] = pickle.loads(value)
    differ = []
    for name, r in runners.items():
        for key, model in r.models.items():
            last = r.last_learned.get(key, -math.inf)
            s = state.get((name, key))
            out.series += 1
            if s is None or s["model"] is None:
                differ.append(f"{name}{list(key)}: missing")
                continue
            m = s["model"]
            if m.n_learned != model.n_learned or s["last_learned"] != last:
                differ.append(
                    f"{name}{list(key)}: learned {m.n_learned} to {s['last_learned']}, backtest {model.n_learned} "
                    f"to {last}"
                )
                continue
            d = _close(model, m)
            if d:
                differ.append(f"{name}{list(key)}: model {d}")
    if differ:
        out.problems.append(f"{len(differ)} series differ: {differ[:3]}")
    dead: Counter[str] = Counter()
    for r in replicas:
        dead.update(_dead_letters(r.dir / "state" / "dead-letter.jsonl"))
    kept = _dead_letters(workdir / "backtest-dead-letter.jsonl")
    extra = {k: n - kept.get(k, 0) for k, n in dead.items() if n > kept.get(k, 0)}
    if extra:
        out.problems.append(f"dead-lettered beyond the backtest: {extra}")


def _dump_changelog(bs: str, prefix: str, partitions: int, path: Path) -> None:
    from agent.scaleout import parse_record_key

    try:
        rows = []
        for key, value in changelog(bs, prefix, partitions).items():
            parsed = parse_record_key(key)
            state = pickle.loads(value)
            if parsed is not None and parsed[1] is None:
                rows.append(
                    f"{parsed[0]} task closed_until={state['closed_until']} offset={state['offset']} "
                    f"inputs={state['inputs']}"
                )
            elif parsed is not None and state.get("model") is not None:
                rows.append(
                    f"{parsed[0]} {parsed[1]} {parsed[2]} learned {state['model'].n_learned} to {state['last_learned']}"
                )
        path.write_text("\n".join(sorted(rows)) + "\n")
    except Exception as exc:  # a diagnostic: never hides the run's own result
        path.write_text(f"could not read the changelog: {type(exc).__name__}: {exc}\n")


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| seed | replicas | partitions | faults | seconds | firing ids | series | re-sent (at-least-once) | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        faults = ", ".join(str(f) for f in o.plan.faults)
        result = "ok" if o.ok else "FAILED: " + "; ".join(o.problems)[:400]
        rows.append(
            f"| {o.plan.seed} | {o.plan.replicas} | {o.plan.partitions} | {faults} | {o.seconds:.0f} | {o.alerts} | "
            f"{o.series} | {o.resent} | {result} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="run seeds 1..N (default 5)")
    ap.add_argument("--only", type=int, nargs="+", help="run these seeds")
    ap.add_argument("--fixed", action="store_true", help="the fixed set that make test runs")
    ap.add_argument("--days", type=int, default=30, help="days of the seeded month (default 30)")
    ap.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    from scripts.kafka_broker import KafkaBroker

    work = args.workdir or Path(tempfile.mkdtemp(prefix="finops-chaos-"))
    plans = fixed_plans() if args.fixed else [plan(s, args.days) for s in (args.only or range(1, args.seeds + 1))]
    shutil.rmtree(work / "broker", ignore_errors=True)
    broker = KafkaBroker(work / "broker")
    broker.start()
    outcomes = []
    try:
        for pl in plans:
            print(
                f"seed {pl.seed}: {pl.replicas} replica(s), {pl.partitions} partitions, "
                f"faults {', '.join(map(str, pl.faults))}",
                flush=True,
            )
            o = run(pl, broker, work / f"seed-{pl.seed}", log=lambda m: print(m, flush=True))
            print(f"seed {pl.seed}: {'ok' if o.ok else 'FAILED'} in {o.seconds:.0f} s {o.problems}", flush=True)
            outcomes.append(o)
    finally:
        broker.cleanup()
    print(table(outcomes))
    print(f"logs in {work}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
