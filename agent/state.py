"""State stores: where detector, window and source-position state is checkpointed together.

``local`` writes one file per agent in a directory (atomic: temp file, fsync, rename), for a
single replica or a DaemonSet on a volume; ``memory`` keeps nothing (tests, backtests).
The interface (``load`` / ``save``) is what other stores (a Kafka changelog, an object store)
implement.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE_VERSION = 1


class StateStore:
    #: True where one replica at a time may hold the state (it waits for it with :meth:`acquire`).
    exclusive = False
    #: Told when the state is taken from this replica (the agent stops: it must not write it again).
    on_lost: Callable[[BaseException], None] | None = None

    @property
    def holding(self) -> bool:
        """Whether this replica may write the state (an exclusive store: once acquired, until lost or released)."""
        return True

    def describe(self) -> str:
        return type(self).__name__

    def acquire(self, stop: Any, poll_seconds: float | None = None) -> bool:
        """Wait until this replica may read and write the state (False: stopped while waiting)."""
        return True

    def release(self) -> None:
        """After the final checkpoint: another replica may take the state over."""
        return None

    def load(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def save(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class MemoryStateStore(StateStore):
    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        return self.state

    def save(self, state: dict[str, Any]) -> None:
        self.state = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


class LocalStateStore(StateStore):
    def __init__(self, directory: str | os.PathLike[str], name: str = "agent-state.pkl"):
        self.dir = Path(directory)
        self.path = self.dir / name

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, "rb") as fh:
                state = pickle.load(fh)
        except FileNotFoundError:
            return None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise RuntimeError(f"{self.path}: unsupported state version; move the file away to start fresh")
        return state

    def save(self, state: dict[str, Any]) -> None:
        state = {**state, "version": STATE_VERSION}
        atomic_write(self.path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never half of one: a
    temporary file beside it, fsynced, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_store(cfg: Any) -> StateStore:
    if cfg.type == "memory":
        return MemoryStateStore()
    return LocalStateStore(cfg.directory)
