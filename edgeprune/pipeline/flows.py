"""End-to-end flows the CLI calls: train, evaluate, prune-and-export, export, bench.

Each flow is one function taking plain values and config records, returning a typed record
(`edgeprune.pipeline.results`: the CLI renders it, ``to_dict`` is its ``--json`` and report form). Long steps are resumable: training checkpoints every epoch;
a prune run is staged in ``.RUNDIR.partial`` and a rerun of the same command continues there.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from edgeprune._files import check_writable
from edgeprune._progress import track, track_until
from edgeprune.bench import BenchConfig, Measurement, Store, measure
from edgeprune.checkpoint import (
    ModelBundle,
    load_checkpoint,
    looks_like_checkpoint,
    read_checkpoint,
    resolve_model,
    save_checkpoint,
)
from edgeprune.data import Dataset, load_dataset
from edgeprune.device import Inventory
from edgeprune.device.lease import run_leased
from edgeprune.errors import UsageError
from edgeprune.export import ExportResult, check_onnx_file, onnx_from_torch, sha256_file
from edgeprune.export.artifacts import ArtifactCache, source_key
from edgeprune.models import is_factory_ref, spec_from_ref
from edgeprune.pipeline._util import (
    RunDir,
    command_line,
    fingerprint,
    versions,
    write_json,
)
from edgeprune.pipeline.results import (
    BenchReport,
    EvalSummary,
    ExportReport,
    FinetuneSummary,
    LatencyEntry,
    ModelSource,
    PruneReport,
    TrainSummary,
)
from edgeprune.prune import PruneConfig, prune, with_round_to
from edgeprune.search import SearchConfig, search
from edgeprune.train import TrainConfig, TrainState, evaluate, train

# --------------------------------------------------------------------------- data + model


def load_data(spec: str | None, image_size: int | None = None) -> Dataset | None:
    return load_dataset(spec, image_size) if spec else None


def load_bundle(
    model: str,
    data: Dataset | None,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    model_code: str | None = None,
) -> ModelBundle:
    """Resolve MODEL; zoo models are initialised from a fixed seed so their exports are reproducible.

    ``model_code`` names the factory a checkpoint needs (`edgeprune.checkpoint.allowed_arch`).
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return resolve_model(
            model, model_kwargs, data.info if data else None, input_size, model_code
        )


# --------------------------------------------------------------------------- train / eval


def train_checkpoint(
    model: str,
    data_spec: str,
    cfg: TrainConfig,
    out: str | Path,
    model_kwargs: dict[str, Any] | None = None,
    image_size: int | None = None,
    force: bool = False,
    model_code: str | None = None,
) -> TrainSummary:
    """Train MODEL on DATA into checkpoint ``out``, resuming if ``out`` holds an unfinished run of
    the same configuration. A finished identical run is returned as is (``reused``). Raises
    `UsageError` before any work when ``out`` cannot be written."""
    out = Path(out)
    check_writable(out)
    data = load_dataset(data_spec, image_size)
    fp = fingerprint(
        {
            "model": model,
            "kwargs": model_kwargs,
            "data": data.info.name,
            "size": image_size,
            "cfg": cfg.to_dict(),
        }
    )
    state: TrainState | None = None
    bundle: ModelBundle | None = None
    if out.exists() and not force:
        header = read_checkpoint(out)
        saved = header.get("train") or {}
        if saved.get("fingerprint") != fp:
            raise UsageError(
                f"{out} exists and was not written by this exact train command",
                hint="pass --force to overwrite, or choose another --out",
            )
        bundle = load_checkpoint(out, model_code or _own_factory(model))
        state = TrainState.from_dict(saved)
        if state.epoch >= cfg.epochs and "final_accuracy" in saved:
            return _train_summary(bundle, out, saved, reused=True)
    if bundle is None:
        bundle = load_bundle(model, data, model_kwargs, model_code=model_code)
    started = time.perf_counter()

    def save(st: TrainState) -> None:
        save_checkpoint(
            bundle, out, train_state={**st.to_dict(), "fingerprint": fp, "config": cfg.to_dict()}
        )

    state = train(bundle.model, data, cfg, state=state, on_epoch_end=save)
    result = evaluate(bundle.model, data, device=cfg.device)
    bundle.model.cpu()
    bundle.metrics = {
        "accuracy": result.accuracy,
        "loss": result.loss,
        "eval_samples": result.samples,
        "epochs": state.epoch,
    }
    saved = {
        **state.to_dict(),
        "fingerprint": fp,
        "config": cfg.to_dict(),
        "final_accuracy": result.accuracy,
        "train_seconds": time.perf_counter() - started,
    }
    save_checkpoint(bundle, out, train_state=saved)
    return _train_summary(bundle, out, saved, reused=False)


