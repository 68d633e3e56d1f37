"""Compare every pruning criterion on trained models: accuracy, FLOPs, params, scoring time, latency.

For each model: train a baseline on the dataset (cached, resumable checkpoint), measure its
latency on a device, then for every criterion and FLOPs target: prune (uniform per-group ratio, or
the criterion's own mode — global for EasiEdge), evaluate (a) without fine-tuning, both without and
with BN recalibration, measure the pruned model's latency, then (b) fine-tune for the same short
budget for every criterion and evaluate again. Results go to ``OUT/results.jsonl`` (a rerun skips
finished rows, so an interrupted run loses nothing), then ``OUT/criteria.md`` and one PNG per model.

    python benchmarks/criteria_compare.py --models resnet56 --epochs 8            # the full table
    python benchmarks/criteria_compare.py --smoke                                  # CI: ~30 s here
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, machine_line, markdown_table, plot

from edgeprune.bench import BenchConfig, Store
from edgeprune.checkpoint import load_checkpoint
from edgeprune.data import load_dataset
from edgeprune.export import onnx_from_torch
from edgeprune.pipeline.flows import lease_and_measure, train_checkpoint
from edgeprune.prune import CRITERIA, PruneConfig, Target, prune
from edgeprune.train import TrainConfig, evaluate, recalibrate_bn, train


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="resnet56", help="comma list of zoo models")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--criteria", default="all", help="comma list or 'all'")
    p.add_argument("--targets", default="0.5,0.7", help="FLOPs reductions")
    p.add_argument("--epochs", type=int, default=8, help="baseline training epochs")
    p.add_argument("--train-samples", type=int, default=None, help="baseline trained on a subset")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument(
        "--finetune-samples",
        type=int,
        default=20000,
        help="fine-tune on a fixed subset (same for all)",
    )
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--calib-batches", type=int, default=5)
    p.add_argument("--calib-batch-size", type=int, default=128)
    p.add_argument(
        "--eval-samples", type=int, default=None, help="evaluate on a subset of the test split"
    )
    p.add_argument(
        "--device", default="local", help="device or profile for latency ('none' to skip)"
    )
    p.add_argument("--bench-seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2, help="torch threads for training/scoring")
    p.add_argument(
        "--search-evals",
        type=int,
        default=PruneConfig.search_evals,
        help="width plans the allocator ranks by accuracy per criterion and target",
    )
    p.add_argument(
        "--exporter",
        default="auto",
        choices=("auto", "dynamo", "torchscript"),
        help="ONNX exporter of the timed files (auto: what `edgeprune export` uses)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/criteria"))
    p.add_argument(
        "--smoke", action="store_true", help="tiny run for CI (digits, ResNet-20, 3 criteria)"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.data, args.criteria, args.targets = (
            "resnet20",
            "digits",
            "l1,qsfm,easiedge",
            "0.5",
        )
        args.epochs, args.finetune_epochs, args.finetune_samples = 3, 1, None
        args.calib_batches, args.calib_batch_size, args.bench_seconds = 2, 64, 0.2
        # Seconds, not a minute: the dynamo export alone takes ~8 s per file here.
        args.search_evals, args.exporter = 4, "torchscript"
    return args


def latency(device: str, onnx_path: Path, seconds: float, label: str) -> dict[str, Any] | None:
    if device == "none":
        return None
    cfg = BenchConfig(min_seconds=seconds, warmup_seconds=min(1.0, seconds), max_repeats=3)
    with Store() as store:
        m = lease_and_measure(device, onnx_path, cfg, store, label=label)
    return {
        "median_ms": m.stats.median,
        "p90_ms": m.stats.p90,
        "cv": m.stats.cv,
        "unstable": m.unstable,
        "store_id": m.id,
    }


def run(args: argparse.Namespace) -> Path:
    torch.set_num_threads(args.threads)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = Results(out / "results.jsonl", ("model", "data", "criterion", "target", "row"))
    data = load_dataset(args.data)
    criteria = CRITERIA.names() if args.criteria == "all" else args.criteria.split(",")
    targets = [float(t) for t in args.targets.split(",")]
    for model_name in args.models.split(","):
        n = f"-n{args.train_samples}" if args.train_samples else ""
        ckpt = out / "ckpt" / f"{model_name}-{args.data}-e{args.epochs}{n}.pt"
        t0 = time.perf_counter()
        trained = train_checkpoint(
            model_name,
            args.data,
            TrainConfig(
                epochs=args.epochs, lr=0.1, warmup_epochs=0.3, max_train_samples=args.train_samples
            ),
            ckpt,
        )
        base = load_checkpoint(ckpt)
        if not results.done(
            model=model_name, data=args.data, criterion="base", target=0.0, row="base"
        ):
            acc = evaluate(base.model, data, max_samples=args.eval_samples).accuracy
            onnx_path = out / "onnx" / f"{model_name}-base.onnx"
            onnx_from_torch(base.model, base.input_shape, onnx_path, exporter=args.exporter)
            lat = latency(args.device, onnx_path, args.bench_seconds, f"{model_name}-base")
            results.add(
                {
                    "model": model_name,
                    "data": args.data,
                    "criterion": "base",
                    "target": 0.0,
                    "row": "base",
                    "accuracy": acc,
                    "train_epochs": trained.epochs,
                    "train_seconds": trained.train_seconds,
                    "latency": lat,
                }
            )
            print(
                f"[{model_name}] base accuracy {acc:.4f} (trained {time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
        for target in targets:
            for crit in criteria:
                key = {
                    "model": model_name,
                    "data": args.data,
                    "criterion": crit,
                    "target": target,
                    "row": "pruned",
                }
                if results.done(**key):
                    continue
                t1 = time.perf_counter()
                cfg = PruneConfig(
                    criterion=crit,
                    target=Target("flops", target),
                    recalibrate_bn=False,
                    calib_batches=args.calib_batches,
                    calib_batch_size=args.calib_batch_size,
                    search_evals=args.search_evals,
                )
                res = prune(base, cfg, data)
                model = res.bundle.model
                acc_raw = evaluate(model, data, max_samples=args.eval_samples).accuracy
                recalibrate_bn(model, data, args.calib_batches, args.calib_batch_size)
                acc_recal = evaluate(model, data, max_samples=args.eval_samples).accuracy
                onnx_path = out / "onnx" / f"{model_name}-{crit}-{target}.onnx"
                exp = onnx_from_torch(
                    model.eval(), res.bundle.input_shape, onnx_path, exporter=args.exporter
                )
                lat = latency(
                    args.device, onnx_path, args.bench_seconds, f"{model_name}-{crit}-{target}"
                )
                ft_cfg = TrainConfig(
                    epochs=args.finetune_epochs,
                    lr=args.finetune_lr,
                    max_train_samples=args.finetune_samples,
                    seed=1,
                )
                t2 = time.perf_counter()
                train(model, data, ft_cfg, description=f"fine-tune {crit}")
                acc_ft = evaluate(model, data, max_samples=args.eval_samples).accuracy
                row = {
                    **key,
                    "mode": res.criterion.get("default_mode", "uniform"),
                    "flops_reduction": res.flops_reduction,
                    "params_reduction": res.params_reduction,
                    "scoring_seconds": res.scoring_seconds,
                    "acc_no_ft_no_recal": acc_raw,
                    "acc_no_ft": acc_recal,
                    "acc_ft": acc_ft,
                    "finetune_seconds": time.perf_counter() - t2,
                    "latency": lat,
                    "parity": exp.parity_max_abs_diff,
                    "facts": {k: v for k, v in res.facts.items() if k != "threshold_ratios"},
                    "wall_seconds": time.perf_counter() - t1,
                }
                results.add(row)
                print(
                    f"[{model_name}] {crit:9s} -{target:.0%} FLOPs: {acc_raw:.4f} / {acc_recal:.4f} (recal) / {acc_ft:.4f} (ft)  "
                    f"score {res.scoring_seconds:.1f}s  {time.perf_counter() - t1:.0f}s",
                    flush=True,
                )
    return write_report(args, results, criteria, targets)


def write_report(
    args: argparse.Namespace, results: Results, criteria: list[str], targets: list[float]
) -> Path:
    lines = [
        "# Pruning criteria compared",
        "",
        f"Dataset `{args.data}`; baselines trained {args.epochs} epochs (SGD, cosine); calibration {args.calib_batches}×{args.calib_batch_size} "
        f"training images; fine-tune {args.finetune_epochs} epoch(s) on {args.finetune_samples or 'all'} training images at lr {args.finetune_lr} for every criterion. "
        f"Accuracy is top-1 on the {'full' if args.eval_samples is None else args.eval_samples} test split. Latency: ONNX Runtime CPU on `{args.device}`, "
        f"batch 1, median of ≥{args.bench_seconds:g} s. Machine: {machine_line()}.",
        "",
        f"Command: `python benchmarks/criteria_compare.py {' '.join(sys.argv[1:])}`",
        "",
    ]
    for model_name in args.models.split(","):
        base = results.done(
            model=model_name, data=args.data, criterion="base", target=0.0, row="base"
        )
        if base is None:
            continue
        blat = (base.get("latency") or {}).get("median_ms")
        lines += [
            f"## {model_name}",
            "",
            f"Baseline accuracy **{100 * base['accuracy']:.2f}%**, latency {blat if blat is None else f'{blat:.3f}'} ms.",
            "",
        ]
        rows, series_ft, series_raw = [], {}, {}
        for target in targets:
            for crit in criteria:
                r = results.done(
                    model=model_name, data=args.data, criterion=crit, target=target, row="pruned"
                )
                if r is None:
                    continue
                lat = (r.get("latency") or {}).get("median_ms")
                speed = blat / lat if lat and blat else None
                rows.append(
                    [
                        f"{target:.0%}",
                        crit,
                        r["mode"],
                        100 * r["flops_reduction"],
                        100 * r["params_reduction"],
                        100 * r["acc_no_ft_no_recal"],
                        100 * r["acc_no_ft"],
                        100 * r["acc_ft"],
                        r["scoring_seconds"],
                        lat,
                        speed,
                    ]
                )
                series_ft.setdefault(crit, []).append(
                    (100 * r["flops_reduction"], 100 * r["acc_ft"])
                )
                series_raw.setdefault(crit, []).append(
                    (100 * r["flops_reduction"], 100 * r["acc_no_ft"])
                )
        lines.append(
            markdown_table(
                [
                    "target",
                    "criterion",
                    "mode",
                    "FLOPs ↓ %",
                    "params ↓ %",
                    "acc no-FT, no recal %",
                    "acc no-FT (BN recal) %",
                    "acc fine-tuned %",
                    "scoring s",
                    "latency ms",
                    "speed-up",
                ],
                rows,
            )
        )
        for tag, series in (("ft", series_ft), ("noft", series_raw)):
            png = plot(
                args.out / f"{model_name}-{tag}.png",
                f"{model_name} on {args.data}: accuracy {'after fine-tune' if tag == 'ft' else 'without fine-tune (BN recalibrated)'}",
                series,
                "FLOPs reduction (%)",
                "top-1 accuracy (%)",
            )
            if png is not None:
                lines += ["", f"![{model_name} {tag}]({png.name})"]
        lines.append("")
    report = args.out / "criteria.md"
    report.write_text("\n".join(lines) + "\n")
    print(f"wrote {report}")
    return report


if __name__ == "__main__":
    run(parse())
