"""trtexec's output, read: the text summary and the ``--exportTimes`` JSON (pure, no TensorRT).

`parse_trtexec_log` reads any version's text output from 8.0 to 10.x into a `TrtexecReport`
(GPU compute time and host latency kept apart). `parse_export_times` reads per-query times;
TensorRT 8.2 writes warm-up queries into that JSON too, so entries with
``startComputeMs < warmUp`` are dropped, as trtexec itself does. Statistics over these times are
the measurement layer's job (`edgeprune.bench.trt`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.errors import EdgePruneError
from edgeprune.export.trt.version import TrtVersion, version_from_log


class TrtexecOutputError(EdgePruneError):
    """trtexec's output could not be read (a failed run, or a format this parser does not know)."""


@dataclass(frozen=True)
class MetricSummary:
    """One line of trtexec's performance summary (milliseconds)."""

    min: float
    max: float
    mean: float
    median: float
    percentiles: dict[float, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_METRIC_NAMES = {
    "Latency": "latency",
    "End-to-End Host Latency": "end_to_end",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "gpu_compute",
    "D2H Latency": "d2h",
}
_METRIC_RE = re.compile(
    r"\]\s*(Latency|End-to-End Host Latency|Enqueue Time|H2D Latency|GPU Compute Time|D2H Latency):"
    r"\s*(min\s*=.*)$"
)
_FIELD_RE = re.compile(
    r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([-\d.eE+]+)\s*ms"
)
_NUMBER = r"([-\d.eE+]+)"


@dataclass
class TrtexecReport:
    """What a trtexec run printed (every field None when the output does not have it)."""

    version: TrtVersion | None = None
    passed: bool | None = None
    command: str | None = None
    throughput_qps: float | None = None
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    total_host_walltime_s: float | None = None
    total_gpu_compute_s: float | None = None
    warmup_ms: float | None = None
    duration_s: float | None = None
    queries: int | None = None
    warmup_queries: int | None = None
    engine_build_s: float | None = None
    unstable_cv_percent: float | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["version"] = str(self.version) if self.version else None
        return d


def _float(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def parse_trtexec_log(text: str) -> TrtexecReport:
    """Read trtexec's text output (any version from 8.0 to 10.x) into a `TrtexecReport`."""
    rep = TrtexecReport(version=version_from_log(text))
    status = re.findall(
        r"^&&&& (PASSED|FAILED|WAIVED) TensorRT\.trtexec[^#\n]*(?:# (.*))?$", text, re.M
    )
    if status:
        rep.passed = status[-1][0] == "PASSED"
        rep.command = status[-1][1] or None
    for line in text.splitlines():
        m = _METRIC_RE.search(line)
        if m:
            values: dict[str, float] = {}
            pct: dict[float, float] = {}
            for name, p, value in _FIELD_RE.findall(m.group(2)):
                if p:
                    pct[float(p)] = float(value)
                else:
                    values[name] = float(value)
            if {"min", "max", "mean", "median"} <= set(values):
                rep.metrics[_METRIC_NAMES[m.group(1)]] = MetricSummary(
                    values["min"], values["max"], values["mean"], values["median"], pct
                )
        elif "] [W] " in line:
            rep.warnings.append(line.split("] [W] ", 1)[1].strip())
        elif "] [E] " in line:
            rep.errors.append(line.split("] [E] ", 1)[1].strip())
    rep.throughput_qps = _float(rf"Throughput: {_NUMBER} qps", text)
    rep.total_host_walltime_s = _float(rf"Total Host Walltime: {_NUMBER} s", text)
    rep.total_gpu_compute_s = _float(rf"Total GPU Compute Time: {_NUMBER} s", text)
    rep.engine_build_s = _float(rf"Engine built in {_NUMBER} sec", text)
    rep.unstable_cv_percent = _float(rf"coefficient of variance = {_NUMBER}%", text)
    m = re.search(r"Duration: (\d+(?:\.\d+)?)s \(\+ (\d+(?:\.\d+)?)ms warm up\)", text)
    if m:
        rep.duration_s, rep.warmup_ms = float(m.group(1)), float(m.group(2))
    m = re.search(r"Timing trace has (\d+) queries", text)
    rep.queries = int(m.group(1)) if m else None
    m = re.search(r"Warmup completed (\d+) queries", text)
    rep.warmup_queries = int(m.group(1)) if m else None
    return rep


@dataclass
class TrtTimes:
    """Per-query times from ``--exportTimes`` (ms), warm-up entries removed."""

    gpu_compute_ms: list[float]
    host_latency_ms: list[float]
    enqueue_ms: list[float] | None
    end_to_end_ms: list[float] | None
    dropped_warmup: int
    layout: str  # "in/out" (TensorRT ≤ 8.4 names) or "h2d/d2h" (later names)


def _load_json(data: str | bytes | Sequence[Any]) -> list[dict[str, Any]]:
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise TrtexecOutputError(f"the --exportTimes file is not JSON: {e}") from e
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise TrtexecOutputError("the --exportTimes file is not a JSON list of objects")
    return list(data)


def parse_export_times(
    data: str | bytes | Sequence[Any], warmup_ms: float | None = None
) -> TrtTimes:
    """Read a trtexec ``--exportTimes`` JSON (text or parsed) into `TrtTimes`.

    ``warmup_ms``: drop entries whose ``startComputeMs`` is below it (TensorRT 8.2 exports the
    warm-up queries; later versions start after them, so nothing is dropped there).
    Raises `TrtexecOutputError` on an unknown layout or no timed entries.
    """
    entries = _load_json(data)
    if not entries:
        raise TrtexecOutputError("the --exportTimes file has no entries")
    required = {"startComputeMs", "computeMs", "latencyMs"}
    missing = required - set(entries[0])
    if missing:
        raise TrtexecOutputError(
            f"unknown --exportTimes layout (missing {', '.join(sorted(missing))})"
        )
    kept = [
        e for e in entries if warmup_ms is None or float(e["startComputeMs"]) >= float(warmup_ms)
    ]
    if not kept:
        raise TrtexecOutputError(
            f"every --exportTimes entry started before the {warmup_ms} ms warm-up"
        )
    layout = "h2d/d2h" if "startH2dMs" in entries[0] else "in/out"
    enqueue = (
        [float(e["endEnqMs"]) - float(e["startEnqMs"]) for e in kept]
        if "startEnqMs" in entries[0] and "endEnqMs" in entries[0]
        else None
    )
    e2e = [float(e["endToEndMs"]) for e in kept] if "endToEndMs" in entries[0] else None
    return TrtTimes(
        gpu_compute_ms=[float(e["computeMs"]) for e in kept],
        host_latency_ms=[float(e["latencyMs"]) for e in kept],
        enqueue_ms=enqueue,
        end_to_end_ms=e2e,
        dropped_warmup=len(entries) - len(kept),
        layout=layout,
    )
