"""Baselines that need Torch-Pruning's importances or calibration data.

- ``bn_scale``, ``taylor``: Torch-Pruning's own importance functions on each group.
- ``hrank``: average matrix rank of each channel's feature maps (HRank, Lin et al. 2020; as in
  lmbxmu/HRank: maps after ReLU, 5 batches of 128).
- ``chip``: channel independence (CHIP, Sui et al. 2021): the drop in nuclear norm of the C×HW
  feature matrix when the channel's row is zeroed, averaged over images.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from edgeprune.errors import PruningError
from edgeprune.prune.criteria._base import (
    Criterion,
    ScoreContext,
    filter_weight_norm,
    register_criterion,
    weight_scores,
)
from edgeprune.prune.criteria._fmaps import (
    GroupSums,
    as_maps,
    calibration_batches,
    stream_feature_maps,
)
from edgeprune.prune.criteria._threads import per_image

# Elements of CHIP's per-chunk tensors (images × C × max(rank, nodes)), ~32 MB of float64 each.
_CHIP_BUDGET = 4_000_000
# Trapezoid nodes in s = log(t / σ_max) for CHIP's integral: below e⁻²⁰σ_max the integrand is
# flat (added as one rectangle), above e¹⁰σ_max what remains after the closed-form tail is
# ~e⁻³⁰; with a step of 0.4 the error measured against the definition is ~1e-10 of σ_max (the
# Gram-eigenvalue route used before: ~3e-8); halving the step buys little and doubles the work.
_LOG_T_STEP = 0.4
_LOG_T = torch.arange(-20.0, 10.0 + _LOG_T_STEP / 2, _LOG_T_STEP, dtype=torch.float64)


def _tp_scores(ctx: ScoreContext, kind: str) -> dict[int, torch.Tensor]:
    out = {}
    for g in ctx.groups:
        imp = ctx.index.importance(g.index, kind)
        if imp is None or imp.numel() != g.width:
            # Seen on GhostNet's cheap-operation concat with Taylor: Torch-Pruning's importance
            # covers one member's channels, not the group's. Refused with the way around it.
            raise PruningError(
                f"criterion {kind} cannot score group {g.root}: Torch-Pruning's {kind} importance "
                f"gave {'no' if imp is None else imp.numel()} scores for its {g.width} channels",
                hint=f"use another criterion (l1, fss, ...) or --ignore-layers {g.root}",
            )
        out[g.index] = imp
    return out


@register_criterion
class BNScale(Criterion):
    """|γ| of the group's BatchNorm layers (network slimming, Liu et al. 2017)."""

    name = "bn_scale"

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        # Groups without BatchNorm have no γ: they are scored by filter L1 norm instead, so that
        # they are neither all pruned first nor all kept.
        with_bn = [g for g in ctx.groups if g.bn is not None]
        without = [g for g in ctx.groups if g.bn is None]
        scores = _tp_scores(replace(ctx, groups=with_bn), "bn_scale") if with_bn else {}
        if without:
            scores.update(
                weight_scores(replace(ctx, groups=without), lambda m: filter_weight_norm(m, 1.0))
            )
        return scores


@register_criterion
class Taylor(Criterion):
    """First-order Taylor importance |Σ w·∂L/∂w| per filter (Molchanov et al. 2019), gradients
    accumulated over the calibration batches; Torch-Pruning's GroupTaylorImportance."""

    name = "taylor"
    needs_data = True

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        model = ctx.model.to(ctx.device)
        model.eval()  # BN statistics stay fixed: the importance is of the deployed network
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            for x, y in calibration_batches(ctx, with_labels=True):
                F.cross_entropy(model(x), y).backward()
        try:
            return _tp_scores(ctx, "taylor")
        finally:
            model.zero_grad(set_to_none=True)


def batched_matrix_rank(maps: torch.Tensor) -> torch.Tensor:
    """Rank of each H×W map of an N×C×H×W tensor → N×C (float)."""
    return per_image(lambda m: torch.linalg.matrix_rank(m.double()).float(), maps)


@register_criterion
class HRank(Criterion):
    """Average rank of each channel's feature maps (HRank): low-rank maps carry little information."""

    name = "hrank"
    needs_data = True

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        sums = GroupSums()

        def sink(gi: int, out: torch.Tensor) -> None:
            maps = as_maps(out)
            sums.add(gi, batched_matrix_rank(maps).sum(0), maps.shape[0])

        stream_feature_maps(ctx, sink)
        return {g.index: sums.mean(g.index) for g in ctx.groups}


