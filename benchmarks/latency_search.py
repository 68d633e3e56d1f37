"""Latency-budget pruning: edgeprune's search against three baselines, at equal *measured* latency.

For each model, device and budget (a fraction of the base model's measured median latency on that
device) every method picks a pruned model whose measured latency meets the budget:

  ``search``    edgeprune's accuracy-aware latency search: lookup-table latency model, candidate
                plans ranked by BN-recalibrated accuracy on held-out training images, the best
                measured on the device and steered into [0.93, 1.0] × budget; the chosen widths
                reached in ``--gradual-steps`` steps with NetAdapt's fine-tune after each;
  ``flops``     uniform pruning with the same criterion and edgeprune's default width
                granularity for the device (``--round-to``), its FLOPs target bisected against
                measured latency (the largest measured latency within budget wins);
  ``tp``        Torch-Pruning's default global L1 (MetaPruner, GroupMagnitudeImportance p=1,
                global_pruning=True), its pruning ratio bisected the same way;
  ``netadapt``  NetAdapt (Yang et al. 2018): the budget reached in steps, each followed by a short
                fine-tune and a re-score (edgeprune's ``--strategy netadapt``).

Every chosen model then gets BN recalibration and the same fine-tune; reported: test accuracy
without and with fine-tuning, measured latency, FLOPs reduction, realised ÷ FLOPs-ideal speed-up,
device measurements and wall time, and per point the search's margin over the best baseline.
The latency model's error against every whole-model measurement of the search is summarised per
device. Devices: ``local`` and ``slow``, a loopback sshd device under a cgroup CPU quota started by
this script (needs root and openssh-server). ``--imagenet`` adds MobileNetV2 with ImageNet
strides at 224×224, random init, latency only (search without data vs uniform FLOPs).

    python benchmarks/latency_search.py --models resnet56,mobilenet_v2@0.5 --devices local,slow
    python benchmarks/latency_search.py --smoke
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, machine_line, markdown_table, plot, table_bench

from edgeprune.bench import BenchConfig, Store, measure
from edgeprune.checkpoint import ModelBundle, load_checkpoint, resolve_model
from edgeprune.data import load_dataset
from edgeprune.device import DeviceSession
from edgeprune.device.lease import run_leased
from edgeprune.errors import BudgetInfeasibleError, UnstableMeasurementError
from edgeprune.export import onnx_from_torch
from edgeprune.pipeline.flows import train_checkpoint
from edgeprune.prune import (
    PruneConfig,
    Target,
    choose_keep,
    count_macs_params,
    materialize,
    score_model,
    with_round_to,
)
from edgeprune.prune._cost import CostModel
from edgeprune.prune._engine import torch_pruning_default
from edgeprune.prune._select import uniform_keep
from edgeprune.search import Budget, SearchConfig, search_in_session
from edgeprune.search.latency_model import PROBE_EXPORTER
from edgeprune.train import TrainConfig, evaluate, recalibrate_bn, train

METHODS = ("search", "flops", "tp", "netadapt")
# Ablations: reported beside the others, never counted as a baseline of the search's margin.
# ``search-onecut`` is the search with --gradual-steps 0 (its widths cut in one step, no training
# before the final fine-tune): it separates what the widths win from what the stepped cut does.
ABLATIONS = ("search-onecut",)
INNER_FT = TrainConfig(epochs=1, lr=0.01, max_train_samples=2048, seed=1)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models",
        default="resnet56,mobilenet_v2@0.5",
        help="comma list of zoo models; NAME@W sets width_mult=W",
    )
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--budgets", default="0.7,0.5,0.35")
    p.add_argument(
        "--devices",
        default="local,slow",
        help="'slow' = a loopback sshd device this script starts with --slow-quota",
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma list of {', '.join(METHODS)}; ablations: {', '.join(ABLATIONS)}",
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
    p.add_argument(
        "--base", type=Path, help="a trained checkpoint of the (single) model: no training"
    )
    p.add_argument("--ckpt-dir", type=Path, default=Path("benchmarks/results/criteria/ckpt"))
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
    p.add_argument("--proxy-evals", type=int, default=24)
    p.add_argument(
        "--gradual-steps",
        type=int,
        default=3,
        help="the search reaches its widths in this many steps, each followed by the fine-tune "
        "NetAdapt runs between its steps (0: one cut)",
    )
    p.add_argument("--max-cv", type=float, default=0.025, help="the protocol's stability bound")
    p.add_argument("--threads", type=int, default=1, help="inference threads on the devices")
    p.add_argument("--imagenet", action="store_true", help="add MobileNetV2 224x224, latency only")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latency"))
    p.add_argument("--smoke", action="store_true", help="tiny run for CI (seconds)")
    a = p.parse_args(argv)
    unknown = sorted(set(a.methods.split(",")) - set(METHODS) - set(ABLATIONS) - {""})
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}: use {', '.join(METHODS + ABLATIONS)}")
    if a.smoke:
        # A model small enough to train in seconds; noise-tolerant, so a loaded CI machine passes.
        # 0.8x: ResNet-20's smallest model on the default grid runs 0.62x of the base on an
        # AVX-512 host (16-channel steps; per-op overhead dominates at this input size).
        a.models, a.data, a.budgets, a.devices = "resnet20", "digits", "0.8", "local"
        a.epochs, a.finetune_epochs, a.finetune_samples, a.bench_seconds, a.bisect_steps = (
            1,
            1,
            256,
            0.2,
            2,
        )
        a.table_seconds, a.proxy_evals, a.max_cv = 0.02, 4, 1e9
    return a


def model_spec(token: str) -> tuple[str, str, dict[str, Any]]:
    """``NAME`` or ``NAME@W`` → (label, zoo name, kwargs)."""
    name, _, width = token.partition("@")
    kwargs: dict[str, Any] = {"width_mult": float(width)} if width else {}
    label = f"{name}-w{width}" if width else name
    return label, name, kwargs


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
            if ms >= 0.93 * budget_ms:
                break
        else:
            lo = x
    return best


def max_uniform_reduction(scored: Any, pcfg: PruneConfig) -> float:
    """The FLOPs reduction of the deepest uniform cut the granularity allows."""
    cm = CostModel(scored.ctx.index)
    keep = uniform_keep(scored.ctx.groups, 1.0, pcfg.round_to, pcfg.min_channels)
    return 1.0 - cm.macs(keep) / cm.macs(cm.full())


def finish(model: torch.nn.Module, data: Any, args: argparse.Namespace) -> tuple[float, float]:
    """BN recalibration + test accuracy, then the common fine-tune + test accuracy."""
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


def whole_model_bench(args: argparse.Namespace) -> BenchConfig:
    """One protocol for every method's whole-model measurements (the probes and the search's)."""
    return BenchConfig(
        warmup_seconds=min(1.0, args.bench_seconds),
        min_seconds=args.bench_seconds,
        threads=args.threads,
        max_repeats=3,
        cv_threshold=args.max_cv,
    )


def _search_cfg(budget_ms: float, args: argparse.Namespace, **kw: Any) -> SearchConfig:
    return SearchConfig(
        budget=Budget(budget_ms, False),
        bench=whole_model_bench(args),
        block_bench=table_bench(args.table_seconds, args.threads),
        exporter=PROBE_EXPORTER,  # this benchmark measures every method's TorchScript export
        proxy_evals=args.proxy_evals,
        **kw,
    )


def run_device(
    dev: DeviceSession,
    label: str,
    base: ModelBundle,
    data: Any,
    args: argparse.Namespace,
    results: Results,
) -> None:
    shape = base.input_shape
    example = base.example_input()
    macs0, _ = count_macs_params(base.model, example)
    cfg = whole_model_bench(args)
    methods = [m for m in args.methods.split(",") if m]
    if data is None:
        methods = [m for m in methods if m in ("search", "search-onecut", "flops")]
    with Store() as store, tempfile.TemporaryDirectory() as tmpdir:
        probe = Probe(dev, cfg, store, Path(tmpdir))
        # A resumed run keeps the base latency its finished rows were budgeted on: re-measured,
        # it drifts (0.96 then 0.83 ms for one ResNet-20 on this host, 15 minutes apart), and
        # methods given different budgets are not compared at equal latency.
        earlier = [
            r["base_ms"] for r in results.rows if (r["model"], r["device"]) == (label, dev.name)
        ]
        base_ms = earlier[0] if earlier else probe(base.model, shape, f"{label} base")
        # edgeprune's default width granularity for this device (the search resolves the same):
        # the uniform baseline is a uniform cut as `prune --flops-reduction` makes it.
        profile = None if dev.spec.profile == "local" else dev.spec.profile
        pcfg, _ = with_round_to(
            PruneConfig(criterion=args.criterion, target=Target("flops", 0.5), runs_on=profile)
        )
        scored = score_model(base, pcfg, data)
        for b in [float(v) for v in args.budgets.split(",")]:
            budget_ms = b * base_ms
            for method in methods:
                key = {"model": label, "device": dev.name, "budget": b, "method": method}
                if results.done(**key):
                    continue
                t0 = time.perf_counter()
                n0 = probe.count
                extra: dict[str, Any] = {}
                found: tuple[Any, float, float] | None
                try:
                    if method in ("search", "search-onecut", "netadapt"):
                        # NetAdapt's fine-tune between steps; the search's stepped cut gets the
                        # same one, so both methods train the same amount before the final one.
                        kw: dict[str, Any] = {"netadapt_finetune": INNER_FT}
                        if method == "netadapt":
                            kw["strategy"] = "netadapt"
                        elif method == "search" and data is not None:  # steps fine-tune
                            kw["gradual_steps"] = args.gradual_steps
                        res = search_in_session(
                            dev,
                            base,
                            replace_target(pcfg),
                            _search_cfg(budget_ms, args, **kw),
                            data,
                        )
                        found = (res.result.bundle.model, 0.0, res.final_ms)
                        n_meas = res.device_measurements
                        alloc = res.allocation.to_dict(res.roots, top=6) if res.allocation else None
                        extra = {
                            "widths": {k: v[0] for k, v in res.result.widths.items()},
                            "latency_model": res.model,
                            "lm_points": [
                                {
                                    "label": c.label,
                                    "predicted": c.predicted_ms,
                                    "measured": c.measured_ms,
                                }
                                for c in res.candidates
                                if c.predicted_ms is not None
                            ],
                            "allocation": alloc,
                            "judged": [
                                {
                                    "label": c.label,
                                    "measured": c.measured_ms,
                                    "proxy": c.proxy_accuracy,
                                    "tuned": c.tuned_accuracy,
                                }
                                for c in res.candidates
                                if c.tuned_accuracy is not None
                            ],
                            "search_base_ms": res.base_ms,
                            "met": res.met,
                        }
                    else:
                        if method == "flops":

                            def make(x: float) -> torch.nn.Module:
                                keep = choose_keep(
                                    scored.ctx,
                                    replace(pcfg, target=Target("flops", x), mode="uniform"),
                                    scored.scores,
                                    scored.criterion,
                                )
                                return materialize(base, scored, keep, pcfg, None).bundle.model

                            # No further than one ratio can cut on this granularity (ResNet-20 at
                            # AVX-512's 16 channels: 53 % of FLOPs); past it the target is refused.
                            hi = min(0.95, max_uniform_reduction(scored, pcfg) - 1e-6)
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
                            f"{label} {method}",
                        )
                        n_meas = probe.count - n0
                except (BudgetInfeasibleError, UnstableMeasurementError) as e:
                    print(f"[{label} {dev.name} {b}x] {method}: {e}", flush=True)
                    found, n_meas = None, probe.count - n0
                    extra = {"error": str(e)}
                if found is None:
                    results.add(
                        {
                            **key,
                            "infeasible": True,
                            "budget_ms": budget_ms,
                            "base_ms": base_ms,
                            "device_measurements": n_meas,
                            "wall_seconds": time.perf_counter() - t0,
                            **extra,
                        }
                    )
                    continue
                model, setting, ms = found
                if method in ("flops", "tp"):
                    extra = {"setting": setting}
                macs, params = count_macs_params(model, example)
                acc0, acc_ft = finish(model, data, args) if data is not None else (None, None)
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
                        "device_measurements": n_meas,
                        "wall_seconds": time.perf_counter() - t0,
                        **extra,
                    }
                )
                accs = f"acc {acc0:.4f} → {acc_ft:.4f}" if acc0 is not None else "latency only"
                print(
                    f"[{label} {dev.name} {b}x] {method:8s} {ms:.3f}/{budget_ms:.3f} ms  {accs}  "
                    f"FLOPs -{1 - macs / macs0:.1%}  real/ideal {(base_ms / ms) / ideal:.2f}  {n_meas} meas  {time.perf_counter() - t0:.0f}s",
                    flush=True,
                )


def replace_target(pcfg: PruneConfig) -> PruneConfig:
    """The search decides the widths itself: no FLOPs target."""
    return replace(pcfg, target=None)


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
    try:
        for token in [t for t in args.models.split(",") if t]:  # --models '' --imagenet: only it
            label, name, kwargs = model_spec(token)
            ckpt = args.ckpt_dir / f"{label}-{args.data}-e{args.epochs}.pt"
            if args.base is not None:
                ckpt = args.base
            else:
                train_checkpoint(
                    name,
                    args.data,
                    TrainConfig(
                        epochs=args.epochs,
                        lr=0.1,
                        warmup_epochs=0.3,
                        max_train_samples=2048 if args.smoke else None,
                    ),
                    ckpt,
                    model_kwargs=kwargs or None,
                )
            base = load_checkpoint(ckpt)
            for device in devices:
                run_leased(
                    device,
                    lambda dev, lb=label, bs=base: run_device(dev, lb, bs, data, args, results),
                )
        if args.imagenet:
            inet = resolve_model(
                "mobilenet_v2", {"config": "imagenet", "num_classes": 1000}, input_size=224
            )
            run_leased(
                "local",
                lambda dev: run_device(dev, "mobilenet_v2-imagenet224", inet, None, args, results),
            )
    finally:
        if farm_ctx is not None:
            farm_ctx.stop()
    return report(args, results)


def _margins(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, device, budget): the search's fine-tuned accuracy minus the best baseline's."""
    out = []
    points = sorted(
        {(r["model"], r["device"], r["budget"]) for r in rows if r.get("acc_ft") is not None}
    )
    for model, device, budget in points:
        here = {
            r["method"]: r
            for r in rows
            if (r["model"], r["device"], r["budget"]) == (model, device, budget)
        }
        if "search" not in here:
            continue
        base = {m: r["acc_ft"] for m, r in here.items() if m != "search" and m not in ABLATIONS}
        if not base:
            continue
        best_m = max(base, key=lambda m: base[m])
        out.append(
            {
                "model": model,
                "device": device,
                "budget": budget,
                "search": here["search"]["acc_ft"],
                "best_baseline": best_m,
                "best_acc": base[best_m],
                "margin_pp": 100 * (here["search"]["acc_ft"] - base[best_m]),
            }
        )
    return out


