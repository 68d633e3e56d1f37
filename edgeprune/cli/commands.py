"""Core commands: models, datasets, criteria, train, eval, prune, export, bench, demo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgeprune.cli._app import (
    app,
    console,
    emit_json,
    fmt,
    kv_table,
    on_interrupt,
    pct,
    progress,
    styled,
    warn_slowdowns,
)
from edgeprune.cli.options import (
    INCOMPLETE_MEASUREMENT,
    DurationOpt,
    GradualStepsOpt,
    ImageSizeOpt,
    InputSizeOpt,
    JsonOpt,
    JudgeStepsOpt,
    MaxCvOpt,
    MaxLayerRatioOpt,
    ModelCodeOpt,
    ModelKwargsOpt,
    ProxySamplesOpt,
    RepeatsOpt,
    RunsOpt,
    SearchEvalsOpt,
    TableSecondsOpt,
    ThreadsOpt,
    WarmupOpt,
    finetune_config,
    model_kwargs_of,
    protocol_config,
    prune_target,
    search_config,
)
from edgeprune.errors import UsageError

if TYPE_CHECKING:
    from edgeprune.pipeline.results import PruneReport

# --------------------------------------------------------------------------- listings


@app.command("models")
def models_cmd(json_out: JsonOpt = False) -> None:
    """List the model zoo (use FILE.py:factory or pkg.module:factory for your own models)."""
    from edgeprune.models import MODELS, ArchSpec, default_input_size

    rows = [
        {
            "name": e.name,
            "family": e.meta.get("family"),
            "input_size": default_input_size(ArchSpec(name=e.name)),
            "summary": e.summary,
        }
        for e in MODELS.entries()
    ]
    if json_out:
        emit_json({"models": rows})
        return
    t = Table("name", "family", "input", "description", title="Model zoo")
    for r in rows:
        t.add_row(str(r["name"]), fmt(r["family"]), fmt(r["input_size"]), str(r["summary"]))
    console.print(t)


@app.command("datasets")
def datasets_cmd(json_out: JsonOpt = False) -> None:
    """List datasets (imagefolder takes a path: imagefolder:PATH)."""
    from edgeprune.data import DATASETS

    rows = [{"name": e.name, "summary": e.summary} for e in DATASETS.entries()]
    if json_out:
        emit_json({"datasets": rows})
        return
    t = Table("name", "description", title="Datasets")
    for r in rows:
        t.add_row(r["name"], r["summary"])
    console.print(t)


@app.command("criteria")
def criteria_cmd(json_out: JsonOpt = False) -> None:
    """List pruning criteria and their options (set with --criterion-opt key=value)."""
    from edgeprune.prune import CRITERIA

    rows: list[dict[str, Any]] = []
    for e in CRITERIA.entries():
        opts = {
            k: {
                "default": o.default,
                "help": o.help,
                "choices": list(o.choices) if o.choices else None,
            }
            for k, o in e.obj.options.items()
        }
        rows.append(
            {"name": e.name, "needs_data": e.obj.needs_data, "summary": e.summary, "options": opts}
        )
    if json_out:
        emit_json({"criteria": rows})
        return
    t = Table("name", "data", "description", "options", title="Pruning criteria")
    for r in rows:
        t.add_row(
            r["name"],
            "yes" if r["needs_data"] else "no",
            r["summary"],
            ", ".join(f"{k}={v['default']}" for k, v in r["options"].items()),
        )
    console.print(t)


# --------------------------------------------------------------------------- train / eval


@app.command("train")
def train_cmd(
    model: Annotated[
        str, typer.Argument(help="Zoo name, FILE.py:factory, or a checkpoint to keep training.")
    ],
    data: Annotated[str, typer.Option("--data", help="Dataset (see `edgeprune datasets`).")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Checkpoint to write (rewritten every epoch; a rerun resumes)."),
    ],
    epochs: Annotated[int, typer.Option("--epochs")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine schedule).")] = 0.1,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 5e-4,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing")] = 0.0,
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs")] = 0.0,
    max_train_samples: Annotated[
        int | None, typer.Option("--max-train-samples", help="Train on a fixed random subset.")
    ] = None,
    train_device: Annotated[
        str, typer.Option("--train-device", help="auto, cpu or cuda.")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (default: torch's choice).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model_kwargs: ModelKwargsOpt = None,
    model_code: ModelCodeOpt = None,
    image_size: ImageSizeOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite --out even if it holds another run.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a model (SGD + cosine); resumable from its checkpoint."""
    from edgeprune.pipeline.flows import train_checkpoint
    from edgeprune.train import TrainConfig, set_threads

    set_threads(threads)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        warmup_epochs=warmup_epochs,
        seed=seed,
        max_train_samples=max_train_samples,
        device=train_device,
    )
    kept = f"{out} keeps the last finished epoch; rerun the same command to resume"
    with progress(json_out), on_interrupt(kept):
        res = train_checkpoint(
            model,
            data,
            cfg,
            out,
            model_kwargs_of(model_kwargs),
            image_size,
            force=force,
            model_code=model_code,
        )
    if json_out:
        emit_json(res.to_dict())
        return
    console.print(
        kv_table(
            "trained" + (" (already complete, reused)" if res.reused else ""),
            [
                ("checkpoint", res.checkpoint),
                ("model", res.model),
                ("dataset", res.dataset),
                ("epochs", res.epochs),
                ("test accuracy", pct(res.accuracy)),
                ("throughput (img/s)", res.images_per_s),
                ("train time (s)", res.train_seconds),
            ],
        )
    )


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Argument(help="Checkpoint (or zoo name / factory).")],
    data: Annotated[str, typer.Option("--data")],
    max_samples: Annotated[
        int | None,
        typer.Option("--max-samples", help="Evaluate on a fixed random subset of the test split."),
    ] = None,
    model_kwargs: ModelKwargsOpt = None,
    model_code: ModelCodeOpt = None,
    image_size: ImageSizeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Top-1 accuracy of a model on a dataset's test split."""
    from edgeprune.pipeline.flows import evaluate_model

    with progress(json_out), on_interrupt("nothing was written"):
        res = evaluate_model(
            model,
            data,
            model_kwargs_of(model_kwargs),
            image_size,
            max_samples,
            model_code=model_code,
        )
    if json_out:
        emit_json(res.to_dict())
        return
    console.print(
        kv_table(
            "evaluation",
            [
                ("model", res.model),
                ("dataset", res.dataset),
                ("samples", res.samples),
                ("top-1 accuracy", pct(res.accuracy)),
                ("loss", res.loss),
            ],
        )
    )


