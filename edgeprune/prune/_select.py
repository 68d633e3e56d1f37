"""Turning per-channel scores into a plan: keep counts per group for a target, then top-k indices.

Targets: a channel ``ratio`` (fraction of each group's channels removed), a ``flops`` reduction or
a ``params`` reduction (fractions of the unpruned model). Modes: ``uniform`` (the same ratio in
every prunable group, found by bisection for FLOPs/params targets) and ``global`` (channels of all
groups ranked together by normalised score and removed lowest first until the target is met).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from edgeprune.errors import UsageError
from edgeprune.prune._cost import CostModel
from edgeprune.prune._engine import PrunableGroup
from edgeprune.prune.plan import GroupPlan, PrunePlan
from edgeprune.vocab import check_choice

TARGET_KINDS = ("ratio", "flops", "params")


@dataclass(frozen=True)
class Target:
    kind: str
    value: float

    def __post_init__(self) -> None:
        check_choice(self.kind, TARGET_KINDS, "target kind")
        if not 0.0 <= self.value < 1.0:
            flag = {
                "ratio": "--ratio",
                "flops": "--flops-reduction",
                "params": "--params-reduction",
            }[self.kind]
            raise UsageError(
                f"{flag} must be in [0, 1), got {self.value}", hint="e.g. 0.5 removes half"
            )


def group_step(g: PrunableGroup, round_to: int | None) -> int:
    """A group's width step: its grouped-conv chunk count, made a multiple of ``round_to``."""
    step = g.channel_groups
    if round_to:
        step = step * round_to // math.gcd(step, round_to)
    return step


def min_keep(g: PrunableGroup, round_to: int | None, min_channels: int) -> int:
    step = group_step(g, round_to)
    floor = max(min_channels, 1)
    return min(g.width, max(step, -(-floor // step) * step))


def round_keep(g: PrunableGroup, keep: float, round_to: int | None, min_channels: int) -> int:
    """Round a real-valued keep count to the group's step (grouped conv × round_to)."""
    step = group_step(g, round_to)
    if g.width % step != 0 and keep >= g.width:
        return g.width
    k = round(keep / step) * step
    return max(min_keep(g, round_to, min_channels), min(g.width, k))


def uniform_keep(
    groups: list[PrunableGroup], ratio: float, round_to: int | None, min_channels: int
) -> dict[int, int]:
    return {g.index: round_keep(g, g.width * (1.0 - ratio), round_to, min_channels) for g in groups}


def _reduction(cost: CostModel, kind: str, keep: Mapping[int, int], base: float) -> float:
    value = cost.macs(keep) if kind == "flops" else cost.params(keep)
    return 1.0 - value / base


def solve_uniform(
    groups: list[PrunableGroup],
    cost: CostModel,
    target: Target,
    round_to: int | None,
    min_channels: int,
) -> dict[int, int]:
    """Keep counts for a uniform ratio meeting ``target`` (bisection on the ratio for FLOPs/params)."""
    if target.kind == "ratio":
        return uniform_keep(groups, target.value, round_to, min_channels)
    base = cost.macs(cost.full()) if target.kind == "flops" else cost.params(cost.full())
    lo, hi = 0.0, 1.0
    best = uniform_keep(groups, 0.0, round_to, min_channels)
    for _ in range(40):
        mid = (lo + hi) / 2
        keep = uniform_keep(groups, mid, round_to, min_channels)
        if _reduction(cost, target.kind, keep, base) < target.value:
            lo = mid
        else:
            hi = mid
            best = keep
    max_keep = uniform_keep(groups, 1.0, round_to, min_channels)
    if _reduction(cost, target.kind, max_keep, base) < target.value - 1e-9:
        reached = _reduction(cost, target.kind, max_keep, base)
        raise UsageError(
            f"a {target.kind} reduction of {target.value:.0%} cannot be reached by pruning these groups (at most {reached:.1%})",
            hint="lower the target, prune more groups (--convention all) or use --mode global",
        )
    # Pick whichever side of the step is closer to the target.
    lower = uniform_keep(groups, lo, round_to, min_channels)
    if abs(_reduction(cost, target.kind, lower, base) - target.value) < abs(
        _reduction(cost, target.kind, best, base) - target.value
    ):
        best = lower
    return best


def normalized(scores: torch.Tensor) -> torch.Tensor:
    """Per-group normalisation for global ranking: divide by the mean absolute score."""
    s = scores.double()
    return s / s.abs().mean().clamp_min(1e-12)


def solve_global(
    groups: list[PrunableGroup],
    scores: Mapping[int, torch.Tensor],
    cost: CostModel,
    target: Target,
    round_to: int | None,
    min_channels: int,
    normalize: Callable[[torch.Tensor], torch.Tensor] = normalized,
) -> dict[int, int]:
    """Remove the globally lowest-scored channels (in steps of each group's rounding) until the target holds."""
    keep = {g.index: g.width for g in groups}
    total_channels = sum(g.width for g in groups)
    base_macs = cost.macs(cost.full())
    base_params = cost.params(cost.full())

    def reached() -> bool:
        if target.kind == "ratio":
            return 1.0 - sum(keep.values()) / total_channels >= target.value
        base = base_macs if target.kind == "flops" else base_params
        return _reduction(cost, target.kind, keep, base) >= target.value

    # Candidate removals: for each group, the cumulative score of removing its next `step` weakest
    # channels; take the cheapest step globally each time.
    order: dict[int, torch.Tensor] = {}
    norm: dict[int, torch.Tensor] = {}
    for g in groups:
        s = normalize(_chunk_scores(scores[g.index], g.channel_groups))
        order[g.index] = torch.argsort(s)
        norm[g.index] = s
    by_index = {g.index: g for g in groups}
    while not reached():
        best_gi, best_cost = None, math.inf
        for gi, g in by_index.items():
            step = group_step(g, round_to)
            new_keep = keep[gi] - step
            if new_keep < min_keep(g, round_to, min_channels):
                continue
            removed_local = (g.width - keep[gi]) // g.channel_groups
            take = order[gi][removed_local : removed_local + step // g.channel_groups]
            c = float(norm[gi][take].mean())
            if c < best_cost:
                best_gi, best_cost = gi, c
        if best_gi is None:
            raise UsageError(
                f"the {target.kind} target {target.value:.0%} cannot be reached within the per-group minimum widths",
                hint="lower the target or --min-channels",
            )
        keep[best_gi] -= group_step(by_index[best_gi], round_to)
    return keep


def _chunk_scores(scores: torch.Tensor, channel_groups: int) -> torch.Tensor:
    """For grouped convs, average the score of local index j over the equal chunks."""
    if channel_groups <= 1:
        return scores
    return scores.view(channel_groups, -1).mean(0)


def topk_plan(
    groups: list[PrunableGroup],
    scores: Mapping[int, torch.Tensor],
    keep: Mapping[int, int],
    ignored: list[str],
) -> PrunePlan:
    """Keep each group's highest-scored channels (same local indices in every chunk of a grouped conv)."""
    plans = []
    for g in groups:
        k = keep.get(g.index, g.width)
        if k >= g.width:
            continue
        cg = g.channel_groups
        local = _chunk_scores(scores[g.index].float(), cg)
        chunk = g.width // cg
        top = torch.topk(local, k // cg).indices.sort().values.tolist()
        kept = sorted(c * chunk + j for c in range(cg) for j in top)
        plans.append(GroupPlan(g.root, g.width, tuple(kept)))
    return PrunePlan(tuple(plans), list(ignored))
