"""Helpers shared by the benchmark scripts: resumable JSONL results, markdown tables, plots."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeprune.bench import BenchConfig


# A bare ONNX Runtime timing loop, run as ``python -c ORT_LOOP PATH WARMUP_RUNS WARMUP_S MIN_RUNS
# MIN_S SEED``: the session options, input and loops of the device agent's benchmark (1 thread,
# sequential, all graph optimisations, a RandomState(SEED) input). Prints ``n median mean p90 cv``
# of the timed runs (ms).
ORT_LOOP = r"""
import sys, time
import numpy as np
import onnxruntime as ort
path, warmup_runs, warmup_s, min_runs, min_s, seed = sys.argv[1:7]
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.log_severity_level = 3
sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
x = np.random.RandomState(int(seed)).standard_normal(inp.shape).astype(np.float32)
feeds = {inp.name: x}
clock = time.perf_counter
t0, n = clock(), 0
while n < int(warmup_runs) or clock() - t0 < float(warmup_s):
    sess.run(None, feeds)
    n += 1
times, t0 = [], clock()
while len(times) < int(min_runs) or clock() - t0 < float(min_s):
    a = clock()
    sess.run(None, feeds)
    times.append((clock() - a) * 1000.0)
t = np.array(times)
print(len(t), np.median(t), t.mean(), np.percentile(t, 90), t.std() / t.mean())
"""


class Results:
    """Append-only JSONL results keyed by a tuple of fields; a rerun skips finished keys."""

    def __init__(self, path: Path, key_fields: Sequence[str]) -> None:
        self.path = path
        self.key_fields = tuple(key_fields)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        if path.is_file():
            for line in path.read_text().splitlines():
                line = line.strip()
                if line:
                    try:
                        self.rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash mid-write: the job reruns

    def key(self, row: dict[str, Any]) -> tuple:
        return tuple(row.get(k) for k in self.key_fields)

    def done(self, **key: Any) -> dict[str, Any] | None:
        want = tuple(key.get(k) for k in self.key_fields)
        for row in self.rows:
            if self.key(row) == want:
                return row
        return None

    def add(self, row: dict[str, Any]) -> None:
        row = {**row, "recorded_at": time.time()}
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(row)


def table_bench(seconds: float, threads: int = 1) -> BenchConfig:
    """The protocol for latency lookup-table entries (one short window per block), as the
    latency benchmarks measure them."""
    from edgeprune.bench import BenchConfig

    return BenchConfig(
        warmup_runs=3,
        warmup_seconds=0.05,
        min_runs=5 if seconds < 0.1 else 20,
        min_seconds=seconds,
        max_seconds=5,
        max_repeats=1,
        threads=threads,
    )


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    import onnxruntime
    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, threads={torch.get_num_threads()}"
    )


def plot(
    path: Path, title: str, series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str
) -> Path | None:
    """A PNG scatter/line plot with matplotlib when installed (dev extra); None otherwise."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = "os^vD<>phX*P"
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts = sorted(pts)
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker=markers[i % len(markers)],
            label=name,
            linewidth=1,
        )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
