"""In-process counters for ``/metrics``, cheap enough for the hot paths.

The intake and the SMPP session handle tens of thousands of requests and PDUs
a second, so they record into plain numbers (a bisect and two additions, no
lock: each is only ever touched from the event loop) and ``/metrics`` turns
them into Prometheus families when it is scraped (``roxgate.api.metrics``).
This module imports nothing heavy, so the carrier code can use it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Sequence

# Seconds. The intake answers in about a millisecond; a busy SQLite commit or a
# 500-recipient request takes tens of milliseconds; seconds mean trouble.
REQUEST_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# submit_sm → submit_sm_resp: sub-millisecond on a LAN simulator, tens of
# milliseconds from a real SMSC, up to response_timeout (10 s by default).
SUBMIT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    """Observations counted by bucket (upper bounds, Prometheus's ``le``), and their sum.

    ``counts[i]`` holds the observations in bucket ``i`` alone (not cumulative);
    the last slot is the ``+Inf`` bucket.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """``(upper bound, observations ≤ it)``, ending with ``(inf, total)``."""
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            yield bound, running


class RequestStats:
    """``/smsapi/send`` requests by result code and how long they took."""

    __slots__ = ("results", "seconds")

    def __init__(self) -> None:
        # Keyed by the code as logged ("0000", "2002", "0000 (replay)"...);
        # /metrics folds them to the four-digit code.
        self.results: Counter[str] = Counter()
        self.seconds = Histogram(REQUEST_BUCKETS)

    def observe(self, result: str, seconds: float) -> None:
        self.results[result] += 1
        self.seconds.observe(seconds)
