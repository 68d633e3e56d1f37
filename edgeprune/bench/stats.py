"""Latency statistics (computed on the host from raw per-run times)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edgeprune.vocab import Percentile


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of pre-sorted values; q in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


@dataclass(frozen=True)
class Stats:
    """Latency statistics in milliseconds; ``cv`` is std/mean (a fraction)."""

    n: int
    median: float
    p90: float
    p99: float
    mean: float
    std: float
    cv: float
    min: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def get(self, percentile_name: str) -> float:
        """The statistic a `Percentile` names ('median', 'p90', 'p99', 'mean', 'min').
        Raises `UsageError` for any other name."""
        return float(getattr(self, Percentile.parse(percentile_name, "statistic").value))


def compute_stats(times_ms: Sequence[float]) -> Stats:
    if not times_ms:
        raise ValueError("no timings to summarise")
    values = sorted(float(t) for t in times_ms)
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    std = math.sqrt(var)
    return Stats(
        n=n,
        median=percentile(values, 50),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        min=values[0],
        max=values[-1],
    )
