"""The measurement protocol, and `measure`: the one entry point for every runtime.

What a latency number from edgeprune means: warm up (≥ ``warmup_runs`` and ≥
``warmup_seconds``), then time batch-``batch`` inferences one by one for ≥ ``min_runs`` and ≥
``min_seconds`` in a process that does nothing else. Threads are explicit (intra-op
``threads``, inter-op 1). When the coefficient of variation exceeds ``cv_threshold`` (2.5%,
trtexec's warning level) the benchmark is repeated in a fresh process, up to ``max_repeats``
attempts; the lowest-CV attempt is kept and the result is flagged ``unstable`` if none got below
the threshold. A run during which the device reported throttling is stored but marked invalid.
Every result is stored with its full context.

`measure` dispatches on ``cfg.runtime``: ``ort`` (ONNX Runtime in the device's agent,
`edgeprune.bench.ort`), ``trt`` (an engine built on the device and run by its trtexec,
`edgeprune.bench.trt`), ``torch-cuda`` (PyTorch on this host's GPU, `edgeprune.bench.torch_cuda`).
Deploy, search and the farm all measure through it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from edgeprune._files import sha256_file
from edgeprune.bench.config import BenchConfig
from edgeprune.bench.context import DEVICE_KEY_FIELDS, device_context, device_key, onnx_input_shape
from edgeprune.bench.ort import ParityProbe, measure_batch, measure_ort
from edgeprune.bench.result import Measurement
from edgeprune.bench.store import Store
from edgeprune.bench.torch_cuda import measure_torch_cuda
from edgeprune.bench.trt import measure_trt
from edgeprune.checkpoint import ModelBundle, load_checkpoint
from edgeprune.device import DeviceSession
from edgeprune.errors import UsageError
from edgeprune.profiles import DeviceProfile
from edgeprune.vocab import Runtime

__all__ = [
    "DEVICE_KEY_FIELDS",
    "BenchConfig",
    "ParityProbe",
    "device_context",
    "device_key",
    "measure",
    "measure_batch",
    "onnx_input_shape",
]


def measure(
    dev: DeviceSession | None,
    artifact: str | Path | ModelBundle,
    cfg: BenchConfig | None = None,
    store: Store | None = None,
    label: str | None = None,
    job_id: str | None = None,
    reuse: bool = False,
    extra_context: dict[str, Any] | None = None,
    profile: DeviceProfile | None = None,
    parity: ParityProbe | None = None,
) -> Measurement:
    """Benchmark ``artifact`` by the protocol with ``cfg.runtime``; store (when ``store`` is
    given) and return the result.

    ``ort`` and ``trt`` take an ONNX file and an open device session (for ``trt``, ``profile``,
    default the device's own, names trtexec; the returned host-latency measurement has the
    GPU-compute one in ``related``). ``torch-cuda`` takes a checkpoint or a `ModelBundle` and
    runs on this host: ``dev`` is None or the ``local`` device. With ``reuse`` (ONNX Runtime) a
    stored valid measurement whose whole context key matches is returned instead of measuring
    again (nothing is sent to the device). ``extra_context`` is recorded with the result; it is
    not part of the context key. ``parity`` (ONNX Runtime) checks the device's outputs in the
    first attempt's own request (a mismatch raises there and stores nothing). Raises
    `UsageError` for a missing file or a runtime that cannot take it, `DeviceError` for device
    faults.
    """
    cfg = cfg or BenchConfig()
    if reuse and cfg.runtime is not Runtime.ORT:
        raise UsageError(
            f"--reuse applies to ONNX Runtime measurements, not {cfg.runtime}",
            hint="drop --reuse; TensorRT engines are cached on the device, measurements are not",
        )
    if cfg.runtime is Runtime.TORCH_CUDA:
        return _measure_torch_cuda(dev, artifact, cfg, store, label, job_id, extra_context)
    if dev is None:
        raise UsageError(f"runtime {cfg.runtime} measures on a device: open a session first")
    path = _onnx_file(artifact, cfg.runtime)
    if cfg.runtime is Runtime.TRT:
        return measure_trt(dev, path, cfg, store, label, job_id, extra_context, profile)
    return measure_ort(dev, path, cfg, store, label, job_id, reuse, extra_context, parity)


def _onnx_file(artifact: str | Path | ModelBundle, runtime: Runtime) -> Path:
    if isinstance(artifact, ModelBundle):
        raise UsageError(f"runtime {runtime} measures an ONNX file, not an in-memory model")
    path = Path(artifact)
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    return path


def _measure_torch_cuda(
    dev: DeviceSession | None,
    artifact: str | Path | ModelBundle,
    cfg: BenchConfig,
    store: Store | None,
    label: str | None,
    job_id: str | None,
    extra_context: dict[str, Any] | None,
) -> Measurement:
    if dev is not None and dev.name != "local":
        raise UsageError(
            f"torch-cuda measures on this host's GPU, not on {dev.name}", hint="use --device local"
        )
    if isinstance(artifact, ModelBundle):
        bundle, sha = artifact, _weights_sha256(artifact)
    else:
        path = Path(artifact)
        if path.suffix != ".pt" or not path.is_file():
            raise UsageError(
                f"torch-cuda runs a PyTorch checkpoint; {path} is not one",
                hint="pass the model.pt that `edgeprune prune` or `edgeprune train` wrote",
            )
        bundle, sha = load_checkpoint(path), sha256_file(path)
    m = measure_torch_cuda(bundle.model, bundle.input_shape, cfg)
    m.context.update({"device": "local", "artifact_sha256": sha, **(extra_context or {})})
    m.label, m.job_id = label, job_id
    if store is not None:
        store.add(m)
    return m


def _weights_sha256(bundle: ModelBundle) -> str:
    """A content hash of an in-memory model's weights (its stand-in for a file hash)."""
    h = hashlib.sha256()
    for name, t in bundle.model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
