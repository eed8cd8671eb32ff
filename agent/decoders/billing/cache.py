"""What a billing decoder keeps between deliveries: the raw combinations of the files it read last and what
it made of them (dimensions, linear coefficients), so that a restated delivery of the same export — the
same combinations, other amounts — is summed in one DuckDB scan (see :mod:`agent.decoders.billing.combinations`).

One cache per decoder, so per source; an entry per *key*: the decoder's type and configuration (dimensions,
tags, cost measure, currency and exchange rates, GPU table) and the file's columns and types, so that a
change to any of them never meets combinations normalised under the old one. Memory is bounded: a few keys
(least recently used go first), each with at most ``max_combinations`` combinations (beyond that an entry
starts again from the file just read).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa


@dataclass
class Known:
    """Combinations and their normalisation, one row per combination (all arrays of the same length)."""

    combos: pa.Table  # the raw values (the columns the decoder reads, tags taken out), as DuckDB gave them
    hashes: np.ndarray  # DuckDB's hash of each combination's raw values (uint64): the join key
    cost: np.ndarray  # (value columns, combinations): cost per unit of each value column
    qty: np.ndarray  # (value columns, combinations): usage quantity per unit of each value column
    gpu: np.ndarray  # GPU-hours per unit of usage quantity
    dims: list[pa.Array]  # per dimension: its value (text, never null)
    try_warm: bool = True  # the last read under this key found no combination it did not know
    # Derived by :func:`agent.decoders.billing.combinations.numbered` (combinations → numbered dimensions):
    nid: pa.Array = field(default_factory=lambda: pa.array([], pa.int32()))  # per combination: its number
    first: pa.Array = field(default_factory=lambda: pa.array([], pa.int64()))  # per number: its first combination
    by_nid: list[pa.Array] = field(default_factory=list)  # per dimension: its value per number

    def __len__(self) -> int:
        return len(self.hashes)


class CombinationCache:
    """The combinations of the last files read, per key (see the module's docstring); thread-safe."""

    def __init__(self, max_keys: int = 8, max_combinations: int = 200_000):
        self.max_keys = max_keys
        self.max_combinations = max_combinations
        self._entries: OrderedDict[Hashable, Known] = OrderedDict()
        self._lock = threading.Lock()
        # Reads of Parquet files through DuckDB, by how they went (for tests and logs, not timing):
        self.warm = 0  # one scan: every line item's combination was known
        self.missed = 0  # known combinations tried, a line item's was not: listed and summed again
        self.cold = 0  # combinations listed first (nothing known, or the last read found new ones)

    def get(self, key: Hashable) -> Known | None:
        with self._lock:
            known = self._entries.get(key)
            if known is not None:
                self._entries.move_to_end(key)
            return known

    def put(self, key: Hashable, known: Known) -> None:
        with self._lock:
            self._entries[key] = known
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
