"""The measurement protocol: what a latency number from edgeprune means.

Warm up (≥ ``warmup_runs`` and ≥ ``warmup_seconds``), then time batch-``batch`` inferences one by
one for ≥ ``min_runs`` and ≥ ``min_seconds`` in the agent process, which does nothing else.
Threads are explicit (intra-op ``threads``, inter-op 1). When the coefficient of variation
exceeds ``cv_threshold`` (2.5%, trtexec's warning level) the benchmark is repeated in a fresh
process, up to ``max_repeats`` attempts; the lowest-CV attempt is kept and the result is flagged
``unstable`` if none got below the threshold. A run during which the device reported throttling
is stored but marked invalid. Every result is stored with its full context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeprune.bench.result import KEY_FIELDS, Measurement, context_key
from edgeprune.bench.stats import Stats, compute_stats
from edgeprune.bench.store import Store
from edgeprune.device import DeviceSession, agent_sha256
from edgeprune.device.agent import npy_b64, npy_from_b64
from edgeprune.errors import DeviceError, UsageError
from edgeprune.export.onnx import sha256_file

RUNTIMES = ("ort",)
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BenchConfig:
    runtime: str = "ort"
    precision: str = "fp32"
    provider: str | None = None
    threads: int = 1
    batch: int = 1
    warmup_runs: int = 10
    warmup_seconds: float = 1.0
    min_runs: int = 50
    min_seconds: float = 2.0
    max_runs: int = 100_000
    max_seconds: float = 60.0
    cv_threshold: float = 0.025
    max_repeats: int = 3
    seed: int = 0
    timeout_margin_s: float = 60.0

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise UsageError(
                f"unknown runtime {self.runtime!r}", hint=f"use one of {', '.join(RUNTIMES)}"
            )
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown precision {self.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}"
            )
        if self.threads < 1:
            raise UsageError(
                f"--threads must be >= 1, got {self.threads}",
                hint="threads are explicit; nproc ignores cgroup limits",
            )
        if self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if self.min_runs < 1 or self.min_seconds < 0 or self.max_repeats < 1:
            raise UsageError("--runs must be >= 1, --duration >= 0 and repeats >= 1")
        if self.max_seconds < self.min_seconds:
            raise UsageError(
                "the maximum duration is shorter than the minimum duration",
                hint="raise max_seconds",
            )

    @property
    def protocol_id(self) -> str:
        """Part of the context key: measurements under other protocols are not reused."""
        return f"w{self.warmup_runs}/{self.warmup_seconds:g}s n{self.min_runs}/{self.min_seconds:g}s b{self.batch}"

    def deadline(self) -> float:
        return self.warmup_seconds + self.max_seconds + self.timeout_margin_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_context(
    dev: DeviceSession,
    cfg: BenchConfig,
    artifact_sha: str,
    runtime_version: str | None,
    provider: str | None,
    input_shape: Any,
) -> dict[str, Any]:
    info = dev.info
    clocks = (info.get("state") or {}).get("clocks") or {}
    return {
        "device": dev.name,
        "device_id": info.get("machine_id"),
        "profile": dev.spec.profile,
        "arch": info.get("arch"),
        "os": info.get("os"),
        "python": info.get("python"),
        "runtime": cfg.runtime,
        "runtime_version": runtime_version,
        "provider": provider,
        "precision": cfg.precision,
        "threads": cfg.threads,
        "batch": cfg.batch,
        "input_shape": input_shape,
        "artifact_sha256": artifact_sha,
        "power_mode": clocks.get("nvpmodel"),
        "governor": clocks.get("governor"),
        "max_khz": clocks.get("max_khz"),
        "cpu_quota": (info.get("cpu") or {}).get("cgroup_cpu_quota"),
        "agent_sha256": agent_sha256(),
        "agent_version": info.get("_agent_version"),
        "protocol": cfg.protocol_id,
    }


def onnx_input_shape(path: Path, batch: int) -> list[int]:
    """The first input's shape with symbolic dimensions replaced by ``batch``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in initializers)
    dims = [d.dim_value if d.dim_value > 0 else batch for d in inp.type.tensor_type.shape.dim]
    if dims and inp.type.tensor_type.shape.dim[0].dim_param:
        dims[0] = batch
    return dims


