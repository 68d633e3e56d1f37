"""What the flows return: one record type per flow, serialised only at the edges.

A flow (`edgeprune.pipeline.flows`) returns one of these; the CLI renders its attributes, and
``to_dict`` is called only where a result leaves the process: ``--json``, ``report.json`` and the
report page, the farm's stored facts. ``to_dict`` keeps the JSON that scripts and stored reports
already read (the same keys, the same nesting).

Free-form records that are JSON by nature stay dicts inside the types: a model's architecture
spec, the run's configuration, library versions, a criterion's own facts, the search's stored
summary (a resumed run reads it back from its staging directory).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.bench import Measurement
from edgeprune.export import ExportResult
from edgeprune.export.lint import Finding
from edgeprune.export.simplify import SimplifyResult


@dataclass
class TrainSummary:
    """`train_checkpoint`: the checkpoint written (or found complete and reused)."""

    checkpoint: str
    model: str
    dataset: str | None
    epochs: int | None
    accuracy: float | None
    loss: float | None
    history: list[dict[str, Any]]
    train_seconds: float | None
    reused: bool

    @property
    def images_per_s(self) -> float | None:
        """The last epoch's training throughput."""
        return self.history[-1].get("images_per_s") if self.history else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalSummary:
    """`evaluate_model`: top-1 accuracy on the test split."""

    model: str
    dataset: str
    accuracy: float
    loss: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportReport:
    """`export_onnx`: the checked file, and what the profile's lint and the simplifier said."""

    export: ExportResult
    simplify: SimplifyResult | None = None
    profile: str | None = None
    lint: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = self.export.to_dict()
        if self.simplify is not None:
            d["simplify"] = self.simplify.to_dict()
        if self.profile is not None:
            d["profile"] = self.profile
            d["lint"] = [f.to_dict() for f in self.lint]
        return d


@dataclass
class BenchReport:
    """`bench_model`: one measurement of MODEL (the ONNX file that was measured)."""

    model: str
    artifact: str
    measurement: Measurement

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        return {"model": self.model, "artifact": self.artifact, **self.measurement.to_dict(raw)}


@dataclass
class LatencyEntry:
    """The base and the pruned model measured on one device (the same context).

    With a latency budget (``budget_ms``), ``met`` says whether the pruned model's ``percentile``
    is within it. ``others`` holds the entries of further devices of the same run.
    """

    device: str
    percentile: str
    base: Measurement
    pruned: Measurement
    budget: str | None = None
    budget_ms: float | None = None
    others: dict[str, LatencyEntry] = field(default_factory=dict)

    @property
    def base_ms(self) -> float:
        return self.base.stats.get(self.percentile)

    @property
    def pruned_ms(self) -> float:
        return self.pruned.stats.get(self.percentile)

    @property
    def speedup(self) -> float:
        return self.base_ms / self.pruned_ms

    @property
    def met(self) -> bool | None:
        """Within the budget; None without one."""
        return None if self.budget_ms is None else self.pruned_ms <= self.budget_ms

    def entries(self) -> list[LatencyEntry]:
        """This device's entry, then the others'."""
        return [self, *self.others.values()]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "device": self.device,
            "percentile": self.percentile,
            "base": self.base.to_dict(),
            "pruned": self.pruned.to_dict(),
            "speedup": self.speedup,
            "not_faster": self.pruned_ms >= self.base_ms,
        }
        if self.budget_ms is not None:
            d.update({"budget": self.budget, "budget_ms": self.budget_ms, "met": self.met})
        else:
            d["others"] = {k: e.to_dict() for k, e in self.others.items()}
        return d


@dataclass
class FinetuneSummary:
    """The fine-tune of a prune run."""

    epochs: int
    seconds: float
    accuracy: float
    history: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneSummary:
        return cls(
            epochs=int(d["epochs"]),
            seconds=float(d["seconds"]),
            accuracy=float(d["accuracy"]),
            history=list(d.get("history") or []),
        )


