"""A real Apache Kafka 4.x broker for development and tests: fetched with Maven, KRaft, one node, 127.0.0.1.

    python -m scripts.kafka_broker fetch                  # resolve the jars once (cached)
    python -m scripts.kafka_broker run [--port N]         # start, print the bootstrap address, stop on Ctrl-C
    python -m scripts.kafka_broker start [--dir D] [--port N]   # start in the background, print the address
    python -m scripts.kafka_broker stop [--dir D] [--kill]      # SIGTERM (or SIGKILL: a crash), data kept
    python -m scripts.kafka_broker restart [--dir D] [--down SECONDS] [--kill]   # an outage of that length
    python -m scripts.kafka_broker status [--dir D]

``start`` / ``stop`` / ``restart`` work on a persistent directory (default
``~/.cache/finops-agent/broker``, or ``$FINOPS_KAFKA_DIR``): its ``broker.json`` keeps the ports and
the cluster id, so a restarted broker has the same log directory, node id, cluster id and
address, and clients reconnect to it as to a real broker back from an outage.

``fetch`` resolves ``org.apache.kafka:kafka_2.13`` and its dependencies from Maven Central with
``mvn dependency:copy-dependencies`` into ``$FINOPS_KAFKA_CACHE`` (default
``~/.cache/finops-agent/kafka-<version>``). ``KafkaBroker`` formats a fresh KRaft log directory,
starts a combined broker + controller on free loopback ports with a bounded heap and its logs in
a file, waits until a metadata request succeeds, and stops it (SIGTERM, then SIGKILL; or SIGKILL
at once, as a crash). Started again on the same directory, it keeps its data, ports and cluster id.
Tests use it through a fixture; ``KAFKA_BOOTSTRAP_SERVERS`` points them at an existing cluster.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def cache_lock(directory: Path) -> Iterator[None]:
    """Held while a cache is filled: processes that start at once (pytest-xdist workers) fill it once."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fetch() -> Path:
    """Resolve the broker's jars with Maven once; return the directory holding them."""
    with cache_lock(cache_dir()):
        return _fetch()


