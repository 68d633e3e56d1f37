"""Budgets, grids, the latency model's prediction, calibration and fast-side widths."""

import sys
from pathlib import Path

import pytest
import torch

from edgeprune.checkpoint import ModelBundle
from edgeprune.errors import UsageError
from edgeprune.models import ArchSpec
from edgeprune.prune import PruneConfig, score_model
from edgeprune.search import Budget, LatencyModel, greedy_widths, width_grid
from edgeprune.search.latency_model import ceil_to

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from odd_models import TinyNet


def test_budget_parsing() -> None:
    assert Budget.parse("8ms") == Budget(8.0, False) and Budget.parse("8").resolve(2.0) == 8.0
    assert Budget.parse("0.5x").resolve(3.0) == pytest.approx(1.5)
    assert Budget.parse(" 12.5 MS ").value == 12.5
    for bad in ("fast", "-1ms", "0ms", "1.5x", "x"):
        with pytest.raises(UsageError):
            Budget.parse(bad)


def test_width_grid() -> None:
    assert width_grid(16) == list(range(1, 17))
    assert width_grid(64) == list(range(4, 65, 4))
    assert width_grid(960)[:3] == [64, 128, 192] and width_grid(960)[-1] == 960
    assert all(w % 4 == 0 for w in width_grid(96, step=4))
    assert (
        ceil_to([4, 8, 12, 16], 8.0000001) == 8
        and ceil_to([4, 8, 12, 16], 9) == 12
        and ceil_to([4, 8], 99) == 8
    )


@pytest.fixture()
def tiny_model():
    torch.manual_seed(0)
    b = ModelBundle(TinyNet().eval(), ArchSpec(factory="odd_models:make_tiny"), (1, 8, 8))
    scored = score_model(b, PruneConfig(criterion="l1"))
    ctx = scored.ctx
    lm = LatencyModel.for_model(ctx.model, ctx.example, ctx.index, ctx.groups)
    return b, scored, lm


def _staircase(lm: LatencyModel, step: int = 8) -> None:
    """A synthetic device: each layer costs ceil(cin/step)·ceil(cout/step) µs."""
    for (sig, ci, co), _t in lm.required().items():
        lm.lut[(sig, ci, co)] = 0.001 * (-(-ci // step)) * (-(-co // step))


def test_prediction_is_separable_and_rounds_up(tiny_model) -> None:
    _b, _scored, lm = tiny_model
    assert [t.spec.layer for t in lm.terms] == ["c1.0", "c2.0", "c3.0", "fc"]
    _staircase(lm)
    full = lm.full()
    # c1: 1→16, c2: 16→32, c3: 32→48, fc: 48→10 (in units of 8-channel blocks)
    assert lm.raw(full) == pytest.approx(0.001 * (1 * 2 + 2 * 4 + 4 * 6 + 6 * 2))
    g1 = next(g.index for g in lm.groups if g.root == "c1.0")
    assert lm.raw({**full, g1: 9}) == pytest.approx(lm.raw(full))  # 9..16 is one step
    assert lm.raw({**full, g1: 8}) < lm.raw(full)


def test_grids_follow_the_width_granularity() -> None:
    torch.manual_seed(0)
    b = ModelBundle(TinyNet().eval(), ArchSpec(factory="odd_models:make_tiny"), (1, 8, 8))
    ctx = score_model(b, PruneConfig(criterion="l1")).ctx
    lm = LatencyModel.for_model(ctx.model, ctx.example, ctx.index, ctx.groups, step=8)
    grids = [(t, g) for t in lm.terms for g in (t.in_grid, t.out_grid) if g is not None]
    assert grids
    for t, grid in grids:
        # Multiples of the step, plus the layer's own full width (the 1-channel input is fixed).
        assert all(w % 8 == 0 or w in (t.spec.cin, t.spec.cout) for w in grid), grid
    _staircase(lm)  # every entry a plan on the step can need was asked for
    g1 = next(g.index for g in lm.groups if g.root == "c1.0")
    assert lm.raw({**lm.full(), g1: 9}) == pytest.approx(lm.raw(lm.full()))  # 9 runs as 16
    assert lm.raw({**lm.full(), g1: 8}) < lm.raw(lm.full())


def test_fast_side_widths_skip_plateaus(tiny_model) -> None:
    _b, _scored, lm = tiny_model
    _staircase(lm)
    g1 = next(g for g in lm.groups if g.root == "c1.0")
    assert lm.fast_side_widths(g1) == [8, 16]  # 1..7 cost what 8 costs, 9..15 what 16 costs


def test_calibration_fits_scale_and_offset(tiny_model) -> None:
    _b, _scored, lm = tiny_model
    _staircase(lm)
    full = lm.full()
    g1, g2 = (g.index for g in lm.groups[:2])
    truth = lambda k: 2.5 * lm.raw(k) + 0.01  # noqa: E731
    for keep in (full, {**full, g1: 8}, {**full, g2: 8}, {**full, g1: 8, g2: 16}):
        lm.add_point(keep, truth(keep))
    assert lm.alpha == pytest.approx(2.5, rel=1e-6) and lm.beta == pytest.approx(0.01, rel=1e-4)
    errors = lm.errors()
    assert errors["points"] == 3 and errors["worst_relative_error"] < 0.6


def test_greedy_meets_a_predicted_target_on_fast_side_widths(tiny_model) -> None:
    _b, scored, lm = tiny_model
    _staircase(lm)
    cands = {g.index: lm.fast_side_widths(g) for g in lm.groups}
    target = 0.6 * lm.predict(lm.full())
    keep = greedy_widths(lm, scored, target, cands)
    assert lm.predict(keep) <= target
    for gi, w in keep.items():
        assert w in cands[gi]
