"""Weight-based baselines: filter norms (Li et al. 2017) and random."""

from __future__ import annotations

import torch

from edgeprune.prune.criteria._base import (
    Criterion,
    Option,
    ScoreContext,
    filter_weight_norm,
    register_criterion,
    weight_scores,
)


@register_criterion
class L1(Criterion):
    """L1 norm of each output filter (Li et al. 2017), averaged over a group's coupled layers."""

    name = "l1"

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        return weight_scores(ctx, lambda m: filter_weight_norm(m, 1.0))


@register_criterion
class L2(Criterion):
    """L2 norm of each output filter, averaged over a group's coupled layers."""

    name = "l2"

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        return weight_scores(ctx, lambda m: filter_weight_norm(m, 2.0))


@register_criterion
class Random(Criterion):
    """Uniformly random scores (the control every criterion must beat)."""

    name = "random"
    options = {"seed": Option(int, 0, "random seed")}

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        gen = torch.Generator().manual_seed(int(self.opts["seed"]))
        return {g.index: torch.rand(g.width, generator=gen) for g in ctx.groups}
