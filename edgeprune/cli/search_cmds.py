"""`edgeprune search`: latency-constrained width search without fine-tuning (plans only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeprune.cli._app import app, console, emit_json, kv_table, on_interrupt, pct, progress
from edgeprune.cli.options import (
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
    SearchEvalsOpt,
    TableSecondsOpt,
    model_kwargs_of,
    search_config,
)
from edgeprune.errors import UsageError


@app.command("search")
def search_cmd(
    model: Annotated[str, typer.Argument(help="Checkpoint, zoo name or FILE.py:factory.")],
    latency_budget: Annotated[
        str,
        typer.Option("--latency-budget", help="8ms, or 0.5x of the base model's measured latency."),
    ],
    device: Annotated[
        str, typer.Option("--device", help="Device or profile to measure on.")
    ] = "local",
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="Dataset for data-driven criteria, BN recalibration and accuracy."
        ),
    ] = None,
    criterion: Annotated[str, typer.Option("--criterion")] = "l1",
    criterion_opt: Annotated[
        list[str] | None, typer.Option("--criterion-opt", help="key=value (repeatable).")
    ] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", help="latency, uniform or netadapt.")
    ] = "latency",
    runtime: Annotated[str, typer.Option("--runtime")] = "ort",
    precision: Annotated[str, typer.Option("--precision")] = "fp32",
    percentile: Annotated[str, typer.Option("--percentile")] = "median",
    bench_seconds: Annotated[
        float,
        typer.Option("--bench-seconds", help="Minimum measured seconds per whole-model benchmark."),
    ] = 2.0,
    table_seconds: TableSecondsOpt = 0.15,
    max_layer_ratio: MaxLayerRatioOpt = 0.8,
    search_evals: SearchEvalsOpt = 24,
    judge_steps: JudgeStepsOpt = 16,
    gradual_steps: GradualStepsOpt = 0,
    proxy_samples: ProxySamplesOpt = 2048,
    max_cv: MaxCvOpt = 0.025,
    threads: Annotated[int, typer.Option("--threads")] = 1,
    min_channels: Annotated[int, typer.Option("--min-channels")] = 1,
    convention: Annotated[str, typer.Option("--convention")] = "all",
    opset: Annotated[int | None, typer.Option("--opset")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the plan: FILE.json (plan + facts) or FILE.pt (pruned checkpoint)."
        ),
    ] = None,
    model_kwargs: ModelKwargsOpt = None,
    model_code: ModelCodeOpt = None,
    image_size: ImageSizeOpt = None,
    input_size: InputSizeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Search per-layer widths that meet a latency budget measured on a device (no fine-tuning)."""
    from edgeprune._files import check_writable
    from edgeprune.checkpoint import save_checkpoint
    from edgeprune.pipeline.flows import load_bundle, load_data
    from edgeprune.prune import PruneConfig, parse_criterion_opts
    from edgeprune.search import search
    from edgeprune.train import evaluate

    if out is not None and out.suffix not in (".json", ".pt"):
        raise UsageError(f"--out must end in .json or .pt, got {out}")
    if out is not None:
        check_writable(out)
    scfg = search_config(
        latency_budget,
        device,
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
    pcfg = PruneConfig(
        criterion=criterion,
        criterion_options=parse_criterion_opts(criterion_opt),
        min_channels=min_channels,
        convention=convention,
        proxy_samples=proxy_samples,
        search_evals=search_evals,
        max_layer_ratio=max_layer_ratio,
    )
    kept = (
        "candidates measured so far and the stored latency tables are kept in the store; "
        "a rerun reuses the tables"
    )
    pcfg.require_data(data is not None)
    with progress(json_out), on_interrupt(kept):
        dataset = load_data(data, image_size)
        bundle = load_bundle(model, dataset, model_kwargs_of(model_kwargs), input_size, model_code)
        found = search(bundle, pcfg, scfg, dataset)
        result: dict[str, Any] = {
            k: v for k, v in found.to_dict().items() if k not in ("base", "pruned")
        }
        result["plan"] = found.result.plan.to_dict()
        if dataset is not None:
            result["accuracy_before"] = evaluate(bundle.model, dataset).accuracy
            result["accuracy_no_finetune"] = evaluate(found.result.bundle.model, dataset).accuracy
    if out is not None:
        if out.suffix == ".pt":
            save_checkpoint(found.result.bundle, out)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if json_out:
        emit_json(result)
        return
    m = result["latency_model"]
    rows = [
        ("device", result["device"]),
        ("budget", f"{result['budget']} = {result['budget_ms']:.3f} ms ({result['percentile']})"),
        (
            "measured",
            f"{result['base_ms']:.3f} ms → {result['pruned_ms']:.3f} ms ({result['speedup']:.2f}×), {'met' if result['met'] else 'NOT met'}",
        ),
        (
            "FLOPs",
            f"-{result['flops_reduction']:.1%} (ideal {result['flops_ideal_speedup']:.2f}×; realised/ideal {result['realised_over_ideal']:.2f})",
        ),
        (
            "latency model",
            f"{m['layers']} layers, {m['entries']} table entries ({m['measured']} measured now, {m['reused']} reused); error median {(m['median_relative_error'] or 0):.1%}, worst {(m['worst_relative_error'] or 0):.1%}",
        ),
        ("device measurements", result["device_measurements"]),
        ("wall time (s)", result["wall_seconds"]),
    ]
    if "accuracy_before" in result:
        rows.append(
            (
                "accuracy (no fine-tune)",
                f"{pct(result['accuracy_before'])} → {pct(result['accuracy_no_finetune'])}",
            )
        )
    if out is not None:
        rows.append(("written", str(out)))
    console.print(kv_table(f"search ({result['strategy']})", rows))
