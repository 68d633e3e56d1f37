"""Making a model variant (prune, fine-tune, export) and keeping it in the artifact cache.

`make_variant` does the work anywhere (a host thread, a Ray task, a device worker for latency
searches) and returns plain data, a `MadeVariant`: the facts and the ONNX bytes. `save_variant`
— called only by the process that drives the sweep — puts the file into the content-addressed
artifact cache and the facts into ``$EDGEPRUNE_HOME/farm/prep/<prep id>/facts.json``;
`load_variant` finds them again, so a variant is made once across reruns and across sweeps that
share it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeprune import config
from edgeprune._files import write_json
from edgeprune.bench import BenchConfig
from edgeprune.errors import UsageError
from edgeprune.export import onnx_from_torch
from edgeprune.export.artifacts import ArtifactCache, source_key
from edgeprune.farm.plan import PrepJob
from edgeprune.pipeline.flows import PruneRunConfig, load_bundle, load_data, prune_run
from edgeprune.prune import PruneConfig, Target, count_macs_params
from edgeprune.search import Budget, SearchConfig, table_protocol
from edgeprune.train import TrainConfig, evaluate

FACT_KEYS = (
    "flops_before",
    "flops_after",
    "flops_reduction",
    "params_before",
    "params_after",
    "params_reduction",
    "accuracy_before",
    "accuracy_after",
    "accuracy_pruned_no_finetune",
    "widths",
    "channel_reduction",
    "search",
    "finetune",
    "wall_seconds",
)


@dataclass(frozen=True)
class MadeVariant:
    """What `make_variant` returns: the variant's facts and its ONNX file's bytes."""

    facts: dict[str, Any]
    onnx: bytes


@dataclass(frozen=True)
class Variant:
    """A made variant: its ONNX file in the artifact cache and its facts."""

    prep_id: str
    path: Path
    sha256: str
    facts: dict[str, Any]


def prep_dir(prep_id: str) -> Path:
    return config.home_dir() / "farm" / "prep" / prep_id


def _cache_key(prep_id: str) -> str:
    return source_key(kind="farm-variant", prep=prep_id)


def load_variant(prep: PrepJob) -> Variant | None:
    """The saved variant for ``prep``, or None when it was never made (or its file is gone)."""
    facts_path = prep_dir(prep.id) / "facts.json"
    hit = ArtifactCache().lookup(_cache_key(prep.id))
    if hit is None or not facts_path.is_file():
        return None
    try:
        saved = json.loads(facts_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if saved.get("sha256") != hit.sha256:
        return None
    return Variant(prep.id, hit.path, hit.sha256, saved["facts"])


def save_variant(prep: PrepJob, made: MadeVariant) -> Variant:
    """Store what `make_variant` returned. Not thread-safe: call from the driving thread only."""
    d = prep_dir(prep.id)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / ".model.onnx"
    tmp.write_bytes(made.onnx)
    try:
        art = ArtifactCache().add(
            tmp, key=_cache_key(prep.id), kind="onnx", source=f"farm:{prep.label}"
        )
    finally:
        tmp.unlink(missing_ok=True)
    write_json(
        d / "facts.json",
        {
            "prep": prep.to_dict(),
            "label": prep.label,
            "sha256": art.sha256,
            "facts": made.facts,
        },
    )
    return Variant(prep.id, art.path, art.sha256, made.facts)


def variant_facts_by_sha() -> dict[str, dict[str, Any]]:
    """Every saved variant's record keyed by artifact sha256 (for reports over the whole store)."""
    out: dict[str, dict[str, Any]] = {}
    root = config.home_dir() / "farm" / "prep"
    for f in sorted(root.glob("*/facts.json")) if root.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out[rec["sha256"]] = rec
    return out


def _scratch_root() -> Path:
    return config.home_dir() / "farm" / "tmp"


def clean_scratch() -> int:
    """Remove the scratch directories of processes that no longer run (a prep worker killed with
    its sweep leaves its directory behind). Returns how many were removed."""
    removed = 0
    root = _scratch_root()
    for d in root.iterdir() if root.is_dir() else []:
        pid = d.name.split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


