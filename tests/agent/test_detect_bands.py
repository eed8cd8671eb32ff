"""Early warnings' bands of a window are dropped when it closes (before its points are made), not kept until the next
early check; a window still open keeps its band."""

from __future__ import annotations

from agent.model import cell, make_dims
from tests.agent.test_detect import SIG, H, feed, runner


def test_the_bands_of_a_closing_window_go_with_it() -> None:
    r = runner()
    feed(r, range(0, 24 * 3), 10.0)
    h = 24 * 3
    c = cell(make_dims({"team": "a", "model": "haiku"}), SIG)
    r.early(h * H + 1800, [(h * H, {c: [5.0, 100.0]}), ((h + 1) * H, {c: [1.0, 10.0]})])
    assert {k[0] for k in r._bands} == {h * H, (h + 1) * H}
    band = r._bands[(h + 1) * H, ("a",)]
    r.add_bucket(h * H, {c: [10.0, 1000.0]})
    r.close_until((h + 1) * H)
    assert set(r._bands) == {((h + 1) * H, ("a",))} and r._bands[(h + 1) * H, ("a",)] == band
    r.close_until((h + 1) * H)  # nothing closes: nothing dropped
    assert set(r._bands) == {((h + 1) * H, ("a",))}
