"""The config's ``route`` and ``silences`` (what :mod:`agent.notify` and :mod:`agent.silences` run), and the checks
that span them and the rest of the config (route sinks that exist, labels alerts have)."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.silences import Matcher


def _check_matchers(values: list[str]) -> list[str]:
    """Every matcher parses (all problems in one message)."""
    errors = []
    for m in values:
        try:
            Matcher.parse(m)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("; ".join(errors))
    return values


class RouteConfig(BaseModel):
    """A node of the route tree (Alertmanager's model; see agent/notify.py). Unset options come from the parent."""

    # (``continue`` is a Python keyword: the field is continue_, written `continue` in the file, and only so)
    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: list[str] = Field(default_factory=list, description="team=research, severity=~critical|error, ...")
    sinks: list[str] | None = Field(None, description="the sinks it notifies (root default: every paging sink)")
    group_by: list[str] | None = Field(None, description="labels whose values make a group (root default: detector)")
    group_wait_seconds: float | None = Field(None, ge=0, description="root default 30")
    group_interval_seconds: float | None = Field(None, ge=0, description="root default 300")
    repeat_interval_seconds: float | None = Field(None, ge=0, description="root default 14400; 0: never")
    min_impact_usd: float | None = Field(None, ge=0, description="root default 0")
    continue_: bool = Field(False, alias="continue")
    routes: list[RouteConfig] = Field(default_factory=list)

    _matchers = field_validator("matchers")(_check_matchers)


class SilenceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    matchers: list[str] = Field(min_length=1)
    starts_at: str | None = Field(None, description="default: from the start")
    ends_at: str
    comment: str = Field(min_length=1)
    created_by: str = Field(min_length=1)
    planned_change: bool = Field(False, description="a planned change (e.g. a team doubles its spend)")

    _matchers = field_validator("matchers")(_check_matchers)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        from agent.model import parse_time

        if v is not None:
            try:
                parse_time(v)
            except (ValueError, TypeError):
                raise ValueError(f"{v!r} is not a time (2026-12-03T00:00:00Z)") from None
        return v


def route_errors(cfg: Any) -> list[str]:
    """Routes name sinks that exist; a silence ends after it starts."""
    from agent.model import parse_time

    errors = []
    names = list(cfg.sinks)
    labels = {"detector", "severity", "kind", "signal", "status", "direction", "source"}  # (source: a data gap's)
    for det in cfg.detectors.values():
        labels.update(det.group_by)
    known_values = {"severity": ("warning", "error", "critical"), "status": ("firing", "resolved")}
    known_values["detector"] = (*cfg.detectors, *(f"source:{s}" for s in cfg.sources))  # (a silent source's)

    def matchers(values: list[str], path: str) -> None:
        """A matcher names a label alerts have, and for an equality on a label of known values, one of them (a
        typo matches nothing, silently: the route never pages, the silence never silences)."""
        for i, text in enumerate(values):
            try:
                m = Matcher.parse(text)
            except ValueError:
                continue  # (reported by the model's own check)
            if m.name not in labels:
                near = difflib.get_close_matches(m.name, sorted(labels), 1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (labels: {', '.join(sorted(labels))})"
                errors.append(f"{path}[{i}]: no alert has the label {m.name!r}{hint}")
            elif m.op in ("=", "!=") and m.name in known_values and m.value not in known_values[m.name]:
                choices = known_values[m.name]
                near = difflib.get_close_matches(m.value, list(choices), 1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" ({m.name}: {', '.join(choices)})"
                errors.append(f"{path}[{i}]: no alert has {m.name} {m.value!r}{hint}")

    def walk(r: Any, path: str) -> None:
        matchers(r.matchers, f"{path}.matchers")
        for i, sink in enumerate(r.sinks or []):
            if sink not in cfg.sinks:
                near = difflib.get_close_matches(sink, names, 1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (sinks: {', '.join(names)})"
                errors.append(f"{path}.sinks[{i}]: no sink {sink!r}{hint}")
        if r.group_by is not None and "..." in r.group_by and len(r.group_by) > 1:
            errors.append(f"{path}.group_by: '...' (no grouping) stands alone")
        for i, label in enumerate(r.group_by or []):
            if label != "..." and label not in labels:
                near = difflib.get_close_matches(label, sorted(labels), 1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (labels: {', '.join(sorted(labels))})"
                errors.append(f"{path}.group_by[{i}]: no alert has the label {label!r}{hint}")
        for i, child in enumerate(r.routes):
            walk(child, f"{path}.routes[{i}]")

    if cfg.route is not None:
        walk(cfg.route, "route")
    for i, sil in enumerate(cfg.silences):
        matchers(sil.matchers, f"silences[{i}].matchers")
        if sil.starts_at is not None and parse_time(sil.ends_at) <= parse_time(sil.starts_at):
            errors.append(f"silences[{i}].ends_at: before its starts_at")
    return errors
