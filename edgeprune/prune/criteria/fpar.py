"""FPAR — filter pruning by attention and rank enhancement (Chen et al., IJMLC 15(7), 2024; ICME 2022).

*The paper states*: channel attention is combined with the rank of feature maps; for a network
with attention modules the mean of the channel-wise attention weights is almost constant across
input batches, so a few batches suffice.

*Our reading* (docs/METHODS.md §4, implemented as written):
1. A squeeze-and-excitation module (GAP → FC C→C/16 → ReLU → FC → sigmoid) is attached after each
   prunable group's BN (its representative activation); only these modules are trained (backbone
   frozen, BatchNorm statistics fixed) for ``attention_steps`` steps on training batches.
2. a_c = mean attention weight of channel c over the calibration batches; r_c = average matrix rank
   of channel c's H×W maps (HRank's measure; SE scales a whole map, so ranks are unaffected).
3. ``score_c = norm(a_c) · norm(r_c)`` with per-layer min-max normalisation to (0, 1]
   (``combine=sum`` gives λ·norm(a) + (1−λ)·norm(r)).
4. The attention modules exist only during scoring: the pruned model has none. The premise is
   checked and reported: the batch-to-batch coefficient of variation of each channel's mean
   attention (``attention_cv`` in the run's facts).
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.data import BatchLoader
from edgeprune.prune.criteria._base import Criterion, Option, ScoreContext, register_criterion
from edgeprune.prune.criteria._fmaps import (
    as_maps,
    calibration_batches,
    hooked,
    representative_modules,
)
from edgeprune.prune.criteria.baselines_data import batched_matrix_rank

_NORM_FLOOR = 1e-3


class SqueezeExcite(nn.Module):
    """GAP → FC(C→C/r) → ReLU → FC → sigmoid; starts near-uniform (attention ≈ 0.88)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.constant_(self.fc2.bias, 2.0)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.flatten(2).mean(-1) if x.dim() > 2 else x
        return torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))


def minmax_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-layer min-max normalisation into (0, 1] (a constant layer maps to all ones)."""
    lo, hi = x.min(), x.max()
    if float(hi - lo) <= 1e-12:
        return torch.ones_like(x)
    return _NORM_FLOOR + (1 - _NORM_FLOOR) * (x - lo) / (hi - lo)


@register_criterion
class FPAR(Criterion):
    """FPAR: temporary channel attention × feature-map rank; attention modules removed after scoring."""

    name = "fpar"
    needs_data = True
    options = {
        "attention_steps": Option(int, 100, "training steps of the temporary attention modules"),
        "attention_lr": Option(float, 1e-2, "Adam learning rate of the attention modules"),
        "reduction": Option(int, 16, "SE reduction ratio"),
        "combine": Option(str, "product", "how attention and rank combine", ("product", "sum")),
        "lam": Option(float, 0.5, "λ for combine=sum"),
    }

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        data = ctx.require_data(self.name)
        model = ctx.model.to(ctx.device)
        was_training = model.training
        model.eval()
        reps = representative_modules(ctx)
        se = nn.ModuleDict(
            {str(g.index): SqueezeExcite(g.width, int(self.opts["reduction"])) for g in ctx.groups}
        ).to(ctx.device)
        record: dict[tuple[int, int], list[torch.Tensor]] = {}  # (group, batch) → per-call means
        ranks: dict[int, torch.Tensor] = {}
        rank_counts: dict[int, int] = {}
        phase = {"calibrate": False, "batch": 0}

        def attend(gi: int, out: torch.Tensor) -> torch.Tensor:
            module = se[str(gi)]
            assert isinstance(module, SqueezeExcite)
            a = module.attention(out)
            if phase["calibrate"]:
                record.setdefault((gi, phase["batch"]), []).append(a.detach().mean(0).cpu())
                maps = as_maps(out.detach())
                ranks[gi] = (
                    ranks.get(gi, torch.zeros(maps.shape[1]))
                    + batched_matrix_rank(maps).sum(0).cpu()
                )
                rank_counts[gi] = rank_counts.get(gi, 0) + maps.shape[0]
            shape = (a.shape[0], a.shape[1]) + (1,) * (out.dim() - 2)
            return out * a.view(shape)

        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        t0 = time.perf_counter()
        try:
            with hooked(model, reps, attend):
                opt = torch.optim.Adam(se.parameters(), lr=float(self.opts["attention_lr"]))
                loader = BatchLoader(
                    data.train,
                    data.info,
                    ctx.calib_batch_size,
                    shuffle=True,
                    augment=False,
                    drop_last=True,
                    seed=ctx.seed + 1,
                )
                steps, losses = 0, []
                target = int(self.opts["attention_steps"])
                while steps < target:
                    for x, y in loader:
                        loss = F.cross_entropy(model(x.to(ctx.device)), y.to(ctx.device))
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        losses.append(float(loss.detach()))
                        steps += 1
                        if steps >= target:
                            break
                train_seconds = time.perf_counter() - t0
                phase["calibrate"] = True
                with torch.no_grad():
                    for b, x in enumerate(calibration_batches(ctx)):
                        phase["batch"] = b
                        model(x)
        finally:
            for p, f in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(f)
            model.train(was_training)
        scores, cvs = {}, []
        for g in ctx.groups:
            # Batch b's mean attention (averaged over a shared group's members) → batches × C.
            batches = sorted(b for gi, b in record if gi == g.index)
            per_batch = torch.stack([torch.stack(record[(g.index, b)]).mean(0) for b in batches])
            a = per_batch.mean(0)
            if per_batch.shape[0] > 1:
                cv = per_batch.std(0) / per_batch.mean(0).clamp_min(1e-12)
                cvs.extend(cv.tolist())
            r = ranks[g.index] / max(1, rank_counts[g.index])
            na, nr = minmax_norm(a), minmax_norm(r)
            if self.opts["combine"] == "product":
                scores[g.index] = na * nr
            else:
                lam = float(self.opts["lam"])
                scores[g.index] = lam * na + (1 - lam) * nr
        self.facts["attention_seconds"] = train_seconds
        self.facts["attention_steps"] = int(self.opts["attention_steps"])
        self.facts["attention_final_loss"] = statistics.fmean(losses[-10:]) if losses else None
        if cvs:
            cvs.sort()
            self.facts["attention_cv"] = {
                "median": statistics.median(cvs),
                "p90": cvs[int(0.9 * (len(cvs) - 1))],
                "max": cvs[-1],
                "channels": len(cvs),
            }
        return scores