def _train_summary(
    bundle: ModelBundle, out: Path, saved: dict[str, Any], reused: bool
) -> TrainSummary:
    # ``saved`` is the checkpoint's stored train state: read back from a file on reuse.
    return TrainSummary(
        checkpoint=str(out),
        model=bundle.arch.label,
        dataset=bundle.dataset,
        epochs=saved.get("epoch"),
        accuracy=bundle.metrics.get("accuracy"),
        loss=bundle.metrics.get("loss"),
        history=list(saved.get("history", [])),
        train_seconds=saved.get("train_seconds"),
        reused=reused,
    )


def evaluate_model(
    model: str,
    data_spec: str,
    model_kwargs: dict[str, Any] | None = None,
    image_size: int | None = None,
    max_samples: int | None = None,
    model_code: str | None = None,
) -> EvalSummary:
    data = load_dataset(data_spec, image_size)
    bundle = load_bundle(model, data, model_kwargs, model_code=model_code)
    r = evaluate(bundle.model, data, max_samples=max_samples)
    return EvalSummary(
        model=bundle.label,
        dataset=data.info.name,
        accuracy=r.accuracy,
        loss=r.loss,
        samples=r.samples,
    )


# --------------------------------------------------------------------------- export


def export_onnx(
    model: str,
    out: str | Path,
    opset: int | None = None,
    exporter: str = "auto",
    external_data: bool = False,
    dynamic_batch: bool = False,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    data_spec: str | None = None,
    profile: str | None = None,
    simplify: bool = False,
    model_code: str | None = None,
) -> ExportReport:
    """Export MODEL to one checked ONNX file; returns the `ExportResult` with, for ``profile``,
    the profile name and its lint findings, and with ``simplify``, what the simplification
    removed (parity is re-checked on the simplified file)."""
    from edgeprune.errors import ExportError
    from edgeprune.export import parity
    from edgeprune.export.lint import lint_onnx, opset_for
    from edgeprune.export.simplify import simplify_onnx
    from edgeprune.profiles import load_profile

    out = Path(out)
    check_writable(out)
    prof = load_profile(profile) if profile else None
    if prof is not None:
        opset = opset_for(prof, opset)
    data = load_data(data_spec)
    bundle = load_bundle(model, data, model_kwargs, input_size, model_code)
    res = onnx_from_torch(
        bundle.model,
        bundle.input_shape,
        out,
        opset=opset,
        exporter=exporter,
        external_data=external_data,
        dynamic_batch=dynamic_batch,
    )
    if prof is not None:
        res.notes.append(f"opset {res.opset} chosen for profile {prof.name}")
    report = ExportReport(res)
    if simplify:
        if res.external_data:
            raise UsageError("--simplify cannot be combined with --external-data")
        simplified = simplify_onnx(res.path)
        diff, scale, _spread = parity(
            bundle.model, res.path, bundle.input_shape, 1, res.parity_samples
        )
        if not diff <= res.parity_tolerance * max(1.0, scale):
            Path(res.path).unlink(missing_ok=True)
            raise ExportError(
                f"the simplified model differs from PyTorch by {diff:.3g}; nothing was written",
                hint="export without --simplify",
            )
        res.parity_max_abs_diff, res.parity_output_scale = diff, scale
        res.sha256, res.size_bytes = sha256_file(res.path), Path(res.path).stat().st_size
        report.simplify = simplified
    if prof is not None:
        report.profile = prof.name
        report.lint = lint_onnx(res.path, prof)
    return report


