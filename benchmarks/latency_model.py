"""How well does the search's latency model predict whole models? Error distribution per device.

For each model and device: the lookup tables the search would measure (grids on the width
granularity, ``--round-to``, default the target's), then whole-model measurements of width plans
the search could choose: uniform cuts at several ratios and random per-group widths, all on the
granularity's grid. As in the search, the model is calibrated on two whole-model points (the
base model and the uniform 0.5 cut) and every other plan is predicted *before* it is measured;
reported: median and worst relative error, the share within ±10 % and ±15 %, for the latency
model and, for comparison, for FLOPs with an intercept calibrated on the same two points. Each
plan's measurement CV is listed: on a noisy host a prediction cannot be closer than the
measurement it is checked against.

Devices: ``local`` and ``slow``, a loopback sshd device under a cgroup CPU quota started by this
script (needs root and openssh-server; skipped with a note otherwise).

    python benchmarks/latency_model.py --models resnet20,resnet56 --devices local,slow
    python benchmarks/latency_model.py --smoke
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, machine_line, markdown_table, table_bench

from edgeprune.bench import BenchConfig, Store, measure
from edgeprune.checkpoint import resolve_model
from edgeprune.data import load_dataset
from edgeprune.device import DeviceSession
from edgeprune.device.lease import run_leased
from edgeprune.export import onnx_from_torch
from edgeprune.prune import PruneConfig, materialize, score_model
from edgeprune.prune.granularity import resolve_round_to
from edgeprune.search.latency_model import PROBE_EXPORTER, LatencyModel

RATIOS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8)
CALIBRATION = ("uniform 0", "uniform 0.5")  # the search's two first whole-model points


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--models", default="resnet20,resnet56", help="comma list of zoo models")
    p.add_argument("--data", default="fashion-mnist", help="input shape and classes only")
    p.add_argument("--devices", default="local,slow")
    p.add_argument("--slow-quota", type=float, default=0.5)
    p.add_argument("--random-plans", type=int, default=12)
    p.add_argument("--round-to", type=int, default=None, help="default: the target's granularity")
    p.add_argument("--bench-seconds", type=float, default=1.0, help="per whole-model measurement")
    p.add_argument("--table-seconds", type=float, default=0.15, help="per lookup-table entry")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/latency"))
    p.add_argument("--smoke", action="store_true", help="tiny run for CI (seconds)")
    a = p.parse_args(argv)
    if a.smoke:
        a.models, a.data, a.devices, a.random_plans = "resnet20", "digits", "local", 2
        a.bench_seconds, a.table_seconds = 0.05, 0.01
    return a


def plans(groups: list[Any], step: int, n_random: int, seed: int) -> list[tuple[str, dict]]:
    def snap(g: Any, want: float) -> int:
        if want >= g.width:
            return g.width
        return max(step, step * round(want / step)) if step > 1 else max(1, round(want))

    out = [
        (f"uniform {r:g}", {g.index: snap(g, g.width * (1 - r)) for g in groups}) for r in RATIOS
    ]
    rng = random.Random(seed)
    for i in range(n_random):
        out.append(
            (f"random {i}", {g.index: snap(g, g.width * rng.uniform(0.2, 1.0)) for g in groups})
        )
    return out


def run_device(dev: DeviceSession, name: str, args: argparse.Namespace, results: Results) -> None:
    data = load_dataset(args.data)
    torch.manual_seed(args.seed)
    bundle = resolve_model(name, data_info=data.info)
    step = resolve_round_to(
        args.round_to, None if dev.spec.profile == "local" else dev.spec.profile
    )
    cfg = PruneConfig(criterion="l1", round_to=step.value)
    scored = score_model(bundle, cfg, None)
    ctx = scored.ctx
    lm = LatencyModel.for_model(ctx.model, ctx.example, ctx.index, ctx.groups, step=step.value)
    tables = table_bench(args.table_seconds)
    whole = BenchConfig(
        warmup_seconds=min(0.5, args.bench_seconds),
        min_seconds=args.bench_seconds,
        max_repeats=3,
        cv_threshold=1e9 if args.smoke else 0.05,
    )
    with Store() as store, tempfile.TemporaryDirectory() as tmp:
        info = lm.measure_tables(dev, store, tables)
        for label, keep in plans(ctx.groups, step.value, args.random_plans, args.seed):
            key = {"model": name, "device": dev.name, "plan": label}
            if results.done(**key):
                continue
            res = materialize(bundle, scored, keep, cfg, None)
            path = Path(tmp) / "plan.onnx"
            onnx_from_torch(res.bundle.model, res.bundle.input_shape, path, exporter=PROBE_EXPORTER)
            m = measure(dev, path, whole, store=store, label=f"latency-model {label}")
            results.add(
                {
                    **key,
                    "round_to": step.value,
                    "measured_ms": m.stats.median,
                    "cv": m.stats.cv,
                    "unstable": m.unstable,
                    "model_raw": lm.raw(keep),
                    "macs": res.macs_after,
                    "table_entries": info["entries"],
                }
            )
            print(f"[{name} {dev.name}] {label:12s} {m.stats.median:.4f} ms", flush=True)


def errors(rows: list[dict[str, Any]], feature: str) -> dict[str, float] | None:
    """Calibrate ``measured = a·feature + b`` on the two calibration plans (as the search does)
    and return the relative errors of every other plan."""
    cal = [next((r for r in rows if r["plan"] == p), None) for p in CALIBRATION]
    if None in cal:
        return None
    (x0, y0), (x1, y1) = ((r[feature], r["measured_ms"]) for r in cal)  # type: ignore[index]
    a = (y1 - y0) / (x1 - x0) if x1 != x0 else y0 / x0
    b = y0 - a * x0
    rel = [
        abs(a * r[feature] + b - r["measured_ms"]) / r["measured_ms"]
        for r in rows
        if r["plan"] not in CALIBRATION
    ]
    if not rel:
        return None
    return {
        "n": len(rel),
        "median": 100 * statistics.median(rel),
        "worst": 100 * max(rel),
        "within10": 100 * sum(e <= 0.10 for e in rel) / len(rel),
        "within15": 100 * sum(e <= 0.15 for e in rel) / len(rel),
    }


def report(args: argparse.Namespace, results: Results, notes: list[str]) -> Path:
    lines = [
        "# Latency model: predicted vs measured whole models",
        "",
        "Calibrated on the base model and the uniform 0.5 cut (the search's first two points); "
        "every other plan predicted before it was measured. Plans: uniform cuts "
        f"{', '.join(f'{r:g}' for r in RATIOS)} and {args.random_plans} random per-group widths "
        "(20–100 % of each group), all on the width granularity's grid. Latency: median on the "
        f"device, ONNX Runtime CPU, 1 thread, ≥{args.bench_seconds:g} s per plan, TorchScript export.",
        f"Machine: {machine_line()}.",
        "",
        "Command: `python benchmarks/latency_model.py"
        + (" --smoke" if args.smoke else f" --models {args.models} --devices {args.devices}")
        + "`",
        "",
        *[f"- {n}" for n in notes],
        "",
    ]
    table = []
    for model, device in sorted({(r["model"], r["device"]) for r in results.rows}):
        rows = [r for r in results.rows if r["model"] == model and r["device"] == device]
        for what, feature in (("latency model", "model_raw"), ("FLOPs + intercept", "macs")):
            e = errors(rows, feature)
            if e is None:
                continue
            table.append(
                [
                    model,
                    device,
                    rows[0]["round_to"],
                    what,
                    e["n"],
                    e["median"],
                    e["within10"],
                    e["within15"],
                    e["worst"],
                ]
            )
    lines.append(
        markdown_table(
            [
                "model",
                "device",
                "round-to",
                "predictor",
                "plans",
                "median error %",
                "within ±10 % (%)",
                "within ±15 % (%)",
                "worst %",
            ],
            table,
        )
    )
    lines += ["", "Per plan (ms):", ""]
    lines.append(
        markdown_table(
            ["model", "device", "plan", "measured", "CV %", "MACs (M)"],
            [
                [
                    r["model"],
                    r["device"],
                    r["plan"],
                    r["measured_ms"],
                    100 * r["cv"],
                    r["macs"] / 1e6,
                ]
                for r in results.rows
            ],
        )
    )
    out = args.out / "latency_model.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "latency_model.jsonl", ("model", "device", "plan"))
    devices = args.devices.split(",")
    notes: list[str] = []
    farm_ctx: Any = None
    if "slow" in devices:
        from edgeprune._devices.testfarm import Farm, FarmDeviceConfig, cgroups_available

        if cgroups_available():
            farm_dir = Path(tempfile.mkdtemp(prefix="edgeprune-farm-"))
            farm_ctx = Farm(farm_dir, [FarmDeviceConfig("slow", cpu_quota=args.slow_quota)])
            farm_ctx.start()
            os.environ["EDGEPRUNE_CONFIG"] = str(farm_dir / "config")
            farm_ctx.write_inventory(farm_dir / "config")
            notes.append(f"`slow`: a loopback sshd device limited to {args.slow_quota:g} CPU")
        else:
            devices.remove("slow")
            notes.append("the slowed device was skipped: no writable cgroup CPU hierarchy")
    try:
        for name in args.models.split(","):
            for device in devices:
                run_leased(device, lambda dev, n=name: run_device(dev, n, args, results))
    finally:
        if farm_ctx is not None:
            farm_ctx.stop()
    return report(args, results, notes)


if __name__ == "__main__":
    main()
