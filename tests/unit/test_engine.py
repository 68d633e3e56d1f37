"""The Torch-Pruning wrapper: groups, plans, replay, composition, cost model, odd models."""

import pytest
import torch
from torch import nn

from edgeprune.checkpoint import ModelBundle, load_checkpoint, save_checkpoint
from edgeprune.models import ArchSpec, build_model, list_models
from edgeprune.prune import (
    DependencyIndex,
    PruneConfig,
    PrunePlan,
    Target,
    apply_plan,
    count_macs_params,
    prune,
)
from edgeprune.prune._cost import CostModel


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
    res = prune(b, PruneConfig(widths={g.root: half[g.index] for g in idx.groups}))
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
