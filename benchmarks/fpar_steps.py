"""What FPAR's attention training buys: its scores after fewer steps against the default's.

FPAR's cost is its attention training (a forward and a backward pass per step). This scores one
model with FPAR at each ``--steps`` value (the same seed, data and calibration images), and
compares every setting's scores with those of the largest: per-layer Spearman ρ (median and
minimum over layers) and the share of each layer's top half that is the same. Also the time and
the final attention loss. Writes ``OUT/fpar_steps.md`` and ``OUT/fpar_steps.jsonl``.

    python benchmarks/fpar_steps.py                       # ResNet-56, 25/50/100 steps, 5×128
    python benchmarks/fpar_steps.py --smoke               # CI: resnet20 at 16×16, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Results, machine_line, markdown_table

from edgeprune.checkpoint import resolve_model
from edgeprune.data import load_dataset
from edgeprune.prune import PruneConfig, Target, score_model

ROOT = Path(__file__).resolve().parents[1]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's ρ of two score vectors (ties broken by position; 1.0 for a constant layer)."""
    if a.numel() < 2:
        return 1.0
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 1.0


def top_half_overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    k = max(1, a.numel() // 2)
    sa, sb = set(a.topk(k).indices.tolist()), set(b.topk(k).indices.tolist())
    return len(sa & sb) / k


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet56")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--steps", default="25,50,100", help="comma list; the largest is the reference")
    p.add_argument("--calib", default="5x128", help="BATCHESxSIZE")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    image_size = None
    if args.smoke:
        args.model, args.steps, args.calib, image_size = "resnet20", "2,4", "2x16", 16
    steps = sorted({int(s) for s in args.steps.split(",")})
    batches, size = map(int, args.calib.split("x"))
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, image_size=image_size)
    results = Results(args.out / "fpar_steps.jsonl", ("model", "steps", "calib"))
    scores: dict[int, dict[int, torch.Tensor]] = {}
    for n in steps:
        torch.manual_seed(0)  # the same init of the model and of the attention modules
        bundle = resolve_model(args.model, data_info=data.info)
        cfg = PruneConfig(
            criterion="fpar",
            criterion_options={"attention_steps": n},
            target=Target("flops", 0.5),
            calib_batches=batches,
            calib_batch_size=size,
        )
        t0 = time.perf_counter()
        scored = score_model(bundle, cfg, data)
        seconds = time.perf_counter() - t0
        scores[n] = {k: v.detach().clone() for k, v in scored.scores.items()}
        facts = scored.criterion.facts
        if results.done(model=args.model, steps=n, calib=args.calib) is None:
            results.add(
                {
                    "model": args.model,
                    "steps": n,
                    "calib": args.calib,
                    "seconds": seconds,
                    "attention_seconds": facts.get("attention_seconds"),
                    "final_loss": facts.get("attention_final_loss"),
                    "attention_cv_median": (facts.get("attention_cv") or {}).get("median"),
                }
            )
        print(f"{n} steps: {seconds:.1f} s", file=sys.stderr, flush=True)
    ref = scores[steps[-1]]
    rows = []
    for n in steps:
        rhos = [spearman(scores[n][g], ref[g]) for g in ref]
        overlap = [top_half_overlap(scores[n][g], ref[g]) for g in ref]
        r = results.done(model=args.model, steps=n, calib=args.calib) or {}
        rows.append(
            [
                n,
                r.get("seconds"),
                r.get("attention_seconds"),
                r.get("final_loss"),
                f"{statistics.median(rhos):.3f}",
                f"{min(rhos):.3f}",
                f"{100 * statistics.fmean(overlap):.0f}%",
                f"{100 * min(overlap):.0f}%",
            ]
        )
    text = "\n".join(
        [
            "# FPAR: attention steps against score agreement",
            "",
            f"Model `{args.model}` (seed 0), data `{args.data}`, calibration {args.calib} images, "
            f"{args.threads} torch threads. Machine: {machine_line()}; load average at the end "
            f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())}.",
            "",
            f"Command: `python benchmarks/fpar_steps.py {' '.join(sys.argv[1:])}`",
            "",
            f"Agreement is with the scores after {steps[-1]} steps, per prunable layer.",
            "",
            markdown_table(
                [
                    "attention steps",
                    "scoring s",
                    "of which attention s",
                    "final loss",
                    "Spearman ρ median",
                    "ρ min",
                    "top half same (mean)",
                    "top half same (min)",
                ],
                rows,
            ),
            "",
        ]
    )
    out = args.out / "fpar_steps.md"
    out.write_text(text)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
