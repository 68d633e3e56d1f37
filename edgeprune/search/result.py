"""What a latency search found: the candidates it measured and the chosen model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.bench import Measurement
from edgeprune.prune import AllocationResult, PruneResult


@dataclass
class Candidate:
    """A plan measured on the device (``predicted_ms``: the latency model's figure before)."""

    label: str
    widths: dict[str, int]
    predicted_ms: float | None
    measured_ms: float
    flops: int
    params: int
    measurement_id: int | None
    unstable: bool
    proxy_accuracy: float | None = None
    # Held-out accuracy after `SearchConfig.judge_steps` fine-tune steps (the final judgement).
    tuned_accuracy: float | None = None
    # Its held-out loss then: the tie-break when two plans are equally accurate (a small
    # held-out slice makes ties common).
    tuned_loss: float | None = None

    def tuned_key(self) -> tuple[float, float] | None:
        """How the judgement ranks this plan (higher is better), as `ProxyScore.rank_key`."""
        if self.tuned_accuracy is None or self.tuned_loss is None:
            return None
        return (self.tuned_accuracy, -self.tuned_loss)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """The chosen pruned model and everything measured on the way."""

    result: PruneResult
    device: str
    strategy: str
    budget: str
    budget_ms: float
    percentile: str
    base: Measurement
    final: Measurement
    candidates: list[Candidate]
    model: dict[str, Any]
    device_measurements: int
    wall_seconds: float
    allocation: AllocationResult | None = None
    notes: list[str] = field(default_factory=list)
    roots: dict[int, str] = field(default_factory=dict)

    @property
    def base_ms(self) -> float:
        return self.base.stats.get(self.percentile)

    @property
    def final_ms(self) -> float:
        return self.final.stats.get(self.percentile)

    @property
    def met(self) -> bool:
        return self.final_ms <= self.budget_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "strategy": self.strategy,
            "budget": self.budget,
            "budget_ms": self.budget_ms,
            "percentile": self.percentile,
            "base_ms": self.base_ms,
            "pruned_ms": self.final_ms,
            "met": self.met,
            "speedup": self.base_ms / self.final_ms,
            "flops_reduction": self.result.flops_reduction,
            "params_reduction": self.result.params_reduction,
            "flops_ideal_speedup": self.result.macs_before / self.result.macs_after,
            "realised_over_ideal": (self.base_ms / self.final_ms)
            / (self.result.macs_before / self.result.macs_after),
            "widths": {k: list(v) for k, v in self.result.widths.items()},
            "candidates": [c.to_dict() for c in self.candidates],
            "latency_model": self.model,
            "device_measurements": self.device_measurements,
            "wall_seconds": self.wall_seconds,
            "allocation": self.allocation.to_dict(self.roots) if self.allocation else None,
            "notes": list(self.notes),
            "base": self.base.to_dict(),
            "pruned": self.final.to_dict(),
        }
