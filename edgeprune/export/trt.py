"""TensorRT: engines on the host (Python API) and on devices (trtexec), and trtexec's output.

Three parts:

* **Versions and flags** (pure): read the TensorRT version from trtexec's banner
  (``[TensorRT v8201]``), ``/etc/nv_tegra_release`` or dpkg, and generate trtexec argv for that
  version: 8.2 has ``--workspace=N``, ``--buildOnly`` and one ``--percentile``; 8.4+ has
  ``--memPoolSize=workspace:N``; 8.5+ takes ``--percentile=90,95,99``; 8.6+ has
  ``--skipInference`` (see ../shared/DEVICES.md).
* **Parsing** (pure): trtexec's text summary and its ``--exportTimes`` JSON into `Stats`,
  GPU compute time and host latency kept apart. TensorRT 8.2 writes warm-up queries into the
  JSON too; entries with ``startComputeMs < warmUp`` are dropped, as trtexec itself does.
* **Engines**: `engine_from_onnx` through the ``tensorrt`` Python API (extra ``edgeprune[trt]``,
  imported lazily) and `engine_on_device` / `measure_on_device` through the on-device agent's
  ``build_engine`` and ``bench`` (runtime ``trt``) verbs. Engines are cached on the device under
  a key of (profile, L4T, TensorRT version, precision, shapes, ONNX sha256); a failed load is
  treated as a stale engine and rebuilt once.

This module does not import the device layer: the device functions take any object with the
`AgentSession` methods (`edgeprune.device.DeviceSession` has them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgeprune.errors import (
    DependencyMissingError,
    DeviceError,
    EdgePruneError,
    ExportError,
    UsageError,
)
from edgeprune.export.onnx import sha256_file

if TYPE_CHECKING:  # export sits below bench: its pure stats/result modules are imported lazily
    from edgeprune.bench.result import Measurement
    from edgeprune.bench.stats import Stats

PRECISIONS = ("fp32", "fp16", "int8")
INT8_NO_CALIBRATION_WARNING = (
    "INT8 WITHOUT CALIBRATION DATA: the engine's SPEED is valid, its ACCURACY IS MEANINGLESS "
    "(TensorRT used placeholder dynamic ranges); pass calibration data to measure accuracy"
)
TRT_EXTRA_HINT = (
    "pip install 'edgeprune[trt]' (TensorRT's wheels need an NVIDIA GPU and NVIDIA's package "
    "index); on a Jetson use the board's trtexec through a device instead"
)


class TrtexecOutputError(EdgePruneError):
    """trtexec's output could not be read (a failed run, or a format this parser does not know)."""