def report(args: argparse.Namespace, results: Results) -> Path:
    lines = [
        "# Latency-budget pruning: edgeprune's search against FLOPs-uniform, Torch-Pruning global and NetAdapt, at equal measured latency",
        "",
        f"Criterion `{args.criterion}`; dataset `{args.data}`; every chosen model gets BN recalibration and the same fine-tune "
        f"({args.finetune_epochs} epoch(s) on {args.finetune_samples or 'all'} training images, lr 0.01); `netadapt`, and `search` "
        f"with {args.gradual_steps} gradual step(s), also train {INNER_FT.epochs} epoch(s) on {INNER_FT.max_train_samples} images "
        "after each of their steps, before it (`search` with 0 steps does not); latency = median on the device "
        f"(ONNX Runtime CPU, {args.threads} thread(s), ≥{args.bench_seconds:g} s, TorchScript export for every method). "
        f"Accuracy is top-1 on the test split. Machine: {machine_line()}.",
        "",
        f"Command: `python benchmarks/latency_search.py {' '.join(sys.argv[1:])}`",
        "",
    ]
    rows = [r for r in results.rows if not r.get("infeasible")]
    missed = [r for r in results.rows if r.get("infeasible")]
    margins = _margins(rows)
    if margins:
        lines += [
            "## Does the search pay?",
            "",
            "Fine-tuned accuracy of the search minus the best of the baselines at the same point:",
            "",
            markdown_table(
                ["model", "device", "budget", "search %", "best baseline", "its %", "margin pp"],
                [
                    [
                        m["model"],
                        m["device"],
                        f"{m['budget']:g}x",
                        100 * m["search"],
                        m["best_baseline"],
                        100 * m["best_acc"],
                        m["margin_pp"],
                    ]
                    for m in margins
                ],
            ),
            "",
            f"Worst margin {min(m['margin_pp'] for m in margins):+.2f} pp, mean {statistics.mean(m['margin_pp'] for m in margins):+.2f} pp "
            f"over {len(margins)} points.",
            "",
        ]
    lm_lines = _latency_model_summary(rows)
    if lm_lines:
        lines += lm_lines
    for model in sorted({r["model"] for r in results.rows}):
        lines += [f"## {model}", ""]
        table = []
        series: dict[str, list[tuple[float, float]]] = {}
        for r in sorted(
            (r for r in rows if r["model"] == model),
            key=lambda r: (r["device"], -r["budget"], r["method"]),
        ):
            acc = r.get("acc_ft")
            table.append(
                [
                    r["device"],
                    f"{r['budget']:g}x",
                    r["method"],
                    r["budget_ms"],
                    r["measured_ms"],
                    r["measured_ms"] / r["budget_ms"],
                    100 * r["flops_reduction"],
                    100 * r["acc_no_ft"] if r.get("acc_no_ft") is not None else None,
                    100 * acc if acc is not None else None,
                    r["speedup"],
                    r["realised_over_ideal"],
                    r["device_measurements"],
                    r["wall_seconds"],
                ]
            )
            if acc is not None:
                series.setdefault(f"{r['method']} @ {r['device']}", []).append(
                    (r["measured_ms"], 100 * acc)
                )
        for r in (r for r in missed if r["model"] == model):
            table.append(
                [
                    r["device"],
                    f"{r['budget']:g}x",
                    r["method"],
                    r["budget_ms"],
                    f"none within budget after {r['device_measurements']} probes",
                    *([None] * 6),
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
                    "measured/budget",
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
        if series:
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
        plans = [r for r in rows if r["model"] == model and r["method"] == "search"]
        for r in plans:
            a = r.get("allocation")
            if a and a.get("candidates") and a.get("chosen_proxy_accuracy") is None:
                best = a["candidates"][0]
                lines.append(
                    f"- {r['device']} {r['budget']:g}x: chose `{a['chosen']}` without data (no "
                    f"accuracy proxy: importance per predicted ms); predicted {best['cost']:.3f} ms"
                )
            elif a and a.get("candidates"):
                best = a["candidates"][0]
                base_acc = a.get("baseline_proxy_accuracy") or {}
                lines.append(
                    f"- {r['device']} {r['budget']:g}x: chose `{a['chosen']}` (proxy {100 * (a['chosen_proxy_accuracy'] or 0):.1f}%"
                    + "".join(f", {k} {100 * v:.1f}%" for k, v in sorted(base_acc.items()))
                    + f") from {a['evaluations']} plans in {a['seconds']:.0f} s; predicted {best['cost']:.3f} ms"
                )
        devs = sorted({r["device"] for r in plans})
        if len(devs) > 1:
            lines += ["", "Plans chosen on each device (kept channels per group):", ""]
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


def _latency_model_summary(rows: list[dict[str, Any]]) -> list[str]:
    """Error of the search's latency model against every whole-model measurement it made."""
    per: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        for p in r.get("lm_points") or []:
            err = abs(p["predicted"] - p["measured"]) / p["measured"]
            per.setdefault((r["device"], r["model"]), []).append(err)
            per.setdefault((r["device"], "all models"), []).append(err)
    if not per:
        return []
    if len({m for _, m in per}) == 2:  # one model: its rows and "all models" are the same
        per = {k: v for k, v in per.items() if k[1] != "all models"}
    table = []
    for (dev, model), errs in sorted(per.items()):
        errs.sort()
        table.append(
            [
                dev,
                model,
                len(errs),
                100 * statistics.median(errs),
                100 * sum(e <= 0.10 for e in errs) / len(errs),
                100 * errs[-1],
            ]
        )
    return [
        "## Latency model",
        "",
        "Each whole-model measurement of the search, predicted before it joined the fit:",
        "",
        markdown_table(
            ["device", "model", "points", "median error %", "within ±10 % (%)", "worst %"],
            table,
        ),
        "",
    ]


if __name__ == "__main__":
    main()
