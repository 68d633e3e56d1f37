"""`BenchConfig`: how one latency number is measured, for every runtime (see `protocol`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgeprune.errors import UsageError
from edgeprune.vocab import Precision, Runtime, check_choice

# What each runtime can run, and what ``provider`` means for it: ONNX Runtime's execution
# provider; nothing for TensorRT (trtexec is the provider); the execution mode for torch-cuda.
RUNTIME_PRECISIONS: dict[Runtime, tuple[Precision, ...]] = {
    Runtime.ORT: (Precision.FP32,),
    Runtime.TRT: (Precision.FP32, Precision.FP16, Precision.INT8),
    Runtime.TORCH_CUDA: (Precision.FP32, Precision.FP16),
}
TORCH_CUDA_MODES = ("eager", "cuda_graph")


@dataclass(frozen=True)
class BenchConfig:
    """The measurement protocol's knobs (warm-up, run counts and durations, repeats while the CV
    is high) plus what runs the model: ``runtime`` and ``precision`` (ONNX Runtime runs the
    exported fp32 model; fp16/int8 need TensorRT; torch-cuda runs fp32 or fp16) and
    ``provider`` (ONNX Runtime's execution provider, default CPU; torch-cuda's mode, ``eager``
    (default) or ``cuda_graph``; none for TensorRT). Runtime and precision accept their enum or
    its spelling, older spellings included (``onnxruntime``, ``tensorrt``)."""

    runtime: Runtime = Runtime.ORT
    precision: Precision = Precision.FP32
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
        runtime = Runtime.parse(self.runtime)
        precision = Precision.parse(self.precision)
        object.__setattr__(self, "runtime", runtime)
        object.__setattr__(self, "precision", precision)
        if runtime is Runtime.ORT and precision is not Precision.FP32:
            raise UsageError(
                f"ONNX Runtime runs the exported fp32 model; --precision {precision} needs --runtime trt"
            )
        check_choice(precision, RUNTIME_PRECISIONS[runtime], f"{runtime} precision")
        if runtime is Runtime.TRT and self.provider is not None:
            raise UsageError("TensorRT has no execution provider to choose (trtexec runs it)")
        if runtime is Runtime.TORCH_CUDA and self.provider is not None:
            check_choice(self.provider, TORCH_CUDA_MODES, "torch-cuda mode")
        if self.threads < 1:
            raise UsageError(
                f"--threads must be >= 1, got {self.threads}",
                hint="threads are explicit; nproc ignores cgroup limits",
            )
        if self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")
        if self.min_runs < 1 or self.min_seconds < 0 or self.max_repeats < 1:
            raise UsageError("--runs must be >= 1, --duration >= 0 and repeats >= 1")
        if self.warmup_runs < 0 or self.warmup_seconds < 0:
            raise UsageError("--warmup must be >= 0")
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
