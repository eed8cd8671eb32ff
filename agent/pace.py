"""A series' pace within a window: what share of a window's sum it usually has by each point of the window.

Early warnings (``agent/early.py``) compare an open window's sum so far with the expected window times this share,
and project the window at the pace seen so far. The share is learned per series at twelve checkpoints of its windows
(an exponentially weighted mean of ``sum at the checkpoint / the window's sum``), with how much it varies from window
to window (the mean squared log ratio around it). A series' state is one flat float32 array (:func:`new`): the
windows learned, the shares and spreads, and the sums at the checkpoints of the two newest windows watched (a window
waits ``allowed_lateness`` after its end while the next one is already watched).

>>> a = new()
>>> for n in range(4):  # four windows of a batch job: 90 % of the sum in the first twelfth
...     seen(a, n, 1 / 12, 9.0)
...     seen(a, n, 0.5, 9.5)
...     learn(a, n, 10.0)
>>> share, projected = projection(a, 9.0, 0.05)  # 3 minutes into an hour: 9 spent, the usual by then
>>> round(share, 2), round(projected, 1)
(0.9, 9.0)
"""

from __future__ import annotations

import math
from array import array

CHECKPOINTS = 12  # a window's pace is learned at 1/12, 2/12, ... 11/12 of it
WARMUP = 3  # windows learned before the learned pace replaces an even one
_K = CHECKPOINTS - 1
# Layout: windows learned, shares, their spreads, then two blocks (window number, sums at the checkpoints): the
# newest window watched and the one before it.
_N, _F, _S = 0, 1, 1 + _K
_B0 = 1 + 2 * _K
_B1 = _B0 + 1 + _K
_LEN = _B1 + 1 + _K
_WRAP = 1 << 23  # window numbers are kept modulo this (exact in a float32)
# Before a series has shown its own spread, a partial window is taken to be as noisy as a window of this many
# independent, equal events: its share at f has a relative variance of (1 - f) / (f × events). Conservative for the
# streams the agent reads (hundreds of calls an hour and more); a series' own windows replace it.
PRIOR_EVENTS = 20.0
# The projection is the lower bound of the window's sum at this many standard deviations of the pace's noise (a
# one-sided 99.87 % bound: a series is checked at eleven checkpoints of every window, and a minute's spend has heavy
# tails): a window whose start runs hot by chance is not a loop. Measured on the cost-shaped benchmark: at 2, early
# warnings in the first quarter of a window added false alerts; at 3, none before 80 % of a window.
BOUND_SD = 3.0


def _prior(f: float) -> float:
    return (1.0 - f) / (f * PRIOR_EVENTS)


def new() -> array[float]:
    """A series' pace before it has learned any window: even, with the prior spread (47 float32, 268 bytes: made
    by repetition, which allocates to size — from ``bytes`` the array over-allocates)."""
    a = array("f", [0.0]) * _LEN
    for k in range(1, CHECKPOINTS):
        f = k / CHECKPOINTS
        a[_F + k - 1] = f
        a[_S + k - 1] = _prior(f)
    for b in (_B0, _B1):
        a[b] = -1.0
        for k in range(_K):
            a[b + 1 + k] = math.nan
    return a


def seen(a: array[float], number: float, progress: float, y: float) -> None:
    """Window ``number`` (its start over the window's length) has summed ``y`` at ``progress``: kept for the
    checkpoint just passed (its first check past it)."""
    n = number % _WRAP
    if n == a[_B1]:
        b = _B1
    elif a[_B1] < 0 or (n - a[_B1]) % _WRAP < _WRAP // 2:  # a newer window: the newest becomes the one before
        a[_B0 : _B0 + 1 + _K] = a[_B1 : _B1 + 1 + _K]
        a[_B1] = n
        for k in range(_K):
            a[_B1 + 1 + k] = math.nan
        b = _B1
    elif n == a[_B0]:
        b = _B0  # the one before, still open (waiting for its lateness)
    else:
        return  # older still: not watched
    k = int(progress * CHECKPOINTS)  # the checkpoint at or before this moment
    if 1 <= k < CHECKPOINTS and a[b + k] != a[b + k]:
        a[b + k] = y


def learn(a: array[float], number: float, total: float) -> None:
    """Window ``number`` closed with ``total``: each checkpoint seen in it teaches its share, then the spread around
    the share (the checkpoints a window was not watched at are unknown, not zero)."""
    n = number % _WRAP
    b = _B1 if n == a[_B1] else _B0 if n == a[_B0] else -1
    if b < 0:
        return
    a[b] = -1.0
    if not total > 0:
        return
    learned = a[_N]
    r = max(0.05, 1.0 / (learned + 1))
    rs = max(0.05, 1.0 / (learned + 2))  # (the prior spread counts as one window)
    for k in range(_K):
        part = a[b + 1 + k]
        if part == part:
            share = min(max(part / total, 1e-3), 1.0)
            a[_F + k] += r * (share - a[_F + k])
            d = math.log(share / max(a[_F + k], 1e-3))
            a[_S + k] += rs * (d * d - a[_S + k])
    a[_N] = learned + 1


def usual_share(a: array[float] | None, k: int) -> float:
    """The share of the window usually reached at checkpoint ``k`` (1–11): learned, or even before ``WARMUP``."""
    if a is None or a[_N] < WARMUP:
        return k / CHECKPOINTS
    return max(float(a[_F + k - 1]), 1e-3)


def bound(a: array[float] | None, progress: float) -> tuple[float, float]:
    """The share of the window's sum usually reached by ``progress`` — the next checkpoint's (at least as much as by
    now) — and the factor that takes a projection at that share to its lower bound (1 at the window's end). Even,
    with the prior spread, until the series has learned ``WARMUP`` windows."""
    k = min(CHECKPOINTS, math.floor(progress * CHECKPOINTS) + 1)
    if k >= CHECKPOINTS:
        return 1.0, 1.0
    if a is None or a[_N] < WARMUP:
        f = k / CHECKPOINTS
        return f, math.exp(-BOUND_SD * math.sqrt(_prior(f)))
    return max(a[_F + k - 1], 1e-3), math.exp(-BOUND_SD * math.sqrt(a[_S + k - 1]))


def projection(a: array[float] | None, y: float, progress: float) -> tuple[float, float]:
    """The share of the window usually reached by ``progress``, and the window's sum projected at the pace seen so
    far (``y`` over that share) at its lower bound — never less than what is already spent."""
    share, low = bound(a, progress)
    return share, max(y, y / share * low)


def earlier(a: array[float], number: float, progress: float) -> tuple[int, float] | None:
    """The newest checkpoint of window ``number`` at least half a checkpoint before ``progress``, with the sum seen
    there: the window's recent rate is measured from it (over half to one and a half checkpoints: minutes of an
    hourly window, not one check's noise); None before the first such checkpoint or where none was seen."""
    n = number % _WRAP
    b = _B1 if n == a[_B1] else _B0 if n == a[_B0] else -1
    if b < 0:
        return None
    for k in range(min(_K, int(progress * CHECKPOINTS)), 0, -1):
        y = a[b + k]
        if y == y and progress - k / CHECKPOINTS >= 0.5 / CHECKPOINTS:
            return k, float(y)
    return None


def learned(a: array[float]) -> int:
    """Windows the series has learned its pace from."""
    return int(a[_N])


def share_at(a: array[float], k: int) -> float:
    """The learned share at checkpoint ``k`` (1–11)."""
    return float(a[_F + k - 1])
