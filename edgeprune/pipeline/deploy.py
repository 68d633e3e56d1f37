"""``edgeprune deploy``: put a model on a device and measure it there, end to end.

MODEL (an ONNX file, a checkpoint or a zoo name) → export for the device's profile (opset the
target accepts; cached) → lint against the profile (errors stop here) → lease the device (a name,
or any free device of a profile; busy fails at once unless ``wait_s`` queues for it) → push into
the device's content-addressed cache (skipped when it is there) → for ``trt``, build the engine
on the device → parity and benchmark in one request: the device runs the model once on fixed
inputs (compared with this host's ONNX Runtime outputs, tolerance per precision; a mismatch stores
nothing), then by the protocol (`edgeprune.bench.measure`) → store. Each phase is timed;
``overhead_seconds`` is everything except the device's own warm-up and timed loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.bench import BenchConfig, Store, measure
from edgeprune.bench.protocol import ParityProbe, onnx_input_shape, require_onnxruntime
from edgeprune.device import DeviceSession, Inventory
from edgeprune.device.lease import run_leased
from edgeprune.errors import DeviceError, EdgePruneError, ExportError, UsageError
from edgeprune.export import PARITY_TOL, ort_session, sha256_file

DEPLOY_RUNTIMES = ("ort", "trt")
PRECISIONS = tuple(PARITY_TOL)
BUILD_TIMEOUT_S = 3600.0  # engine builds take minutes on a Nano (DEVICES.md: allow 30-60 min)


@dataclass(frozen=True)
class DeployConfig:
    """How to deploy: runtime, precision, the export opset (None: the profile's choice), the
    benchmark protocol and the parity check's fixed input (``seed``)."""

    runtime: str = "ort"
    precision: str = "fp32"
    opset: int | None = None
    bench: BenchConfig = field(default_factory=BenchConfig)
    seed: int = 1234
    label: str | None = None

    def __post_init__(self) -> None:
        if self.runtime not in DEPLOY_RUNTIMES:
            raise UsageError(
                f"unknown runtime {self.runtime!r}", hint=f"use one of {', '.join(DEPLOY_RUNTIMES)}"
            )
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown precision {self.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}"
            )
        if self.runtime == "ort" and self.precision != "fp32":
            raise UsageError(
                f"ONNX Runtime runs the exported fp32 model; --precision {self.precision} needs --runtime trt"
            )


