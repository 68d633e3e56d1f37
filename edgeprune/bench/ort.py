"""ONNX Runtime on a device: the protocol run by the agent's ``bench`` and ``bench_batch`` verbs."""

from __future__ import annotations

import time
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


def measure_ort(
    dev: DeviceSession,
    artifact: Path,
    cfg: BenchConfig,
    store: Store | None = None,
    label: str | None = None,
    job_id: str | None = None,
    reuse: bool = False,
    extra_context: dict[str, Any] | None = None,
) -> Measurement:
    """`edgeprune.bench.measure` for ``runtime="ort"`` (see there)."""
    sha = sha256_file(artifact)
    remote, _sent = dev.push_artifact(artifact, sha)
    rt = (dev.info.get("runtimes") or {}).get("onnxruntime") or {}
    if "missing" in rt:
        raise DeviceError(
            f"onnxruntime is missing on {dev.name}: {rt['missing']}",
            hint=f"run `edgeprune devices provision {dev.name}`",
            device=dev.name,
        )
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
    started = time.time()
    what = f"measure {label or artifact.name} on {dev.name}"
    with track(what, total=None) as step:
        for _attempt in range(cfg.max_repeats):
            reply = dev.call(
                "bench",
                timeout=cfg.deadline(),
                model=remote,
                runtime=cfg.runtime,
                telemetry=dev.telemetry,
                **_protocol(cfg),
            )
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
            "command": best.get("_command"),
            "state_before": best.get("state_before"),
            "state_after": best.get("state_after"),
            "warmup_runs_done": best.get("warmup_runs"),
            "artifact_name": artifact.name,
            "clocks_control": dev.clocks_record,
            "telemetry": best.get("telemetry"),
            **(extra_context or {}),
        }
    )
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
        remotes = [dev.push_artifact(p, sha)[0] for p, sha in zip(artifacts, shas, strict=True)]
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
