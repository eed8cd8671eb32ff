from __future__ import annotations

import math

from agent.aggregate import Aggregator
from agent.model import Observation, cell, make_dims

C = cell(make_dims({"team": "a"}), ("cost_usd",))


def ob(ts: float, v: float = 1.0) -> Observation:
    return Observation(ts, C, (v,))


def test_tumbling_buckets_out_of_order_and_late() -> None:
    agg = Aggregator(bucket_seconds=60, allowed_lateness_seconds=120)
    agg.source_max["s"] = -math.inf
    assert agg.add("s", [ob(10), ob(70), ob(5), ob(65, 2.0)]) == []  # out of order within the lateness
    assert agg.seal() == []  # watermark 70: nothing complete yet (lateness 120 s)
    assert agg.add("s", [ob(250)]) == []
    sealed = agg.seal()  # watermark 250 → buckets ending at or before 130 are complete
    assert [(b, cells[C]) for b, cells in sealed] == [(0.0, [2.0]), (60.0, [3.0])]
    late = agg.add("s", [ob(30), ob(125), ob(200)])
    assert [o.ts for o in late] == [30]  # its bucket is sealed: counted as late, never merged
    rest = agg.seal(force_all=True)
    assert [(b, cells[C]) for b, cells in rest] == [(120.0, [1.0]), (180.0, [1.0]), (240.0, [1.0])]


def test_watermark_is_the_slowest_active_source() -> None:
    agg = Aggregator(60, 0)
    agg.source_max.update({"fast": -math.inf, "slow": -math.inf})
    agg.add("fast", [ob(600), ob(100)])
    assert agg.watermark() == -math.inf and agg.seal() == []  # "slow" has not said anything yet
    agg.add("slow", [ob(130), ob(200)])
    assert agg.watermark() == 200
    assert [b for b, _ in agg.seal()] == [60.0, 120.0]
    agg.set_idle("slow")  # a source that read everything no longer holds time back
    assert agg.watermark() == 600
    assert [b for b, _ in agg.seal()] == [180.0]


def test_quiet_live_streams_move_on_the_wall_clock_bounded_by_the_horizon() -> None:
    """All streams idle for the timeout: a live stream's time moves to the wall clock less the timeout, but never more
    than the horizon (the longest window) past its own last event; a finite input that was read to its end keeps
    its own time (a month replayed from files is not followed by days of zeros)."""
    import math

    now = [10_000_000.0]
    agg = Aggregator(3600, 60, idle_timeout_seconds=0.0, wall_clock=lambda: now[0], idle_horizon_seconds=3600)
    agg.source_max = {"demo": 1_000_000.0, "inbox": -math.inf}
    agg.set_idle("demo")
    agg.set_idle("inbox", live=True)
    assert agg.watermark() == 1_000_000.0  # the live stream never had data: nothing moves
    agg.source_max["inbox"] = 5_000_000.0
    assert agg.watermark() == 5_000_000.0 + 3600 + 60  # quiet long past its last event: one horizon (+ lateness)
    now[0] = 5_000_100.0
    assert agg.watermark() == 5_000_100.0  # a moment after its last event: the wall clock (less the 0 s timeout)
    agg.add("inbox", [])  # records again: it holds event time at its own
    assert agg.watermark() == 5_000_000.0


def test_a_quiet_streams_last_window_closes_whatever_second_of_it_the_last_record_fell_in() -> None:
    """A record ten seconds into its hour, then silence: the hour still closes (and no hour after it)."""
    now = [10_000_000.0]
    agg = Aggregator(3600, 300, idle_timeout_seconds=0.0, wall_clock=lambda: now[0], idle_horizon_seconds=3600)
    c = cell(make_dims({"team": "a"}), ("x",))
    agg.add("s", [Observation(36_000.0 + 10, c, (1.0,))])
    agg.set_idle("s", live=True)
    assert [b for b, _ in agg.seal()] == [36_000.0]
    assert agg.sealed_until == 36_000.0 + 3600  # the next hour stays open: silence is not made into zeros
