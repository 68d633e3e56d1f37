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

from edgeprune._progress import track, track_until
from edgeprune.bench import BenchConfig, Measurement, Store, measure
from edgeprune.bench.context import onnx_input_shape
from edgeprune.bench.ort import ParityProbe, require_onnxruntime
from edgeprune.bench.trt import require_trtexec
from edgeprune.device import DeviceSession, Inventory
from edgeprune.device.lease import run_leased
from edgeprune.errors import EdgePruneError, ExportError, UsageError
from edgeprune.export import PARITY_TOL, file_opset, ort_session, sha256_file
from edgeprune.export.lint import Finding, has_errors, lint_onnx, opset_for
from edgeprune.pipeline.flows import base_artifact, model_artifact, slowdown_warning
from edgeprune.pipeline.results import ArtifactInfo, DeployResult, VersusBase
from edgeprune.profiles import DeviceProfile, load_profile
from edgeprune.vocab import Precision, Runtime, check_choice

DEPLOY_RUNTIMES = (Runtime.ORT, Runtime.TRT)


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
    wait_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> DeployResult:
    """Deploy MODEL to ``device`` (a name or a profile) and measure it.

    ``model_code`` names the factory a checkpoint needs (`edgeprune.checkpoint.allowed_arch`); an
    ONNX MODEL is refused before anything reads or ships it when it is not a model or keeps weights
    outside its folder (`edgeprune.export.check_onnx_file`). ``wait_s`` queues for a busy device
    that long (``math.inf``: until free; None: fail at once), telling ``on_wait`` who holds it.

    Raises `ExportError` when the lint finds errors or the device's outputs differ from the host's
    beyond the precision's tolerance (nothing is stored then), `DeviceError` for device faults
    (`DeviceBusyError` when every candidate device is busy; one naming `edgeprune devices
    provision` when the device has no ONNX Runtime), `UsageError` for bad options.
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
    sha = sha256_file(artifact)
    shape = onnx_input_shape(artifact, cfg.bench.batch)
    x = np.random.default_rng(cfg.seed).standard_normal(shape).astype(np.float32)
    # This host's reference outputs are computed while the device session opens.
    pool = ThreadPoolExecutor(1, thread_name_prefix="host-reference")
    reference_future = pool.submit(_host_reference, artifact, x)
    pool.shutdown(wait=False)
    phases.add("host_reference", t)

    marks: dict[str, float] = {}

    def on_device(dev: DeviceSession) -> _OnDevice:
        connected()
        t = phases.add("connect", marks["open"])
        trt = cfg.runtime is Runtime.TRT
        if trt:
            require_trtexec(dev)
        else:
            require_onnxruntime(dev)
        with track(f"upload {artifact.name} to {dev.name}"):
            remote, sent = dev.push_artifact(artifact, sha)
        t = phases.add("push", t)
        extra: dict[str, Any] = {"deploy": {"model": model, "opset": opset}}
        probe: ParityProbe | None = None
        if trt:
            skipped = "TensorRT outputs are not compared yet (trtexec --loadInputs/--exportOutput)"
            extra["parity"] = {"skipped": skipped}
            notes.append(skipped)
        else:
            # The device runs the parity input in the benchmark's first request.
            probe = ParityProbe(
                x, lambda got: _compare(dev.name, got, reference_future.result(), cfg.precision)
            )
        with Store() as store:
            m = measure(
                dev,
                artifact,
                cfg.bench,
                store=store,
                label=cfg.label or Path(model).name,
                extra_context=extra,
                profile=profile,
                parity=probe,
            )
        parity = m.context["parity"]
        if trt:
            # The engine build is part of the measurement (cached on the device).
            t = phases.add("build_and_bench", t)
        else:
            now = time.perf_counter()
            window = float(m.context.get("bench_window_s") or 0.0)
            phases.seconds["bench"] = round(window, 4)
            phases.add("device_other", t + window)  # session, parity run, round trips
            t = now
        versus = None
        if base is not None:
            versus = _versus_base(dev, base, m, cfg)
            t = phases.add("bench_base", t)
        marks["done"] = t
        return _OnDevice(
            device=dev.name,
            profile=dev.spec.profile,
            agent_mode=dev.spec.agent_mode,
            round_trips=dev.round_trips(),
            remote_path=remote,
            sent=sent,
            parity=parity,
            measurement=m,
            versus_base=versus,
        )

    marks["open"] = time.perf_counter()
    with track_until(f"connect to {device}") as connected:
        out = run_leased(device, on_device, inventory=inv, wait_s=wait_s, on_wait=on_wait)
    phases.add("close", marks["done"])
    total = phases.total()
    return DeployResult(
        model=model,
        artifact=ArtifactInfo(str(artifact), sha, artifact.stat().st_size),
        opset=opset,
        runtime=cfg.runtime,
        precision=cfg.precision,
        lint=findings,
        device=out.device,
        profile=out.profile,
        agent_mode=out.agent_mode,
        device_round_trips=out.round_trips,
        remote_path=out.remote_path,
        sent=out.sent,
        parity=out.parity,
        measurement=out.measurement,
        other_measurements=list(out.measurement.related),
        versus_base=out.versus_base,
        phases=phases.seconds,
        total_seconds=total,
        # Everything but the device's warm-up and timed loops (for trt the engine build counts
        # as bench) and the base model's measurement.
        overhead_seconds=round(
            total
            - phases.seconds.get("bench", phases.seconds.get("build_and_bench", 0.0))
            - phases.seconds.get("bench_base", 0.0),
            4,
        ),
        notes=notes,
    )


@dataclass
class _OnDevice:
    """What the device session of a deploy found."""

    device: str
    profile: str
    agent_mode: str
    round_trips: dict[str, int]
    remote_path: str
    sent: bool
    parity: dict[str, Any]
    measurement: Measurement
    versus_base: VersusBase | None


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
    return base_artifact(model, model_kwargs, input_size, opset, cfg.bench.batch, model_code)


def _versus_base(
    dev: DeviceSession, base: Path, pruned: Measurement, cfg: DeployConfig
) -> VersusBase:
    """Measure the unpruned architecture in the same session and compare medians."""
    with Store() as store:
        mb = measure(dev, base, cfg.bench, store=store, label="base")
    b, p = mb.stats.median, pruned.stats.median
    return VersusBase(mb, p, slowdown_warning(dev.name, b, p, None))


def _host_reference(artifact: Path, x: np.ndarray) -> np.ndarray:
    with track("reference outputs with this host's ONNX Runtime"):
        sess = ort_session(artifact)
        return np.asarray(sess.run(None, {sess.get_inputs()[0].name: x})[0])


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
