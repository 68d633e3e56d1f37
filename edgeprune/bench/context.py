"""The context recorded with a device measurement, and the keys built from it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgeprune.bench.config import BenchConfig
from edgeprune.bench.result import KEY_FIELDS
from edgeprune.device import DeviceSession, agent_sha256

DEVICE_KEY_FIELDS = tuple(k for k in KEY_FIELDS if k not in ("artifact_sha256", "input_shape"))


def device_context(
    dev: DeviceSession,
    cfg: BenchConfig,
    artifact_sha: str,
    runtime_version: str | None,
    provider: str | None,
    input_shape: Any,
) -> dict[str, Any]:
    """Everything about the device, runtime and protocol that makes a number comparable."""
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
    import onnx  # heavy (seconds on a loaded host), and only this reader needs it

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in initializers)
    dims = [d.dim_value if d.dim_value > 0 else batch for d in inp.type.tensor_type.shape.dim]
    if dims and inp.type.tensor_type.shape.dim[0].dim_param:
        dims[0] = batch
    return dims


def device_key(dev: DeviceSession, cfg: BenchConfig) -> str:
    """Context key of a device + runtime + protocol, without any model: keys lookup tables."""
    rt = (dev.info.get("runtimes") or {}).get("onnxruntime") or {}
    ctx = device_context(
        dev, cfg, "", rt.get("version"), cfg.provider or "CPUExecutionProvider", None
    )
    key = {k: ctx.get(k) for k in DEVICE_KEY_FIELDS}
    return hashlib.sha256(
        json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
