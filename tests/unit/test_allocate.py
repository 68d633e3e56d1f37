"""The accuracy-aware allocator: candidates meet the cost target on their grids, the proxy judges
on held-out training images only, and the chosen plan is never worse than uniform or global."""

from __future__ import annotations

import random

import pytest
import torch

from edgeprune.checkpoint import ModelBundle
from edgeprune.data import Dataset
from edgeprune.errors import UsageError
from edgeprune.models import ArchSpec, build_model
from edgeprune.prune import (
    AccuracyProxy,
    AllocationResult,
    Allocator,
    ProxyScore,
    PruneConfig,
    Target,
    TermCost,
    allocate,
    allocation_grids,
    prune,
    score_model,
)
from edgeprune.prune._cost import CostModel


def _bundle(name: str = "resnet20", size: int = 16) -> ModelBundle:
    torch.manual_seed(0)
    spec = ArchSpec(name=name, kwargs={"in_channels": 1})
    return ModelBundle(build_model(spec).eval(), spec, (1, size, size))


@pytest.fixture(scope="module")
def digits16():
    from edgeprune.data import load_dataset

    return load_dataset("digits", image_size=16)


def _allocator(name: str, kind: str = "flops", round_to: int | None = None):
    cfg = PruneConfig(criterion="l1", target=Target(kind, 0.5), round_to=round_to)
    scored = score_model(_bundle(name), cfg)
    cm = CostModel(scored.ctx.index)
    cost = TermCost(cm.terms(kind))
    grids = allocation_grids(scored.ctx.groups, cfg)
    return Allocator(scored.ctx.groups, scored.scores, cost, grids, seed=0), cm, grids


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "vgg16_bn"])
def test_term_cost_prices_one_group_change_exactly(name: str) -> None:
    alloc, cm, grids = _allocator(name)
    rng = random.Random(0)
    keep = {gi: rng.choice(ws) for gi, ws in grids.items()}
    total = alloc.cost(keep)
    assert total == pytest.approx(cm.macs(keep))
    for gi in rng.sample(sorted(grids), 5):
        w = rng.choice(grids[gi])
        assert alloc.cost.with_group(keep, total, gi, w) == pytest.approx(
            cm.macs({**keep, gi: w}), rel=1e-9
        )


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "vgg16_bn"])
def test_every_candidate_meets_the_target_on_its_grid(name: str) -> None:
    alloc, cm, grids = _allocator(name, round_to=4)
    target = 0.5 * cm.macs(cm.full())
    plans = alloc.candidates(target)
    labels = [p.label for p in plans]
    assert labels[:2] == ["uniform", "global"]
    assert len(plans) >= 5  # distinct plans (equal plans of two generators are kept once)
    assert any(lbl.startswith("greedy") for lbl in labels)
    for p in plans:
        assert p.cost <= target * (1 + 1e-9), p.label
        assert p.cost == pytest.approx(cm.macs(p.keep))
        for gi, w in p.keep.items():
            assert w in grids[gi], (p.label, gi, w)
            assert w % 4 == 0 or w == max(grids[gi]), (p.label, gi, w)
    # Spending the slack: no group of the uniform plan can take one more grid step within the
    # target (the uniform+fill plan, where it differs, costs at least as much).
    _assert_filled(alloc, grids, plans[0].keep, target)
    fill = next((p for p in plans if p.label == "uniform+fill"), plans[0])
    assert fill.cost >= plans[0].cost


def _assert_filled(alloc, grids, keep, target) -> None:
    for gi, w in keep.items():
        wider = [v for v in grids[gi] if v > w]
        if wider:
            assert alloc.cost({**keep, gi: min(wider)}) > target, (gi, w)


@pytest.mark.parametrize("reduction", [0.1, 0.2, 0.3, 0.5])
def test_the_uniform_plan_fills_the_target_on_a_coarse_grid(reduction: float) -> None:
    # round_to 16 (AVX-512's block) leaves ResNet-20's 32-wide groups two widths, 16 or 32: one
    # common cut jumps past the target (20 % FLOPs asked, 38 % cut), as `prune --mode uniform`
    # does not (it balances to 19.6 %).
    alloc, cm, grids = _allocator("resnet20", round_to=16)
    target = (1 - reduction) * cm.macs(cm.full())
    keep = alloc.uniform(target)
    assert alloc.cost(keep) <= target * (1 + 1e-9)
    _assert_filled(alloc, grids, keep, target)
    assert 1 - cm.macs(keep) / cm.macs(cm.full()) <= reduction + 0.05


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.9, 1.0])
def test_without_a_proxy_the_greedy_plan_is_returned_even_when_another_generator_matches_it(
    ratio: float,
) -> None:
    # At a loose target several generators return the same plan and only the first label is
    # kept in the candidate list; the no-proxy path must not depend on that.
    alloc, cm, grids = _allocator("resnet20")
    target = ratio * cm.macs(cm.full())
    res = allocate(alloc, target, None)
    assert res.best.label == "greedy/mean" and res.evaluations == 0
    assert res.best.cost <= target * (1 + 1e-9)
    assert all(w in grids[gi] for gi, w in res.best.keep.items())


def test_an_allocation_without_plans_serialises() -> None:
    # The latency search records one when even the smallest allowed plan is predicted too slow.
    empty = AllocationResult([], 1.0, "ms (predicted)", 256, 0, 0.0, 0, ["none fits"])
    d = empty.to_dict()
    assert d["chosen"] is None and d["candidates"] == [] and d["notes"] == ["none fits"]


