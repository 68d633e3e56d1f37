"""Measurement: the protocol, statistics, results with full context, and the SQLite store.

`measure` is the one entry point for every runtime (``ort``, ``trt``, ``torch-cuda``).
"""

from edgeprune.bench.config import BenchConfig
from edgeprune.bench.protocol import measure
from edgeprune.bench.result import KEY_FIELDS, Measurement, canonical_context, context_key
from edgeprune.bench.stats import Stats, compute_stats, percentile
from edgeprune.bench.store import Store, StoreError
from edgeprune.bench.trt import TrtBench, bench_from_trtexec

__all__ = [
    "KEY_FIELDS",
    "BenchConfig",
    "Measurement",
    "Stats",
    "Store",
    "StoreError",
    "TrtBench",
    "bench_from_trtexec",
    "canonical_context",
    "compute_stats",
    "context_key",
    "measure",
    "percentile",
]