def channel_independence(maps: torch.Tensor) -> torch.Tensor:
    """CHIP's score per image and channel: ‖A‖_* − ‖A with row c zeroed‖_*, A = C×HW → N×C.

    All channels come from one SVD per image, not one decomposition per channel. Zeroing row c
    is a rank-one downdate of AᵀA; with √x = (2/π)∫₀^∞ x/(x+t²) dt and Sherman–Morrison the
    nuclear-norm drop is a 1-D integral of sums over the spectrum:

        A = U S Vᵀ (thin), d = σ², u = U[c], ρ = 1 − ‖u‖², w_j(t) = 1/(d_j + t²):
        drop_c = (2/π) ∫₀^∞ t² Σ_j d_j u_j² w_j² / (ρ + t² Σ_j u_j² w_j) dt,

    every term non-negative (no cancellation). The integral is a trapezoid rule in log t, whose
    error falls as exp(−π²/h) because the integrand's poles lie π/2 off the real axis there; the
    part decaying like ‖a_c‖²/t² is integrated in closed form. Same values as the definition
    (one SVD per zeroed row) to ~1e-10 of the image's largest singular value (measured; the
    Gram-eigenvalue route used before was within ~3e-8).
    """
    n, c = maps.shape[:2]
    a = maps.reshape(n, c, -1).double()
    chunk = max(1, _CHIP_BUDGET // max(1, c * max(min(c, a.shape[-1]), _LOG_T.numel())))
    drop = per_image(
        lambda part: torch.cat(
            [_channel_independence(part[i : i + chunk]) for i in range(0, part.shape[0], chunk)]
        ),
        a,
    )
    # 0 ≤ drop ≤ ‖a_c‖ (interlacing; triangle inequality). Clamping to the row norm taken from
    # the maps themselves makes a dead channel's score exactly 0, not rounding noise.
    return torch.minimum(drop.clamp_min(0.0), a.norm(dim=-1)).float()


def _channel_independence(a: torch.Tensor) -> torch.Tensor:
    if a.shape[1] <= a.shape[2]:
        # Aᵀ = QR, so A = Rᵀ Qᵀ has the singular values and left vectors of the small Rᵀ.
        r = torch.linalg.qr(a.transpose(1, 2), mode="r")[1]
        u, sv, _ = torch.linalg.svd(r.transpose(1, 2))  # n×C×C, n×C
    else:
        u, sv, _ = torch.linalg.svd(a, full_matrices=False)  # n×C×r, n×r
    d = sv * sv
    u2 = u * u
    top = sv[:, :1]  # n×1, largest singular value
    scale = torch.where(top > 0, top, torch.ones_like(top))
    t = scale * _LOG_T.exp()[None]  # n×T
    t2 = (t * t)[:, None, :]  # n×1×T
    w = 1.0 / (d[:, :, None] + t2)  # n×r×T
    nodes = t.shape[1]
    pq = u2 @ torch.cat([d[:, :, None] * w * w, w], -1)  # n×C×2T: Σ d u² w², Σ u² w
    num, den = pq[..., :nodes], pq[..., nodes:]
    # Row c's share outside span(U), ρ = 1 − ‖u‖², enters as ρ/t²; it is exactly 0 when U is
    # square (C ≤ HW), where the rounding of 1 − ‖u‖² would swamp the denominator near t = 0.
    if u.shape[1] > u.shape[2]:
        den = den + (1.0 - u2.sum(-1)).clamp_min(0.0)[:, :, None] / t2
    f = num / den  # the integrand, per unit t
    row2 = (u2 * d[:, None, :]).sum(-1)  # ‖a_c‖²
    # Trapezoid in log t (dt = t ds) of f minus row2·t²/(t²+σ²)², whose integral is row2·π/(4σ),
    # plus [0, t_lo] where f is flat.
    tail = ((t2 / (t2 + (scale * scale)[:, :, None]) ** 2)[:, 0] * t).sum(-1, keepdim=True)
    integral = (f @ t[:, :, None])[..., 0] * _LOG_T_STEP - row2 * tail * _LOG_T_STEP
    integral = integral + f[..., 0] * t[:, :1] + row2 * math.pi / (4 * scale)
    return 2 / math.pi * integral


@register_criterion
class CHIP(Criterion):
    """Channel independence (CHIP): the nuclear-norm drop when a channel's map is removed."""

    name = "chip"
    needs_data = True

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        sums = GroupSums()

        def sink(gi: int, out: torch.Tensor) -> None:
            maps = as_maps(out)
            sums.add(gi, channel_independence(maps).sum(0), maps.shape[0])

        stream_feature_maps(ctx, sink)
        return {g.index: sums.mean(g.index) for g in ctx.groups}
