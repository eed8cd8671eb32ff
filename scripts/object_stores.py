"""Local object stores for development and tests: moto's S3 server and Azurite's Blob service, on 127.0.0.1.

    python -m scripts.object_stores s3      # start moto_server, print its endpoint URL, stop on Ctrl-C
    python -m scripts.object_stores blob    # start Azurite (npm, cached), print its connection string

``MotoS3`` runs ``moto_server`` (the ``moto[server]`` package, installed by the project's dev
extra) as a separate process; boto3 reaches it through ``endpoint_url``. ``Azurite`` installs
the npm package ``azurite`` once into ``$FINOPS_AZURITE_CACHE`` (default
``~/.cache/finops-agent/azurite-<version>``) and runs its Blob service. Both pick a free port,
write their logs to a file in their work directory, wait until they answer, and raise
:class:`ServiceError` (with the log's tail) when they cannot start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

AZURITE_VERSION = os.environ.get("FINOPS_AZURITE_VERSION", "3.37.0")
#: The emulator's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Service:
    name = "service"

    def __init__(self, workdir: str | Path | None = None, port: int | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"finops-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def probe_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 60.0) -> _Service:
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}: {self._tail()}")
            try:
                urllib.request.urlopen(self.probe_url(), timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self  # it answers (an error status still means the server is up)
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise ServiceError(f"{self.name} did not answer on port {self.port} within {timeout:.0f} s: {self._tail()}")

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class MotoS3(_Service):
    """moto in server mode: an S3 API on ``endpoint_url``; any access key, secret and region work."""

    name = "moto"

    def command(self) -> list[str]:
        exe = shutil.which("moto_server", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath]))
        if exe is None:
            raise ServiceError("moto_server not found: pip install 'moto[server]' (the project's dev extra)")
        return [exe, "-H", "127.0.0.1", "-p", str(self.port)]

    def probe_url(self) -> str:
        return f"{self.endpoint_url}/moto-api/"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def azurite_dir() -> Path:
    default = Path.home() / ".cache" / "finops-agent" / f"azurite-{AZURITE_VERSION}"
    return Path(os.environ.get("FINOPS_AZURITE_CACHE", default))


def fetch_azurite() -> Path:
    """``npm install azurite@<version>`` into the cache once; returns the ``azurite-blob`` launcher."""
    from scripts.kafka_broker import cache_lock

    with cache_lock(azurite_dir()):
        return _fetch_azurite()


def _fetch_azurite() -> Path:
    base = azurite_dir()
    exe = base / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceError("npm not found: Azurite needs Node.js and npm")
    base.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
            str(base),
            f"azurite@{AZURITE_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0 or not exe.exists():
        raise ServiceError(f"npm install azurite@{AZURITE_VERSION} failed: {proc.stderr[-2000:]}")
    return exe


class Azurite(_Service):
    """Azurite's Blob service with the well-known development account."""

    name = "azurite"

    def command(self) -> list[str]:
        exe = fetch_azurite()
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        return [
            str(exe),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(data),
            "--silent",
            "--skipApiVersionCheck",
        ]

    def probe_url(self) -> str:
        return f"{self.blob_endpoint}?comp=list"

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.object_stores")
    ap.add_argument("service", choices=["s3", "blob", "fetch"])
    ap.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    if args.service == "fetch":
        print(fetch_azurite())
        return 0
    svc: _Service = MotoS3(port=args.port) if args.service == "s3" else Azurite(port=args.port)
    try:
        svc.start()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(svc.endpoint_url if isinstance(svc, MotoS3) else svc.connection_string, flush=True)  # type: ignore[attr-defined]
    try:
        while svc.proc is not None and svc.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        svc.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
