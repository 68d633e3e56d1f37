"""Scoring cost of every criterion: wall time and peak memory, each in a fresh process.

Scores one model (default: ResNet-56 built for Fashion-MNIST, trained checkpoint if given) with
``calib_batches`` × ``calib_batch_size`` training images per criterion, in a separate Python
process so peak RSS is the criterion's own (model + data + scoring). FPAR's attention training is
reported separately from its scoring. Writes ``OUT/cost.md`` and ``OUT/cost.jsonl``.

    python benchmarks/criteria_cost.py                          # ResNet-56, 5×128 Fashion-MNIST
    python benchmarks/criteria_cost.py --model CKPT.pt          # a trained checkpoint
    python benchmarks/criteria_cost.py --smoke                  # CI
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, markdown_table

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[5]))
from edgeprune.checkpoint import resolve_model
from edgeprune.data import load_dataset
from edgeprune.prune import PruneConfig, Target, score_model
data = load_dataset(sys.argv[2])
bundle = resolve_model(sys.argv[1], data_info=data.info)
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cfg = PruneConfig(criterion=sys.argv[3], target=Target("flops", 0.5), calib_batches=int(sys.argv[4].split('x')[0]),
                  calib_batch_size=int(sys.argv[4].split('x')[1]))
t0 = time.perf_counter()
scored = score_model(bundle, cfg, data)
wall = time.perf_counter() - t0
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
facts = scored.criterion.facts
print(json.dumps({"criterion": sys.argv[3], "seconds": wall, "attention_seconds": facts.get("attention_seconds"),
                  "peak_rss_mb": rss_after / 1024, "rss_before_mb": rss_before / 1024, "groups": len(scored.ctx.groups)}))
"""


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet56", help="zoo name or checkpoint")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--criteria", default="all")
    p.add_argument("--calib", default="5x128", help="BATCHESxSIZE")
    p.add_argument("--threads", type=int, default=2)
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
    from edgeprune.prune import CRITERIA

    names = CRITERIA.names() if args.criteria == "all" else args.criteria.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(args.out / "cost.jsonl", "w") as f:
        for name in names:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    args.model,
                    args.data,
                    name,
                    args.calib,
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(
                f"{name:9s} {row['seconds']:7.1f} s  peak RSS {row['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    table = markdown_table(
        [
            "criterion",
            "scoring s",
            "of which attention training s",
            "scoring s excl. attention",
            "peak RSS MB",
            "RSS before scoring MB",
        ],
        [
            [
                r["criterion"],
                r["seconds"],
                r["attention_seconds"],
                r["seconds"] - (r["attention_seconds"] or 0.0),
                r["peak_rss_mb"],
                r["rss_before_mb"],
            ]
            for r in rows
        ],
    )
    text = (
        f"# Scoring cost per criterion\n\nModel `{args.model}`, data `{args.data}`, calibration {args.calib} images, "
        f"{args.threads} torch threads, each criterion in a fresh process. Machine: {machine_line()}.\n\n"
        f"Command: `python benchmarks/criteria_cost.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n\n{table}\n"
    )
    (args.out / "cost.md").write_text(text)
    print(f"wrote {args.out / 'cost.md'}")
    return args.out / "cost.md"


if __name__ == "__main__":
    main()
