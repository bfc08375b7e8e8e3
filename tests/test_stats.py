"""The hot-path histogram behind /metrics: Prometheus's bucket rules, exactly."""

from __future__ import annotations

import math

import pytest

from roxgate.stats import Histogram, RequestStats


def test_bucket_bounds_are_inclusive_and_cumulative() -> None:
    histogram = Histogram([0.1, 1.0])
    for seconds in (0.05, 0.1, 0.5, 1.0, 3.0, 7.0):
        histogram.observe(seconds)
    assert list(histogram.cumulative()) == [(0.1, 2), (1.0, 4), (math.inf, 6)]
    assert histogram.count == 6
    assert histogram.sum == pytest.approx(11.65)


def test_bounds_must_increase() -> None:
    for bad in ([1.0, 0.5], [0.5, 0.5]):
        with pytest.raises(ValueError):
            Histogram(bad)


def test_request_stats_count_by_code() -> None:
    stats = RequestStats()
    stats.observe("0000", 0.002)
    stats.observe("0000 (replay)", 0.001)
    stats.observe("2002", 0.2)
    assert stats.results == {"0000": 1, "0000 (replay)": 1, "2002": 1}
    assert stats.seconds.count == 3
