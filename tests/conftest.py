"""Shared fixtures: the shared test data, the demo month, real HTTP receivers on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Agents without a Prometheus sink still serve /healthz and /readyz: on a free port in the tests (many agents,
# some at once), not on the default 9464.
os.environ.setdefault("FINOPS_HTTP_PORT", "0")
# The Kafka brokers the tests start and stop (scripts/kafka_broker.py, a dozen or more a run) are short-lived JVMs:
# C1 alone, without C2's optimising compiles, takes half the CPU to start one (about 6 s instead of 13 s on 2 cores,
# the storage format included) and the suite runs on 2 cores.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1")

ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``../shared/data`` (or ``$FINOPS_SHARED_DATA``); fails loudly when missing."""
    path = Path(os.environ.get("FINOPS_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path}: set FINOPS_SHARED_DATA", pytrace=False)
    return path


#: The longest tests (their path under tests/ and the start of their name) and about how long each takes (seconds,
#: setup included, 3 workers on 2 cores): ``make test`` (pytest-xdist, ``-n 3 --dist loadgroup``) starts them first,
#: the longest first, so that they run beside the many short ones instead of after them. Re-measure with
#: ``--durations=40`` when a test grows or shrinks by much.
LONGEST = {
    "agent/sources/test_kafka_outage.py::test_outages_of_10_45_and_120_s_are_waited_out": 420,
    "bench/test_cost_shaped.py::test_one_seed_through_the_default_detectors": 180,
    "agent/sources/test_kafka_outage.py::test_an_agent_started_while_the_broker_is_away_waits_for_it": 130,
    "bench/test_chaos.py::test_the_invariants_hold_under_the_fixed_faults": 125,
    "agent/sources/test_kafka_outage.py::test_stop_during_an_outage_keeps_its_deadline_and_the_next_start_resumes": 115,
    "agent/sources/test_kafka_outage.py::test_a_broker_restarts_on_its_directory_and_address": 110,
    "agent/test_run.py::test_run_default_finds_the_demo_anomalies": 100,
    "agent/sources/test_kafka.py::test_broker_outage_and_consumer_lag": 80,
    "agent/sources/test_kafka_scale.py::test_a_stopped_replica_hands_its_state_over_through_the_changelog": 75,
    "agent/test_backtest.py::test_finds_every_injected_anomaly_with_few_false_alerts": 70,  # builds demo_backtest
    "agent/sources/test_kafka_outage.py::test_sigterm_during_a_busy_stream_exits_in_time_and_a_restart_loses_and_r": 65,
    "detectors/test_checks.py::test_seasonal_state_per_series_is_small": 55,
    "agent/sources/test_kafka.py::test_month_on_six_partitions_with_kill_9_and_restart": 45,
    "agent/sources/test_kafka_scale.py::test_two_replicas_give_the_window_sums_of_one": 40,
    "agent/sources/test_kafka_invariance.py::test_the_same_alerts_and_learned_windows_with_1_6_and_12_partitions": 40,
    "agent/sources/test_kafka_outage.py::test_sigterm_to_a_foreground_broker_stops_its_java_too": 40,
    "agent/test_shared_data.py::test_every_shared_file_through_backtest_with_the_embedded_default": 35,
    "agent/test_cli.py::test_a_demo_month_from_before_the_azure_and_otel_samples_gets_them_and_keeps_the_rest": 30,
    "agent/sources/test_kafka_scale.py::test_a_quiet_topics_last_windows_close_on_the_wall_clock_as_in_one_process": 25,
    "agent/test_backtest.py::test_backtest_summary_says_what_min_impact_held_back": 25,
    "test_make.py::test_make_run_creates_the_inboxes_and_stops_cleanly_on_ctrl_c": 20,
    "agent/test_backtest.py::test_backtest_replays_export_files_through_an_export_sources_decoder": 20,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of ``LONGEST``, longest first, then the others in their order. xdist's scheduler hands each worker
    its next test while it runs one, so the fourth to sixth tests wait behind the first three: short ones go there."""

    def seconds(item: pytest.Item) -> int:
        return next((v for k, v in LONGEST.items() if item.nodeid.startswith(f"tests/{k}")), 0)

    longest = sorted((i for i in items if seconds(i)), key=seconds, reverse=True)
    others = [i for i in items if not seconds(i)]
    items[:] = longest[:3] + others[:3] + longest[3:] + others[3:]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_data()


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """``build(directory)`` once per test run, whichever pytest-xdist worker asks first; the others wait for it
    (a file lock) and read the same directory. A build that raised is tried again by the next one that asks,
    so every test that needs it fails loudly. For what tests only read (the demo month, its backtest)."""
    import fcntl
    import shutil

    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"built-once-{name}"
    root.mkdir(exist_ok=True)
    out = root / name
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / ".done").exists():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                build(out)
                (root / ".done").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded demo month (Bedrock logs + dcgm scrapes + anomalies.json), generated once per run (all workers
    share it: tests only read it)."""
    from agent import demo

    return built_once(tmp_path_factory, "demo", demo.generate)


@pytest.fixture(scope="session")
def demo_backtest(demo_month: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """``finops-agent backtest`` of the whole demo month (Bedrock, dcgm, Azure OpenAI, OTel) on the embedded default,
    with ``--report`` and ``--expected``, run once per run: (alerts.jsonl, report directory, what it printed).
    test_backtest and test_report read it."""
    import subprocess
    import sys

    def build(out: Path) -> None:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "agent",
                "backtest",
                "--input",
                str(demo_month / "bedrock"),
                str(demo_month / "dcgm"),
                str(demo_month / "azure-openai"),  # an Azure OpenAI account's metrics, as streamed to Event Hubs
                str(demo_month / "otel"),  # OTLP/JSON GenAI token usage, as the Collector writes it
                "--alerts-out",
                str(out / "alerts.jsonl"),
                "--report",
                str(out / "report"),
                "--expected",
                str(demo_month / "anomalies.json"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        (out / "stdout.txt").write_text(res.stdout)

    out = built_once(tmp_path_factory, "demo-backtest", build)
    return out / "alerts.jsonl", out / "report", (out / "stdout.txt").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    path: str
    headers: Any  # email.message.Message: case-insensitive lookups
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers from a script."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    responses: list[tuple[Any, ...]] = field(default_factory=list)  # (status, headers[, body])
    default: tuple[Any, ...] = (200, {})
    delays: list[float] = field(default_factory=list)  # seconds before answering, one per request (a slow receiver)
    lock: threading.Lock = field(default_factory=threading.Lock)
    event: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 15.0) -> bool:
        with self.event:
            return self.event.wait_for(lambda: pred(list(self.requests)), timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            rec = holder["r"]
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with rec.lock:
                status, headers, *said = rec.responses.pop(0) if rec.responses else rec.default
                delay = rec.delays.pop(0) if rec.delays else 0.0
            if delay:
                time.sleep(delay)
            answer = said[0] if said else b""  # (status, headers[, body])
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout): the request still arrived
            with rec.event:
                rec.requests.append(Received(self.path, self.headers, body))
                rec.event.notify_all()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = Receiver(server)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield holder["r"]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka broker: ``$KAFKA_BOOTSTRAP_SERVERS``, or one started here (fails loudly if it cannot)."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    from scripts.kafka_broker import BrokerError, KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the Kafka broker could not start: {exc}", pytrace=False)
    yield broker.bootstrap
    broker.cleanup()


@pytest.fixture
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker of this test's own, to stop and restart: ``bootstrap``, ``stop(kill=False)``, ``start()``,
    ``restart(down=0, kill=False)`` (scripts/kafka_broker.py's ``KafkaBroker``). It comes back on the same
    log directory, cluster id and address; a start that does not answer within its timeout raises, and the
    fixture fails loudly if the first start fails. Separate from ``kafka_bootstrap``, so outages never
    disturb other tests (and always a local broker, whatever ``KAFKA_BOOTSTRAP_SERVERS`` says)."""
    from scripts.kafka_broker import BrokerError, KafkaBroker

    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-own"))
    try:
        broker.start()
    except BrokerError as exc:
        pytest.fail(f"the Kafka broker could not start: {exc}", pytrace=False)
    yield broker
    broker.cleanup()


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:<port><path>: (status, body), errors included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(pred: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> bool:
    """Poll ``pred`` until it is truthy (True) or ``timeout`` passes (False)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server as a separate process on 127.0.0.1 (fails loudly if it cannot start).

    boto3 in this process reaches it with test credentials from the environment (the standard chain).
    """
    from scripts.object_stores import MotoS3, ServiceError

    for k, v in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ[k] = v
    server = MotoS3(tmp_path_factory.mktemp("moto"))
    try:
        server.start()
    except ServiceError as exc:
        pytest.fail(f"moto_server could not start: {exc}", pytrace=False)
    yield server.endpoint_url
    server.cleanup()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Azurite's Blob service (npm package, installed once into a cache); fails loudly if it cannot start."""
    from scripts.object_stores import Azurite, ServiceError

    server = Azurite(tmp_path_factory.mktemp("azurite"))
    try:
        server.start(timeout=600)
    except ServiceError as exc:
        pytest.fail(f"Azurite could not start: {exc}", pytrace=False)
    yield server
    server.cleanup()
