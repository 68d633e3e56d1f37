"""ONNX Runtime on a device: the protocol run by the agent's ``bench`` and ``bench_batch`` verbs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune._files import sha256_file
from edgeprune._progress import track
from edgeprune.bench.config import BenchConfig
from edgeprune.bench.context import device_context, onnx_input_shape
from edgeprune.bench.result import Measurement, context_key
from edgeprune.bench.stats import Stats, compute_stats
from edgeprune.bench.store import Store
from edgeprune.device import DeviceSession
from edgeprune.device.agent import npy_b64, npy_from_b64
from edgeprune.errors import DeviceError

CPU_PROVIDER = "CPUExecutionProvider"
_PROTOCOL_FIELDS = (
    "provider",
    "threads",
    "batch",
    "warmup_runs",
    "warmup_seconds",
    "min_runs",
    "min_seconds",
    "max_runs",
    "max_seconds",
    "seed",
)


def _protocol(cfg: BenchConfig) -> dict[str, Any]:
    """The fields of an agent ``bench``/``bench_batch`` request that the protocol decides."""
    return {name: getattr(cfg, name) for name in _PROTOCOL_FIELDS}


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


def measure_ort(
    dev: DeviceSession,
    artifact: Path,
    cfg: BenchConfig,
    store: Store | None = None,
    label: str | None = None,
    job_id: str | None = None,
    reuse: bool = False,
    extra_context: dict[str, Any] | None = None,
    parity: ParityProbe | None = None,
) -> Measurement:
    """`edgeprune.bench.measure` for ``runtime="ort"`` (see there).

    A reused measurement sends nothing to the device. ``parity`` checks the device's outputs in
    the first attempt's request. The artifact travels only when the device's cache lacks it (a
    session agent says so in its reply to the benchmark request itself). Attempts after the
    first run in a fresh process.
    """
    sha = sha256_file(artifact)
    rt = require_onnxruntime(dev)
    provider = cfg.provider or CPU_PROVIDER
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
    what = f"measure {label or artifact.name} on {dev.name}"
    with track(what, total=None) as step:
        for attempt in range(cfg.max_repeats):
            request: dict[str, Any] = {
                "runtime": cfg.runtime,
                "telemetry": dev.telemetry,
                "fresh_process": attempt > 0,
                **_protocol(cfg),
            }
            if parity is not None and attempt == 0:
                request["parity_inputs_b64"] = npy_b64(parity.inputs)
            reply = dev.call_with_artifact("bench", cfg.deadline(), artifact, sha, **request)
            if parity is not None and attempt == 0:
                outputs = npy_from_b64((reply.get("parity") or {})["outputs_b64"])
                parity_record = parity.check(outputs)
            stats = compute_stats(reply["times_ms"])
            attempts.append((stats, reply))
            step(0, attempt=f"{len(attempts)}/{cfg.max_repeats}", cv=f"{stats.cv:.1%}")
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
    out: list[tuple[str, Stats, dict[str, Any]]] = []
    per_model = cfg.warmup_seconds + cfg.max_seconds
    with track(f"measure {len(artifacts)} models on {dev.name}", total=len(artifacts)) as step:
        step(0, stage="upload")
        remotes = [r for r, _ in dev.push_artifacts(list(zip(artifacts, shas, strict=True)))]
        step(0, stage="measure")
        for start in range(0, len(remotes), chunk):
            part = remotes[start : start + chunk]
            reply = dev.call(
                "bench_batch",
                timeout=per_model * len(part) + cfg.timeout_margin_s,
                models=part,
                **_protocol(cfg),
            )
            state = {
                "state_before": reply.get("state_before"),
                "state_after": reply.get("state_after"),
            }
            for sha, res in zip(shas[start : start + chunk], reply["results"], strict=True):
                out.append((sha, compute_stats(res["times_ms"]), state))
            step(len(part))
    return out
