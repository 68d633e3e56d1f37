"""End-to-end flows the CLI calls: train, evaluate, prune-and-export, export, bench.

Each flow is one function taking plain values and config records, returning a JSON-able dict (the
CLI prints it, scripts use ``--json``). Long steps are resumable: training checkpoints every epoch;
a prune run is staged in ``.RUNDIR.partial`` and a rerun of the same command continues there.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
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
from edgeprune.prune import PruneConfig, prune
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
) -> dict[str, Any]:
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
) -> dict[str, Any]:
    return {
        "checkpoint": str(out),
        "model": bundle.arch.label,
        "dataset": bundle.dataset,
        "epochs": saved.get("epoch"),
        "accuracy": bundle.metrics.get("accuracy"),
        "loss": bundle.metrics.get("loss"),
        "history": saved.get("history", []),
        "train_seconds": saved.get("train_seconds"),
        "reused": reused,
    }


def evaluate_model(
    model: str,
    data_spec: str,
    model_kwargs: dict[str, Any] | None = None,
    image_size: int | None = None,
    max_samples: int | None = None,
    model_code: str | None = None,
) -> dict[str, Any]:
    data = load_dataset(data_spec, image_size)
    bundle = load_bundle(model, data, model_kwargs, model_code=model_code)
    r = evaluate(bundle.model, data, max_samples=max_samples)
    return {
        "model": bundle.label,
        "dataset": data.info.name,
        "accuracy": r.accuracy,
        "loss": r.loss,
        "samples": r.samples,
    }


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
) -> dict[str, Any]:
    """Export MODEL to one checked ONNX file; returns the `ExportResult` fields plus, with
    ``profile``, the profile name and its lint findings, and with ``simplify``, what the
    simplification removed (parity is re-checked on the simplified file)."""
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
    report: dict[str, Any] = {}
    if simplify:
        if res.external_data:
            raise UsageError("--simplify cannot be combined with --external-data")
        simplified = simplify_onnx(res.path)
        diff, scale = parity(bundle.model, res.path, bundle.input_shape, 1, res.parity_samples)
        if not diff <= res.parity_tolerance * max(1.0, scale):
            Path(res.path).unlink(missing_ok=True)
            raise ExportError(
                f"the simplified model differs from PyTorch by {diff:.3g}; nothing was written",
                hint="export without --simplify",
            )
        res.parity_max_abs_diff, res.parity_output_scale = diff, scale
        res.sha256, res.size_bytes = sha256_file(res.path), Path(res.path).stat().st_size
        report["simplify"] = simplified.to_dict()
    if prof is not None:
        report["profile"] = prof.name
        report["lint"] = [f.to_dict() for f in lint_onnx(res.path, prof)]
    return {**res.to_dict(), **report}


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
) -> dict[str, Any]:
    from edgeprune.device import Inventory

    Inventory.load().resolve(device)  # an unknown device fails before the model is exported
    artifact = model_artifact(model, model_kwargs, input_size, opset, cfg.batch, model_code)
    with Store() as store:
        m = lease_and_measure(
            device, artifact, cfg, store, label=label or Path(model).name, reuse=reuse
        )
    return {"model": model, "artifact": str(artifact), **m.to_dict()}


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
) -> dict[str, Any]:
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
    report: dict[str, Any] = {
        "edgeprune_version": versions()["edgeprune"],
        "created_at": time.time(),
        "command": command_line(),
        "model": {
            "source": model,
            "arch": bundle.arch.to_dict(),
            "input_shape": list(bundle.input_shape),
            "dataset": data.info.name if data else None,
        },
        "criterion": cfg.prune.criterion,
        "config": cfg.to_dict(),
        "versions": versions(),
    }
    if data is not None:
        acc = run.done("accuracy_before")
        if acc is None:
            acc = evaluate(
                bundle.model, data, max_samples=cfg.eval_samples, description="eval base"
            ).accuracy
            run.mark("accuracy_before", acc)
        report["accuracy_before"] = acc
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
            facts["search"] = found.to_dict()
        if data is not None:
            facts["accuracy_pruned_no_finetune"] = evaluate(
                pruned.model, data, max_samples=cfg.eval_samples, description="eval pruned"
            ).accuracy
        run.mark("pruned", facts)
    else:
        pruned = load_checkpoint(run.path("pruned.pt"), own_code)
    report.update(
        {
            "flops_before": facts["flops_before"],
            "flops_after": facts["flops_after"],
            "flops_reduction": 1.0 - facts["flops_after"] / facts["flops_before"],
            "params_before": facts["params_before"],
            "params_after": facts["params_after"],
            "params_reduction": 1.0 - facts["params_after"] / facts["params_before"],
            "flops_unit": "multiply-accumulates per image",
            "scoring_seconds": facts["scoring_seconds"],
            "criterion_info": facts["criterion_info"],
            "criterion_facts": facts.get("criterion_facts", {}),
            "channel_reduction": facts["channel_reduction"],
            "widths": facts["widths"],
        }
    )
    if data is not None:
        report["accuracy_pruned_no_finetune"] = facts["accuracy_pruned_no_finetune"]
        report["accuracy_after"] = facts["accuracy_pruned_no_finetune"]
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
            ft = {
                "epochs": state.epoch,
                "seconds": time.perf_counter() - t0,
                "accuracy": acc,
                "history": state.history,
            }
            save_checkpoint(pruned, run.path("finetuned.pt"))
            run.mark("finetune", ft)
        else:
            pruned = load_checkpoint(run.path("finetuned.pt"), own_code)
        report["finetune"] = ft
        report["accuracy_after"] = ft["accuracy"]
    pruned.metrics = {
        k: report[k] for k in ("accuracy_after", "flops_after", "params_after") if k in report
    }
    save_checkpoint(pruned, run.path("model.pt"))
    with track("export model.onnx (checker, parity)"):
        export = onnx_from_torch(
            pruned.model, pruned.input_shape, run.path("model.onnx"), opset=cfg.opset
        )
    report["export"] = {**export.to_dict(), "path": str(out / "model.onnx")}
    report["artifacts"] = {
        "model.pt": sha256_file(run.path("model.pt")),
        "model.onnx": export.sha256,
    }
    if cfg.search is not None:
        report["search"] = {k: v for k, v in facts["search"].items() if k not in ("base", "pruned")}
        report["latency"] = budget_latency(facts["search"], run.path("model.onnx"), cfg)
    elif cfg.devices:
        report["latency"] = bench_pair(
            bundle, model, run.path("model.onnx"), cfg.devices, cfg.bench, cfg.opset
        )
    report["wall_seconds"] = time.perf_counter() - t_start
    for name in ("pruned.pt", "finetune.pt", "finetuned.pt"):
        run.path(name).unlink(missing_ok=True)
    write_json(run.path("report.json"), report)
    from edgeprune.pipeline.report import write_run_html

    with track("write report.html"):
        write_run_html(report, run.path("report.html"), run_dir=out)
    run.finish()
    report["run_dir"] = str(out)
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


def _latency_entry(
    device: str, base: dict[str, Any], pruned: dict[str, Any], percentile: str = "median"
) -> dict[str, Any]:
    b, p = base["stats"][percentile], pruned["stats"][percentile]
    return {
        "device": device,
        "percentile": percentile,
        "base": base,
        "pruned": pruned,
        "speedup": b / p,
    }


def bench_pair(
    base: ModelBundle,
    base_source: str,
    pruned_onnx: Path,
    devices: tuple[str, ...],
    cfg: BenchConfig,
    opset: int | None,
) -> dict[str, Any]:
    """Measure the base and the pruned model side by side on each device (same context).

    ``latency.base``/``latency.pruned`` are the first device's measurements (full statistics and
    context key); ``latency.others`` holds the same for further devices.
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
            entries.append(_latency_entry(str(mp.context["device"]), mb.to_dict(), mp.to_dict()))
    first = entries[0]
    first["others"] = {e["device"]: e for e in entries[1:]}
    return first


def budget_latency(found: dict[str, Any], pruned_onnx: Path, cfg: PruneRunConfig) -> dict[str, Any]:
    """Measure the final model.onnx where the search ran; compare it with the budget."""
    assert cfg.search is not None
    with Store() as store:
        m = lease_and_measure(found["device"], pruned_onnx, cfg.search.bench, store, label="pruned")
    entry = _latency_entry(found["device"], found["base"], m.to_dict(), cfg.search.percentile)
    measured = m.stats.get(cfg.search.percentile)
    entry.update(
        {
            "budget": found["budget"],
            "budget_ms": found["budget_ms"],
            "met": measured <= found["budget_ms"],
        }
    )
    return entry