def cached_onnx(
    bundle: ModelBundle, source: str, opset: int | None = None, batch: int = 1
) -> tuple[Path, ExportResult | None]:
    """The ONNX file for ``bundle`` from the artifact cache, exporting it on a miss."""
    cache = ArtifactCache()
    src = (
        sha256_file(source)
        if Path(source).is_file()
        else fingerprint(
            {
                "arch": bundle.arch.to_dict(),
                "plan": bundle.plan.to_dict(),
                "shape": bundle.input_shape,
            }
        )
    )
    key = source_key(kind="onnx", source=src, opset=opset, batch=batch)
    hit = cache.lookup(key)
    if hit is not None:
        return hit.path, None
    tmp = cache.root / f".export-{src[:16]}.onnx"
    try:
        with track(f"export {bundle.label} to ONNX"):
            res = onnx_from_torch(bundle.model, bundle.input_shape, tmp, opset=opset, batch=batch)
        art = cache.add(tmp, key=key, kind="onnx", source=source, opset=res.opset)
    finally:
        tmp.unlink(missing_ok=True)
    res.path = str(art.path)
    return art.path, res


def model_artifact(
    model: str,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    opset: int | None = None,
    batch: int = 1,
    model_code: str | None = None,
) -> Path:
    """An ONNX file for MODEL: itself if it is one (checked by `check_onnx_file` before anything
    reads its weights or ships it), else its cached export."""
    if model.endswith(".onnx"):
        if model_kwargs or model_code:
            raise UsageError(
                f"{model} is an ONNX file: --model-kwargs and --model-code do not apply",
                hint="drop them",
            )
        path = Path(model)
        check_onnx_file(path)
        return path
    bundle = load_bundle(model, None, model_kwargs, input_size, model_code)
    path, _ = cached_onnx(
        bundle,
        model if looks_like_checkpoint(model) else f"{model}:{model_kwargs}:{bundle.input_shape}",
        opset,
        batch,
    )
    return path


def runs_on_profile(name: str | None) -> str | None:
    """The profile of what a pruned model will run on: a device's profile for a device name (the
    ``local`` device: None, this host), the name itself for a profile. Raises `UnknownNameError`
    for a name that is neither."""
    if name is None or name == "local":
        return None
    from edgeprune.profiles import list_profiles

    inv = Inventory.load()
    if name in inv.devices:
        profile = inv.get(name).profile
        return None if profile == "local" else profile
    if name in {p.name for p in list_profiles()}:
        return name
    inv.resolve(name)  # raises UnknownNameError listing the choices
    return None


def base_artifact(
    model: str,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    opset: int | None = None,
    batch: int = 1,
    model_code: str | None = None,
) -> Path | None:
    """The unpruned architecture of a pruned checkpoint as an ONNX file (cached), else None:
    what a pruned model's latency is compared with. A factory-built checkpoint's base is built
    through the factory ``model_code`` allows, as the checkpoint itself is."""
    if model.endswith(".onnx") or not looks_like_checkpoint(model):
        return None
    bundle = load_bundle(model, None, model_kwargs, input_size, model_code)
    if not bundle.plan.groups:
        return None
    from edgeprune.models import build_model
    from edgeprune.prune import PrunePlan

    with torch.random.fork_rng():
        torch.manual_seed(0)
        base = copy.copy(bundle)
        base.model, base.plan = build_model(bundle.arch).eval(), PrunePlan()
    path, _ = cached_onnx(base, f"{bundle.arch.to_dict()}:base:{bundle.input_shape}", opset, batch)
    return path


# --------------------------------------------------------------------------- bench


def lease_and_measure(
    device: str,
    artifact: Path,
    cfg: BenchConfig,
    store: Store,
    label: str | None = None,
    reuse: bool = False,
    job_id: str | None = None,
) -> Measurement:
    """Benchmark on ``device`` (a name, or a profile: the first free device of it is leased).

    The session sets the stable clocks the device's profile asks for and restores them after.
    """
    with track_until(f"connect to {device}") as connected:

        def work(dev: Any) -> Measurement:
            connected()
            return measure(dev, artifact, cfg, store=store, label=label, reuse=reuse, job_id=job_id)

        return run_leased(device, work)


