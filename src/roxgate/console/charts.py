"""Traffic charts as geometry for inline SVG, drawn on the server.

No chart library and no script: the numbers become polyline coordinates and
axis labels here, the template writes them into an ``<svg>``, and the
stylesheet colours each series by its CSS class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

# The kinds drawn, in legend order (``expired`` is rare: it is in the totals table).
CHART_KINDS: tuple[str, ...] = ("accepted", "submitted", "delivered", "failed")

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28  # margins around the plot area


@dataclass(frozen=True, slots=True)
class Series:
    kind: str
    points: str  # "x,y x,y …" for <polyline points=…>
    total: int
    peak: int


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # x or y in the SVG's coordinates
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str  # what one point counts, e.g. "per minute"
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]

    @property
    def empty(self) -> bool:
        return all(s.total == 0 for s in self.series)


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (≥ 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def bucketed(per_minute: dict[int, int], first_minute: int, buckets: int, size: int) -> list[int]:
    """Sums of ``per_minute`` over ``buckets`` windows of ``size`` minutes from ``first_minute``."""
    sums = [0] * buckets
    for minute, n in per_minute.items():
        index = (minute - first_minute) // size
        if 0 <= index < buckets:
            sums[index] += n
    return sums


def traffic_chart(
    title: str,
    counts: dict[str, dict[int, int]],
    last_minute: int,
    buckets: int,
    size: int,
    label_every: int,
) -> Chart:
    """A chart of ``buckets`` points of ``size`` minutes each, the last one holding
    ``last_minute`` (Unix minutes), for each kind in :data:`CHART_KINDS`."""
    first_minute = (last_minute // size - buckets + 1) * size
    values = {
        kind: bucketed(counts.get(kind, {}), first_minute, buckets, size) for kind in CHART_KINDS
    }
    top = nice_ceiling(max([1, *(v for sums in values.values() for v in sums)]))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + plot_w * index / max(1, buckets - 1)

    def y(value: int) -> float:
        return TOP + plot_h * (1 - value / top)

    series = [
        Series(
            kind,
            " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(sums)),
            sum(sums),
            max(sums),
        )
        for kind, sums in values.items()
    ]
    x_ticks = [
        Tick(x(i), _clock((first_minute + i * size) * 60)) for i in range(0, buckets, label_every)
    ]
    y_ticks = [Tick(y(top * k // 4), f"{top * k // 4:,}") for k in range(5) if top * k % 4 == 0]
    return Chart(
        title=title,
        unit=f"per {size} minutes" if size > 1 else "per minute",
        width=WIDTH,
        height=HEIGHT,
        plot_left=LEFT,
        plot_right=WIDTH - RIGHT,
        plot_top=TOP,
        plot_bottom=HEIGHT - BOTTOM,
        series=series,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
    )


def _clock(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%H:%M")
