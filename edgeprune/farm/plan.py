"""Planning a sweep: preparation steps (prune + export, once each) and benchmark jobs.

A `PrepJob` makes one model variant: the unpruned base, a (model, criterion, target) pruned to a
ratio/FLOPs/params target, or — for a latency budget — a (model, criterion, budget, device entry)
searched on that entry. Its id hashes everything that shapes the artifact and nothing else, so
two sweeps that share a variant share its artifact. A `BenchJob` measures one artifact on one
device entry (a device, or any device of a profile) with one runtime. Its ``job_id`` is the
sweep name + a stable hash of the job's full spec: the store keeps each job id once, so a job
found in the store is done and never repeated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune._files import sha256_file
from edgeprune.farm.sweep import CriterionEntry, ModelEntry, RuntimeEntry, SweepSpec, TargetEntry


def stable_hash(data: Any, n: int = 16) -> str:
    """sha256 of canonical JSON, first ``n`` hex digits."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class PrepJob:
    """One model variant to make (see module docstring). ``entry`` is set for latency budgets."""

    model: ModelEntry
    criterion: CriterionEntry | None
    target: TargetEntry | None
    entry: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    source_sha256: str | None = None

    @property
    def is_base(self) -> bool:
        return self.target is None

    @property
    def on_device(self) -> bool:
        """A latency budget: the search measures on a device of ``entry``."""
        return self.target is not None and self.target.device_specific

    @property
    def id(self) -> str:
        # model_code only allows the factory a checkpoint records (whose file must match the
        # recorded hash): it never changes the variant, so it stays out of the id.
        d = self.to_dict()
        d["model"].pop("model_code")
        return stable_hash(d)

    @property
    def label(self) -> str:
        if self.is_base:
            return f"{self.model.label} base"
        assert self.criterion is not None and self.target is not None
        where = f"@{self.entry}" if self.entry else ""
        return f"{self.model.label} {self.criterion.name} {self.target.label}{where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": asdict(self.model),
            "criterion": asdict(self.criterion) if self.criterion else None,
            "target": asdict(self.target) if self.target else None,
            "entry": self.entry,
            "settings": self.settings,
            "source_sha256": self.source_sha256,
        }


@dataclass(frozen=True)
class BenchJob:
    """Measure prep ``prep`` on ``entry`` with ``runtime`` (the ``repeat``-th time)."""

    job_id: str
    prep: str
    entry: str
    runtime: RuntimeEntry
    repeat: int
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "runtime": asdict(self.runtime)}


@dataclass
class Plan:
    spec: SweepSpec
    preps: dict[str, PrepJob]
    jobs: list[BenchJob]

    @property
    def prefix(self) -> str:
        return f"{self.spec.name}/"

    def jobs_of(self, prep_id: str) -> list[BenchJob]:
        return [j for j in self.jobs if j.prep == prep_id]


def _source_sha(model: str) -> str | None:
    path = Path(model.rpartition(":")[0] if ":" in model and not Path(model).exists() else model)
    return sha256_file(path) if path.is_file() else None


def _settings(spec: SweepSpec, pruned: bool) -> dict[str, Any]:
    """What shapes a variant besides model/criterion/target (kept minimal so ids stay stable)."""
    s: dict[str, Any] = {
        "data": spec.data,
        "opset": spec.export.get("opset"),
        "eval_samples": spec.eval_samples,
    }
    if pruned:
        s.update({"prune": spec.prune, "finetune": spec.finetune})
    return s


def plan_sweep(spec: SweepSpec) -> Plan:
    """Every prep step and benchmark job of ``spec``, in a stable order."""
    preps: dict[str, PrepJob] = {}
    jobs: list[BenchJob] = []
    search_threads = next((r.threads for r in spec.runtimes if r.runtime == "ort"), 1)

    def add_jobs(prep: PrepJob, entries: tuple[str, ...]) -> None:
        preps.setdefault(prep.id, prep)
        for entry in entries:
            for rt in spec.runtimes:
                for r in range(spec.repeat):
                    key = {
                        "prep": prep.id,
                        "entry": entry,
                        "runtime": asdict(rt),
                        "bench": spec.bench,
                        "repeat": r,
                    }
                    jobs.append(
                        BenchJob(
                            job_id=f"{spec.name}/{stable_hash(key)}",
                            prep=prep.id,
                            entry=entry,
                            runtime=rt,
                            repeat=r,
                            label=prep.label,
                        )
                    )

    for model in spec.models:
        sha = _source_sha(model.model)
        if spec.base:
            add_jobs(PrepJob(model, None, None, None, _settings(spec, False), sha), spec.devices)
        for crit in spec.criteria:
            for target in spec.targets:
                if target.device_specific:
                    search = {**spec.search, "threads": search_threads}
                    for entry in spec.devices:
                        settings = {**_settings(spec, True), "search": search}
                        add_jobs(PrepJob(model, crit, target, entry, settings, sha), (entry,))
                else:
                    add_jobs(
                        PrepJob(model, crit, target, None, _settings(spec, True), sha), spec.devices
                    )
    return Plan(spec, preps, jobs)
