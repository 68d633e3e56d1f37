"""``edgeprune deploy``: put a model on a device and measure it there, end to end.

MODEL (an ONNX file, a checkpoint or a zoo name) → export for the device's profile (opset the
target accepts; cached) → lint against the profile (errors stop here) → lease the device (a name,
or any free device of a profile) → push into the device's content-addressed cache (skipped when
it is there) → for ``trt``, build the engine on the device → parity: the device's outputs on fixed
inputs against this host's ONNX Runtime outputs, tolerance per precision → benchmark by the
protocol (`edgeprune.bench.measure`) → store. Each phase is timed, so the overhead of deploying
around the benchmark itself is visible.
"""

from __future__ import annotations

import posixpath
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune._progress import track, track_until
from edgeprune.bench import BenchConfig, Store, measure
from edgeprune.bench.context import onnx_input_shape
from edgeprune.bench.trt import require_trtexec
from edgeprune.device import DeviceSession, Inventory
from edgeprune.device.lease import run_leased
from edgeprune.device.transport import download_verified, upload_verified
from edgeprune.errors import EdgePruneError, ExportError, UsageError
from edgeprune.export import PARITY_TOL, file_opset, ort_session, sha256_file
from edgeprune.export.lint import Finding, has_errors, lint_onnx, opset_for
from edgeprune.pipeline.flows import model_artifact
from edgeprune.profiles import DeviceProfile, load_profile
from edgeprune.vocab import Precision, Runtime, check_choice

DEPLOY_RUNTIMES = (Runtime.ORT, Runtime.TRT)
PARITY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DeployConfig:
    """How to deploy: runtime, precision, the export opset (None: the profile's choice), the
    benchmark protocol and the parity check's fixed input (``seed``)."""

    runtime: Runtime = Runtime.ORT
    precision: Precision = Precision.FP32
    opset: int | None = None
    bench: BenchConfig = field(default_factory=BenchConfig)
    seed: int = 1234
    label: str | None = None

    def __post_init__(self) -> None:
        runtime = check_choice(Runtime.parse(self.runtime), DEPLOY_RUNTIMES, "deploy runtime")
        # The benchmark runs what is deployed: its config carries the runtime and precision
        # (and refuses the pairs that cannot run, e.g. ONNX Runtime with fp16).
        bench = replace(self.bench, runtime=runtime, precision=self.precision)
        object.__setattr__(self, "runtime", runtime)
        object.__setattr__(self, "precision", bench.precision)
        object.__setattr__(self, "bench", bench)


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
    model_code: str | None = None,
) -> dict[str, Any]:
    """Deploy MODEL to ``device`` (a name or a profile) and measure it; returns a JSON-able report.

    ``model_code`` names the factory a checkpoint needs (`edgeprune.checkpoint.allowed_arch`); an
    ONNX MODEL is refused before anything reads or ships it when it is not a model or keeps weights
    outside its folder (`edgeprune.export.check_onnx_file`).

    Raises `ExportError` when the lint finds errors or the device's outputs differ from the host's
    beyond the precision's tolerance (nothing is stored then), `DeviceError` for device faults
    (`DeviceBusyError` when every candidate device is busy), `UsageError` for bad options.
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
    artifact, opset = _artifact(model, profile, cfg, model_kwargs, input_size, model_code)
    base = _base_artifact(model, opset, cfg, model_kwargs, input_size, model_code)
    t = phases.add("export", t)
    findings = _lint(artifact, profile)
    t = phases.add("lint", t)
    with track("reference outputs with this host's ONNX Runtime"):
        sha = sha256_file(artifact)
        shape = onnx_input_shape(artifact, cfg.bench.batch)
        x = np.random.default_rng(cfg.seed).standard_normal(shape).astype(np.float32)
        sess = ort_session(artifact)
        reference = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    phases.add("host_reference", t)

    marks: dict[str, float] = {}
    versus: dict[str, Any] | None = None

    def on_device(dev: DeviceSession) -> dict[str, Any]:
        nonlocal versus
        connected()
        t = phases.add("connect", marks["open"])
        trt = cfg.runtime is Runtime.TRT
        if trt:
            require_trtexec(dev)
        with track(f"upload {artifact.name} to {dev.name}"):
            remote, sent = dev.push_artifact(artifact, sha)
        t = phases.add("push", t)
        extra: dict[str, Any] = {"deploy": {"model": model, "opset": opset}}
        if trt:
            parity: dict[str, Any] = {
                "skipped": "TensorRT outputs are not compared yet (trtexec --loadInputs/--exportOutput)"
            }
            notes.append(parity["skipped"])
        else:
            with track(f"parity check on {dev.name}"):
                parity = _parity(dev, remote, x, reference, cfg)
            t = phases.add("parity", t)
        with Store() as store:
            m = measure(
                dev,
                artifact,
                cfg.bench,
                store=store,
                label=cfg.label or Path(model).name,
                extra_context={**extra, "parity": parity},
                profile=profile,
            )
        # For trt the engine build is part of the measurement (cached on the device).
        t = phases.add("build_and_bench" if trt else "bench", t)
        if base is not None:
            versus = _versus_base(dev, base, m, cfg)
            t = phases.add("bench_base", t)
        marks["done"] = t
        return {
            "device_commands": getattr(dev.transport, "command_count", None),
            "device": dev.name,
            "profile": dev.spec.profile,
            "remote_path": remote,
            "sent": sent,
            "parity": parity,
            "measurement": m.to_dict(),
            "other_measurements": [o.to_dict() for o in m.related],
            "versus_base": versus,
        }

    marks["open"] = time.perf_counter()
    with track_until(f"connect to {device}") as connected:
        out = run_leased(device, on_device, inventory=inv)
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
        # Everything around the benchmark itself (for trt the engine build counts as bench).
        "overhead_seconds": round(
            total - phases.seconds.get("bench", phases.seconds.get("build_and_bench", 0.0)), 4
        ),
        "notes": notes,
        "warnings": [out["versus_base"]["warning"]]
        if out.get("versus_base") and out["versus_base"]["warning"]
        else [],
    }


def _base_artifact(
    model: str,
    opset: int | None,
    cfg: DeployConfig,
    model_kwargs: dict[str, Any] | None,
    input_size: int | None,
    model_code: str | None,
) -> Path | None:
    """For a pruned checkpoint measured with ONNX Runtime, its unpruned architecture's ONNX file."""
    if cfg.runtime is not Runtime.ORT:
        return None
    from edgeprune.pipeline.flows import base_artifact

    return base_artifact(model, model_kwargs, input_size, opset, cfg.bench.batch, model_code)


