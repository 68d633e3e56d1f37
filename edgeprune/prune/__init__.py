"""Pruning: criteria plugins, the plan, applying it (via Torch-Pruning), FLOPs/params counting."""

from edgeprune.prune._engine import DependencyIndex, PrunableGroup, apply_plan, count_macs_params
from edgeprune.prune._prune import (
    PruneConfig,
    PruneResult,
    Scored,
    choose_keep,
    compose_plans,
    materialize,
    prunable_groups,
    prune,
    score_model,
    with_round_to,
)
from edgeprune.prune._select import Target
from edgeprune.prune.criteria import (
    CRITERIA,
    Criterion,
    Option,
    ScoreContext,
    make_criterion,
    parse_criterion_opts,
    register_criterion,
)
from edgeprune.prune.granularity import RoundTo, resolve_round_to
from edgeprune.prune.plan import GroupPlan, PrunePlan

__all__ = [
    "CRITERIA",
    "Criterion",
    "DependencyIndex",
    "GroupPlan",
    "Option",
    "PrunableGroup",
    "PruneConfig",
    "PrunePlan",
    "PruneResult",
    "RoundTo",
    "ScoreContext",
    "Scored",
    "Target",
    "apply_plan",
    "choose_keep",
    "compose_plans",
    "count_macs_params",
    "make_criterion",
    "materialize",
    "parse_criterion_opts",
    "prunable_groups",
    "prune",
    "register_criterion",
    "resolve_round_to",
    "score_model",
    "with_round_to",
]
