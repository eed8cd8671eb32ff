"""The canonical cost model: observations, dimensions and time helpers.

An *observation* is what a decoder produces from one record (or from a pre-aggregated block of
records): ``(ts, cell, values)`` where ``cell`` is an interned :class:`Cell` holding ``dims``
and ``signals``:

- ``ts`` is the event time in epoch seconds (UTC),
- ``dims`` is an interned, sorted tuple of ``(name, value)`` pairs (FOCUS-shaped names:
  ``provider``, ``billing_account``, ``region``, ``service``, ``model``, ``team``, ``node``,
  ``gpu`` ...),
- ``signals`` is a tuple of signal names shared by every observation of one decoder
  (``input_tokens``, ``token_cost_usd``, ``gpu_hours`` ...), and
- ``values`` holds one float per signal.

Plain tuples keep the per-event cost at a few hundred nanoseconds. Cells are interned objects
hashed by identity, so aggregation and roll-ups never re-hash the dimension tuples.
"""

from __future__ import annotations

import datetime as _dt
import sys
from typing import NamedTuple

Dims = tuple[tuple[str, str], ...]
Signals = tuple[str, ...]


class Cell:
    """One (dims, signals) combination, interned: equal cells are the same object.

    >>> cell(make_dims({"team": "a"}), ("cost_usd",)) is cell(make_dims({"team": "a"}), ("cost_usd",))
    True
    """

    __slots__ = ("dims", "signals")

    def __init__(self, dims: Dims, signals: Signals):
        self.dims = dims
        self.signals = signals

    def __reduce__(self) -> tuple[object, tuple[Dims, Signals]]:
        return (cell, (self.dims, self.signals))  # unpickling re-interns

    def __repr__(self) -> str:
        return f"Cell({self.dims!r}, {self.signals!r})"


# signals → dims → cell: by signals first, so that interning a cell keeps no (dims, signals) key tuple (64 bytes a cell;
# the signals tuples are a decoder's few).
_CELLS: dict[Signals, dict[Dims, Cell]] = {}
_CELLS_KEPT = [0]  # cells interned (at most _DIMS_CACHE_MAX)


def cell(dims: Dims, signals: Signals = ()) -> Cell:
    by_dims = _CELLS.get(signals)
    if by_dims is None:
        by_dims = _CELLS[signals] = {}
    c = by_dims.get(dims)
    if c is None:
        c = Cell(dims, signals)
        if _CELLS_KEPT[0] < _DIMS_CACHE_MAX:
            by_dims[dims] = c
            _CELLS_KEPT[0] += 1
    return c


class Observation(NamedTuple):
    ts: float
    cell: Cell
    values: tuple[float, ...]

    @property
    def dims(self) -> Dims:
        return self.cell.dims

    @property
    def signals(self) -> Signals:
        return self.cell.signals


_DIMS_CACHE: dict[Dims, Dims] = {}
_DIMS_CACHE_MAX = 1_000_000
_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}


def series_dims(names: tuple[str, ...], values: tuple[str, ...]) -> Dims:
    """A series' dimensions, ``(("team", "search"), ("model", "m"))``, from its group-by names and key, made of
    shared pairs: a point is kept per series, and 10,000 teams × 10 models need 10,010 pairs, not 200,000.

    >>> a = series_dims(("team",), ("search",))
    >>> a, a[0] is series_dims(("team", "model"), ("search", "m"))[0]
    ((('team', 'search'),), True)
    """
    out = []
    for pair in zip(names, values, strict=True):
        hit = _PAIRS.get(pair)
        if hit is None:
            hit = pair
            if len(_PAIRS) < _DIMS_CACHE_MAX:
                _PAIRS[pair] = pair
        out.append(hit)
    return tuple(out)


#: The value of a tag dimension on a record without that tag (a Bedrock call without ``requestMetadata.team``,
#: a billing line without the cost-allocation tag), as cost tools name it.
UNTAGGED = "(untagged)"


def make_dims(pairs: dict[str, str] | list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> Dims:
    """Return the interned dims tuple for ``pairs`` (sorted by name, empty values dropped).

    >>> make_dims({"team": "search", "model": "m1", "region": ""})
    (('model', 'm1'), ('team', 'search'))
    >>> make_dims([("b", "2"), ("a", "1")]) is make_dims({"a": "1", "b": "2"})
    True
    """
    items = pairs.items() if isinstance(pairs, dict) else pairs
    key = tuple(sorted((sys.intern(k), sys.intern(str(v))) for k, v in items if v not in ("", None)))
    hit = _DIMS_CACHE.get(key)
    if hit is not None:
        return hit
    if len(_DIMS_CACHE) < _DIMS_CACHE_MAX:
        _DIMS_CACHE[key] = key
    return key


def parse_time(value: object) -> float:
    """Parse an event time (ISO-8601 string, epoch seconds or epoch milliseconds) to epoch seconds.

    Raises ``ValueError`` for anything else.

    >>> parse_time("2024-09-01T10:00:00Z")
    1725184800.0
    >>> parse_time(1725184800000)
    1725184800.0
    """
    if isinstance(value, bool):
        raise ValueError("boolean is not a time")
    if isinstance(value, int | float):
        v = float(value)
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("time is not finite")
        if v > 1e14:  # microseconds
            return v / 1e6
        if v > 1e11:  # milliseconds
            return v / 1e3
        return v
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise ValueError("empty time")
        if s[-1] in "zZ":
            s = s[:-1] + "+00:00"
        d = _dt.datetime.fromisoformat(s)
        if d.tzinfo is None:
            d = d.replace(tzinfo=_dt.UTC)
        return d.timestamp()
    raise ValueError(f"unsupported time value of type {type(value).__name__}")


def iso(ts: float) -> str:
    """Format epoch seconds as an ISO-8601 UTC string.

    >>> iso(1725184800)
    '2024-09-01T10:00:00Z'
    """
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