# --------------------------------------------------------------------------- versions


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """``"8.2.1"``, ``"8.2"``, ``"10.3.0.30"`` → TrtVersion. Raises ValueError."""
        m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
        if not m:
            raise ValueError(f"not a TensorRT version: {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))

    @classmethod
    def from_number(cls, number: int) -> TrtVersion:
        """The banner's encoding: 8201 → 8.2.1 (major·1000 + minor·100 + patch) before 10.0,
        100300 → 10.3.0 and 101602 → 10.16.2 (major·10000 + minor·100 + patch) from 10.0."""
        if number >= 10000:
            return cls(number // 10000, (number // 100) % 100, number % 100)
        return cls(number // 1000, (number // 100) % 10, number % 100)

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)


_BANNER_RE = re.compile(r"\[TensorRT v(\d{4,6})\]")
_VERSION_LINE_RE = re.compile(r"TensorRT version: (\d+\.\d+\.\d+)")
_TEGRA_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?")
_DPKG_RE = re.compile(r"^(?:[a-z]{2}\s+)?(libnvinfer\d*|tensorrt)(?::\S+)?\s+(\d+\.\d+\.\d+)", re.M)

# L4T release → TensorRT shipped with it (../shared/DEVICES.md, the JetPack table).
L4T_TENSORRT: dict[tuple[int, int], str] = {
    (32, 6): "8.0.1",
    (32, 7): "8.2.1",
    (35, 3): "8.5.2",
    (35, 4): "8.5.2",
    (36, 3): "8.6.2",
    (36, 4): "10.3.0",
}


def version_from_log(text: str) -> TrtVersion | None:
    """The version in trtexec output: its banner, else the ``TensorRT version:`` line."""
    m = _BANNER_RE.search(text)
    if m:
        return TrtVersion.from_number(int(m.group(1)))
    m = _VERSION_LINE_RE.search(text)
    return TrtVersion.parse(m.group(1)) if m else None


def l4t_from_tegra_release(text: str) -> tuple[int, int, int] | None:
    """``# R32 (release), REVISION: 7.6, ...`` → (32, 7, 6)."""
    m = _TEGRA_RE.search(text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def version_from_l4t(l4t: tuple[int, int, int] | None) -> TrtVersion | None:
    if l4t is None:
        return None
    known = L4T_TENSORRT.get((l4t[0], l4t[1]))
    return TrtVersion.parse(known) if known else None


def version_from_dpkg(text: str) -> TrtVersion | None:
    """From ``dpkg -l`` or ``dpkg-query -W`` lines for libnvinfer*/tensorrt."""
    versions = [TrtVersion.parse(v) for _, v in _DPKG_RE.findall(text or "")]
    return max(versions) if versions else None


def detect_version(
    banner: str | None = None, tegra_release: str | None = None, dpkg: str | None = None
) -> tuple[TrtVersion, str]:
    """The device's TensorRT version and where it came from (banner > dpkg > L4T table).

    Raises `DeviceError` when none of the three says.
    """
    for source, found in (
        ("trtexec banner", version_from_log(banner or "")),
        ("dpkg", version_from_dpkg(dpkg or "")),
        ("/etc/nv_tegra_release", version_from_l4t(l4t_from_tegra_release(tegra_release or ""))),
    ):
        if found is not None:
            return found, source
    raise DeviceError(
        "cannot tell the device's TensorRT version (no trtexec banner, dpkg entry or known L4T)",
        hint="install TensorRT (JetPack's nvidia-tensorrt) or set trtexec: in the device profile",
    )


# --------------------------------------------------------------------------- trtexec flags


def _shape_flags(shapes: dict[str, Sequence[int]] | None) -> list[str]:
    if not shapes:
        return []
    spec = ",".join(
        f"{name}:{'x'.join(str(int(d)) for d in dims)}" for name, dims in shapes.items()
    )
    # One shape for min/opt/max: the engine is tuned for exactly the shape that is measured.
    return [f"--minShapes={spec}", f"--optShapes={spec}", f"--maxShapes={spec}"]


def _precision_flags(precision: str, calib_cache: str | None) -> list[str]:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use {', '.join(PRECISIONS)}")
    if precision == "fp16":
        return ["--fp16"]
    if precision == "int8":
        # FP16 as well, so layers without INT8 kernels fall back to FP16 rather than FP32.
        flags = ["--int8", "--fp16"]
        return flags + ([f"--calib={calib_cache}"] if calib_cache else [])
    return []


def workspace_flag(version: TrtVersion, mib: int) -> str:
    return f"--memPoolSize=workspace:{mib}" if version.at_least(8, 4) else f"--workspace={mib}"


def build_only_flag(version: TrtVersion) -> str:
    return "--skipInference" if version.at_least(8, 6) else "--buildOnly"


def percentile_flag(version: TrtVersion) -> str:
    return "--percentile=90,95,99" if version.at_least(8, 5) else "--percentile=99"


def trtexec_build_argv(
    trtexec: str,
    version: TrtVersion,
    onnx: str,
    engine_out: str,
    precision: str = "fp16",
    workspace_mib: int = 1024,
    shapes: dict[str, Sequence[int]] | None = None,
    calib_cache: str | None = None,
) -> list[str]:
    """argv that builds ``onnx`` into ``engine_out`` without benchmarking it."""
    return [
        trtexec,
        f"--onnx={onnx}",
        f"--saveEngine={engine_out}",
        workspace_flag(version, workspace_mib),
        build_only_flag(version),
        *_precision_flags(precision, calib_cache),
        *_shape_flags(shapes),
    ]


def trtexec_bench_argv(
    trtexec: str,
    version: TrtVersion,
    engine: str,
    times_json: str,
    warmup_ms: int = 1000,
    duration_s: float = 3.0,
    iterations: int = 50,
    shapes: dict[str, Sequence[int]] | None = None,
    cuda_graph: bool = False,
) -> list[str]:
    """argv that loads ``engine`` and writes per-query times to ``times_json``.

    Spin-wait is always requested so that 8.x and 10.x runs are comparable; CUDA graphs only
    when asked (they change what "host latency" includes).
    """
    argv = [
        trtexec,
        f"--loadEngine={engine}",
        f"--exportTimes={times_json}",
        f"--warmUp={int(warmup_ms)}",
        f"--duration={max(1, math.ceil(duration_s))}",
        f"--iterations={int(iterations)}",
        percentile_flag(version),
        "--useSpinWait",
        *_shape_flags(shapes),
    ]
    if cuda_graph:
        argv.append("--useCudaGraph")
    return argv


# --------------------------------------------------------------------------- parsing


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


@dataclass
class TrtBench:
    """A TensorRT benchmark: GPU compute time and host latency (H2D + compute + D2H), apart."""

    version: TrtVersion | None
    gpu_compute: Stats
    host_latency: Stats
    raw_gpu_compute_ms: list[float]
    raw_host_latency_ms: list[float]
    dropped_warmup: int
    report: TrtexecReport | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": str(self.version) if self.version else None,
            "gpu_compute": self.gpu_compute.to_dict(),
            "host_latency": self.host_latency.to_dict(),
            "dropped_warmup": self.dropped_warmup,
            "report": self.report.to_dict() if self.report else None,
            "notes": list(self.notes),
        }
        if raw:
            d["raw_gpu_compute_ms"] = list(self.raw_gpu_compute_ms)
            d["raw_host_latency_ms"] = list(self.raw_host_latency_ms)
        return d

    def measurements(self, context: dict[str, Any]) -> dict[str, Measurement]:
        """Two measurements with the same context except the provider, so they never mix:
        ``trtexec/gpu_compute`` and ``trtexec/host_latency``."""
        from edgeprune.bench.result import Measurement

        base = {
            **context,
            "runtime": "tensorrt",
            "runtime_version": str(self.version)
            if self.version
            else context.get("runtime_version"),
        }
        unstable = self.gpu_compute.cv > 0.025
        return {
            name: Measurement(
                stats=stats,
                context={**base, "provider": f"trtexec/{name}"},
                raw_ms=list(raw),
                unstable=unstable,
                notes=list(self.notes),
            )
            for name, stats, raw in (
                ("gpu_compute", self.gpu_compute, self.raw_gpu_compute_ms),
                ("host_latency", self.host_latency, self.raw_host_latency_ms),
            )
        }


def bench_from_trtexec(
    times: str | bytes | Sequence[Any], log: str | None = None, warmup_ms: float | None = None
) -> TrtBench:
    """Statistics from a run's ``--exportTimes`` JSON (and its text log, when there is one).

    The warm-up threshold is ``warmup_ms`` if given, else the log's ``(+ N ms warm up)``.
    """
    from edgeprune.bench.stats import compute_stats

    report = parse_trtexec_log(log) if log else None
    if warmup_ms is None and report is not None:
        warmup_ms = report.warmup_ms
    parsed = parse_export_times(times, warmup_ms)
    notes = []
    if parsed.dropped_warmup:
        notes.append(
            f"dropped {parsed.dropped_warmup} warm-up entries (startComputeMs < {warmup_ms} ms)"
        )
    return TrtBench(
        version=report.version if report else None,
        gpu_compute=compute_stats(parsed.gpu_compute_ms),
        host_latency=compute_stats(parsed.host_latency_ms),
        raw_gpu_compute_ms=parsed.gpu_compute_ms,
        raw_host_latency_ms=parsed.host_latency_ms,
        dropped_warmup=parsed.dropped_warmup,
        report=report,
        notes=notes,
    )


# --------------------------------------------------------------------------- host engines (Python API)


@dataclass
class EngineResult:
    """A serialized engine and how it was built. ``warnings`` must be shown to the user."""

    path: str
    sha256: str
    size_bytes: int
    precision: str
    trt_version: str
    onnx_sha256: str
    seconds: float
    calibrated: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise DependencyMissingError(
            "the TensorRT Python API (tensorrt) is not installed", hint=TRT_EXTRA_HINT
        ) from e
    return trt


def _calibrator(trt: Any, batches: Iterable[Any], cache_path: Path) -> Any:
    """An entropy calibrator (IInt8EntropyCalibrator2) fed from float32 NCHW batches on the GPU."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(batches)
            self._current: Any = None
            self._batch_size = 1

        def get_batch_size(self) -> int:
            return self._batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                x = next(self._batches)
            except StopIteration:
                return None
            self._current = x.to("cuda", dtype=torch.float32).contiguous()
            self._batch_size = int(self._current.shape[0])
            return [int(self._current.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_path.write_bytes(bytes(cache))

    return Calibrator()


def engine_from_onnx(
    onnx_path: str | Path,
    out: str | Path,
    precision: str = "fp16",
    workspace_mib: int = 1024,
    calibration: Any = None,
    calibration_batches: int = 8,
    calibration_batch_size: int = 32,
) -> EngineResult:
    """Build a TensorRT engine for ``onnx_path`` on this host's GPU with the Python API.

    ``calibration``: an `edgeprune.data.Dataset` whose training split feeds the INT8 entropy
    calibrator (``calibration_batches`` batches). INT8 without it still builds, with a loud
    warning in the result: speed valid, accuracy meaningless. The engine appears at ``out``
    only when the build succeeds. Raises `DependencyMissingError` without ``tensorrt``,
    `ExportError` when parsing or building fails.
    """
    trt = _import_tensorrt()
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use {', '.join(PRECISIONS)}")
    onnx_path, out = Path(onnx_path), Path(out)
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    version = TrtVersion.parse(trt.__version__)
    # TensorRT 10 has only explicit-batch networks; 8.x needs the flag for ONNX.
    flags = 0 if version.major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(
            f"TensorRT {version} cannot parse {onnx_path.name}: {errors[:300]}",
            hint="run `edgeprune lint MODEL.onnx --profile P` for what the target lacks",
        )
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    else:  # TensorRT < 8.4
        config.max_workspace_size = workspace_mib << 20
    warnings: list[str] = []
    calibrated = False
    out.parent.mkdir(parents=True, exist_ok=True)
    cache_path = out.with_suffix(".calib")
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            warnings.append("this GPU has no fast FP16; the FP16 engine may be slower than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibration is not None:
            config.int8_calibrator = _calibrator(
                trt,
                _calibration_batches(calibration, calibration_batches, calibration_batch_size),
                cache_path,
            )
            calibrated = True
        else:
            warnings.append(INT8_NO_CALIBRATION_WARNING)
        if not builder.platform_has_fast_int8:
            warnings.append("this GPU has no fast INT8; expect no speed-up over FP16")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(
            f"TensorRT {version} failed to build an engine for {onnx_path.name}",
            hint="try another precision or a larger workspace",
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(serialized))
    os.replace(tmp, out)
    return EngineResult(
        path=str(out),
        sha256=sha256_file(out),
        size_bytes=out.stat().st_size,
        precision=precision,
        trt_version=str(version),
        onnx_sha256=sha256_file(onnx_path),
        seconds=time.perf_counter() - t0,
        calibrated=calibrated,
        warnings=warnings,
    )


def cached_engine_from_onnx(
    onnx_path: str | Path,
    precision: str = "fp16",
    workspace_mib: int = 1024,
    calibration: Any = None,
    cache: Any = None,
) -> EngineResult:
    """`engine_from_onnx` through the local artifact cache: an engine for the same ONNX file,
    TensorRT version, GPU model, precision and calibration is built once (``edgeprune cache``
    lists it with kind ``engine``)."""
    import torch

    from edgeprune.export.artifacts import ArtifactCache, source_key

    trt = _import_tensorrt()
    cache = cache or ArtifactCache()
    onnx_path = Path(onnx_path)
    onnx_sha = sha256_file(onnx_path)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown"
    parts = {
        "kind": "engine",
        "onnx": onnx_sha,
        "tensorrt": str(trt.__version__),
        "gpu": gpu,
        "precision": precision,
        "workspace_mib": workspace_mib,
        "calibrated": calibration is not None,
    }
    key = source_key(**parts)
    hit = cache.lookup(key)
    if hit is not None:
        meta = hit.meta
        return EngineResult(
            path=str(hit.path),
            sha256=hit.sha256,
            size_bytes=hit.size_bytes,
            precision=precision,
            trt_version=str(trt.__version__),
            onnx_sha256=onnx_sha,
            seconds=0.0,
            calibrated=calibration is not None,
            warnings=list(meta.get("warnings", [])),
        )
    with tempfile.TemporaryDirectory(prefix=".engine-", dir=cache.root) as tmp:
        res = engine_from_onnx(
            onnx_path, Path(tmp) / f"{onnx_sha[:16]}.engine", precision, workspace_mib, calibration
        )
        art = cache.add(
            Path(res.path),
            key=key,
            kind="engine",
            source=str(onnx_path),
            tensorrt=res.trt_version,
            gpu=gpu,
            precision=precision,
            onnx_sha256=onnx_sha,
            warnings=res.warnings,
        )
    res.path = str(art.path)
    return res


def _calibration_batches(data: Any, batches: int, batch_size: int) -> Iterable[Any]:
    """Normalised float batches from a Dataset's training split (the model's input scaling)."""
    from edgeprune.data import BatchLoader

    split = data.train.subset(batches * batch_size, seed=0)
    loader = BatchLoader(split, data.info, batch_size=batch_size, shuffle=False)
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        yield x


# --------------------------------------------------------------------------- device engines (trtexec)


class AgentSession(Protocol):
    """What the device functions need from a session (`edgeprune.device.DeviceSession`)."""

    info: dict[str, Any]

    def call(self, verb: str, timeout: float, **request: Any) -> dict[str, Any]: ...

    def push_artifact(self, local: Path, sha256: str) -> tuple[str, bool]: ...

    def remote_path(self, *parts: str) -> str: ...


@dataclass(frozen=True)
class DeviceTrt:
    """The TensorRT facts of one device."""

    trtexec: str
    version: TrtVersion
    version_source: str
    l4t: tuple[int, int, int] | None


@dataclass
class DeviceEngine:
    """An engine in a device's cache."""

    path: str
    key: str
    cached: bool
    trt_version: str
    precision: str
    seconds: float
    sha256: str | None
    log_tail: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def engine_cache_key(
    profile: str,
    l4t: tuple[int, int, int] | None,
    trt_version: TrtVersion,
    precision: str,
    shapes: dict[str, Sequence[int]] | None,
    onnx_sha256: str,
) -> str:
    """Engines are not portable across GPUs or TensorRT versions: key them on all of it."""
    parts = {
        "profile": profile,
        "l4t": list(l4t) if l4t else None,
        "tensorrt": str(trt_version),
        "precision": precision,
        "shapes": {k: [int(d) for d in v] for k, v in sorted((shapes or {}).items())},
        "onnx": onnx_sha256,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def device_trt(session: AgentSession, trtexec: str | None = None) -> DeviceTrt:
    """Ask the device's agent for trtexec and read the TensorRT version from what it reports."""
    facts = session.call("trt_info", timeout=120, trtexec=trtexec)
    if not facts.get("trtexec"):
        raise DeviceError(
            "trtexec was not found on the device",
            hint="install TensorRT (JetPack) or set trtexec: to its absolute path in the profile",
        )
    version, source = detect_version(
        facts.get("banner"), facts.get("nv_tegra_release"), facts.get("dpkg")
    )
    return DeviceTrt(
        trtexec=facts["trtexec"],
        version=version,
        version_source=source,
        l4t=l4t_from_tegra_release(facts.get("nv_tegra_release") or ""),
    )


def engine_on_device(
    session: AgentSession,
    onnx: str | Path,
    profile: Any,
    precision: str = "fp16",
    workspace_mib: int = 1024,
    shapes: dict[str, Sequence[int]] | None = None,
    calib_cache: str | None = None,
    timeout_s: float = 3600.0,
    force: bool = False,
    trt: DeviceTrt | None = None,
) -> DeviceEngine:
    """Build (or reuse) the engine for ``onnx`` in the device's cache (``WORKDIR/engines``).

    The ONNX file travels once per content hash; trtexec runs with flags for the device's
    TensorRT version. Engine builds take minutes on a Nano: ``timeout_s`` is separate from
    benchmark timeouts. Raises `DeviceError` with trtexec's log tail when the build fails.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"use {', '.join(PRECISIONS)}")
    trt = trt or device_trt(session, getattr(profile, "trtexec", None))
    onnx = Path(onnx)
    onnx_sha = sha256_file(onnx)
    remote_onnx, _ = session.push_artifact(onnx, onnx_sha)
    key = engine_cache_key(
        getattr(profile, "name", str(profile)), trt.l4t, trt.version, precision, shapes, onnx_sha
    )
    engine = session.remote_path("engines", f"{key}.engine")
    part = f"{engine}.{uuid.uuid4().hex[:12]}.part"
    argv = trtexec_build_argv(
        trt.trtexec, trt.version, remote_onnx, part, precision, workspace_mib, shapes, calib_cache
    )
    reply = session.call(
        "build_engine",
        timeout=timeout_s + 60,
        argv=argv,
        engine=engine,
        part=part,
        timeout_s=timeout_s,
        force=force,
    )
    if not reply.get("built"):
        raise DeviceError(
            f"trtexec could not build an engine for {onnx.name} "
            f"(TensorRT {trt.version}, {precision}, exit {reply.get('exit_code')})",
            hint="run `edgeprune lint MODEL.onnx --profile P`; see the log tail for trtexec's reason",
            command=" ".join(argv),
            exit_code=reply.get("exit_code"),
            stderr_tail=reply.get("log_tail"),
        )
    warnings = [INT8_NO_CALIBRATION_WARNING] if precision == "int8" and not calib_cache else []
    return DeviceEngine(
        path=engine,
        key=key,
        cached=bool(reply.get("cached")),
        trt_version=str(trt.version),
        precision=precision,
        seconds=float(reply.get("seconds") or 0.0),
        sha256=reply.get("sha256"),
        log_tail=reply.get("log_tail") or "",
        warnings=warnings,
    )


def measure_on_device(
    session: AgentSession,
    onnx: str | Path,
    profile: Any,
    precision: str = "fp16",
    warmup_ms: int = 1000,
    duration_s: float = 3.0,
    iterations: int = 50,
    shapes: dict[str, Sequence[int]] | None = None,
    cuda_graph: bool = False,
    build_timeout_s: float = 3600.0,
    bench_timeout_s: float = 600.0,
    telemetry: Sequence[str] | None = None,
) -> tuple[TrtBench, DeviceEngine]:
    """Build-or-reuse the engine, benchmark it with trtexec, parse the times.

    A benchmark that cannot load the engine (missing, stale, or from another TensorRT) rebuilds
    it once and tries again. Raises `DeviceError` when the second attempt fails too.
    """
    trt = device_trt(session, getattr(profile, "trtexec", None))
    engine = engine_on_device(
        session, onnx, profile, precision, shapes=shapes, timeout_s=build_timeout_s, trt=trt
    )
    times_json = session.remote_path("outputs", f"times-{uuid.uuid4().hex[:12]}.json")
    for attempt in (1, 2):
        argv = trtexec_bench_argv(
            trt.trtexec,
            trt.version,
            engine.path,
            times_json,
            warmup_ms,
            duration_s,
            iterations,
            shapes,
            cuda_graph,
        )
        request: dict[str, Any] = {
            "runtime": "trt",
            "argv": argv,
            "engine": engine.path,
            "times_json": times_json,
            "timeout_s": bench_timeout_s,
        }
        if telemetry:
            request["telemetry"] = list(telemetry)
        reply = session.call("bench", timeout=bench_timeout_s + 60, **request)
        if reply.get("times") is not None:
            bench = bench_from_trtexec(reply["times"], reply.get("log"), float(warmup_ms))
            bench.version = bench.version or trt.version
            bench.notes += engine.warnings
            if attempt == 2:
                bench.notes.append("the cached engine failed to load and was rebuilt")
            return bench, engine
        if attempt == 1 and not reply.get("timed_out"):
            engine = engine_on_device(
                session,
                onnx,
                profile,
                precision,
                shapes=shapes,
                timeout_s=build_timeout_s,
                trt=trt,
                force=True,
            )
            continue
        raise DeviceError(
            f"trtexec could not benchmark {engine.path} (exit {reply.get('exit_code')})",
            hint="the engine was rebuilt once already; see the log tail",
            command=" ".join(argv),
            exit_code=reply.get("exit_code"),
            stderr_tail=reply.get("log"),
        )
    raise AssertionError("unreachable")
