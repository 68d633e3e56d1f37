"""What a latency search is asked to do: the budget and the search's knobs."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.bench import BenchConfig
from edgeprune.errors import UsageError
from edgeprune.train import TrainConfig
from edgeprune.vocab import Percentile, check_choice

STRATEGIES = ("latency", "uniform", "netadapt")
_BUDGET_RE = re.compile(r"^\s*(?P<v>\d+(?:\.\d+)?)\s*(?P<u>ms|x)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A latency budget: ``value`` milliseconds, or ``value`` × the base model's latency."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str | float) -> Budget:
        m = _BUDGET_RE.match(str(text))
        if not m:
            raise UsageError(
                f"invalid latency budget {text!r}",
                hint="use milliseconds (8ms) or a fraction of the base model's latency (0.5x)",
            )
        value, unit = float(m.group("v")), (m.group("u") or "ms").lower()
        if value <= 0:
            raise UsageError(f"the latency budget must be positive, got {text!r}")
        if unit == "x" and value >= 1:
            raise UsageError(
                f"a relative budget must be below 1x, got {text!r}",
                hint="0.5x means half the base model's latency",
            )
        return cls(value, unit == "x")

    def resolve(self, base_ms: float) -> float:
        return self.value * base_ms if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g}ms"


def table_protocol(seconds: float, threads: int = 1) -> BenchConfig:
    """The protocol for lookup-table blocks with a ``seconds`` window (``--table-seconds``)."""
    return BenchConfig(
        warmup_runs=3,
        warmup_seconds=min(0.05, seconds),
        min_runs=15,
        min_seconds=seconds,
        max_seconds=max(5.0, seconds),
        max_repeats=1,
        threads=threads,
    )


@dataclass(frozen=True)
class SearchConfig:
    """How to search. ``bench`` measures whole models; ``block_bench`` the lookup-table blocks."""

    budget: Budget
    device: str = "local"
    bench: BenchConfig = field(default_factory=BenchConfig)
    block_bench: BenchConfig = field(
        default_factory=lambda: BenchConfig(
            warmup_runs=3,
            warmup_seconds=0.05,
            min_runs=20,
            min_seconds=0.15,
            max_seconds=5.0,
            max_repeats=1,
        )
    )
    percentile: str = "median"
    strategy: str = "latency"
    tolerance: float = 0.07
    max_verifications: int = 8
    calibration_ratios: tuple[float, ...] = (0.5,)
    max_layer_ratio: float = 0.8
    netadapt_iterations: int = 3
    netadapt_finetune: TrainConfig | None = None
    opset: int | None = None
    # How the deployed file is exported: the winner is measured again exported this way.
    exporter: str = "auto"
    proxy_evals: int = 24
    verify_top: int = 3
    unstable_retries: int = 2
    # The plans measured within budget are judged after this many fine-tune steps on held-out
    # training data (`AccuracyProxy.tuned`; 0: by the adaptive-BN proxy alone).
    judge_steps: int = 16
    # The chosen widths are reached from the base in this many steps, each followed by a short
    # fine-tune (``netadapt_finetune``) and a re-score (`_gradual`; 0: one cut, no training).
    gradual_steps: int = 0

    def __post_init__(self) -> None:
        check_choice(self.strategy, STRATEGIES, "strategy")
        check_choice(self.percentile, Percentile.choices(), "percentile")
        if not 0.0 < self.tolerance < 0.9:
            raise UsageError(f"tolerance must be in (0, 0.9), got {self.tolerance}")
        if self.max_verifications < 1:
            raise UsageError("max_verifications must be >= 1")
        if (
            self.proxy_evals < 2
            or self.verify_top < 1
            or self.unstable_retries < 0
            or self.judge_steps < 0
            or self.gradual_steps < 0
        ):
            raise UsageError(
                "proxy_evals must be >= 2, verify_top >= 1, unstable_retries >= 0, "
                "judge_steps >= 0, gradual_steps >= 0"
            )
        if not 0.0 < self.max_layer_ratio <= 1.0:
            raise UsageError(
                f"--max-layer-ratio must be in (0, 1], got {self.max_layer_ratio}",
                hint="e.g. 0.8: no layer loses more than 80% of its channels",
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budget"] = str(self.budget)
        return d