def bench_model(
    model: str,
    device: str,
    cfg: BenchConfig,
    model_kwargs: dict[str, Any] | None = None,
    input_size: int | None = None,
    opset: int | None = None,
    reuse: bool = False,
    label: str | None = None,
    model_code: str | None = None,
) -> BenchReport:
    Inventory.load().resolve(device)  # an unknown device fails before the model is exported
    artifact = model_artifact(model, model_kwargs, input_size, opset, cfg.batch, model_code)
    with Store() as store:
        m = lease_and_measure(
            device, artifact, cfg, store, label=label or Path(model).name, reuse=reuse
        )
    return BenchReport(model, str(artifact), m)


# --------------------------------------------------------------------------- prune + export


@dataclass(frozen=True)
class PruneRunConfig:
    prune: PruneConfig
    finetune: TrainConfig | None = None
    opset: int | None = None
    eval_samples: int | None = None
    devices: tuple[str, ...] = ()
    bench: BenchConfig = field(default_factory=BenchConfig)
    # A latency budget: widths are searched on search.device instead of taken from a target.
    search: SearchConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "search": self.search.to_dict() if self.search else None,
            "prune": self.prune.to_dict(),
            "finetune": self.finetune.to_dict() if self.finetune else None,
            "opset": self.opset,
            "eval_samples": self.eval_samples,
            "devices": list(self.devices),
            "bench": asdict(self.bench),
        }


