"""Latency search on a real board: ``pytest tests/hardware --device NAME`` (NAME from devices.yaml).

Runs the latency-aware search for ResNet-20 at 0.6× its measured latency on each board and checks
that the measured result meets the budget and that the board's lookup tables were stored.
Skipped without ``--device``.
"""

from __future__ import annotations

import pytest

from edgeprune.bench import BenchConfig, Store
from edgeprune.checkpoint import resolve_model
from edgeprune.device.inventory import inventory_path
from edgeprune.prune import PruneConfig
from edgeprune.search import Budget, SearchConfig, search

pytestmark = pytest.mark.hardware

REAL_INVENTORY = inventory_path()


def test_search_meets_a_budget_on_the_board(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEPRUNE_CONFIG", str(REAL_INVENTORY.parent))
    bundle = resolve_model("resnet20", input_size=32)
    for name in request.config.getoption("--device"):
        cfg = SearchConfig(
            budget=Budget.parse("0.6x"), device=name, bench=BenchConfig(min_seconds=2.0)
        )
        res = search(bundle, PruneConfig(criterion="l1"), cfg)
        assert res.final_ms <= res.budget_ms, res.to_dict()["candidates"]
        assert res.model["entries"] > 0
        with Store() as st:
            assert st.lut_count(res.model["device_key"]) >= res.model["entries"]