def test_knapsack_keeps_at_least_the_uniform_importance() -> None:
    alloc, cm, _ = _allocator("vgg16_bn")
    target = 0.5 * cm.macs(cm.full())

    def kept(keep: dict[int, int]) -> float:
        return sum(alloc.kept_value("mean", gi, w) for gi, w in keep.items())

    knap = alloc.knapsack(target, "mean")
    assert alloc.cost(knap) <= target
    assert kept(knap) >= kept(alloc.uniform(target))


def test_mutation_is_repaired_to_the_target() -> None:
    alloc, cm, grids = _allocator("resnet20")
    target = 0.4 * cm.macs(cm.full())
    parent = alloc.uniform(target)
    for _ in range(10):
        child, _ = alloc.mutate(parent, alloc.global_rank(target), target)
        assert alloc.cost(child) <= target
        assert all(w in grids[gi] for gi, w in child.items())


class _NoTest:
    """A test split that fails when touched: the proxy must never read it."""

    labels = torch.zeros(1, dtype=torch.long)

    def __len__(self) -> int:
        return 1

    def subset(self, n, seed=0):  # pragma: no cover - must not be called
        raise AssertionError("the proxy read the test split")

    def fetch(self, idx):  # pragma: no cover - must not be called
        raise AssertionError("the proxy read the test split")


def test_proxy_uses_disjoint_training_slices_and_never_the_test_split(digits16) -> None:
    data = Dataset(digits16.info, digits16.train, _NoTest())  # type: ignore[arg-type]
    proxy = AccuracyProxy(lambda keep: _bundle("resnet20").model, data, samples=300, seed=3)
    bn = set(torch.cat(proxy.bn_idx).tolist())
    ev = set(proxy.eval_idx.tolist())
    assert len(ev) == 300 and not bn & ev
    a = proxy({0: 16})
    b = AccuracyProxy(lambda keep: _bundle("resnet20").model, data, samples=300, seed=3)({0: 16})
    assert a == b  # fixed slices: the same plan gets the same score
    assert 0.0 <= a.accuracy <= 1.0 and a.loss > 0
    assert proxy.evaluations == 1 and proxy({0: 16}) is a


def test_the_tuned_proxy_trains_outside_the_held_out_slice_and_is_repeatable(digits16) -> None:
    data = Dataset(digits16.info, digits16.train, _NoTest())  # type: ignore[arg-type]

    def proxy() -> AccuracyProxy:
        return AccuracyProxy(lambda keep: _bundle("resnet20").model, data, samples=300, seed=3)

    p = proxy()
    assert not set(p.tune_idx.tolist()) & set(p.eval_idx.tolist())
    assert len(p.tune_idx) + len(p.eval_idx) == len(digits16.train)
    untuned, tuned = p({0: 16}), p.tuned({0: 16}, steps=30)
    # 30 steps of 128 training digits lower a random ResNet-20's held-out loss.
    assert tuned.loss < untuned.loss
    assert p.tuned({0: 16}, steps=30) is tuned  # cached per plan and step count
    assert proxy().tuned({0: 16}, steps=30) == tuned  # same images, same order, same score


def test_search_mode_is_never_worse_than_uniform_or_global_on_the_proxy(digits16) -> None:
    res = prune(
        _bundle("resnet20"),
        # round_to 1: on the host's 8-channel grid ResNet-20's 16-wide stage cannot land near 50%.
        PruneConfig(
            criterion="l1",
            target=Target("flops", 0.5),
            search_evals=8,
            proxy_samples=400,
            round_to=1,
        ),
        digits16,
    )
    alloc = res.facts["allocation"]
    assert alloc["ranked_by"] == "proxy accuracy" and alloc["evaluations"] == 8
    base = alloc["baseline_proxy_accuracy"]
    assert set(base) == {"uniform", "global"}
    assert alloc["chosen_proxy_accuracy"] >= max(base.values())
    assert alloc["candidates"][0]["label"] == alloc["chosen"]
    # The FLOPs target holds for the materialised model (Torch-Pruning's counter).
    assert 0.45 <= res.flops_reduction <= 0.55


def test_default_mode_is_search_with_data_and_a_flops_target(digits16) -> None:
    with_data = prune(
        _bundle(),
        PruneConfig(target=Target("flops", 0.3), search_evals=3, proxy_samples=64),
        digits16,
    )
    assert "allocation" in with_data.facts
    without = prune(_bundle(), PruneConfig(target=Target("flops", 0.3)))
    assert "allocation" not in without.facts
    ratio = prune(_bundle(), PruneConfig(target=Target("ratio", 0.3)), digits16)
    assert "allocation" not in ratio.facts  # a ratio is per group by definition


def test_search_mode_without_data_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="needs --data"):
        prune(_bundle(), PruneConfig(target=Target("flops", 0.3), mode="search"))


def test_an_extra_plan_is_put_on_the_grid_judged_and_can_win() -> None:
    # A criterion's own allocation (QSFM's threshold mode) joins the candidates: snapped to the
    # grids, brought to the target, always evaluated; the proxy decides.
    alloc, cm, grids = _allocator("resnet20", round_to=8)
    target = 0.5 * cm.macs(cm.full())
    first = sorted(grids)[: len(grids) // 2]
    mine = {gi: (grids[gi][-1] if gi in first else grids[gi][0] + 3) for gi in grids}  # off-grid

    def proxy(keep):
        return ProxyScore(-sum(abs(keep[gi] - mine[gi]) for gi in keep), 0.0)

    res = allocate(alloc, target, proxy, max_evals=4, extra=[(mine, "criterion own")])
    assert res.best.label == "criterion own"  # evaluated though max_evals is 4
    assert res.best.cost <= target * (1 + 1e-9)
    assert all(w in grids[gi] for gi, w in res.best.keep.items())