def _fetch() -> Path:
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
    """One KRaft node (broker + controller) on 127.0.0.1. ``start()`` blocks until it answers.

    Its ports, cluster id and node id live in ``<workdir>/broker.json``: a broker stopped (SIGTERM, or
    SIGKILL as a crash) and started again, by this object or by another one on the same directory,
    comes back on the same log directory and address.
    """

    NODE_ID = 1

    def __init__(self, workdir: str | Path | None = None, port: int | None = None, heap: str = "768m"):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kafka-"))
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None
        saved = self._load()
        if saved is not None:
            if port is not None and port != saved["port"]:
                raise BrokerError(f"{self.workdir} belongs to a broker on port {saved['port']}, not {port}")
            self.port, self.controller_port, self.cluster_id = (
                saved["port"],
                saved["controller_port"],
                saved["cluster_id"],
            )
        else:
            self.port = port or free_port()
            self.controller_port = free_port()
            self.cluster_id = cluster_id()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def _meta(self) -> Path:
        return self.workdir / "broker.json"

    @property
    def _pidfile(self) -> Path:
        return self.workdir / "broker.pid"

    def _load(self) -> dict[str, Any] | None:
        try:
            saved: dict[str, Any] = json.loads(self._meta.read_text())
            return saved
        except FileNotFoundError:
            return None

    def _save(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._meta.write_text(
            json.dumps({"port": self.port, "controller_port": self.controller_port, "cluster_id": self.cluster_id})
        )

    def _formatted(self) -> bool:
        return (self.workdir / "data" / "meta.properties").exists()

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
                    f"node.id={self.NODE_ID}",
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

    def pid(self) -> int | None:
        """The running broker's process id (started here or by another process on this directory), or None."""
        if self.proc is not None:
            return self.proc.pid if self.proc.poll() is None else None
        try:
            pid = int(self._pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None  # gone (or not Linux: then the pid file is not trusted either)
        return pid if str(self.workdir / "server.properties").encode() in cmdline else None  # not a reused pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 120.0) -> KafkaBroker:
        """Start (format the log directory the first time) and wait until a metadata request succeeds;
        raise :class:`BrokerError` if it does not within ``timeout`` seconds. A no-op when already running."""
        if self.running():
            return self
        libs = fetch()
        self._save()
        props = self._write_config()
        if not self._formatted():
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
        deadline = time.monotonic() + timeout
        for port in (self.port, self.controller_port):  # a broker just stopped may still hold its ports briefly
            while not port_free(port):
                if time.monotonic() > deadline:
                    raise BrokerError(f"port {port} of {self.workdir} is taken by another process")
                time.sleep(0.2)
        with open(self.workdir / "logs" / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pidfile.write_text(str(self.proc.pid))
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

    def stop(self, timeout: float = 30.0, *, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown; SIGKILL after ``timeout``), or with ``kill`` SIGKILL at once (a crash).
        The log directory stays: :meth:`start` brings the same broker back."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
            if not self._wait_gone(pid, 10 if kill else timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 10):
                    raise BrokerError(f"kafka (pid {pid}) did not exit")
        self.proc = None
        self._pidfile.unlink(missing_ok=True)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self.proc is not None and self.proc.pid == pid:
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # not this object's child: poll until the process is gone
            if not _running(pid):
                return True
            time.sleep(0.1)
        return False

    def restart(self, down: float = 0.0, *, kill: bool = False, timeout: float = 120.0) -> KafkaBroker:
        """Stop (or kill), stay down ``down`` seconds, start again on the same directory and address."""
        self.stop(kill=kill)
        time.sleep(down)
        return self.start(timeout)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (exited, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds: TIME_WAIT does not count
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


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
    """True when a metadata request to ``bootstrap`` succeeds. (The admin client waits 30 s for a first connection
    by default: a broker still starting would hold each look that long, where it answers a few seconds later.)"""
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, bootstrap_timeout_ms=3000)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()
    except Exception:
        return False


def default_dir() -> Path:
    return Path(os.environ.get("FINOPS_KAFKA_DIR", cache_dir().parent / "broker"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.kafka_broker")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="resolve the broker's jars with Maven (cached)")
    r = sub.add_parser("run", help="start in the foreground; Ctrl-C stops it (and deletes a temporary directory)")
    r.add_argument("--port", type=int)
    r.add_argument("--dir", type=Path, help="keep the data here (default: a temporary directory, deleted at exit)")
    cmds = {
        "start": "start in the background on DIR (its data, ports and cluster id are kept there)",
        "stop": "stop the broker of DIR (data kept)",
        "restart": "stop, stay down --down seconds, start again on the same directory and address",
        "status": "say whether the broker of DIR runs, and its address",
    }
    for name, text in cmds.items():
        c = sub.add_parser(name, help=text)
        c.add_argument("--dir", type=Path, default=default_dir(), help=f"data directory (default: {default_dir()})")
        if name == "start":
            c.add_argument("--port", type=int, help="only when DIR is new (default: a free port)")
        if name in ("stop", "restart"):
            c.add_argument("--kill", action="store_true", help="SIGKILL at once (a crash) instead of SIGTERM")
        if name == "restart":
            c.add_argument("--down", type=float, default=0.0, metavar="SECONDS", help="the outage's length")
    args = ap.parse_args(argv)
    try:
        return _command(args)
    except BrokerError as exc:
        print(f"kafka_broker {args.cmd}: {exc}", flush=True)
        return 1


def _command(args: argparse.Namespace) -> int:
    if args.cmd == "fetch":
        print(fetch())
        return 0
    if args.cmd == "run":
        # SIGTERM (a process manager, a CI step's timeout) stops the broker as Ctrl-C does: no Java left behind.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        broker = KafkaBroker(args.dir, port=args.port)
        try:  # (a signal right after the "ready" line, or during the start, still stops what was started)
            broker.start()
            print(f"kafka {KAFKA_VERSION} ready: bootstrap servers {broker.bootstrap} (Ctrl-C stops it)", flush=True)
            while broker.running():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            broker.stop() if args.dir else broker.cleanup()
        return 0
    broker = KafkaBroker(args.dir, port=getattr(args, "port", None))
    if args.cmd == "start":
        broker.start()
        print(
            f"kafka {KAFKA_VERSION} ready: bootstrap servers {broker.bootstrap} (data in {broker.workdir})", flush=True
        )
    elif args.cmd == "stop":
        broker.stop(kill=args.kill)
        print(f"kafka on {broker.bootstrap} stopped (data kept in {broker.workdir})", flush=True)
    elif args.cmd == "restart":
        t0 = time.monotonic()
        broker.restart(args.down, kill=args.kill)
        print(f"kafka ready again on {broker.bootstrap} after {time.monotonic() - t0:.1f} s", flush=True)
    else:
        state = f"running (pid {broker.pid()})" if broker.running() else "stopped"
        print(f"kafka on {broker.bootstrap}: {state}; data in {broker.workdir}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