def prune_run(
    model: str,
    data_spec: str | None,
    cfg: PruneRunConfig,
    out: str | Path,
    model_kwargs: dict[str, Any] | None = None,
    image_size: int | None = None,
    input_size: int | None = None,
    force: bool = False,
    model_code: str | None = None,
) -> PruneReport:
    """Prune MODEL, optionally fine-tune, export ONNX, optionally bench; write the run directory.

    Writes ``OUT/report.json``, ``OUT/model.pt`` and ``OUT/model.onnx``. Accuracy fields appear
    only when data is given. Raises `EdgePruneError` for bad inputs (an ``out`` that cannot be
    written among them) before anything is written.
    """
    out = Path(out)
    # Checks that need only the command line, before the (slow) model and data are loaded.
    check_writable(out, directory=True)
    if cfg.search is None:
        cfg.prune.require_target()
    cfg.prune.require_data(data_spec is not None)
    runs_on = runs_on_profile(
        cfg.prune.runs_on
        or (
            cfg.search.device
            if cfg.search is not None
            else (cfg.devices[0] if cfg.devices else None)
        )
    )
    prune_cfg, granularity = with_round_to(replace(cfg.prune, runs_on=runs_on))
    cfg = replace(cfg, prune=prune_cfg)
    if cfg.finetune is not None and data_spec is None:
        raise UsageError(
            "fine-tuning needs --data", hint="pass --data DATASET or drop --finetune-epochs"
        )
    with track(f"load {model}" + (f" and {data_spec}" if data_spec else "")):
        data = load_data(data_spec, image_size)
        bundle = load_bundle(model, data, model_kwargs, input_size, model_code)
    # The run's own checkpoints rebuild through the factory that was allowed for MODEL.
    own_code = bundle.arch.factory
    run = RunDir(
        out,
        fingerprint(
            {
                "model": model,
                "src": _source_hash(model),
                "data": data_spec,
                "kwargs": model_kwargs,
                "size": image_size,
                "cfg": cfg.to_dict(),
            }
        ),
        force=force,
    )
    t_start = time.perf_counter()
    created_at = time.time()
    accuracy_before: float | None = None
    if data is not None:
        accuracy_before = run.done("accuracy_before")
        if accuracy_before is None:
            accuracy_before = evaluate(
                bundle.model, data, max_samples=cfg.eval_samples, description="eval base"
            ).accuracy
            run.mark("accuracy_before", accuracy_before)
    # The steps' facts are JSON in the staging directory (a rerun resumes from them).
    facts = run.done("pruned")
    if facts is None:
        found = search(bundle, cfg.prune, cfg.search, data) if cfg.search is not None else None
        result = found.result if found is not None else prune(bundle, cfg.prune, data)
        pruned = result.bundle
        save_checkpoint(pruned, run.path("pruned.pt"))
        facts = {
            "flops_before": result.macs_before,
            "flops_after": result.macs_after,
            "params_before": result.params_before,
            "params_after": result.params_after,
            "scoring_seconds": result.scoring_seconds,
            "criterion_info": result.criterion,
            "widths": {k: list(v) for k, v in result.widths.items()},
            "criterion_facts": result.facts,
            "channel_reduction": result.plan.channel_reduction(),
        }
        if found is not None:
            facts["search"] = found.to_dict()  # read back by a resumed run
        if data is not None:
            facts["accuracy_pruned_no_finetune"] = evaluate(
                pruned.model, data, max_samples=cfg.eval_samples, description="eval pruned"
            ).accuracy
        run.mark("pruned", facts)
    else:
        pruned = load_checkpoint(run.path("pruned.pt"), own_code)
    finetune: FinetuneSummary | None = None
    if cfg.finetune is not None and cfg.finetune.epochs > 0 and data is not None:
        ft = run.done("finetune")
        if ft is None:
            ft_path = run.path("finetune.pt")
            state = None
            if ft_path.is_file():
                saved = load_checkpoint(ft_path, own_code)
                pruned = saved
                state = TrainState.from_dict(saved.train_state or {})
            t0 = time.perf_counter()

            def save_ft(st: TrainState, bundle: ModelBundle = pruned) -> None:
                save_checkpoint(bundle, ft_path, train_state=st.to_dict())

            state = train(
                pruned.model,
                data,
                cfg.finetune,
                state=state,
                description="fine-tune",
                on_epoch_end=save_ft,
            )
            pruned.model.cpu()
            acc = evaluate(
                pruned.model, data, max_samples=cfg.eval_samples, description="eval fine-tuned"
            ).accuracy
            finetune = FinetuneSummary(
                epochs=state.epoch,
                seconds=time.perf_counter() - t0,
                accuracy=acc,
                history=state.history,
            )
            save_checkpoint(pruned, run.path("finetuned.pt"))
            run.mark("finetune", finetune.to_dict())
        else:
            finetune = FinetuneSummary.from_dict(ft)
            pruned = load_checkpoint(run.path("finetuned.pt"), own_code)
    accuracy_pruned = facts.get("accuracy_pruned_no_finetune") if data is not None else None
    accuracy_after = finetune.accuracy if finetune else accuracy_pruned
    pruned.metrics = {"flops_after": facts["flops_after"], "params_after": facts["params_after"]}
    if accuracy_after is not None:
        pruned.metrics = {"accuracy_after": accuracy_after, **pruned.metrics}
    save_checkpoint(pruned, run.path("model.pt"))
    with track("export model.onnx (checker, parity)"):
        export = onnx_from_torch(
            pruned.model, pruned.input_shape, run.path("model.onnx"), opset=cfg.opset
        )
    export.path = str(out / "model.onnx")  # where it will be once the run is finished
    search_summary: dict[str, Any] | None = None
    latency: LatencyEntry | None = None
    if cfg.search is not None:
        stored = facts["search"]
        search_summary = {k: v for k, v in stored.items() if k not in ("base", "pruned")}
        latency = budget_latency(
            BudgetCheck(
                device=stored["device"],
                budget=stored["budget"],
                budget_ms=float(stored["budget_ms"]),
                base=Measurement.from_dict(stored["base"]),
            ),
            run.path("model.onnx"),
            cfg,
        )
    elif cfg.devices:
        latency = bench_pair(
            bundle, model, run.path("model.onnx"), cfg.devices, cfg.bench, cfg.opset
        )
    warnings = slowdown_warnings(latency, granularity.value) if latency is not None else []
    if export.parity_input_sensitive is False:
        warnings.append(
            "model.onnx: the output does not depend on the input, so its parity check proves "
            "nothing (a randomly initialised model whose activations vanish does this)"
        )
    report = PruneReport(
        edgeprune_version=versions()["edgeprune"],
        created_at=created_at,
        command=command_line(),
        model=ModelSource(
            source=model,
            arch=bundle.arch.to_dict(),
            input_shape=list(bundle.input_shape),
            dataset=data.info.name if data else None,
        ),
        criterion=cfg.prune.criterion,
        round_to=granularity.to_dict(),
        config=cfg.to_dict(),
        versions=versions(),
        flops_before=facts["flops_before"],
        flops_after=facts["flops_after"],
        params_before=facts["params_before"],
        params_after=facts["params_after"],
        scoring_seconds=facts["scoring_seconds"],
        criterion_info=facts["criterion_info"],
        criterion_facts=facts.get("criterion_facts", {}),
        channel_reduction=facts["channel_reduction"],
        widths=facts["widths"],
        export=export,
        artifacts={"model.pt": sha256_file(run.path("model.pt")), "model.onnx": export.sha256},
        warnings=warnings,
        wall_seconds=time.perf_counter() - t_start,
        run_dir=str(out),
        accuracy_before=accuracy_before,
        accuracy_pruned_no_finetune=accuracy_pruned,
        finetune=finetune,
        search=search_summary,
        latency=latency,
    )
    for name in ("pruned.pt", "finetune.pt", "finetuned.pt"):
        run.path(name).unlink(missing_ok=True)
    content = report.to_dict(run_dir=False)
    write_json(run.path("report.json"), content)
    from edgeprune.pipeline.report import write_run_html

    with track("write report.html"):
        write_run_html(content, run.path("report.html"), run_dir=out)
    run.finish()
    return report