def make_variant(prep: PrepJob, device: str | None = None) -> MadeVariant:
    """Make the variant: its facts and ONNX bytes.

    The base model is exported as is; a ratio/FLOPs/params target goes through `prune_run`
    (criterion, optional fine-tune, export); a latency budget searches on ``device`` (required
    then). Raises `EdgePruneError` for inputs that cannot work.
    """
    t0 = time.perf_counter()
    scratch = _scratch_root()
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=scratch))
    try:
        if prep.is_base:
            facts, onnx_path = _base(prep, tmp)
        else:
            facts, onnx_path = _pruned(prep, tmp, device)
        facts["wall_seconds"] = time.perf_counter() - t0
        return MadeVariant(facts, onnx_path.read_bytes())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _base(prep: PrepJob, tmp: Path) -> tuple[dict[str, Any], Path]:
    s = prep.settings
    data = load_data(s.get("data"))
    bundle = load_bundle(
        prep.model.model,
        data,
        prep.model.kwargs or None,
        prep.model.input_size,
        prep.model.model_code,
    )
    macs, params = count_macs_params(bundle.model, torch.zeros(1, *bundle.input_shape))
    facts: dict[str, Any] = {
        "flops_before": macs,
        "flops_after": macs,
        "flops_reduction": 0.0,
        "params_before": params,
        "params_after": params,
        "params_reduction": 0.0,
    }
    if data is not None:
        acc = evaluate(
            bundle.model, data, max_samples=s.get("eval_samples"), description="eval base"
        ).accuracy
        facts["accuracy_before"] = facts["accuracy_after"] = acc
    out = tmp / "model.onnx"
    onnx_from_torch(bundle.model, bundle.input_shape, out, opset=s.get("opset"))
    return facts, out


def _pruned(prep: PrepJob, tmp: Path, device: str | None) -> tuple[dict[str, Any], Path]:
    assert prep.criterion is not None and prep.target is not None
    s = prep.settings
    popts = dict(s.get("prune") or {})
    if "ignored_layers" in popts:
        popts["ignored_layers"] = tuple(popts["ignored_layers"] or ())
    search_cfg = None
    target = None
    if prep.on_device:
        if device is None:
            raise UsageError(f"{prep.label}: a latency budget needs a device to search on")
        so = dict(s.get("search") or {})
        ts = float(so.get("table_seconds", 0.15))
        threads = int(so.get("threads", 1))
        search_cfg = SearchConfig(
            budget=Budget.parse(str(prep.target.value)),
            device=device,
            bench=BenchConfig(min_seconds=float(so.get("bench_seconds", 2.0)), threads=threads),
            block_bench=table_protocol(ts, threads),
            percentile=so.get("percentile", "median"),
            strategy=so.get("strategy", "latency"),
            tolerance=float(so.get("tolerance", 0.10)),
            opset=s.get("opset"),
        )
    else:
        target = Target(prep.target.kind, float(prep.target.value))
    ft = s.get("finetune")
    cfg = PruneRunConfig(
        prune=PruneConfig(
            criterion=prep.criterion.name,
            criterion_options=prep.criterion.options,
            target=target,
            **popts,
        ),
        finetune=TrainConfig(**ft) if ft else None,
        opset=s.get("opset"),
        eval_samples=s.get("eval_samples"),
        search=search_cfg,
    )
    report = prune_run(
        prep.model.model,
        s.get("data"),
        cfg,
        tmp / "run",
        model_kwargs=prep.model.kwargs or None,
        input_size=prep.model.input_size,
        model_code=prep.model.model_code,
    )
    stored = report.to_dict()  # the sweep stores the report's JSON facts
    facts = {k: stored[k] for k in FACT_KEYS if k in stored}
    lat = report.latency
    if lat is not None:  # the search's own check of the final model on the device
        facts["search_latency"] = {
            "device": lat.device,
            "budget": lat.budget,
            "budget_ms": lat.budget_ms,
            "met": lat.met,
            "speedup": lat.speedup,
            "percentile": lat.percentile,
        }
    return facts, tmp / "run" / "model.onnx"
