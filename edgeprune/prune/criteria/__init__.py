"""Pruning criteria (registered plugins). `edgeprune criteria` lists them."""

from edgeprune.prune.criteria import baselines  # noqa: F401  (registers built-ins)
from edgeprune.prune.criteria._base import (
    CRITERIA,
    Criterion,
    Option,
    ScoreContext,
    make_criterion,
    parse_criterion_opts,
    register_criterion,
)

__all__ = [
    "CRITERIA",
    "Criterion",
    "Option",
    "ScoreContext",
    "make_criterion",
    "parse_criterion_opts",
    "register_criterion",
]
