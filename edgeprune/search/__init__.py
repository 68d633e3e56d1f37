"""Latency-constrained search: budgets, per-device latency models, strategies."""

from edgeprune.search._search import greedy_widths, search, search_in_session
from edgeprune.search.blocks import BlockSpec, extract_blocks
from edgeprune.search.config import STRATEGIES, Budget, SearchConfig, table_protocol
from edgeprune.search.latency_model import LatencyModel, width_grid
from edgeprune.search.result import Candidate, SearchResult

__all__ = [
    "STRATEGIES",
    "BlockSpec",
    "Budget",
    "Candidate",
    "LatencyModel",
    "SearchConfig",
    "SearchResult",
    "extract_blocks",
    "greedy_widths",
    "search",
    "search_in_session",
    "table_protocol",
    "width_grid",
]
