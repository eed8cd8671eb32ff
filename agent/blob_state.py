"""Agent state in an Azure Blob (``state.type: blob``): no volume needed, and one active replica with standbys.

The state (windows, detector models, source positions: what the local store writes to a file) is one blob,
written whole at every checkpoint. A **lease** on it makes one replica the writer: the replica that holds the lease
restores the state and consumes; any other waits as a standby (alive, and ready as a standby: ``/readyz`` says so)
until the lease is released (the active replica stopped) or expires (it died: ``lease_seconds`` after its last
renewal), then restores the state where the last checkpoint left it and carries on. With the Event Hubs source the
standby gets the partitions with their Blob checkpoints, and the events the restored state already counts are
skipped: the state follows the partitions to the other replica and nothing is counted twice.

A replica that loses its lease (its renewals failed for ``lease_seconds``: a network partition, a paused process;
or an operator broke it) stops at once, before its next checkpoint could overwrite the new holder's state: the
agent exits 1 and the orchestrator restarts it, as a standby.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
import time
from typing import Any

from pydantic import Field

from agent.azure_blob import BlobContainerConfig, blob_service
from agent.state import STATE_VERSION, StateStore

log = logging.getLogger(__name__)


class BlobStateConfig(BlobContainerConfig):
    blob: str = Field("finops-agent/agent-state.pkl", min_length=1, description="the state blob's name")
    lease_seconds: int = Field(
        30, ge=15, le=60, description="a standby takes over this long after the active replica's last renewal"
    )


class StateLeaseLost(RuntimeError):
    """Another replica may hold the state now: this one must not write it again (the agent stops)."""

    fatal = True


class BlobStateStore(StateStore):
    """The state blob, written only under this replica's lease (see the module docstring)."""

    exclusive = True

    def __init__(self, cfg: BlobStateConfig, where: str = "state.blob"):
        self.cfg = cfg
        self.where = where
        self._service: Any = None
        self.blob: Any = None
        self.lease: Any = None
        self.lost = threading.Event()
        self._released = False
        self._renewed = 0.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def describe(self) -> str:
        return f"blob {self.cfg.container}/{self.cfg.blob}"

    @property
    def holding(self) -> bool:
        return self.lease is not None and not self.lost.is_set()

    def _client(self) -> Any:
        if self.blob is None:
            from azure.core.exceptions import ResourceExistsError

            self._service = blob_service(self.cfg, self.where)
            container = self._service.get_container_client(self.cfg.container)
            with contextlib.suppress(ResourceExistsError):
                container.create_container()
            self.blob = container.get_blob_client(self.cfg.blob)
            with contextlib.suppress(ResourceExistsError):  # the blob a lease is taken on (empty: no state yet)
                self.blob.upload_blob(b"", overwrite=False)
        return self.blob

    # -- the lease ---------------------------------------------------------------------------------------------
    def acquire(self, stop: threading.Event, poll_seconds: float | None = None) -> bool:
        """Wait until this replica holds the lease (True), or ``stop`` is set (False)."""
        from azure.core.exceptions import HttpResponseError

        blob = self._client()
        poll = poll_seconds if poll_seconds is not None else max(1.0, self.cfg.lease_seconds / 5)
        waiting_logged = False
        while not stop.is_set():
            try:
                self.lease = blob.acquire_lease(lease_duration=self.cfg.lease_seconds)
            except HttpResponseError as exc:
                if exc.status_code != 409:  # 409: leased by another replica
                    raise
                if not waiting_logged:
                    log.info("standby: %s is held by another replica; taking over when it is released", self.describe())
                    waiting_logged = True
                stop.wait(poll)
                continue
            self._renewed = time.monotonic()
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew, name="state-lease", daemon=True)
            self._renewer.start()
            log.info("holding the state lease on %s", self.describe())
            return True
        return False

    def _renew(self) -> None:
        from azure.core.exceptions import HttpResponseError

        every = self.cfg.lease_seconds / 3
        while not self._stop.wait(every):
            try:
                self.lease.renew()
                self._renewed = time.monotonic()
                continue
            except HttpResponseError as exc:
                if exc.status_code in (409, 412):  # the lease is someone else's now (or was broken)
                    self._lose(f"the state lease on {self.describe()} was taken over ({exc.status_code})")
                    return
                error = f"HTTP {exc.status_code}"
            except Exception as exc:  # noqa: BLE001 - the network: retried until the lease would have expired
                error = type(exc).__name__
            if time.monotonic() - self._renewed >= self.cfg.lease_seconds:
                self._lose(
                    f"the state lease on {self.describe()} could not be renewed for {self.cfg.lease_seconds} s "
                    f"({error}): another replica may hold it"
                )
                return

    def _lose(self, why: str) -> None:
        self.lost.set()
        exc = StateLeaseLost(why)
        if self.on_lost is not None:
            self.on_lost(exc)
        else:
            log.error("%s", why)

    def release(self) -> None:
        """Stopping (after the final checkpoint): a standby takes over at once, not after the lease expires."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(5)
        if self.lease is not None and not self.lost.is_set():
            try:
                self.lease.release()
            except Exception as exc:  # noqa: BLE001 - it expires on its own
                log.warning("releasing the state lease failed (%s): a standby takes over when it expires", exc)
        self.lease = None

    # -- load / save -----------------------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        data = self._client().download_blob(lease=self.lease).readall()
        if not data:
            return None
        state = pickle.loads(data)
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise RuntimeError(f"{self.describe()}: unsupported state version; delete the blob to start fresh")
        return state

    def save(self, state: dict[str, Any]) -> None:
        from azure.core.exceptions import HttpResponseError

        if not self.holding:
            raise StateLeaseLost(f"{self.describe()}: this replica does not hold the state lease; not writing")
        data = pickle.dumps({**state, "version": STATE_VERSION}, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._client().upload_blob(data, overwrite=True, lease=self.lease)
        except HttpResponseError as exc:
            if exc.status_code == 412:  # the lease does not match: another replica holds it
                self._lose(f"{self.describe()}: written under a lease that is not ours any more")
                raise StateLeaseLost(f"{self.describe()}: the state lease was lost") from exc
            raise
