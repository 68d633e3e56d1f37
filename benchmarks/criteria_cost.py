"""Scoring cost of every criterion: wall time and peak memory, each in a fresh process.

Scores one model (default: ResNet-56 built for Fashion-MNIST; a zoo name is random-initialised
with seed 0, a checkpoint is loaded) with ``calib_batches`` × ``calib_batch_size`` training images
per criterion, in a separate Python process so peak RSS is the criterion's own (model + data +
scoring). FPAR's attention training is reported separately from its scoring.

With ``--reference REV`` each criterion is also scored by edgeprune as of git revision REV
(exported with ``git archive``), back to back with the working tree's code under the same load,
and the two score sets are compared: Spearman rank correlation per group (the minimum over
groups is reported) and the largest absolute difference. Writes ``OUT/cost.md`` and
``OUT/cost.jsonl``.

    python benchmarks/criteria_cost.py                          # ResNet-56, 5×128 Fashion-MNIST
    python benchmarks/criteria_cost.py --reference 483c111      # before/after, same scores?
    python benchmarks/criteria_cost.py --model mobilenet_v2 --data random:3x32x32 \\
        --criteria qsfm,fpar --calib 1x32                       # a wide model
    python benchmarks/criteria_cost.py --smoke                  # CI
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, torch
model_ref, data_ref, name, calib, threads, opts, scores_out = sys.argv[1:8]
torch.set_num_threads(int(threads))
from edgeprune.checkpoint import resolve_model
from edgeprune.data import ArraySplit, Dataset, DatasetInfo, load_dataset
from edgeprune.prune import PruneConfig, Target, score_model
if data_ref.startswith("random:"):
    c, h, w = map(int, data_ref.split(":")[1].split("x"))
    gen = torch.Generator().manual_seed(0)
    split = ArraySplit(torch.randint(0, 256, (2048, c, h, w), dtype=torch.uint8, generator=gen),
                       torch.randint(0, 10, (2048,), generator=gen))
    data = Dataset(DatasetInfo("random", 10, c, (h, w), (0.5,) * c, (0.25,) * c), split, split)
else:
    data = load_dataset(data_ref)
torch.manual_seed(0)  # the same random init (zoo models, FPAR's attention modules) in every run
bundle = resolve_model(model_ref, data_info=data.info)
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
batches, size = map(int, calib.split("x"))
cfg = PruneConfig(criterion=name, criterion_options=json.loads(opts), target=Target("flops", 0.5),
                  calib_batches=batches, calib_batch_size=size)
t0 = time.perf_counter()
scored = score_model(bundle, cfg, data)
wall = time.perf_counter() - t0
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
torch.save({g.root: scored.scores[g.index].float() for g in scored.ctx.groups}, scores_out)
facts = scored.criterion.facts
import edgeprune
print(json.dumps({"criterion": name, "package": edgeprune.__file__, "seconds": wall, "attention_seconds": facts.get("attention_seconds"),
                  "attention_steps": facts.get("attention_steps"),
                  "peak_rss_mb": rss_after / 1024, "rss_before_mb": rss_before / 1024, "groups": len(scored.ctx.groups)}))
"""


def _score(
    args: argparse.Namespace, name: str, scores_out: Path, pythonpath: Path
) -> dict[str, Any]:
    opts = {k: v for crit, k, v in args.opt if crit == name}
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    cmd = [sys.executable, "-c", CHILD, model, args.data, name, args.calib]
    cmd += [str(args.threads), json.dumps(opts), str(scores_out)]
    # Run outside the checkout: `python -c` puts the working directory first on sys.path, which
    # would shadow the reference package on PYTHONPATH.
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=7200, env=env, cwd=scores_out.parent
    )
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({pythonpath}):\n{proc.stderr[-2000:]}")
    row = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    if not Path(row.pop("package")).is_relative_to(pythonpath):
        raise SystemExit(f"{name} did not run the package under {pythonpath}")
    return row


def _spearman(a: Any, b: Any) -> float:
    """Spearman's ρ of two score vectors (average ranks for ties); 1.0 when both are constant."""
    from scipy.stats import spearmanr

    if float(a.max() - a.min()) == 0.0 and float(b.max() - b.min()) == 0.0:
        return 1.0
    rho = float(spearmanr(a.numpy(), b.numpy()).statistic)
    return rho if not math.isnan(rho) else 0.0


