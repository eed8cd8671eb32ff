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

ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``../shared/data`` (or ``$FINOPS_SHARED_DATA``); fails loudly when missing."""
    path = Path(os.environ.get("FINOPS_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path}: set FINOPS_SHARED_DATA", pytrace=False)
    return path


#: The longest files first: with pytest-xdist (``make test``: ``-n 3 --dist loadgroup``) their tests run beside
#: the others instead of after them.
SLOW_FIRST = ("tests/agent/sources/test_kafka_outage.py", "tests/bench/test_chaos.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return shared_data()


@pytest.fixture(scope="session")
def demo_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded demo month (Bedrock logs + dcgm scrapes + anomalies.json), generated once."""
    from agent import demo

    out = tmp_path_factory.mktemp("demo")
    demo.generate(out)
    return out


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
