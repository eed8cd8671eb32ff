"""A real Apache Kafka 4.x broker for development and tests: fetched with Maven, KRaft, one node, 127.0.0.1.

    python -m scripts.kafka_broker fetch            # resolve the jars once (cached)
    python -m scripts.kafka_broker run [--port N]   # start, print the bootstrap address, stop on Ctrl-C

``fetch`` resolves ``org.apache.kafka:kafka_2.13`` and its dependencies from Maven Central with
``mvn dependency:copy-dependencies`` into ``$FINOPS_KAFKA_CACHE`` (default
``~/.cache/finops-agent/kafka-<version>``). ``KafkaBroker`` formats a fresh KRaft log directory,
starts a combined broker + controller on free loopback ports with a bounded heap and its logs in
a file, waits until a metadata request succeeds, and stops it (SIGTERM, then SIGKILL).
Tests use it through a fixture; ``KAFKA_BOOTSTRAP_SERVERS`` points them at an existing cluster.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

KAFKA_VERSION = os.environ.get("FINOPS_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.finops-agent</groupId><artifactId>kafka-broker-jars</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="${sys:kafka.logs.dir}/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class BrokerError(RuntimeError):
    pass


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "finops-agent" / f"kafka-{KAFKA_VERSION}"
    return Path(os.environ.get("FINOPS_KAFKA_CACHE", default))


def fetch() -> Path:
    """Resolve the broker's jars with Maven once; return the directory holding them."""
    libs = cache_dir() / "libs"
    marker = libs / ".complete"
    digest = hashlib.sha256(POM.encode()).hexdigest()
    if marker.exists() and marker.read_text() == digest:
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("mvn not found: install Maven (and Java 17+) to fetch Apache Kafka")
    work = Path(tempfile.mkdtemp(prefix="kafka-pom-"))
    (work / "pom.xml").write_text(POM)
    tmp_libs = libs.with_name("libs.tmp")
    shutil.rmtree(tmp_libs, ignore_errors=True)
    res = subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={tmp_libs}"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if res.returncode != 0:
        raise BrokerError(
            f"mvn could not fetch kafka_2.13:{KAFKA_VERSION}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp_libs.rename(libs)
    marker.write_text(digest)
    shutil.rmtree(work, ignore_errors=True)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (and not starting with
    ``-``, which the storage tool's argument parser would take for an option).

    >>> all(not cluster_id().startswith("-") for _ in range(200))
    True
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaBroker:
    """One KRaft node (broker + controller) on 127.0.0.1. ``start()`` blocks until it answers."""

    def __init__(self, workdir: str | Path | None = None, port: int | None = None, heap: str = "768m"):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kafka-"))
        self.port = port or free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None
        self.cluster_id = cluster_id()
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java not found: Java 17+ runs the Kafka broker")
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.xml'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.xml").write_text(LOG4J2)
        props = self.workdir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.workdir / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "log.segment.bytes=67108864",
                    "",
                ]
            )
        )
        return props

    def start(self, timeout: float = 120.0) -> KafkaBroker:
        libs = fetch()
        props = self._write_config()
        if not self._formatted:
            res = subprocess.run(
                self._java(
                    libs, "kafka.tools.StorageTool", "format", "--standalone", "-t", self.cluster_id, "-c", str(props)
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if res.returncode != 0:
                raise BrokerError(f"kafka storage format failed:\n{res.stdout}\n{res.stderr}")
            self._formatted = True
        out = open(self.workdir / "logs" / "stdout.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"kafka exited with {self.proc.returncode}; see {self.workdir / 'logs'}")
            if ready(self.bootstrap):
                return self
            time.sleep(0.5)
        self.stop()
        raise BrokerError(
            f"kafka did not answer on {self.bootstrap} within {timeout:.0f}s; see {self.workdir / 'logs'}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def create_topic(bootstrap: str, partitions: int = 6, prefix: str = "t") -> str:
    """Create a topic with a fresh random name (replication factor 1) and return its name."""
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def ready(bootstrap: str) -> bool:
    """True when a metadata request to ``bootstrap`` succeeds."""
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.kafka_broker")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch")
    r = sub.add_parser("run")
    r.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        print(fetch())
        return 0
    broker = KafkaBroker(port=args.port).start()
    print(f"kafka {KAFKA_VERSION} ready: bootstrap servers {broker.bootstrap} (Ctrl-C stops it)", flush=True)
    try:
        while broker.proc is not None and broker.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        broker.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
