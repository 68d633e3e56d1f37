"""Latency-aware search vs FLOPs-targeted and Torch-Pruning pruning, at equal *measured* latency.

For each model, device and budget (a fraction of the base model's measured median latency on that
device) three methods pick a pruned model whose measured latency meets the budget:

  (a) ``latency``  edgeprune's latency-aware search (lookup tables + greedy + on-device checks);
  (b) ``flops``    uniform pruning with the same criterion, its FLOPs target bisected against
                   measured latency (the largest measured latency within budget wins);
  (c) ``tp``       Torch-Pruning's default global L1 (MetaPruner, GroupMagnitudeImportance p=1,
                   global_pruning=True), its pruning ratio bisected the same way.

All three get BN recalibration and the same short fine-tune. Reported: accuracy (no fine-tune and
fine-tuned), measured latency, FLOPs reduction, realised speed-up ÷ FLOPs-ideal speed-up, device
measurements used and wall time; plus the plans (a) picks on each device, to show that devices
with different latency profiles get different widths. Devices: ``local`` and a loopback sshd
device slowed by a cgroup CPU quota, started by this script (needs root and openssh-server).

    python benchmarks/latency_search.py --models resnet56 --ckpt-dir benchmarks/results/criteria/ckpt
    python benchmarks/latency_search.py --smoke
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, machine_line, markdown_table, plot

from edgeprune.bench import BenchConfig, Store, measure
from edgeprune.checkpoint import load_checkpoint
from edgeprune.data import load_dataset
from edgeprune.device import DeviceSession
from edgeprune.device.lease import run_leased
from edgeprune.export import onnx_from_torch
from edgeprune.pipeline.flows import train_checkpoint
from edgeprune.prune import (
    PruneConfig,
    Target,
    choose_keep,
    count_macs_params,
    materialize,
    score_model,
)
from edgeprune.prune._engine import torch_pruning_default
from edgeprune.search import Budget, SearchConfig, search_in_session
from edgeprune.search.latency_model import PROBE_EXPORTER
from edgeprune.train import TrainConfig, evaluate, recalibrate_bn, train


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="resnet56,mobilenet_v2")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--budgets", default="0.7,0.5,0.35")
    p.add_argument(
        "--devices",
        default="local,slow",
        help="'slow' = a loopback sshd device this script starts with --slow-quota",
    )
    p.add_argument(
        "--slow-quota",
        type=float,
        default=0.5,
        help="CPU quota of the slowed loopback device (fraction of one CPU)",
    )
    p.add_argument("--criterion", default="l1")
    p.add_argument(
        "--epochs", type=int, default=8, help="baseline epochs when a checkpoint must be trained"
    )
    p.add_argument("--ckpt-dir", type=Path, default=Path("benchmarks/results/criteria/ckpt"))
    p.add_argument(
        "--base",
        type=Path,
        default=None,
        help="use this trained checkpoint (e.g. the demo's) instead of training --models",
    )
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--finetune-samples", type=int, default=20000)
    p.add_argument("--bench-seconds", type=float, default=2.0)
    p.add_argument(
        "--table-seconds",
        type=float,
        default=0.15,
        help="measuring window per lookup-table entry of the search",
    )
    p.add_argument("--bisect-steps", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="inference threads on the devices")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latency"))
    p.add_argument("--smoke", action="store_true", help="tiny run for CI")
    a = p.parse_args(argv)
    if a.smoke:
        a.models, a.data, a.budgets, a.devices = "resnet20", "digits", "0.6", "local"
        a.epochs, a.finetune_epochs, a.finetune_samples, a.bench_seconds, a.bisect_steps = (
            1,
            1,
            None,
            0.2,
            2,
        )
        a.table_seconds = 0.02
    return a


class Probe:
    """Exports and measures candidate models on one open device session."""

    def __init__(self, dev: DeviceSession, cfg: BenchConfig, store: Store, tmp: Path) -> None:
        self.dev, self.cfg, self.store, self.tmp, self.count = dev, cfg, store, tmp, 0

    def __call__(self, model: torch.nn.Module, shape: tuple[int, ...], label: str) -> float:
        self.count += 1
        path = self.tmp / f"probe{self.count}.onnx"
        onnx_from_torch(model.eval(), shape, path, exporter=PROBE_EXPORTER)  # as the search's
        return measure(self.dev, path, self.cfg, store=self.store, label=label).stats.median


def bisect(
    make: Any,
    probe: Probe,
    shape: tuple[int, ...],
    budget_ms: float,
    lo: float,
    hi: float,
    steps: int,
    label: str,
) -> tuple[Any, float, float] | None:
    """Largest-latency setting within budget: bisect x in [lo, hi] (more x = smaller model)."""
    best = None
    for _ in range(steps):
        x = (lo + hi) / 2
        model = make(x)
        ms = probe(model, shape, f"{label} {x:.3f}")
        if ms <= budget_ms:
            hi = x
            if best is None or ms > best[2]:
                best = (model, x, ms)
            if ms >= 0.9 * budget_ms:
                break
        else:
            lo = x
    return best


def finish(model: torch.nn.Module, data: Any, args: argparse.Namespace) -> tuple[float, float]:
    recalibrate_bn(model, data, 5, 128)
    acc0 = evaluate(model, data).accuracy
    train(
        model,
        data,
        TrainConfig(
            epochs=args.finetune_epochs, lr=0.01, max_train_samples=args.finetune_samples, seed=1
        ),
        description="fine-tune",
    )
    return acc0, evaluate(model, data).accuracy


def run_device(
    dev: DeviceSession,
    model_name: str,
    ckpt: Path,
    data: Any,
    args: argparse.Namespace,
    results: Results,
) -> None:
    base = load_checkpoint(ckpt)
    shape = base.input_shape
    example = base.example_input()
    macs0, _ = count_macs_params(base.model, example)
    cfg = BenchConfig(min_seconds=args.bench_seconds, threads=args.threads, max_repeats=3)
    with Store() as store, tempfile.TemporaryDirectory() as tmpdir:
        probe = Probe(dev, cfg, store, Path(tmpdir))
        base_ms = probe(base.model, shape, f"{model_name} base")
        pcfg = PruneConfig(criterion=args.criterion, target=Target("flops", 0.5))
        scored = score_model(base, pcfg, data)
        for b in [float(v) for v in args.budgets.split(",")]:
            budget_ms = b * base_ms
            for method in ("latency", "flops", "tp"):
                key = {"model": model_name, "device": dev.name, "budget": b, "method": method}
                if results.done(**key):
                    continue
                t0 = time.perf_counter()
                n0 = probe.count
                extra: dict[str, Any] = {}
                if method == "latency":
                    scfg = SearchConfig(
                        budget=Budget(budget_ms, False),
                        bench=cfg,
                        block_bench=BenchConfig(
                            warmup_runs=3,
                            warmup_seconds=0.05,
                            min_runs=5 if args.table_seconds < 0.1 else 20,
                            min_seconds=args.table_seconds,
                            max_seconds=5,
                            max_repeats=1,
                            threads=args.threads,
                        ),
                    )
                    res = search_in_session(dev, base, pcfg, scfg, data)
                    model, ms, measurements = (
                        res.result.bundle.model,
                        res.final_ms,
                        res.device_measurements,
                    )
                    extra = {
                        "widths": {k: v[0] for k, v in res.result.widths.items()},
                        "latency_model": res.model,
                        "search_base_ms": res.base_ms,
                        "met": res.met,
                    }
                else:
                    if method == "flops":

                        def make(x: float) -> torch.nn.Module:
                            keep = choose_keep(
                                scored.ctx,
                                PruneConfig(criterion=args.criterion, target=Target("flops", x)),
                                scored.scores,
                                scored.criterion,
                            )
                            return materialize(base, scored, keep, pcfg, None).bundle.model

                        hi = 0.95
                    else:

                        def make(x: float) -> torch.nn.Module:
                            return torch_pruning_default(copy.deepcopy(base.model), example, x)

                        hi = 0.9
                    found = bisect(
                        make,
                        probe,
                        shape,
                        budget_ms,
                        0.0,
                        hi,
                        args.bisect_steps,
                        f"{model_name} {method}",
                    )
                    if found is None:
                        results.add(
                            {
                                **key,
                                "infeasible": True,
                                "budget_ms": budget_ms,
                                "base_ms": base_ms,
                                "device_measurements": probe.count - n0,
                                "wall_seconds": time.perf_counter() - t0,
                            }
                        )
                        print(
                            f"[{model_name} {dev.name} {b}x] {method:7s} nothing within {budget_ms:.3f} ms after {probe.count - n0} probes",
                            flush=True,
                        )
                        continue
                    model, x, ms = found
                    measurements = probe.count - n0
                    extra = {"setting": x}
                macs, params = count_macs_params(model, example)
                acc0, acc_ft = finish(model, data, args)
                ideal = macs0 / macs
                results.add(
                    {
                        **key,
                        "budget_ms": budget_ms,
                        "base_ms": base_ms,
                        "measured_ms": ms,
                        "flops_reduction": 1 - macs / macs0,
                        "params": params,
                        "acc_no_ft": acc0,
                        "acc_ft": acc_ft,
                        "speedup": base_ms / ms,
                        "flops_ideal_speedup": ideal,
                        "realised_over_ideal": (base_ms / ms) / ideal,
                        "device_measurements": measurements,
                        "wall_seconds": time.perf_counter() - t0,
                        **extra,
                    }
                )
                print(
                    f"[{model_name} {dev.name} {b}x] {method:7s} {ms:.3f}/{budget_ms:.3f} ms  acc {acc0:.4f} → {acc_ft:.4f}  "
                    f"FLOPs -{1 - macs / macs0:.1%}  real/ideal {(base_ms / ms) / ideal:.2f}  {measurements} meas  {time.perf_counter() - t0:.0f}s",
                    flush=True,
                )


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "results.jsonl", ("model", "device", "budget", "method"))
    data = load_dataset(args.data)
    devices = args.devices.split(",")
    farm_ctx: Any = None
    if "slow" in devices:
        from edgeprune._devices.testfarm import Farm, FarmDeviceConfig

        farm_dir = Path(tempfile.mkdtemp(prefix="edgeprune-farm-"))
        farm_ctx = Farm(farm_dir, [FarmDeviceConfig("slow", cpu_quota=args.slow_quota)])
        farm_ctx.start()
        os.environ["EDGEPRUNE_CONFIG"] = str(farm_dir / "config")
        farm_ctx.write_inventory(farm_dir / "config")
    bases: list[tuple[str, Path]] = []
    try:
        for model_name in [] if args.base else args.models.split(","):
            ckpt = args.ckpt_dir / f"{model_name}-{args.data}-e{args.epochs}.pt"
            train_checkpoint(
                model_name,
                args.data,
                TrainConfig(epochs=args.epochs, lr=0.1, warmup_epochs=0.3),
                ckpt,
            )
            bases.append((model_name, ckpt))
        if args.base:
            bases.append((str(load_checkpoint(args.base).arch.name), args.base))
        for model_name, ckpt in bases:
            for device in devices:
                run_leased(
                    device,
                    lambda dev, m=model_name, c=ckpt: run_device(dev, m, c, data, args, results),
                )
    finally:
        if farm_ctx is not None:
            farm_ctx.stop()
    return report(args, results)


def report(args: argparse.Namespace, results: Results) -> Path:
    lines = [
        "# Latency-aware search vs FLOPs-targeted and Torch-Pruning pruning, at equal measured latency",
        "",
        f"Criterion `{args.criterion}`; dataset `{args.data}`; fine-tune {args.finetune_epochs} epoch(s) on {args.finetune_samples or 'all'} "
        f"images for every method; latency = median on the device (ONNX Runtime CPU, {args.threads} thread(s), ≥{args.bench_seconds:g} s). "
        f"Machine: {machine_line()}.",
        "",
        f"Command: `python benchmarks/latency_search.py {' '.join(sys.argv[1:])}`",
        "",
    ]
    rows = [r for r in results.rows if not r.get("infeasible")]
    missed = [r for r in results.rows if r.get("infeasible")]
    for model in sorted({r["model"] for r in results.rows}):
        lines += [f"## {model}", ""]
        table = []
        series: dict[str, list[tuple[float, float]]] = {}
        for r in sorted(
            (r for r in rows if r["model"] == model),
            key=lambda r: (r["device"], -r["budget"], r["method"]),
        ):
            table.append(
                [
                    r["device"],
                    f"{r['budget']:g}x",
                    r["method"],
                    r["budget_ms"],
                    r["measured_ms"],
                    100 * r["flops_reduction"],
                    100 * r["acc_no_ft"],
                    100 * r["acc_ft"],
                    r["speedup"],
                    r["realised_over_ideal"],
                    r["device_measurements"],
                    r["wall_seconds"],
                ]
            )
            series.setdefault(f"{r['method']} @ {r['device']}", []).append(
                (r["measured_ms"], 100 * r["acc_ft"])
            )
        for r in (r for r in missed if r["model"] == model):
            table.append(
                [
                    r["device"],
                    f"{r['budget']:g}x",
                    r["method"],
                    r["budget_ms"],
                    f"none within budget after {r['device_measurements']} probes",
                    None,
                    None,
                    None,
                    None,
                    None,
                    r["device_measurements"],
                    r["wall_seconds"],
                ]
            )
        lines.append(
            markdown_table(
                [
                    "device",
                    "budget",
                    "method",
                    "budget ms",
                    "measured ms",
                    "FLOPs ↓ %",
                    "acc no-FT %",
                    "acc FT %",
                    "speed-up",
                    "realised/ideal",
                    "device meas.",
                    "wall s",
                ],
                table,
            )
        )
        png = plot(
            args.out / f"{model}-acc-vs-latency.png",
            f"{model}: fine-tuned accuracy vs measured latency",
            series,
            "measured latency (ms)",
            "top-1 accuracy (%)",
        )
        if png:
            lines += ["", f"![{model}]({png.name})"]
        lines.append("")
        plans = [r for r in rows if r["model"] == model and r["method"] == "latency"]
        devs = sorted({r["device"] for r in plans})
        if len(devs) > 1:
            lines += [
                "Plans chosen by the latency-aware search on each device (kept channels per group):",
                "",
            ]
            for b in sorted({r["budget"] for r in plans}, reverse=True):
                per = {r["device"]: r["widths"] for r in plans if r["budget"] == b}
                if len(per) < 2:
                    continue
                a, c = (per[d] for d in devs[:2])
                differ = [k for k in a if a[k] != c.get(k)]
                lines.append(
                    f"- {b:g}x: {len(differ)} of {len(a)} groups differ between {devs[0]} and {devs[1]}"
                    + (
                        f" (e.g. {', '.join(f'{k}: {a[k]} vs {c[k]}' for k in differ[:4])})"
                        if differ
                        else ""
                    )
                )
            lines.append("")
    path = args.out / "latency_search.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