def compare_scores(new: Path, ref: Path) -> dict[str, float]:
    """Minimum per-group Spearman ρ and largest absolute difference between two saved score sets."""
    import torch

    a, b = torch.load(new, weights_only=True), torch.load(ref, weights_only=True)
    if set(a) != set(b):
        raise SystemExit(f"the two runs scored different groups: {sorted(set(a) ^ set(b))[:5]}")
    rhos = [_spearman(a[k].double(), b[k].double()) for k in sorted(a)]
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    return {"spearman_min": min(rhos), "max_abs_diff": diff}


def _load(avg: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in avg)


def _export(rev: str, into: Path) -> Path:
    """The ``edgeprune`` package as of git revision ``rev``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "edgeprune"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev} failed: {archive.stderr.decode()[-500:]}")
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet56", help="zoo name or checkpoint")
    p.add_argument("--data", default="fashion-mnist", help="a dataset, or random:CxHxW")
    p.add_argument("--criteria", default="all")
    p.add_argument("--calib", default="5x128", help="BATCHESxSIZE")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="CRITERION:KEY=VALUE",
        help="a criterion option (repeatable), e.g. fpar:attention_steps=100",
    )
    p.add_argument(
        "--reference", metavar="REV", help="also score with edgeprune at this git revision"
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cost"))
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.data, args.criteria, args.calib = (
            "resnet20",
            "digits",
            "l1,qsfm,chip",
            "2x32",
        )
    parsed = []
    for item in args.opt:
        crit, _, kv = item.partition(":")
        key, sep, value = kv.partition("=")
        if not sep:
            p.error(f"--opt expects CRITERION:KEY=VALUE, got {item!r}")
        parsed.append((crit, key, value))
    args.opt = parsed
    from edgeprune.prune import CRITERIA

    names = CRITERIA.names() if args.criteria == "all" else args.criteria.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, open(args.out / "cost.jsonl", "w") as f:
        work = Path(tmp) / "scores"  # the children's working directory: no package in it
        work.mkdir()
        ref_path = None
        if args.reference:
            ref_path = _export(args.reference, Path(tmp) / "reference")
        for name in names:
            row = _score(args, name, work / f"{name}.new.pt", ROOT)
            if ref_path is not None:
                ref = _score(args, name, work / f"{name}.ref.pt", ref_path)
                row["reference"] = {k: ref[k] for k in ("seconds", "peak_rss_mb")}
                row["reference"]["attention_seconds"] = ref["attention_seconds"]
                row.update(compare_scores(work / f"{name}.new.pt", work / f"{name}.ref.pt"))
            f.write(json.dumps(row) + "\n")
            f.flush()
            rows.append(row)
            print(
                f"{name:9s} {row['seconds']:7.1f} s  peak RSS {row['peak_rss_mb']:.0f} MB"
                + (
                    f"  (reference {row['reference']['seconds']:.1f} s, ρ {row['spearman_min']:.5f})"
                    if ref_path
                    else ""
                ),
                flush=True,
            )
    headers = ["criterion", "scoring s", "of which attention training s", "peak RSS MB"]
    headers += ["RSS before scoring MB"]
    if args.reference:
        headers += [
            f"{args.reference} scoring s",
            f"{args.reference} attention s",
            f"{args.reference} peak RSS MB",
            "Spearman ρ (min over groups)",
            "max abs diff",
        ]
    table_rows = []
    for r in rows:
        cells = [r["criterion"], r["seconds"], r["attention_seconds"], r["peak_rss_mb"]]
        cells += [r["rss_before_mb"]]
        if args.reference:
            ref = r["reference"]
            cells += [ref["seconds"], ref["attention_seconds"], ref["peak_rss_mb"]]
            cells += [f"{r['spearman_min']:.5f}", f"{r['max_abs_diff']:.2e}"]
        table_rows.append(cells)
    text = (
        f"# Scoring cost per criterion\n\nModel `{args.model}`, data `{args.data}`, calibration "
        f"{args.calib} images, {args.threads} torch threads, each criterion in a fresh process"
        f"{', the reference revision right after the working tree' if args.reference else ''}. "
        f"Machine: {machine_line()}. Load average (1/5/15 min) at the start "
        f"{_load(load_start)}, at the end {_load(os.getloadavg())}.\n\n"
        f"Command: `python benchmarks/criteria_cost.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n"
        f"{markdown_table(headers, table_rows)}\n"
    )
    (args.out / "cost.md").write_text(text)
    print(f"wrote {args.out / 'cost.md'}")
    return args.out / "cost.md"


if __name__ == "__main__":
    main()
