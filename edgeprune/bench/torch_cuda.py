"""The ``torch-cuda`` runtime: PyTorch inference latency on this host's GPU.

Each run is timed with a pair of CUDA events on the stream the model runs on, so the number is
GPU time from the first kernel's launch to the last kernel's end, the same quantity for eager
execution and for CUDA graphs (``provider="cuda_graph"``: the model is captured once and replayed,
which removes per-kernel launch overhead). Warm-up and run counts follow the measurement
protocol; the result carries the same `Stats` as every other runtime.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from edgeprune.bench.config import BenchConfig
from edgeprune.bench.result import Measurement
from edgeprune.bench.stats import compute_stats
from edgeprune.errors import UsageError
from edgeprune.vocab import Precision, Runtime


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def measure_torch_cuda(
    model: nn.Module, input_shape: tuple[int, ...], cfg: BenchConfig | None = None
) -> Measurement:
    """Time ``model`` on inputs of shape ``(cfg.batch, *input_shape)`` on GPU 0 (choose another
    with ``CUDA_VISIBLE_DEVICES``); ``cfg.provider`` is the mode, ``eager`` (default) or
    ``cuda_graph``.

    The model is copied to the GPU in eval mode (the caller's module is left where it was).
    The measurement's context names the GPU, CUDA and cuDNN; it has no device session, so the
    caller adds ``device`` and the artifact's hash. Raises `UsageError` when this host has no
    usable CUDA device or ``cfg`` is not a torch-cuda configuration.
    """
    cfg = cfg or BenchConfig(runtime=Runtime.TORCH_CUDA)
    if cfg.runtime is not Runtime.TORCH_CUDA:
        raise UsageError(f"measure_torch_cuda needs runtime torch-cuda, got {cfg.runtime}")
    if not torch.cuda.is_available():
        raise UsageError(
            "CUDA is not available on this host",
            hint="run on a machine with an NVIDIA GPU and a CUDA build of torch "
            "(the pinned development install is the CPU wheel)",
        )
    mode = cfg.provider or "eager"
    device = torch.device("cuda", 0)
    dtype = torch.float16 if cfg.precision is Precision.FP16 else torch.float32
    net = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    x = torch.randn((cfg.batch, *input_shape), generator=torch.Generator().manual_seed(cfg.seed))
    x = x.to(device=device, dtype=dtype)
    benchmark_before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # pick the fastest algorithms during warm-up
    started = time.time()
    try:
        with torch.inference_mode():
            step = _graph_step(net, x) if mode == "cuda_graph" else (lambda: net(x))
            warm = _warm_up(step, cfg)
            times = _timed_runs(step, cfg)
    finally:
        torch.backends.cudnn.benchmark = benchmark_before
    props = torch.cuda.get_device_properties(device)
    stats = compute_stats(times)
    context = {
        "runtime": Runtime.TORCH_CUDA,
        "runtime_version": torch.__version__,
        "provider": mode,
        "precision": cfg.precision,
        "batch": cfg.batch,
        "input_shape": [cfg.batch, *input_shape],
        "gpu": props.name,
        "gpu_capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "protocol": cfg.protocol_id,
        "started_at": started,
        "finished_at": time.time(),
        "warmup_runs_done": warm,
    }
    unstable = stats.cv > cfg.cv_threshold
    notes = [f"CV {stats.cv:.1%} is above {cfg.cv_threshold:.1%}"] if unstable else []
    return Measurement(stats=stats, context=context, raw_ms=times, unstable=unstable, notes=notes)


def _graph_step(net: Any, x: Any) -> Any:
    """Capture one forward pass into a CUDA graph; the returned step replays it."""
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


def _warm_up(step: Any, cfg: BenchConfig) -> int:
    n, t0 = 0, time.perf_counter()
    while n < cfg.warmup_runs or time.perf_counter() - t0 < cfg.warmup_seconds:
        step()
        n += 1
        if time.perf_counter() - t0 > cfg.max_seconds:
            break
    torch.cuda.synchronize()
    return n


def _timed_runs(step: Any, cfg: BenchConfig) -> list[float]:
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
