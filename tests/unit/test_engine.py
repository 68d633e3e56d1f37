"""The Torch-Pruning wrapper: groups, plans, replay, composition, cost model, odd models."""

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeprune.checkpoint import ModelBundle, load_checkpoint, save_checkpoint
from edgeprune.errors import PruningError, UsageError
from edgeprune.models import ArchSpec, build_model, list_models
from edgeprune.prune import (
    DependencyIndex,
    GroupPlan,
    PruneConfig,
    PrunePlan,
    Target,
    apply_plan,
    count_macs_params,
    prune,
    score_model,
)
from edgeprune.prune._cost import CostModel
from edgeprune.prune._flow import Perturbation, channel_reach

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from odd_models import (
    DenseBlockNet,
    DepthwiseGroupedSE,
    GhostNet,
    PreActDenseNet,
    SlicedResidualNet,
    SplitShuffleNet,
)

TOPOLOGIES = [
    SplitShuffleNet,
    PreActDenseNet,
    SlicedResidualNet,
    GhostNet,
    DenseBlockNet,
    DepthwiseGroupedSE,
]


def _bundle(name: str, size: int = 28, **kw) -> ModelBundle:
    torch.manual_seed(0)
    spec = ArchSpec(name=name, kwargs={"in_channels": 1, **kw})
    return ModelBundle(build_model(spec).eval(), spec, (1, size, size))


def test_resnet56_groups() -> None:
    b = _bundle("resnet56")
    idx = DependencyIndex(b.model, b.example_input())
    assert idx.heads == ["fc"]
    shared = [g for g in idx.groups if g.shared]
    assert len(shared) == 3  # the three stages' residual channels
    assert sorted(g.width for g in shared) == [16, 32, 64]
    assert len(idx.groups) == 27 + 3
    assert all("fc" not in g.members for g in idx.groups)


@pytest.mark.parametrize("name", list_models())
def test_plan_replays_exactly(name: str) -> None:
    b = _bundle(name)
    res = prune(b, PruneConfig(criterion="l1", target=Target("ratio", 0.4)))
    fresh = build_model(b.arch).eval()
    fresh.load_state_dict(b.model.state_dict())
    apply_plan(fresh, res.plan, b.example_input())
    fresh.load_state_dict(res.bundle.model.state_dict())
    x = torch.randn(2, *b.input_shape)
    with torch.no_grad():
        assert torch.allclose(fresh(x), res.bundle.model(x), atol=1e-5)


def test_pruning_twice_composes_plans(tmp_path) -> None:
    b = _bundle("resnet20")
    once = prune(b, PruneConfig(target=Target("ratio", 0.3)))
    twice = prune(once.bundle, PruneConfig(target=Target("ratio", 0.3)))
    assert twice.macs_after < once.macs_after
    save_checkpoint(twice.bundle, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), twice.bundle.model(x), atol=1e-5)
    # Indices in the stored plan refer to the unpruned model.
    for g in loaded.plan.groups:
        assert max(g.keep) < g.width