def _versus_base(dev: DeviceSession, base: Path, pruned: Any, cfg: DeployConfig) -> dict[str, Any]:
    """Measure the unpruned architecture in the same session and compare medians."""
    from edgeprune.pipeline.flows import slowdown_warning

    with Store() as store:
        mb = measure(dev, base, cfg.bench, store=store, label="base")
    b, p = mb.stats.median, pruned.stats.median
    return {
        "base": mb.to_dict(),
        "base_median_ms": b,
        "pruned_median_ms": p,
        "speedup": b / p,
        "not_faster": p >= b,
        "warning": slowdown_warning(dev.name, b, p, None),
    }


def _load_profile(name: str) -> DeviceProfile | None:
    try:
        return load_profile(name)
    except EdgePruneError:
        return None


def _artifact(
    model: str,
    profile: DeviceProfile | None,
    cfg: DeployConfig,
    model_kwargs: dict[str, Any] | None,
    input_size: int | None,
    model_code: str | None,
) -> tuple[Path, int | None]:

    opset = cfg.opset
    if profile is not None and not model.endswith(".onnx"):
        opset = opset_for(profile, cfg.opset)
    path = model_artifact(model, model_kwargs, input_size, opset, cfg.bench.batch, model_code)
    return path, file_opset(path)


def _lint(path: Path, profile: DeviceProfile | None) -> list[Finding]:
    if profile is None:
        return []
    findings = lint_onnx(path, profile)
    if has_errors(findings):
        first = next(f for f in findings if f.level == "error")
        raise ExportError(
            f"{path.name} will not run on {profile.name}: {first.message}",
            hint=f"{first.fix} (all findings: `edgeprune lint {path} --profile {profile.name}`)",
        )
    return findings


def _parity(
    dev: DeviceSession,
    remote_model: str,
    x: np.ndarray,
    reference: np.ndarray,
    cfg: DeployConfig,
) -> dict[str, Any]:
    """Run the model once on the device on ``x``; compare with the host's ``reference``."""
    t = dev.transport
    out_dir = dev.remote_path("outputs")
    with tempfile.TemporaryDirectory(prefix="edgeprune-parity-") as tmp:
        local_in = Path(tmp) / "inputs.npy"
        np.save(local_in, x, allow_pickle=False)
        remote_in, _ = upload_verified(
            t, local_in, out_dir, f"{sha256_file(local_in)}.npy", skip_if_present=False
        )
        remote_out = posixpath.join(out_dir, f"out-{remote_in.rsplit('/', 1)[-1]}")
        try:
            dev.call(
                "bench",
                timeout=PARITY_TIMEOUT_S,
                model=remote_model,
                runtime=cfg.runtime,
                precision=cfg.precision,
                provider=cfg.bench.provider,
                threads=cfg.bench.threads,
                warmup_runs=0,
                warmup_seconds=0,
                min_runs=1,
                min_seconds=0,
                inputs_npy=remote_in,
                outputs_npy=remote_out,
            )
            local_out = Path(tmp) / "outputs.npy"
            download_verified(t, remote_out, local_out)
            got = np.load(local_out, allow_pickle=False)
        finally:
            t.run(["rm", "-f", "--", remote_in, remote_out], timeout=60, check=False)
    if got.shape != reference.shape:
        raise ExportError(
            f"the device's output shape {list(got.shape)} differs from the host's {list(reference.shape)}",
            hint="the device's runtime read the model differently; check its version",
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - reference)))
    scale = float(np.max(np.abs(reference)))
    tol = PARITY_TOL[cfg.precision]
    ok = diff <= tol * max(1.0, scale)
    result = {
        "max_abs_diff": diff,
        "output_scale": scale,
        "tolerance": tol,
        "ok": ok,
        "precision": cfg.precision,
        "reference": "host onnxruntime",
    }
    if not ok:
        raise ExportError(
            f"outputs on {dev.name} differ from this host's by {diff:.3g} "
            f"(tolerance {tol:g} × max(1, |output| {scale:.3g}) for {cfg.precision}); nothing was stored",
            hint="the device's runtime computes this model differently: check its version and precision",
        )
    return result