DEVICE_KEY_FIELDS = tuple(k for k in KEY_FIELDS if k not in ("artifact_sha256", "input_shape"))


def device_key(dev: DeviceSession, cfg: BenchConfig) -> str:
    """Context key of a device + runtime + protocol, without any model: keys lookup tables."""
    import hashlib
    import json

    rt = (dev.info.get("runtimes") or {}).get("onnxruntime") or {}
    ctx = device_context(
        dev, cfg, "", rt.get("version"), cfg.provider or "CPUExecutionProvider", None
    )
    key = {k: ctx.get(k) for k in DEVICE_KEY_FIELDS}
    return hashlib.sha256(
        json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _throttled(state: dict[str, Any] | None) -> bool:
    return bool(((state or {}).get("throttle") or {}).get("active"))


@dataclass(frozen=True)
class ParityProbe:
    """Check a model's outputs on the device in the benchmark's own request.

    The first attempt runs the model once on ``inputs`` before its warm-up and returns the first
    output; ``check(outputs)`` judges it (raise to stop: nothing is stored) and returns the record
    kept in the measurement's context under ``parity``.
    """

    inputs: Any
    check: Callable[[Any], dict[str, Any]]


def require_onnxruntime(dev: DeviceSession) -> dict[str, Any]:
    """The device's ONNX Runtime facts; `DeviceError` naming the provisioning command without it."""
    rt = (dev.info.get("runtimes") or {}).get("onnxruntime") or {}
    if "missing" in rt or not rt:
        raise DeviceError(
            f"onnxruntime is missing on {dev.name} ({rt.get('missing', 'not reported')})",
            hint=f"run `edgeprune devices provision {dev.name}` (installs it in a venv on the device)",
            device=dev.name,
        )
    return rt


def measure(
    dev: DeviceSession,
    artifact: str | Path,
    cfg: BenchConfig | None = None,
    store: Store | None = None,
    label: str | None = None,
    job_id: str | None = None,
    reuse: bool = False,
    extra_context: dict[str, Any] | None = None,
    parity: ParityProbe | None = None,
) -> Measurement:
    """Benchmark an ONNX file on an open device session by the protocol; store and return the result.

    With ``reuse`` a stored valid measurement whose whole context key matches is returned instead
    of measuring again (nothing is sent to the device). ``extra_context`` is recorded with the
    result (it is not part of the context key). ``parity`` checks the device's outputs in the
    first attempt's request. The artifact travels only when the device's cache lacks it (a
    session agent says so in its reply to the benchmark request itself). Attempts after the
    first run in a fresh process. When the session has a telemetry logger (e.g. tegrastats), its
    log is recorded.
    """
    cfg = cfg or BenchConfig()
    artifact = Path(artifact)
    if not artifact.is_file():
        raise UsageError(f"model file not found: {artifact}")
    sha = sha256_file(artifact)
    rt = require_onnxruntime(dev)
    provider = cfg.provider or "CPUExecutionProvider"
    input_shape = onnx_input_shape(artifact, cfg.batch)
    if reuse and store is not None:
        stored = store.latest(
            context_key(device_context(dev, cfg, sha, rt.get("version"), provider, input_shape))
        )
        if stored is not None:
            stored.notes.append("reused from the store (same context key)")
            return stored
    attempts: list[tuple[Stats, dict[str, Any]]] = []
    parity_record: dict[str, Any] | None = None
    started = time.time()
    for attempt in range(cfg.max_repeats):
        request: dict[str, Any] = {
            "runtime": cfg.runtime,
            "provider": cfg.provider,
            "threads": cfg.threads,
            "batch": cfg.batch,
            "warmup_runs": cfg.warmup_runs,
            "warmup_seconds": cfg.warmup_seconds,
            "min_runs": cfg.min_runs,
            "min_seconds": cfg.min_seconds,
            "max_runs": cfg.max_runs,
            "max_seconds": cfg.max_seconds,
            "seed": cfg.seed,
            "telemetry": dev.telemetry,
            "fresh_process": attempt > 0,
        }
        if parity is not None and attempt == 0:
            request["parity_inputs_b64"] = npy_b64(parity.inputs)
        reply = dev.call_with_artifact("bench", cfg.deadline(), artifact, sha, **request)
        if parity is not None and attempt == 0:
            parity_record = parity.check(npy_from_b64((reply.get("parity") or {})["outputs_b64"]))
        stats = compute_stats(reply["times_ms"])
        attempts.append((stats, reply))
        if stats.cv <= cfg.cv_threshold:
            break
    best_stats, best = min(attempts, key=lambda a: a[0].cv)
    ctx = device_context(
        dev, cfg, sha, best.get("runtime_version"), best.get("provider"), input_shape
    )
    ctx.update(
        {
            "started_at": started,
            "finished_at": time.time(),
            # The device's own time in warm-up + timed loops, all attempts: the rest of a job's
            # wall time is the device layer's overhead.
            "bench_window_s": round(
                sum(float(a[1].get("bench_seconds") or 0.0) for a in attempts), 4
            ),
            # [start, end] of the first and last attempts' loops on the device's clock.
            "device_window": [
                (attempts[0][1].get("window") or [None, None])[0],
                (attempts[-1][1].get("window") or [None, None])[1],
            ],
            "command": best.get("_command"),
            "state_before": best.get("state_before"),
            "state_after": best.get("state_after"),
            "warmup_runs_done": best.get("warmup_runs"),
            "artifact_name": artifact.name,
            "artifact_sent": bool(attempts[0][1].get("_sent")),
            "agent_mode": dev.spec.agent_mode,
            "clocks_control": dev.clocks_record,
            "telemetry": best.get("telemetry"),
            **(extra_context or {}),
        }
    )
    if parity_record is not None:
        ctx["parity"] = parity_record
    valid = not (_throttled(best.get("state_before")) or _throttled(best.get("state_after")))
    unstable = best_stats.cv > cfg.cv_threshold
    notes = []
    if not valid:
        notes.append("the device reported throttling during the run: result invalid")
    if unstable:
        notes.append(
            f"CV {best_stats.cv:.1%} stayed above {cfg.cv_threshold:.1%} after {len(attempts)} attempts"
        )
    m = Measurement(
        stats=best_stats,
        context=ctx,
        raw_ms=[float(t) for t in best["times_ms"]],
        valid=valid,
        unstable=unstable,
        attempts=[a[0] for a in attempts],
        notes=notes,
        job_id=job_id,
        label=label,
    )
    if store is not None:
        store.add(m)
    return m


def measure_batch(
    dev: DeviceSession,
    artifacts: list[Path],
    cfg: BenchConfig,
    chunk: int = 40,
) -> list[tuple[str, Stats, dict[str, Any]]]:
    """Benchmark many small ONNX files on an open session, ``chunk`` per agent process.

    Returns (artifact sha256, statistics, state before/after) in input order. Used for latency
    lookup tables: each file gets the protocol's warm-up and measurement loop, but in one process
    per chunk instead of one per file.
    """
    shas = [sha256_file(p) for p in artifacts]
    remotes = [r for r, _ in dev.push_artifacts(list(zip(artifacts, shas, strict=True)))]
    out: list[tuple[str, Stats, dict[str, Any]]] = []
    per_model = cfg.warmup_seconds + cfg.max_seconds
    for start in range(0, len(remotes), chunk):
        part = remotes[start : start + chunk]
        reply = dev.call(
            "bench_batch",
            timeout=per_model * len(part) + cfg.timeout_margin_s,
            models=part,
            provider=cfg.provider,
            threads=cfg.threads,
            batch=cfg.batch,
            warmup_runs=cfg.warmup_runs,
            warmup_seconds=cfg.warmup_seconds,
            min_runs=cfg.min_runs,
            min_seconds=cfg.min_seconds,
            max_runs=cfg.max_runs,
            max_seconds=cfg.max_seconds,
            seed=cfg.seed,
        )
        state = {"state_before": reply.get("state_before"), "state_after": reply.get("state_after")}
        for sha, res in zip(shas[start : start + chunk], reply["results"], strict=True):
            out.append((sha, compute_stats(res["times_ms"]), state))
    return out