# --------------------------------------------------------------------------- prune


def _split_names(values: list[str] | None) -> tuple[str, ...]:
    return tuple(n.strip() for v in values or [] for n in v.split(",") if n.strip())


@app.command("prune")
def prune_cmd(
    model: Annotated[
        str, typer.Argument(help="Checkpoint, zoo name (random init) or FILE.py:factory.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Run directory: report.json, model.pt, model.onnx, report.html."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Dataset for data-driven criteria, BN recalibration, fine-tuning and accuracy.",
        ),
    ] = None,
    criterion: Annotated[str, typer.Option("--criterion", help="See `edgeprune criteria`.")] = "l1",
    criterion_opt: Annotated[
        list[str] | None,
        typer.Option("--criterion-opt", help="key=value option of the criterion (repeatable)."),
    ] = None,
    ratio: Annotated[
        float | None, typer.Option("--ratio", help="Fraction of each group's channels to remove.")
    ] = None,
    flops_reduction: Annotated[
        float | None, typer.Option("--flops-reduction", help="Fraction of FLOPs (MACs) to remove.")
    ] = None,
    params_reduction: Annotated[
        float | None, typer.Option("--params-reduction", help="Fraction of parameters to remove.")
    ] = None,
    ratios_file: Annotated[
        Path | None,
        typer.Option("--ratios-file", help="JSON {layer: ratio} per-layer ratio vector."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="uniform (same ratio per group), global (rank all channels together) or search (candidate plans ranked by accuracy, needs --data); default: search for FLOPs/params targets with --data, else the criterion's (global for easiedge).",
        ),
    ] = None,
    convention: Annotated[
        str,
        typer.Option(
            "--convention",
            help="all groups (DepGraph) or internal (block-internal only, HRank/CHIP).",
        ),
    ] = "all",
    round_to: Annotated[
        int | None,
        typer.Option(
            "--round-to",
            help="Keep channel counts multiples of N (default: the target's fast multiple, from "
            "--device's profile or measured on this host; 1: no rounding).",
        ),
    ] = None,
    min_channels: Annotated[int, typer.Option("--min-channels")] = 1,
    ignore_layers: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore-layers",
            help="Layer names whose outputs must keep their width (comma list, repeatable).",
        ),
    ] = None,
    calib_batches: Annotated[
        int,
        typer.Option(
            "--calib-batches",
            help="Calibration batches for data-driven criteria and BN recalibration.",
        ),
    ] = 5,
    calib_batch_size: Annotated[int, typer.Option("--calib-batch-size")] = 128,
    bn_recalibration: Annotated[
        bool,
        typer.Option(
            "--bn-recalibration/--no-bn-recalibration",
            help="Re-estimate BN statistics after pruning.",
        ),
    ] = True,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs")] = 0,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr")] = 0.01,
    finetune_batch_size: Annotated[int, typer.Option("--finetune-batch-size")] = 128,
    max_train_samples: Annotated[
        int | None, typer.Option("--max-train-samples", help="Fine-tune on a fixed random subset.")
    ] = None,
    eval_samples: Annotated[
        int | None,
        typer.Option("--eval-samples", help="Evaluate on a fixed random subset of the test split."),
    ] = None,
    opset: Annotated[
        int | None,
        typer.Option("--opset", help="ONNX opset of model.onnx (default: the exporter's)."),
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            help="Measure base and pruned latency on this device or profile (repeatable); with --latency-budget, the first is where widths are searched.",
        ),
    ] = None,
    latency_budget: Annotated[
        str | None,
        typer.Option(
            "--latency-budget",
            help="Choose widths against measured latency: milliseconds (8ms) or a fraction of the base model's latency (0.5x).",
        ),
    ] = None,
    runtime: Annotated[
        str, typer.Option("--runtime", help="Runtime measured by the search (ort).")
    ] = "ort",
    precision: Annotated[
        str, typer.Option("--precision", help="fp32 (the ort runtime runs fp32).")
    ] = "fp32",
    percentile: Annotated[
        str,
        typer.Option(
            "--percentile", help="Statistic the budget applies to: median, p90, p99, mean, min."
        ),
    ] = "median",
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="latency (lookup-table greedy), uniform (bisection baseline) or netadapt.",
        ),
    ] = "latency",
    table_seconds: TableSecondsOpt = 0.15,
    max_layer_ratio: MaxLayerRatioOpt = 0.8,
    search_evals: SearchEvalsOpt = 24,
    judge_steps: JudgeStepsOpt = 16,
    gradual_steps: GradualStepsOpt = 0,
    proxy_samples: ProxySamplesOpt = 2048,
    max_cv: MaxCvOpt = 0.025,
    bench_seconds: Annotated[
        float,
        typer.Option("--bench-seconds", help="Minimum measured seconds per latency benchmark."),
    ] = 2.0,
    threads: Annotated[
        int, typer.Option("--threads", help="Inference threads for latency benchmarks.")
    ] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    model_kwargs: ModelKwargsOpt = None,
    model_code: ModelCodeOpt = None,
    image_size: ImageSizeOpt = None,
    input_size: InputSizeOpt = None,
    list_groups: Annotated[
        bool, typer.Option("--list-groups", help="Print the model's prunable groups and exit.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing run directory.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Prune a model with a criterion to a target, fine-tune, export ONNX, write a run directory."""
    from edgeprune.bench import BenchConfig
    from edgeprune.pipeline.flows import PruneRunConfig, prune_run
    from edgeprune.prune import PruneConfig, parse_criterion_opts

    if list_groups:
        _list_groups(
            model,
            data,
            model_kwargs_of(model_kwargs),
            image_size,
            input_size,
            _split_names(ignore_layers),
            json_out,
            model_code,
        )
        return
    if out is None:
        raise UsageError("missing --out", hint="pass --out RUNDIR")
    target, ratios = prune_target(
        ratio, flops_reduction, params_reduction, ratios_file, latency_budget
    )
    ft = finetune_config(finetune_epochs, finetune_lr, finetune_batch_size, max_train_samples, seed)
    pcfg = PruneConfig(
        criterion=criterion,
        criterion_options=parse_criterion_opts(criterion_opt),
        target=target,
        ratios=ratios,
        mode=mode,
        convention=convention,
        round_to=round_to,
        min_channels=min_channels,
        ignored_layers=_split_names(ignore_layers),
        calib_batches=calib_batches,
        calib_batch_size=calib_batch_size,
        recalibrate_bn=bn_recalibration,
        seed=seed,
        finetune=ft,
        search_evals=search_evals,
        proxy_samples=proxy_samples,
        max_layer_ratio=max_layer_ratio,
    )
    search_cfg = (
        search_config(
            latency_budget,
            (device or ["local"])[0],
            runtime,
            precision,
            percentile,
            strategy,
            bench_seconds,
            threads,
            opset,
            table_seconds,
            max_layer_ratio,
            max_cv,
            search_evals,
            judge_steps=judge_steps,
            gradual_steps=gradual_steps,
        )
        if latency_budget is not None
        else None
    )
    cfg = PruneRunConfig(
        search=search_cfg,
        prune=pcfg,
        finetune=ft,
        opset=opset,
        eval_samples=eval_samples,
        devices=tuple(device or ()),
        bench=BenchConfig(min_seconds=bench_seconds, threads=threads),
    )
    kept = (
        f"finished steps are kept in {out.parent / ('.' + out.name + '.partial')}; "
        "rerun the same command to resume"
    )
    with progress(json_out), on_interrupt(kept):
        report = prune_run(
            model,
            data,
            cfg,
            out,
            model_kwargs_of(model_kwargs),
            image_size,
            input_size,
            force=force,
            model_code=model_code,
        )
    warn_slowdowns(report.warnings)
    if json_out:
        emit_json(report.to_dict())
    else:
        print_prune_report(report)
    if report.missed_budget:
        # Like lint: the run directory is complete, but what it holds misses the budget.
        raise typer.Exit(1)


def print_prune_report(report: PruneReport) -> None:
    rows: list[tuple[str, Any]] = [
        ("run directory", report.run_dir),
        ("criterion", report.criterion),
        (
            "FLOPs (MMAC)",
            f"{report.flops_before / 1e6:.2f} → {report.flops_after / 1e6:.2f}  (-{report.flops_reduction:.1%})",
        ),
        (
            "params (M)",
            f"{report.params_before / 1e6:.3f} → {report.params_after / 1e6:.3f}  (-{report.params_reduction:.1%})",
        ),
        ("scoring time (s)", report.scoring_seconds),
    ]
    if report.accuracy_before is not None:
        rows.append(
            (
                "accuracy",
                f"{pct(report.accuracy_before)} → {pct(report.accuracy_pruned_no_finetune)} (pruned) → {pct(report.accuracy_after)} (final)",
            )
        )
    exp = report.export
    rows.append(
        ("ONNX", f"{exp.path}  opset {exp.opset}, parity max|Δ| {exp.parity_max_abs_diff:.2g}")
    )
    lat = report.latency
    for entry in lat.entries() if lat else []:
        q = entry.percentile
        rows.append(
            (
                f"latency on {entry.device}",
                f"{entry.base_ms:.3f} ms → {entry.pruned_ms:.3f} ms {q}  ({entry.speedup:.2f}×)",
            )
        )
    if lat is not None and lat.budget_ms is not None:
        verdict = (
            "met"
            if lat.met
            else "NOT met: the deployed model.onnx measured over the budget (see report.json); exit code 1"
        )
        rows.append(("latency budget", f"{lat.budget} = {lat.budget_ms:.3f} ms: {verdict}"))
        s = report.search or {}
        if s:
            m = s["latency_model"]
            rows.append(
                (
                    "search",
                    f"{s['strategy']}: {s['device_measurements']} device measurements, latency model error median {m['median_relative_error'] or 0:.1%} / worst {m['worst_relative_error'] or 0:.1%}",
                )
            )
            for note in s.get("notes") or []:
                rows.append(("note", note))
    alloc = report.criterion_facts.get("allocation") or ((report.search or {}).get("allocation"))
    if alloc and alloc.get("proxy_samples"):
        base = ", ".join(
            f"{k} {pct(v)}" for k, v in sorted(alloc["baseline_proxy_accuracy"].items())
        )
        rows.append(
            (
                "width plan",
                f"{alloc['chosen']}: proxy accuracy {pct(alloc['chosen_proxy_accuracy'])} ({base}) over {alloc['evaluations']} plans, {alloc['proxy_samples']} held-out training images",
            )
        )
    rows.append(("report", str(Path(report.run_dir) / "report.html")))
    console.print(kv_table("pruned", rows))


def _list_groups(
    model: str,
    data: str | None,
    kwargs: dict[str, Any],
    image_size: int | None,
    input_size: int | None,
    ignored: tuple[str, ...],
    json_out: bool,
    model_code: str | None = None,
) -> None:
    from edgeprune.pipeline.flows import load_bundle, load_data
    from edgeprune.prune import DependencyIndex

    bundle = load_bundle(model, load_data(data, image_size), kwargs, input_size, model_code)
    index = DependencyIndex(bundle.model, bundle.example_input(), ignored=list(ignored))
    groups = [g.to_dict() for g in index.groups]
    refused = [r.to_dict() for r in index.refused]
    if json_out:
        emit_json(
            {"model": bundle.label, "ignored": index.ignored, "groups": groups, "refused": refused}
        )
        return
    t = Table(
        "root",
        "width",
        "shared",
        "layers",
        "limit",
        title=f"prunable groups of {bundle.label} (protected: {', '.join(index.ignored)})",
    )
    for g in groups:
        t.add_row(
            escape(g["root"]),
            str(g["width"]),
            "yes" if g["shared"] else "",
            str(len(g["members"]) + len(g["consumers"])),
            escape(g["limit"] or ""),
        )
    for r in refused:
        t.add_row(
            escape(r["root"]), str(r["width"]), "", "", escape(f"not prunable: {r['reason']}")
        )
    console.print(t)


# --------------------------------------------------------------------------- export / bench / demo


@app.command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name or FILE.py:factory.")],
    out: Annotated[Path, typer.Option("--out", help="ONNX file to write.")],
    to: Annotated[str, typer.Option("--to", help="Target format.")] = "onnx",
    opset: Annotated[
        int | None,
        typer.Option("--opset", help="ONNX opset (below 18 uses the TorchScript exporter)."),
    ] = None,
    exporter: Annotated[
        str, typer.Option("--exporter", help="auto, dynamo or torchscript.")
    ] = "auto",
    external_data: Annotated[
        bool, typer.Option("--external-data", help="Write weights to a .onnx.data side file.")
    ] = False,
    dynamic_batch: Annotated[
        bool,
        typer.Option("--dynamic-batch", help="Symbolic batch dimension (default: static batch 1)."),
    ] = False,
    data: Annotated[
        str | None,
        typer.Option("--data", help="Dataset fixing a zoo model's input shape and classes."),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Device profile to export for (picks an opset it accepts, then lints the file).",
        ),
    ] = None,
    simplify: Annotated[
        bool,
        typer.Option(
            "--simplify", help="Fold constants and drop dead nodes; parity is checked again."
        ),
    ] = False,
    model_kwargs: ModelKwargsOpt = None,
    model_code: ModelCodeOpt = None,
    input_size: InputSizeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export to ONNX: one self-contained file, full checker, ONNX Runtime parity check."""
    from edgeprune.pipeline.flows import export_onnx

    if to != "onnx":
        raise UsageError(f"unknown export target {to!r}", hint="use --to onnx")
    res = export_onnx(
        model,
        out,
        opset,
        exporter,
        external_data,
        dynamic_batch,
        model_kwargs_of(model_kwargs),
        input_size,
        data,
        profile,
        simplify,
        model_code=model_code,
    )
    if json_out:
        emit_json(res.to_dict())
        return
    e = res.export
    rows: list[tuple[str, Any]] = [
        ("file", e.path),
        ("opset", e.opset),
        ("exporter", e.exporter),
        ("size (bytes)", e.size_bytes),
        ("sha256", e.sha256),
        ("inputs", ", ".join(f"{i.name} {i.shape} {i.dtype}" for i in e.inputs)),
        ("outputs", ", ".join(f"{o.name} {o.shape} {o.dtype}" for o in e.outputs)),
        (
            "parity max|Δ|",
            f"{e.parity_max_abs_diff:.3g} (|out| ≤ {e.parity_output_scale:.3g}, {e.parity_samples} inputs)",
        ),
    ]
    if res.simplify is not None:
        rows.append(
            ("simplified", f"{res.simplify.nodes_before} → {res.simplify.nodes_after} nodes")
        )
    rows += [("note", n) for n in e.notes]
    for f in res.lint:
        rows.append((f"lint {f.level}", f"{f.code}: {f.message} (fix: {f.fix})"))
    console.print(kv_table("exported", rows))


@app.command("bench")
def bench_cmd(
    model: Annotated[
        str, typer.Argument(help="ONNX file, checkpoint, zoo name or FILE.py:factory.")
    ],
    device: Annotated[
        str,
        typer.Option("--device", help="Device name or profile (a free device of it is leased)."),
    ] = "local",
    threads: ThreadsOpt = 1,
    batch: Annotated[int, typer.Option("--batch")] = 1,
    runs: RunsOpt = 50,
    duration: DurationOpt = 2.0,
    warmup: WarmupOpt = 10,
    repeats: RepeatsOpt = 3,
    opset: Annotated[int | None, typer.Option("--opset")] = None,
    reuse: Annotated[
        bool,
        typer.Option(
            "--reuse",
            help="Return a stored measurement with the same context key instead of measuring.",
        ),
    ] = False,
    model_kwargs: ModelKwargsOpt = None,
    model_code: ModelCodeOpt = None,
    input_size: InputSizeOpt = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Include raw per-run times in --json output.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Measure inference latency on a device by the protocol; every result is stored."""
    from edgeprune.pipeline.flows import bench_model

    cfg = protocol_config(threads, runs, duration, warmup, repeats, batch)
    with progress(json_out), on_interrupt(INCOMPLETE_MEASUREMENT):
        res = bench_model(
            model,
            device,
            cfg,
            model_kwargs_of(model_kwargs),
            input_size,
            opset,
            reuse,
            model_code=model_code,
        )
    if json_out:
        emit_json(res.to_dict(raw=raw))
        return
    m = res.measurement
    s, c = m.stats, m.context
    console.print(
        kv_table(
            f"latency of {Path(model).name} on {c['device']}",
            [
                ("median (ms)", s.median),
                ("p90 / p99 (ms)", f"{s.p90:.4g} / {s.p99:.4g}"),
                ("mean ± std (ms)", f"{s.mean:.4g} ± {s.std:.3g}"),
                ("CV", f"{s.cv:.2%}"),
                ("min (ms)", s.min),
                ("runs", s.n),
                ("runtime", f"{c['runtime']} {c['runtime_version']} ({c['provider']})"),
                ("threads / batch", f"{c['threads']} / {c['batch']}"),
                ("valid", m.valid),
                ("unstable", m.unstable),
                ("store id", m.id),
                *[("note", n) for n in m.notes],
            ],
        )
    )


@app.command("demo")
def demo_cmd(
    epochs: Annotated[
        int, typer.Option("--epochs", help="Base model training epochs (cached between runs).")
    ] = 3,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs")] = 1,
    flops_reduction: Annotated[float, typer.Option("--flops-reduction")] = 0.5,
    round_to: Annotated[
        int | None,
        typer.Option("--round-to", help="Keep channel counts multiples of N (0: no rounding)."),
    ] = 8,
    criterion: Annotated[str, typer.Option("--criterion")] = "l1",
    device: Annotated[str, typer.Option("--device")] = "local",
    latency_budget: Annotated[
        str | None,
        typer.Option(
            "--latency-budget",
            help="Prune to a measured latency budget (0.6x, 2ms) instead of a FLOPs target.",
        ),
    ] = None,
    out: Annotated[str, typer.Option("--out")] = "runs/demo",
    json_out: JsonOpt = False,
) -> None:
    """The main job: ResNet-20 on Fashion-MNIST → prune → fine-tune → export → measure on `local`."""
    from edgeprune.pipeline.demo import DemoConfig, run_demo

    kept = "the base model's finished epochs and the run's finished steps are kept; rerun `edgeprune demo` to resume"
    with progress(json_out), on_interrupt(kept):
        report = run_demo(
            DemoConfig(
                epochs=epochs,
                finetune_epochs=finetune_epochs,
                flops_reduction=flops_reduction,
                round_to=1 if round_to == 0 else round_to,
                criterion=criterion,
                device=device,
                out=out,
                latency_budget=latency_budget,
            )
        )
    warn_slowdowns(report.warnings)
    if json_out:
        emit_json(report.to_dict())
        return
    print_prune_report(report)
    d = report.demo
    assert d is not None  # run_demo sets it
    console.print(
        f"base model: {d.base_checkpoint} ({'reused' if d.base_reused else 'trained'}); demo took {d.wall_seconds:.0f} s"
    )
    console.print(styled("report: ", "bold") + d.report_html)
