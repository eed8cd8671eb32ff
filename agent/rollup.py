"""Window roll-up: a detector's sealed buckets summed per window and series.

Each cell (dimensions + signals) is routed once — to its series key (the ``group_by`` values), the child that
names a contributor, and the indices of the watched, ``per`` and cost signals — and summed into per-series
accumulators ``[value, per value, cost value, children or None]`` of its window.
"""

from __future__ import annotations

from typing import Any

from agent.aggregate import Cells
from agent.alerts import (
    _MISS,
    SeriesKey,
)
from agent.model import Cell, Dims, cell


class WindowRollup:
    """The roll-up part of :class:`~agent.detect.DetectorRunner` (a mixin: the runner holds the state)."""

    cfg: Any
    group_by: tuple[str, ...]
    window: float
    windows: dict[float, dict[SeriesKey, list[Any]]]
    models: dict[SeriesKey, Any]
    dropped_series: int
    _routes: dict[Cell, Any]
    filtered_cells: int  # kinds of record (cells) with the signal that where / exclude left out
    counted_cells: int  # … and that it counts
    _track_children: bool

    # -- roll-up ---------------------------------------------------------------------------
    def _route(self, c: Cell) -> tuple[SeriesKey, Cell | None, int, int, int] | None:
        """Where a cell goes in this detector: series key, child cell and signal indices (cached)."""
        cfg = self.cfg
        dims, signals = c.dims, c.signals
        d = dict(dims)
        if cfg.signal not in signals or (cfg.per is not None and cfg.per not in signals):
            route = None
        elif not cfg.admits(d):  # left out by where / exclude: counted once per kind of record (the route is cached)
            route = None
            self.filtered_cells += 1
        else:
            self.counted_cells += 1
            key = tuple(d.get(k, "") for k in self.group_by)
            by = self.cfg.contributors_by
            if not self._track_children:
                child_dims: Dims = ()
            elif by is None:
                child_dims = tuple((k, v) for k, v in dims if k not in self.group_by)
            else:
                child_dims = tuple((k, v) for k, v in dims if k in by)
            child = cell(child_dims) if child_dims else None
            route = (
                key,
                child,
                signals.index(cfg.signal),
                signals.index(cfg.per) if cfg.per else -1,
                signals.index(cfg.cost_signal) if cfg.cost_signal in signals else -1,
            )
        if len(self._routes) < 1_000_000:
            self._routes[c] = route
        return route

    def route(self, c: Cell) -> tuple[SeriesKey, Cell | None, int, int, int] | None:
        """Where a cell goes in this detector (None: not its signal, or left out by where / exclude), cached."""
        route = self._routes.get(c, _MISS)
        return self._route(c) if route is _MISS else route

    def add_bucket(self, start: float, cells: Cells) -> None:
        w = start - start % self.window
        acc = self.windows.get(w)
        if acc is None:
            acc = self.windows[w] = {}
        self.rollup(cells, acc)

    def rollup(self, cells: Cells, acc: dict[SeriesKey, list[Any]], *, capped: bool = True) -> None:
        """Sum cells into per-series accumulators ``[value, per value, cost value, children or None]``.

        ``capped``: drop series beyond ``max_series`` (where the models live; an upstream that only
        pre-aggregates for another replica passes False).
        """
        routes = self._routes
        for cell_key, vals in cells.items():
            route = routes.get(cell_key, _MISS)
            if route is _MISS:
                route = self._route(cell_key)
            if route is None:
                continue
            key, child, i, j, c = route
            a = acc.get(key)
            if a is None:
                if capped and key not in self.models and len(self.models) >= self.cfg.max_series:
                    self.dropped_series += 1
                    continue
                a = acc[key] = [0.0, 0.0, 0.0, {} if child else None]
            v = vals[i]
            a[0] += v
            if j >= 0:
                a[1] += vals[j]
            if c >= 0:
                a[2] += vals[c]
            if child:
                ch = a[3]
                ch[child] = ch.get(child, 0.0) + v  # contributions in the watched signal (the numerator)
