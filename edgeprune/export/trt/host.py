"""Engines built on this host's GPU with the ``tensorrt`` Python API, INT8 calibrator included.

The API is the extra ``edgeprune[trt]``, imported lazily: without it every entry point raises
`DependencyMissingError` naming the extra. `cached_engine_from_onnx` keeps engines in the local
artifact cache, keyed by everything that makes an engine non-portable (ONNX file, TensorRT
version, GPU model, precision, calibration).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgeprune._files import sha256_file
from edgeprune.data import BatchLoader, Dataset
from edgeprune.errors import DependencyMissingError, ExportError
from edgeprune.export.artifacts import ArtifactCache, source_key
from edgeprune.export.trt.version import INT8_NO_CALIBRATION_WARNING, TrtVersion
from edgeprune.vocab import Precision

TRT_EXTRA_HINT = (
    "pip install 'edgeprune[trt]' (TensorRT's wheels need an NVIDIA GPU and NVIDIA's package "
    "index); on a Jetson use the board's trtexec through a device instead"
)


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
    calibration: Dataset | None = None,
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
    precision = Precision.parse(precision)
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
    if precision in (Precision.FP16, Precision.INT8):
        if not builder.platform_has_fast_fp16:
            warnings.append("this GPU has no fast FP16; the FP16 engine may be slower than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision is Precision.INT8:
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
    calibration: Dataset | None = None,
    cache: ArtifactCache | None = None,
) -> EngineResult:
    """`engine_from_onnx` through the local artifact cache: an engine for the same ONNX file,
    TensorRT version, GPU model, precision and calibration is built once (``edgeprune cache``
    lists it with kind ``engine``)."""
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


def _calibration_batches(data: Dataset, batches: int, batch_size: int) -> Iterable[Any]:
    """Normalised float batches from a Dataset's training split (the model's input scaling)."""
    split = data.train.subset(batches * batch_size, seed=0)
    loader = BatchLoader(split, data.info, batch_size=batch_size, shuffle=False)
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        yield x
