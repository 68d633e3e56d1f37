"""Pruning criteria (registered plugins). `edgeprune criteria` lists them."""

# Importing the modules registers the built-in criteria.
from edgeprune.prune.criteria import baselines, baselines_data, easiedge, fpar, similarity  # noqa: F401
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