class _Phases:
    """Wall time per deploy phase, in seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def add(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - since, 4)
        return now

    def total(self) -> float:
        return round(time.perf_counter() - self._t0, 4)


def deploy(
    model: str,
    device: str,
    cfg: DeployConfig | None = None,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    wait_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Deploy MODEL to ``device`` (a name or a profile) and measure it; returns a JSON-able report.

    ``wait_s`` queues for a busy device that long (``math.inf``: until free; None: fail at once),
    telling ``on_wait`` who holds it. Raises `ExportError` when the lint finds errors or the
    device's outputs differ from the host's beyond the precision's tolerance (nothing is stored
    then), `DeviceError` for device faults (`DeviceBusyError` when every candidate device is busy;
    one naming `edgeprune devices provision` when the device has no ONNX Runtime), `UsageError`
    for bad options.
    """
    cfg = cfg or DeployConfig()
    phases = _Phases()
    inv = Inventory.load()
    candidates = inv.resolve(device)
    profile = _load_profile(candidates[0].profile)
    notes: list[str] = []
    if profile is None:
        notes.append(f"profile {candidates[0].profile!r} not found: default opset, no lint")
    elif cfg.runtime == "trt" and not profile.uses_tensorrt:
        raise UsageError(
            f"profile {profile.name} has no TensorRT runtime",
            hint="deploy with --runtime ort, or use a device whose profile lists tensorrt",
        )
    elif cfg.precision not in profile.precisions:
        raise UsageError(
            f"profile {profile.name} does not run {cfg.precision}",
            hint=f"use one of {', '.join(profile.precisions)}",
        )
    t = time.perf_counter()
    artifact, opset = _artifact(model, profile, cfg, model_kwargs, input_size)
    t = phases.add("export", t)
    findings = _lint(artifact, profile)
    t = phases.add("lint", t)
    sha = sha256_file(artifact)
    shape = onnx_input_shape(artifact, cfg.bench.batch)
    x = np.random.default_rng(cfg.seed).standard_normal(shape).astype(np.float32)
    # This host's reference outputs are computed while the device session opens.
    pool = ThreadPoolExecutor(1, thread_name_prefix="host-reference")
    reference_future = pool.submit(_host_reference, artifact, x)
    pool.shutdown(wait=False)
    phases.add("host_reference", t)

    marks: dict[str, float] = {}
    extra_measurements: list[Any] = []

    def on_device(dev: DeviceSession) -> dict[str, Any]:
        t = phases.add("connect", marks["open"])
        if cfg.runtime == "trt":
            _require_trtexec(dev)
        else:
            require_onnxruntime(dev)
        remote, sent = dev.push_artifact(artifact, sha)
        t = phases.add("push", t)
        extra = {"deploy": {"model": model, "opset": opset}}
        if cfg.runtime == "trt":
            parity: dict[str, Any] = {
                "skipped": "TensorRT outputs are not compared yet (trtexec --loadInputs/--exportOutput)"
            }
            notes.append(parity["skipped"])
            m, more = _trt_measure(dev, artifact, sha, profile, cfg, {**extra, "parity": parity})
            t = phases.add("build_and_bench", t)
            extra_measurements.extend(more)
        else:
            probe = ParityProbe(
                x, lambda got: _compare(dev.name, got, reference_future.result(), cfg.precision)
            )
            with Store() as store:
                m = measure(
                    dev,
                    artifact,
                    replace(cfg.bench, precision=cfg.precision),
                    store=store,
                    label=cfg.label or Path(model).name,
                    extra_context=extra,
                    parity=probe,
                )
            parity = m.context["parity"]
            now = time.perf_counter()
            window = float(m.context.get("bench_window_s") or 0.0)
            phases.seconds["bench"] = round(window, 4)
            phases.add("device_other", t + window)  # session, parity run, round trips
            t = now
        marks["done"] = t
        return {
            "device_round_trips": dev.round_trips(),
            "agent_mode": dev.spec.agent_mode,
            "device": dev.name,
            "profile": dev.spec.profile,
            "remote_path": remote,
            "sent": sent,
            "parity": parity,
            "measurement": m.to_dict(),
            "other_measurements": [o.to_dict() for o in extra_measurements],
        }

    marks["open"] = time.perf_counter()
    out = run_leased(device, on_device, inventory=inv, wait_s=wait_s, on_wait=on_wait)
    phases.add("close", marks["done"])
    total = phases.total()
    return {
        "model": model,
        "artifact": {"path": str(artifact), "sha256": sha, "size_bytes": artifact.stat().st_size},
        "opset": opset,
        "runtime": cfg.runtime,
        "precision": cfg.precision,
        "lint": [f.to_dict() for f in findings],
        **out,
        "phases": phases.seconds,
        "total_seconds": total,
        # Everything but the device's warm-up and timed loops (for trt the engine build counts
        # as bench).
        "overhead_seconds": round(
            total - phases.seconds.get("bench", phases.seconds.get("build_and_bench", 0.0)), 4
        ),
        "notes": notes,
    }


def _host_reference(artifact: Path, x: np.ndarray) -> np.ndarray:
    sess = ort_session(artifact)
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


def _load_profile(name: str) -> Any:
    from edgeprune.profiles import load_profile

    try:
        return load_profile(name)
    except EdgePruneError:
        return None


