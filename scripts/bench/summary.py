"""Medians and spread of the rounds, and paired ratios between contenders.

A paired ratio is taken per round (A's figure over B's in the same round, seconds
apart) and then summarised, rather than dividing one median by another: a busy
moment of the shared machine slows both runs of a round, and the ratio keeps.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.contenders import Round

Results = dict[str, list[Round]]


@dataclass(frozen=True)
class Spread:
    median: float
    q1: float
    q3: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        if len(values) == 1:
            v = values[0]
            return cls(v, v, v, v, v, 1)
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, q1, q3, min(values), max(values), len(values))

    def relative_iqr(self) -> float:
        """Half the interquartile range over the median: the typical deviation of a round."""
        return (self.q3 - self.q1) / 2 / self.median if self.median else 0.0

    def show(self, fmt: str = ",.0f", unit: str = "") -> str:
        f = f"{{:{fmt}}}"
        median = f.format(self.median) + unit
        if self.count == 1:
            return f"{median} (1 round)"
        return (
            f"{median} (IQR {f.format(self.q1)}-{f.format(self.q3)}, "
            f"min-max {f.format(self.low)}-{f.format(self.high)})"
        )


def rates(results: Results, name: str) -> Spread:
    return Spread.of([r.rate for r in results[name]])


def cpu_us(results: Results, name: str) -> Spread:
    return Spread.of([r.cpu_us for r in results[name]])


def paired(
    results: Results, a: str, b: str, figure: Callable[[Round], float] = lambda r: r.rate
) -> Spread | None:
    """`figure` of a over b, round by round (None if either did not run)."""
    if a not in results or b not in results:
        return None
    pairs = zip(results[a], results[b], strict=False)
    return Spread.of([figure(x) / figure(y) for x, y in pairs])


def change(spread: Spread) -> str:
    """A paired ratio as a percentage change: `+12.3% (IQR +10.1..+14.0%, min-max ...)`."""

    def pct(ratio: float) -> str:
        return f"{(ratio - 1) * 100:+.1f}%"

    if spread.count == 1:
        return f"{pct(spread.median)} (1 round)"
    return (
        f"{pct(spread.median)} (IQR {pct(spread.q1)}..{pct(spread.q3)}, "
        f"min-max {pct(spread.low)}..{pct(spread.high)})"
    )


def noisiest_others(results: Results) -> float:
    return max((r.others for rounds in results.values() for r in rounds), default=0.0)
