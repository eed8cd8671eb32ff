"""Configuration reload: on SIGHUP, or when the config file changes (a Kubernetes ConfigMap mounted as a volume is
updated in place), without losing state.

The new file is validated first, exactly as at start: an invalid one is refused with every error and its path, and
the agent runs on with the config it has (logged once per content: a SIGHUP and the file watch a moment later, or a
second SIGHUP, on the same refused file say nothing more). A valid one that differs replaces the running agent in
this process: the running one stops as at SIGTERM (sources stop, the final checkpoint: windows, models and source
positions), the new one restores that state and starts — detectors of the same name keep their series and models,
new ones start fresh, removed ones are dropped, a detector whose series changed shape (signal, grouping, window…
:data:`SHAPE`) starts them fresh, one whose thresholds or paging rules changed keeps them; the firing alerts of
removed and reshaped detectors are resolved (a receiver never keeps them open for ever). Sources resume from their
checkpointed positions: nothing is read twice or skipped. If the new config cannot start (a secret file missing, a
port taken), the old one is started again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from agent.config import ConfigError, StartupError, load_config
from agent.model import iso

log = logging.getLogger("agent")

#: A detector's settings that make its series and models what they are: a change of one of them starts its series
#: fresh; a change of the others (thresholds, paging rules) keeps them.
SHAPE = (
    "type",
    "signal",
    "per",
    "per_scale",
    "cost_signal",
    "group_by",
    "where",
    "exclude",
    "window_seconds",
    "model",
    "params",
)


class ConfigWatch:
    """Whether a config file changed since it was last seen (its inode, size and modification time: a ConfigMap
    update swaps a symlink, an editor writes a new file)."""

    def __init__(self, path: str):
        self.path = path
        self.seen = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # (missing for a moment while a ConfigMap is swapped: not a change yet)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        now = self._stat()
        if now is None or now == self.seen:
            return False
        self.seen = now
        return True


def changes(old: Any, new: Any) -> dict[str, list[str]]:
    """What differs between two configs, by section: detectors added, removed and changed; sources and sinks."""
    out: dict[str, list[str]] = {}
    for section in ("detectors", "sources", "sinks"):
        a, b = getattr(old, section), getattr(new, section)
        out[f"{section} added"] = sorted(set(b) - set(a))
        out[f"{section} removed"] = sorted(set(a) - set(b))
        out[f"{section} changed"] = sorted(n for n in set(a) & set(b) if a[n] != b[n])
    others = [k for k in type(old).model_fields if k not in ("detectors", "sources", "sinks")]
    out["other settings changed"] = [k for k in others if getattr(old, k) != getattr(new, k)]
    return {k: v for k, v in out.items() if v}


def reshaped(old: Any, new: Any) -> bool:
    """Whether a detector's new settings change what its series and models are (see :data:`SHAPE`)."""
    return any(getattr(old, f, None) != getattr(new, f, None) for f in SHAPE)


def retire(agent: Any, why: dict[str, str], timeout: float = 10.0) -> int:
    """Resolve the firing alerts of the detectors a reload removes or starts fresh (name → why), so that no
    receiver keeps an incident open for ever: one ``resolved`` document each, through the sinks."""
    if not why:
        return 0
    now = iso(time.time())

    def apply() -> int:
        n = 0
        for name, runner in agent.topology.runners():
            if name not in why:
                continue
            docs = [
                {**doc, "status": "resolved", "resolved_at": now, "summary": f"[{name}] resolved: {why[name]}"}
                for doc in runner.firing_documents()
            ]
            if docs:
                agent.publish([(name, [], docs)])
                n += len(docs)
        return n

    done = agent.on_pipeline(apply, timeout)
    return int(done or 0)


#: Per config path, the digest of the content last refused (logged once: the same refusal again says nothing more).
_REFUSED: dict[str, str] = {}


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def reload(
    agent: Any,
    cfg: Any,
    path: str,
    make: Callable[[Any], Any],
    timeout: float,
) -> tuple[Any, Any]:
    """The agent and config to run on after a reload of ``path`` (the same ones when nothing changed or the new
    config is refused). ``make(cfg)`` builds an agent (not started)."""
    digest = _digest(path)
    try:
        new_cfg = load_config(path)
    except ConfigError as exc:
        if digest is not None and _REFUSED.get(path) == digest:
            log.debug("config %s: unchanged since it was refused; the agent runs on with the config it has", path)
            return agent, cfg
        if digest is not None:
            _REFUSED[path] = digest
        log.error(
            "config %s not reloaded: %d error(s): %s; the agent runs on with the config it has",
            path,
            len(exc.errors),
            "; ".join(exc.errors),
        )
        return agent, cfg
    _REFUSED.pop(path, None)  # (valid: a later refusal of the same content as before is news again)
    diff = changes(cfg, new_cfg)
    if not diff:
        log.info("config %s: nothing changed", path)
        return agent, cfg
    fresh = {n for n in diff.get("detectors changed", []) if reshaped(cfg.detectors[n], new_cfg.detectors[n])}
    gone = {n: "the detector was removed by a config reload" for n in diff.get("detectors removed", [])}
    gone.update({n: "the detector's series were redefined by a config reload (they start fresh)" for n in fresh})
    log.info(
        "config %s changed (%s): restarting the pipeline in this process from its state%s",
        path,
        "; ".join(f"{k}: {', '.join(v)}" for k, v in diff.items()),
        f" ({', '.join(sorted(fresh))}: their series start fresh)" if fresh else "",
    )
    resolved = retire(agent, gone)
    if resolved:
        log.info("%d firing alert(s) of removed or redefined detectors resolved", resolved)
    agent.stop(timeout=timeout)  # (the final checkpoint the new agent restores)
    try:
        new = make(new_cfg)
        new.fresh_detectors = frozenset(fresh)
        new.start()
    except StartupError as exc:
        log.error("config %s cannot start (%s): starting the previous config again", path, exc)
        old = make(cfg)
        old.start()
        return old, cfg
    log.info(
        "config reloaded: %d sources, %d detectors, %d sinks",
        len(new_cfg.sources),
        len(new_cfg.detectors),
        len(new_cfg.sinks),
    )
    return new, new_cfg
