"""TensorRT on a device: build-or-reuse the engine, benchmark it with trtexec, two measurements.

`measure_trt` is `edgeprune.bench.measure` for ``runtime="trt"``: the engine comes from
`edgeprune.export.trt.engine_on_device` (cached on the device), trtexec runs it with the
protocol's warm-up, duration and run count through the agent's ``bench`` verb, and its
``--exportTimes`` JSON becomes two measurements with the same context except the provider, so
they never mix: host latency (H2D + compute + D2H, ``trtexec/host_latency``, the one returned)
and GPU compute time (``trtexec/gpu_compute``, in its ``related``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune._files import sha256_file
from edgeprune.bench.config import BenchConfig
from edgeprune.bench.context import device_context, onnx_input_shape
from edgeprune.bench.result import Measurement
from edgeprune.bench.stats import Stats, compute_stats
from edgeprune.bench.store import Store
from edgeprune.device import DeviceSession
from edgeprune.errors import DeviceError, EdgePruneError, UsageError
from edgeprune.export.trt import (
    AgentSession,
    DeviceEngine,
    TrtexecReport,
    TrtVersion,
    device_trt,
    engine_on_device,
    parse_export_times,
    parse_trtexec_log,
    trtexec_bench_argv,
)
from edgeprune.profiles import DeviceProfile, load_profile
from edgeprune.vocab import Runtime

# Engine builds take minutes on a Nano (docs/DEVICES.md: allow 30-60 min), apart from benchmarks.
BUILD_TIMEOUT_S = 3600.0
BENCH_TIMEOUT_S = 600.0


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
        base = {
            **context,
            "runtime": Runtime.TRT,
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


def run_trtexec(
    session: AgentSession,
    onnx: str | Path,
    profile: DeviceProfile,
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
    trt = device_trt(session, profile.trtexec)
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
            "runtime": Runtime.TRT,
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


def measure_trt(
    dev: DeviceSession,
    artifact: Path,
    cfg: BenchConfig,
    store: Store | None = None,
    label: str | None = None,
    job_id: str | None = None,
    extra_context: dict[str, Any] | None = None,
    profile: DeviceProfile | None = None,
) -> Measurement:
    """`edgeprune.bench.measure` for ``runtime="trt"`` (see the module docstring).

    ``profile`` (default: the device's own) names trtexec's path and keys the engine cache. The
    host-latency measurement carries ``job_id`` and ``label``; the GPU-compute one is labelled
    ``"<label> (gpu compute)"``. With a ``store`` both are stored. Raises `DeviceError` when the
    device has no trtexec or trtexec fails twice (the engine is rebuilt once in between).
    """
    require_trtexec(dev)
    profile = profile or _device_profile(dev)
    started = time.time()
    bench, engine = run_trtexec(
        dev,
        artifact,
        profile,
        cfg.precision,
        warmup_ms=int(cfg.warmup_seconds * 1000),
        duration_s=cfg.min_seconds,
        iterations=cfg.min_runs,
        build_timeout_s=BUILD_TIMEOUT_S,
        telemetry=dev.telemetry,
    )
    ctx = device_context(
        dev, cfg, sha256_file(artifact), None, None, onnx_input_shape(artifact, cfg.batch)
    )
    ctx.update(
        {
            "started_at": started,
            "finished_at": time.time(),
            "artifact_name": artifact.name,
            "engine": engine.to_dict(),
            "clocks_control": dev.clocks_record,
            **(extra_context or {}),
        }
    )
    found = bench.measurements(ctx)
    host, gpu = found["host_latency"], found["gpu_compute"]
    host.job_id, host.label = job_id, label
    gpu.label = f"{label} (gpu compute)" if label else "gpu compute"
    if store is not None:
        store.add(host)
        store.add(gpu)
    host.related = [gpu]
    return host


def _device_profile(dev: DeviceSession) -> DeviceProfile:
    try:
        return load_profile(dev.spec.profile)
    except EdgePruneError as e:
        raise UsageError(
            f"--runtime trt needs the profile of {dev.name} (it names trtexec): {e.message}",
            hint=e.hint,
        ) from None


def require_trtexec(dev: DeviceSession) -> None:
    """Raise `DeviceError` unless the device's agent found trtexec."""
    if "trtexec" not in (dev.info.get("runtimes") or {}):
        raise DeviceError(
            f"TensorRT is not available on {dev.name}: trtexec was not found "
            "(looked in PATH, /usr/src/tensorrt/bin, /usr/local/tensorrt/bin, /opt/tensorrt/bin)",
            hint="install TensorRT on the device (JetPack on Jetson boards), or deploy with --runtime ort",
            device=dev.name,
        )
