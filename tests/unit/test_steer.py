"""Steering a plan into the budget's window (`edgeprune.search._search._steer`).

The control logic is tested on its own: a one-group width grid, a device whose latency is a known
function of the width, and a latency model whose corrected target maps back onto the plan just
measured (as MobileNetV2 at 224×224 did at 0.5x: the refit moved the prediction less than the
residual, steering stopped 3 % over the budget and the search shipped a fallback at 54 % of it).
The real search runs in tests/integration/test_search.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from edgeprune.search import Budget, SearchConfig
from edgeprune.search._search import Plan, _steer

GRID = [8, 9, 10, 11, 12]


def device_ms(w: int) -> float:
    return 0.11 * w


class Model:
    """Predicts 0.1 ms per channel and never learns (its refit changes nothing)."""

    alpha, beta = 1.0, 0.0

    def predict(self, keep: dict[int, int]) -> float:
        return 0.1 * keep[0]


class Allocator:
    """One group; plans are priced by a cost that, after the refit, is cheaper than the model's
    prediction (0.094 ms per channel), so the corrected target maps back onto the same width."""

    def __init__(self) -> None:
        self.cost = SimpleNamespace(scale=1.0, offset=0.0)

    def profile_of(self, keep: dict[int, int]) -> dict[int, float]:
        return {0: 1.0 - keep[0] / GRID[-1]}

    def scaled(self, profile: dict[int, float], target: float) -> dict[int, int]:
        fits = [w for w in GRID if 0.094 * w <= target]
        return {0: fits[-1] if fits else GRID[0]}

    def grow(self, keep: dict[int, int], target: float) -> dict[int, int]:
        return dict(keep)


class Verifier:
    def __init__(self) -> None:
        self.measured: list[int] = []

    def attempt(self, keep: dict[int, int], label: str, acc: float | None = None):
        self.measured.append(keep[0])
        return SimpleNamespace(measured_ms=device_ms(keep[0]), label=label), None, None


def _scfg() -> SearchConfig:
    return SearchConfig(budget=Budget.parse("1.3ms"), device="local")


def test_a_plan_over_the_budget_is_steered_down_when_the_correction_maps_back_onto_it() -> None:
    verify, budget = Verifier(), 1.3  # window [1.209, 1.3]: only width 11 (1.21 ms) is in it
    scfg = _scfg()
    aim = budget * (1 - scfg.tolerance / 2)
    plan = Plan(keep={0: 12}, label="greedy/mean", cost=1.2)
    got, tried = _steer(verify, Model(), Allocator(), plan, aim, budget, scfg, None)  # type: ignore[arg-type]
    assert verify.measured[0] == 12 and device_ms(12) > budget  # the plan itself was over
    assert got is not None, f"steering stopped after measuring widths {verify.measured}"
    assert got[0].measured_ms <= budget and got[0].measured_ms >= budget * (1 - scfg.tolerance)
    assert verify.measured == [12, 11]
    assert [c[0].measured_ms for c in tried] == [device_ms(12), device_ms(11)]


def test_a_plan_under_the_window_is_steered_up_when_the_correction_maps_back_onto_it() -> None:
    verify, budget = Verifier(), 1.3
    scfg = _scfg()
    aim = budget * (1 - scfg.tolerance / 2)

    class Cheap(Allocator):
        # After the refit every width is priced above the model's prediction (0.11 ms per
        # channel): a plan measured under the window is corrected to a target that maps back
        # onto it.
        def scaled(self, profile: dict[int, float], target: float) -> dict[int, int]:
            fits = [w for w in GRID if 0.11 * w <= target]
            return {0: fits[-1] if fits else GRID[0]}

    plan = Plan(keep={0: 10}, label="greedy/mean", cost=1.0)  # 1.10 ms: under the window
    got, _ = _steer(verify, Model(), Cheap(), plan, aim, budget, scfg, None)  # type: ignore[arg-type]
    assert got is not None, f"steering stopped after measuring widths {verify.measured}"
    assert verify.measured == [10, 11] and got[0].measured_ms <= budget