@dataclass
class ModelSource:
    """What a prune run started from."""

    source: str
    arch: dict[str, Any]
    input_shape: list[int]
    dataset: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DemoSummary:
    """What `edgeprune demo` adds to its prune run's report."""

    base_checkpoint: str
    base_reused: bool
    base_train_seconds: float | None
    wall_seconds: float
    report_html: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PruneReport:
    """`prune_run`: everything a run measured; ``to_dict()`` is ``OUT/report.json``.

    Accuracy fields are None without data; ``finetune`` None without a fine-tune; ``search`` and
    ``latency`` are set with a latency budget (``latency.met`` is the deployed file's check), and
    ``latency`` alone when the run measured on devices.
    """

    edgeprune_version: str | None
    created_at: float
    command: str
    model: ModelSource
    criterion: str
    round_to: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, str | None]
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    scoring_seconds: float
    criterion_info: dict[str, Any]
    criterion_facts: dict[str, Any]
    channel_reduction: float
    widths: dict[str, list[int]]
    export: ExportResult
    artifacts: dict[str, str]
    warnings: list[str]
    wall_seconds: float
    run_dir: str
    accuracy_before: float | None = None
    accuracy_pruned_no_finetune: float | None = None
    finetune: FinetuneSummary | None = None
    search: dict[str, Any] | None = None
    latency: LatencyEntry | None = None
    demo: DemoSummary | None = None

    @property
    def flops_reduction(self) -> float:
        return 1.0 - self.flops_after / self.flops_before

    @property
    def params_reduction(self) -> float:
        return 1.0 - self.params_after / self.params_before

    @property
    def accuracy_after(self) -> float | None:
        """The final model's accuracy: fine-tuned if it was, else as pruned."""
        return self.finetune.accuracy if self.finetune else self.accuracy_pruned_no_finetune

    @property
    def missed_budget(self) -> bool:
        """A latency budget was given and the deployed file measured over it."""
        return self.latency is not None and self.latency.met is False

    def to_dict(self, run_dir: bool = True) -> dict[str, Any]:
        """The report as JSON; ``run_dir=False`` is the file's content (it sits in the run dir)."""
        d: dict[str, Any] = {
            "edgeprune_version": self.edgeprune_version,
            "created_at": self.created_at,
            "command": self.command,
            "model": self.model.to_dict(),
            "criterion": self.criterion,
            "round_to": self.round_to,
            "config": self.config,
            "versions": self.versions,
        }
        if self.accuracy_before is not None:
            d["accuracy_before"] = self.accuracy_before
        d.update(
            {
                "flops_before": self.flops_before,
                "flops_after": self.flops_after,
                "flops_reduction": self.flops_reduction,
                "params_before": self.params_before,
                "params_after": self.params_after,
                "params_reduction": self.params_reduction,
                "flops_unit": "multiply-accumulates per image",
                "scoring_seconds": self.scoring_seconds,
                "criterion_info": self.criterion_info,
                "criterion_facts": self.criterion_facts,
                "channel_reduction": self.channel_reduction,
                "widths": self.widths,
            }
        )
        if self.accuracy_pruned_no_finetune is not None:
            d["accuracy_pruned_no_finetune"] = self.accuracy_pruned_no_finetune
            d["accuracy_after"] = self.accuracy_after
        if self.finetune is not None:
            d["finetune"] = self.finetune.to_dict()
        d["export"] = self.export.to_dict()
        d["artifacts"] = self.artifacts
        if self.search is not None:
            d["search"] = self.search
        if self.latency is not None:
            d["latency"] = self.latency.to_dict()
        d["warnings"] = list(self.warnings)
        d["wall_seconds"] = self.wall_seconds
        if run_dir:
            d["run_dir"] = self.run_dir
        if self.demo is not None:
            d["demo"] = self.demo.to_dict()
        return d


@dataclass
class ArtifactInfo:
    """The file that was deployed."""

    path: str
    sha256: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VersusBase:
    """A pruned checkpoint's unpruned architecture, measured in the same device session."""

    base: Measurement
    pruned_median_ms: float
    warning: str | None

    @property
    def base_median_ms(self) -> float:
        return self.base.stats.median

    @property
    def speedup(self) -> float:
        return self.base_median_ms / self.pruned_median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "base_median_ms": self.base_median_ms,
            "pruned_median_ms": self.pruned_median_ms,
            "speedup": self.speedup,
            "not_faster": self.pruned_median_ms >= self.base_median_ms,
            "warning": self.warning,
        }


@dataclass
class DeployResult:
    """`edgeprune.pipeline.deploy.deploy`: what was shipped, checked and measured, phase by phase.

    ``parity`` is the device's parity verdict as the measurement's context records it (or why it
    was skipped); ``overhead_seconds`` is everything but the device's warm-up and timed loops and
    the base model's measurement.
    """

    model: str
    artifact: ArtifactInfo
    opset: int | None
    runtime: str
    precision: str
    lint: list[Finding]
    device: str
    profile: str
    agent_mode: str
    device_round_trips: dict[str, int]
    remote_path: str
    sent: bool
    parity: dict[str, Any]
    measurement: Measurement
    other_measurements: list[Measurement]
    versus_base: VersusBase | None
    phases: dict[str, float]
    total_seconds: float
    overhead_seconds: float
    notes: list[str]

    @property
    def warnings(self) -> list[str]:
        v = self.versus_base
        return [v.warning] if v is not None and v.warning else []

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        return {
            "model": self.model,
            "artifact": self.artifact.to_dict(),
            "opset": self.opset,
            "runtime": self.runtime,
            "precision": self.precision,
            "lint": [f.to_dict() for f in self.lint],
            "device_round_trips": dict(self.device_round_trips),
            "agent_mode": self.agent_mode,
            "device": self.device,
            "profile": self.profile,
            "remote_path": self.remote_path,
            "sent": self.sent,
            "parity": self.parity,
            "measurement": self.measurement.to_dict(raw),
            "other_measurements": [o.to_dict(raw) for o in self.other_measurements],
            "versus_base": self.versus_base.to_dict() if self.versus_base else None,
            "phases": dict(self.phases),
            "total_seconds": self.total_seconds,
            "overhead_seconds": self.overhead_seconds,
            "notes": list(self.notes),
            "warnings": self.warnings,
        }
