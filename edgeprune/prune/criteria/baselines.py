"""Weight-based baselines: filter norms (Li et al. 2017), the geometric median (FPGM) and random."""

from __future__ import annotations

import torch
from torch import nn

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


def filter_distance_sum(module: nn.Module) -> torch.Tensor:
    """Σ_j ‖w_c − w_j‖₂ over a layer's filters: small for filters near the geometric median."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    w = weight.detach().flatten(1).double()
    return torch.cdist(w[None], w[None])[0].sum(1).float()


@register_criterion
class FPGM(Criterion):
    """Filter pruning via geometric median (He et al. 2019): filters near the median are redundant.

    Implemented from the paper (sum of Euclidean distances between a layer's filters), averaged
    over a group's coupled layers. Torch-Pruning 1.6.1's FPGMImportance is not used: it measures
    distances between |w|^p, mixes in consumer columns, and fails on grouped-conv consumers.
    """

    name = "fpgm"

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        def per_layer(m: nn.Module) -> torch.Tensor:
            d = filter_distance_sum(m)
            return d / d.mean().clamp_min(1e-12)  # layers of one group on a common scale

        return weight_scores(ctx, per_layer)


@register_criterion
class Random(Criterion):
    """Uniformly random scores (the control every criterion must beat)."""

    name = "random"
    options = {"seed": Option(int, 0, "random seed")}

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        gen = torch.Generator().manual_seed(int(self.opts["seed"]))
        return {g.index: torch.rand(g.width, generator=gen) for g in ctx.groups}
