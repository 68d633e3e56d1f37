"""Measurement: the protocol, statistics, results with full context, and the SQLite store."""

from edgeprune.bench.protocol import BenchConfig, measure
from edgeprune.bench.result import KEY_FIELDS, Measurement, context_key
from edgeprune.bench.stats import Stats, compute_stats, percentile
from edgeprune.bench.store import Store

__all__ = [
    "KEY_FIELDS",
    "BenchConfig",
    "Measurement",
    "Stats",
    "Store",
    "compute_stats",
    "context_key",
    "measure",
    "percentile",
]