def _own_factory(model: str) -> str | None:
    """MODEL itself when it is a factory reference: the user named that code, so the checkpoints
    this run writes from it may be rebuilt through it."""
    if is_factory_ref(model) and not looks_like_checkpoint(model):
        return spec_from_ref(model).factory
    return None


def _source_hash(model: str) -> str | None:
    path = Path(model.rpartition(":")[0] if ":" in model and not Path(model).exists() else model)
    return sha256_file(path) if path.is_file() else None


def slowdown_warning(
    device: str, base_ms: float, pruned_ms: float, round_to: int | None, what: str = "median"
) -> str | None:
    """The warning for a pruned model that is not faster than its base on ``device``, or None."""
    if pruned_ms < base_ms:
        return None
    multiple = max(8, 2 * (round_to or 1))
    return (
        f"the pruned model is NOT faster than the base on {device}: {what} {pruned_ms:.3f} ms vs "
        f"{base_ms:.3f} ms ({base_ms / pruned_ms:.2f}x); prune against the device's latency "
        f"(--latency-budget 0.8x --device {device}) or to coarser widths (--round-to {multiple})"
    )


def slowdown_warnings(latency: LatencyEntry, round_to: int | None) -> list[str]:
    """A warning for every device of a run's latency entry where pruning did not pay."""
    out = []
    for e in latency.entries():
        w = slowdown_warning(e.device, e.base_ms, e.pruned_ms, round_to, e.percentile)
        if w:
            out.append(w)
    return out


def bench_pair(
    base: ModelBundle,
    base_source: str,
    pruned_onnx: Path,
    devices: tuple[str, ...],
    cfg: BenchConfig,
    opset: int | None,
) -> LatencyEntry:
    """Measure the base and the pruned model side by side on each device (same context).

    The entry is the first device's; its ``others`` hold the further devices'.
    """
    base_onnx, _ = cached_onnx(
        copy.deepcopy(base),
        base_source if Path(base_source).is_file() else f"{base_source}:{base.input_shape}",
        opset,
        cfg.batch,
    )
    entries = []
    with Store() as store:
        for dev in devices:
            mb = lease_and_measure(dev, base_onnx, cfg, store, label="base")
            mp = lease_and_measure(dev, pruned_onnx, cfg, store, label="pruned")
            entries.append(LatencyEntry(str(mp.context["device"]), "median", mb, mp))
    first = entries[0]
    first.others = {e.device: e for e in entries[1:]}
    return first


@dataclass(frozen=True)
class BudgetCheck:
    """What the final file is checked against: the search's device, budget and base."""

    device: str
    budget: str
    budget_ms: float
    base: Measurement


def budget_latency(check: BudgetCheck, pruned_onnx: Path, cfg: PruneRunConfig) -> LatencyEntry:
    """Measure the final model.onnx where the search ran; compare it with the budget."""
    assert cfg.search is not None
    with Store() as store:
        m = lease_and_measure(check.device, pruned_onnx, cfg.search.bench, store, label="pruned")
    return LatencyEntry(
        check.device,
        cfg.search.percentile,
        check.base,
        m,
        budget=check.budget,
        budget_ms=check.budget_ms,
    )
