"""A real Prometheus and a real Alertmanager for development and tests, on loopback.

    python -m scripts.prom_services install     # install Debian's packages when the binaries are missing (root)
    python -m scripts.prom_services where       # print the binaries found

The binaries are ``$PROMETHEUS_BIN``, ``$PROMTOOL_BIN`` and ``$ALERTMANAGER_BIN`` when set, else ``prometheus``,
``promtool`` and ``prometheus-alertmanager`` (Debian's name) or ``alertmanager`` on the ``PATH``. ``install`` runs
``apt-get install prometheus prometheus-alertmanager`` (after ``apt-get update`` if that fails) as root; elsewhere
it says how to point the tests at binaries of your own. The packages' system services are not used: tests start
their own processes (:class:`Alertmanager`, :class:`Prometheus`) on free loopback ports, in a directory of their
own, and stop them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

NAMES = {
    "prometheus": ("PROMETHEUS_BIN", ("prometheus",)),
    "promtool": ("PROMTOOL_BIN", ("promtool",)),
    "alertmanager": ("ALERTMANAGER_BIN", ("prometheus-alertmanager", "alertmanager")),
}


class ServiceError(RuntimeError):
    pass


def binary(name: str) -> str | None:
    """The binary for ``prometheus``, ``promtool`` or ``alertmanager`` (None when there is none)."""
    env, candidates = NAMES[name]
    if os.environ.get(env):
        return os.environ[env]
    for c in candidates:
        found = shutil.which(c)
        if found:
            return found
    return None


def require(name: str) -> str:
    found = binary(name)
    if found is None:
        env = NAMES[name][0]
        raise ServiceError(
            f"no {name} binary: run `python -m scripts.prom_services install` (as root: Debian's packages), "
            f"or set {env} to one"
        )
    return found


def install() -> None:
    missing = [n for n in NAMES if binary(n) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        envs = ", ".join(NAMES[n][0] for n in missing)
        raise ServiceError(f"{', '.join(missing)} missing and not root with apt-get here: install them, or set {envs}")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus", "prometheus-alertmanager"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    still = [n for n in NAMES if binary(n) is None]
    if still:
        raise ServiceError(f"installed the packages, but {', '.join(still)} still missing")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Service:
    """A process on a loopback port, in ``workdir`` (its config, data and log), ready when ``ready_path`` answers
    200."""

    name = ""
    ready_path = "/-/ready"

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> _Service:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 (the process writes it)
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"{self.name} not ready on {self.url} after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.workdir / f"{self.name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> _Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Alertmanager(_Service):
    """Alertmanager with ``config`` (a dict: its YAML), no cluster gossip."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config: dict[str, object], port: int | None = None):
        super().__init__(workdir, port)
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))

    def command(self) -> list[str]:
        return [
            require("alertmanager"),
            f"--config.file={self.workdir / 'alertmanager.yml'}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]


class Prometheus(_Service):
    """Prometheus with ``config`` (a dict: its YAML) and rule files copied beside it."""

    name = "prometheus"

    def __init__(self, workdir: Path, config: dict[str, object], port: int | None = None, args: tuple[str, ...] = ()):
        super().__init__(workdir, port)
        self.args = args  # more flags (a backfilled TSDB: --storage.tsdb.retention.time=100y)
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def command(self) -> list[str]:
        return [
            require("prometheus"),
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.args,
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.prom_services")
    ap.add_argument("cmd", choices=["install", "where"])
    args = ap.parse_args(argv)
    try:
        if args.cmd == "install":
            install()
        for name in NAMES:
            print(f"{name}: {binary(name) or 'missing'}")
    except (ServiceError, subprocess.CalledProcessError) as exc:
        print(f"prom_services {args.cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