def _artifact(
    model: str,
    profile: Any,
    cfg: DeployConfig,
    model_kwargs: dict[str, Any] | None,
    input_size: int | None,
) -> tuple[Path, int | None]:
    from edgeprune.export import file_opset
    from edgeprune.export.lint import opset_for
    from edgeprune.pipeline.flows import model_artifact

    opset = cfg.opset
    if profile is not None and not model.endswith(".onnx"):
        opset = opset_for(profile, cfg.opset)
    path = model_artifact(model, model_kwargs, input_size, opset, cfg.bench.batch)
    return path, file_opset(path)


def _lint(path: Path, profile: Any) -> list[Any]:
    if profile is None:
        return []
    from edgeprune.export.lint import has_errors, lint_onnx

    findings = lint_onnx(path, profile)
    if has_errors(findings):
        first = next(f for f in findings if f.level == "error")
        raise ExportError(
            f"{path.name} will not run on {profile.name}: {first.message}",
            hint=f"{first.fix} (all findings: `edgeprune lint {path} --profile {profile.name}`)",
        )
    return findings


def _require_trtexec(dev: DeviceSession) -> None:
    if "trtexec" not in (dev.info.get("runtimes") or {}):
        raise DeviceError(
            f"TensorRT is not available on {dev.name}: trtexec was not found "
            "(looked in PATH, /usr/src/tensorrt/bin, /usr/local/tensorrt/bin, /opt/tensorrt/bin)",
            hint="install TensorRT on the device (JetPack on Jetson boards), or deploy with --runtime ort",
            device=dev.name,
        )


def _trt_measure(
    dev: DeviceSession,
    artifact: Path,
    sha: str,
    profile: Any,
    cfg: DeployConfig,
    extra: dict[str, Any],
) -> tuple[Any, list[Any]]:
    """Build (or reuse) the engine on the device with its trtexec, benchmark it, store host
    latency (returned first) and GPU compute time as two measurements."""
    from edgeprune.bench.protocol import device_context, onnx_input_shape
    from edgeprune.export.trt import measure_on_device

    if profile is None:
        raise UsageError(f"--runtime trt needs the profile of {dev.name} (it names trtexec)")
    bench, engine = measure_on_device(
        dev,
        artifact,
        profile,
        cfg.precision,
        warmup_ms=int(cfg.bench.warmup_seconds * 1000),
        duration_s=cfg.bench.min_seconds,
        iterations=cfg.bench.min_runs,
        build_timeout_s=BUILD_TIMEOUT_S,
        telemetry=dev.telemetry,
    )
    ctx = device_context(
        dev,
        replace(cfg.bench, precision=cfg.precision),
        sha,
        None,
        None,
        onnx_input_shape(artifact, cfg.bench.batch),
    )
    ctx.update({**extra, "engine": engine.to_dict(), "clocks_control": dev.clocks_record})
    found = bench.measurements(ctx)
    for m in found.values():
        m.label = cfg.label or str(extra["deploy"]["model"]).rsplit("/", 1)[-1]
    with Store() as store:
        stored = [store.add(found["host_latency"]), store.add(found["gpu_compute"])]
    return stored[0], stored[1:]


def _compare(device: str, got: np.ndarray, reference: np.ndarray, precision: str) -> dict[str, Any]:
    """Judge the device's output on the parity input against this host's ``reference``.

    Raises `ExportError` (nothing is stored) beyond the precision's tolerance.
    """
    if got.shape != reference.shape:
        raise ExportError(
            f"the device's output shape {list(got.shape)} differs from the host's {list(reference.shape)}",
            hint="the device's runtime read the model differently; check its version",
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - reference)))
    scale = float(np.max(np.abs(reference)))
    tol = PARITY_TOL[precision]
    ok = diff <= tol * max(1.0, scale)
    if not ok:
        raise ExportError(
            f"outputs on {device} differ from this host's by {diff:.3g} "
            f"(tolerance {tol:g} × max(1, |output| {scale:.3g}) for {precision}); nothing was stored",
            hint="the device's runtime computes this model differently: check its version and precision",
        )
    return {
        "max_abs_diff": diff,
        "output_scale": scale,
        "tolerance": tol,
        "ok": ok,
        "precision": precision,
        "reference": "host onnxruntime",
    }
