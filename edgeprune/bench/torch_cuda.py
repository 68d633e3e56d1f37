"""The ``torch-cuda`` runtime: PyTorch inference latency on this host's GPU.

Each run is timed with a pair of CUDA events on the stream the model runs on, so the number is
GPU time from the first kernel's launch to the last kernel's end, the same quantity for eager
execution and for CUDA graphs (``mode="cuda_graph"``: the model is captured once and replayed,
which removes per-kernel launch overhead). Warm-up and run counts follow the measurement
protocol; the result carries the same `Stats` as every other runtime.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.bench.result import Measurement
from edgeprune.bench.stats import Stats, compute_stats
from edgeprune.errors import UsageError

MODES = ("eager", "cuda_graph")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class TorchCudaConfig:
    """How to measure: ``mode`` eager or cuda_graph, ``precision`` fp32 or fp16 (weights and
    input cast with ``.half()``), at least ``min_runs`` runs and ``min_seconds`` seconds after at
    least ``warmup_runs`` runs and ``warmup_seconds`` seconds."""

    mode: str = "eager"
    precision: str = "fp32"
    batch: int = 1
    warmup_runs: int = 10
    warmup_seconds: float = 1.0
    min_runs: int = 50
    min_seconds: float = 2.0
    max_runs: int = 100_000
    max_seconds: float = 60.0
    device_index: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(
                f"unknown torch-cuda mode {self.mode!r}", hint=f"use {' or '.join(MODES)}"
            )
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown torch-cuda precision {self.precision!r}",
                hint=f"use {' or '.join(PRECISIONS)}",
            )
        if self.batch < 1 or self.min_runs < 1 or self.warmup_runs < 0:
            raise UsageError("batch and min_runs must be >= 1, warmup_runs >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TorchCudaResult:
    stats: Stats
    raw_ms: list[float]
    warmup_runs: int
    context: dict[str, Any] = field(default_factory=dict)

    def to_measurement(self, extra: dict[str, Any] | None = None) -> Measurement:
        """A `Measurement` for the store: runtime ``torch-cuda``, provider = the mode."""
        return Measurement(
            stats=self.stats,
            context={**self.context, **(extra or {})},
            raw_ms=list(self.raw_ms),
            unstable=self.stats.cv > 0.025,
        )


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def measure_torch_cuda(
    model: Any, input_shape: tuple[int, ...], cfg: TorchCudaConfig | None = None
) -> TorchCudaResult:
    """Time ``model`` on inputs of shape ``(cfg.batch, *input_shape)`` on the GPU.

    The model is copied to the GPU in eval mode (the caller's module is left where it was).
    Raises `UsageError` when this host has no usable CUDA device.
    """
    import copy

    import torch

    cfg = cfg or TorchCudaConfig()
    if not torch.cuda.is_available():
        raise UsageError(
            "CUDA is not available on this host",
            hint="run on a machine with an NVIDIA GPU and a CUDA build of torch "
            "(the pinned development install is the CPU wheel)",
        )
    device = torch.device("cuda", cfg.device_index)
    dtype = torch.float16 if cfg.precision == "fp16" else torch.float32
    net = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    x = torch.randn((cfg.batch, *input_shape), generator=torch.Generator().manual_seed(0))
    x = x.to(device=device, dtype=dtype)
    benchmark_before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # pick the fastest algorithms during warm-up
    try:
        with torch.inference_mode():
            step = _graph_step(net, x) if cfg.mode == "cuda_graph" else (lambda: net(x))
            warm = _warm_up(step, cfg)
            times = _timed_runs(step, cfg)
    finally:
        torch.backends.cudnn.benchmark = benchmark_before
    props = torch.cuda.get_device_properties(device)
    context = {
        "runtime": "torch-cuda",
        "runtime_version": torch.__version__,
        "provider": cfg.mode,
        "precision": cfg.precision,
        "batch": cfg.batch,
        "input_shape": [cfg.batch, *input_shape],
        "gpu": props.name,
        "gpu_capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "protocol": cfg.to_dict(),
    }
    return TorchCudaResult(compute_stats(times), times, warm, context)


def _graph_step(net: Any, x: Any) -> Any:
    """Capture one forward pass into a CUDA graph; the returned step replays it."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # capture needs warmed-up allocators and cuDNN plans
            net(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        net(x)
    return graph.replay


def _warm_up(step: Any, cfg: TorchCudaConfig) -> int:
    import torch

    n, t0 = 0, time.perf_counter()
    while n < cfg.warmup_runs or time.perf_counter() - t0 < cfg.warmup_seconds:
        step()
        n += 1
        if time.perf_counter() - t0 > cfg.max_seconds:
            break
    torch.cuda.synchronize()
    return n


def _timed_runs(step: Any, cfg: TorchCudaConfig) -> list[float]:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times: list[float] = []
    t0 = time.perf_counter()
    while True:
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(float(start.elapsed_time(end)))
        elapsed = time.perf_counter() - t0
        if (len(times) >= cfg.min_runs and elapsed >= cfg.min_seconds) or len(
            times
        ) >= cfg.max_runs:
            break
        if elapsed >= cfg.max_seconds:
            break
    return times