@pytest.mark.parametrize("name", ["resnet56", "mobilenet_v2", "vgg16_bn"])
def test_cost_model_tracks_the_real_counter(name: str) -> None:
    b = _bundle(name)
    idx = DependencyIndex(b.model, b.example_input())
    cost = CostModel(idx)
    full = cost.full()
    macs, params = count_macs_params(b.model, b.example_input())
    assert abs(cost.macs(full) - macs) / macs < 0.03
    assert abs(cost.params(full) - params) / params < 0.03
    half = {g: max(1, w // 2) for g, w in full.items()}
    res = prune(b, PruneConfig(widths={g.root: half[g.index] for g in idx.groups}, round_to=1))
    assert abs(cost.macs(half) - res.macs_after) / res.macs_after < 0.05


class DepthwiseGrouped(nn.Module):
    """Depthwise and grouped convolutions, squeeze-excitation, concat, a reused module, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.grouped = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.se_fc1 = nn.Linear(32, 8)
        self.se_fc2 = nn.Linear(8, 32)
        self.branch = nn.Sequential(nn.Conv2d(32, 8, 1), nn.ReLU())
        self.shared = nn.Conv2d(8, 8, 3, padding=1)  # applied twice
        self.head = nn.Linear(32 + 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.dw(self.stem(x)))
        s = torch.sigmoid(self.se_fc2(torch.relu(self.se_fc1(x.mean((2, 3))))))
        x = x * s[:, :, None, None]
        b = self.shared(torch.relu(self.shared(self.branch(x))))
        x = torch.cat([x, b], 1)
        return self.head(x.mean((2, 3)))


def test_odd_model_prunes_and_runs() -> None:
    torch.manual_seed(0)
    b = ModelBundle(
        DepthwiseGrouped().eval(), ArchSpec(factory="tests:DepthwiseGrouped"), (1, 12, 12)
    )
    res = prune(b, PruneConfig(target=Target("ratio", 0.5)))
    out = res.bundle.model(torch.randn(2, 1, 12, 12))
    assert out.shape == (2, 5)
    grouped = res.bundle.model.grouped[0]
    assert grouped.out_channels % grouped.groups == 0 and grouped.out_channels < 32
    assert res.macs_after < res.macs_before


def test_plan_for_another_architecture_is_refused() -> None:
    b = _bundle("resnet20")
    res = prune(b, PruneConfig(target=Target("ratio", 0.5)))
    other = build_model(ArchSpec(name="vgg16_bn", kwargs={"in_channels": 1}))
    from edgeprune.errors import UsageError

    with pytest.raises(UsageError, match="different architecture"):
        apply_plan(other, res.plan, torch.zeros(1, 1, 28, 28))


def test_plan_json_roundtrip() -> None:
    b = _bundle("resnet20")
    plan = prune(b, PruneConfig(target=Target("ratio", 0.25))).plan
    assert PrunePlan.from_dict(plan.to_dict()) == plan


# --------------------------------------------------------------------------- odd topologies


def _randomised(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so zeroed channels are not the norm."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval()


def _zero_removed(model: nn.Module, index: DependencyIndex, plan: PrunePlan) -> nn.Module:
    """A copy of ``model`` whose producers of the plan's removed channels output exact zeros."""
    zeroed = copy.deepcopy(model)
    modules = dict(zeroed.named_modules())
    with torch.no_grad():
        for gp in plan.groups:
            g = index.group(gp.root)
            gone = set(range(g.width)) - set(gp.keep)
            for name, cm in g.out_maps.items():
                mod = modules[name]
                rows = sorted(cm.of(gone))
                if isinstance(mod, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and rows:
                    mod.weight[rows] = 0.0
                    if mod.bias is not None:
                        mod.bias[rows] = 0.0
    return zeroed


@pytest.mark.parametrize("cls", TOPOLOGIES, ids=lambda c: c.__name__)
def test_pruning_equals_zeroing_the_removed_channels(cls) -> None:
    # A pruned model must be the original network minus the removed channels: zeroing those
    # channels where they are produced gives the same outputs. A channel map that routes a
    # channel wrongly (a shuffle, a slice of a concatenation) breaks this.
    torch.manual_seed(0)
    model = _randomised(cls())
    b = ModelBundle(model, ArchSpec(factory=f"odd_models:{cls.__name__}"), (1, 8, 8))
    res = prune(b, PruneConfig(criterion="random", target=Target("ratio", 0.4), round_to=1))
    assert res.plan.groups and res.macs_after < res.macs_before
    index = DependencyIndex(model, b.example_input())
    zeroed = _zero_removed(model, index, res.plan)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        want, got = zeroed(x), res.bundle.model.eval()(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_shuffled_groups_are_refused_with_a_reason() -> None:
    torch.manual_seed(0)
    idx = DependencyIndex(SplitShuffleNet().eval(), torch.randn(1, 1, 8, 8))
    refused = {r.root: r.reason for r in idx.refused}
    assert "stem.0" in refused and "down_left.2" in refused
    assert all("Torch-Pruning" in why for why in refused.values())
    # the branches' inner channels never reach a shuffle: they stay prunable
    assert {"branches.0.3", "branches.1.3"} <= {g.root for g in idx.groups}


def test_broken_channel_maps_are_refused_and_the_rest_prunes() -> None:
    # Eight dual-path blocks: Torch-Pruning's concat mapping raises (a TypeError summing channel
    # counts it could not infer) and maps the residual+dense group onto too many channels.
    torch.manual_seed(0)
    model = _randomised(SlicedResidualNet(blocks=8))
    idx = DependencyIndex(model, torch.randn(1, 1, 8, 8))
    assert any("update_concat_index_mapping" in v for v in idx._faults.values())
    assert idx.refused and idx.groups
    b = ModelBundle(model, ArchSpec(factory="odd_models:SlicedResidualNet"), (1, 8, 8))
    res = prune(b, PruneConfig(target=Target("ratio", 0.4), round_to=1))
    assert res.bundle.model(torch.randn(2, 1, 8, 8)).shape == (2, 5)


def test_channel_reach_follows_a_shuffle() -> None:
    class Shuffle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(1, 8, 1)
            self.bn = nn.BatchNorm2d(8)
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn(self.a(x)))
            n, c, h, w = y.shape
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            return self.b(y)

    m = Shuffle().eval()
    reach = channel_reach(m, torch.randn(1, 1, 6, 6), [[Perturbation("a", c)] for c in range(8)])
    for c, hits in enumerate(reach):
        assert hits["bn"] == {c}
        assert hits["b"] == {(c % 4) * 2 + c // 4}
        assert "a" not in hits


def test_graph_deadline_is_a_clear_error() -> None:
    b = _bundle("resnet20")
    with pytest.raises(PruningError, match="did not finish within 0 s"):
        DependencyIndex(b.model, b.example_input(), timeout=0.0)


def test_inconsistent_plan_is_refused_before_pruning() -> None:
    b = _bundle("resnet20")
    idx = DependencyIndex(b.model, b.example_input())
    g = next(g for g in idx.groups if not g.shared)
    before = copy.deepcopy(b.model.state_dict())
    plan = PrunePlan((GroupPlan(g.root, g.width, (0,)),))
    with pytest.raises(UsageError, match="width"):
        idx.apply(PrunePlan((GroupPlan(g.root, g.width + 1, (0,)),)))
    idx.check_plan(plan)  # a valid plan passes
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in before.items())


def test_grouped_conv_limit_is_explained() -> None:
    class DepthMultiplier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.mult = nn.Conv2d(8, 16, 3, padding=1, groups=8)  # two outputs per input
            self.head = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.mult(self.stem(x)).mean((2, 3)))

    idx = DependencyIndex(DepthMultiplier().eval(), torch.randn(1, 1, 6, 6))
    stem = idx.group("stem")
    assert stem.limit() is not None and "not prunable" in stem.limit()
    assert "mult" in stem.limit()


@pytest.mark.parametrize(
    "make",
    [lambda: SlicedResidualNet(blocks=8), *TOPOLOGIES],
    ids=["SlicedResidualNet8", *[t.__name__ for t in TOPOLOGIES]],
)
def test_a_model_copy_has_the_checked_models_groups(make) -> None:
    # The width search prunes fresh copies, indexed without the routing check: a group the check
    # refused must still claim its members there (DPN26's dual-path groups rooted extra groups
    # at their other members, and the copy's groups no longer matched).
    from edgeprune.prune._prune import fresh_context

    torch.manual_seed(0)
    model = _randomised(make())
    b = ModelBundle(model.eval(), ArchSpec(factory="odd_models:X"), (1, 16, 16))
    scored = score_model(b, PruneConfig(target=Target("ratio", 0.4), round_to=1))
    copy_ctx = fresh_context(scored)
    assert [g.root for g in copy_ctx.index.groups] == [g.root for g in scored.ctx.index.groups]
    assert {r.root for r in copy_ctx.index.refused} == {r.root for r in scored.ctx.index.refused}
