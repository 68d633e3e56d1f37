"""Every criterion, on the zoo and on models it has never seen; plus each method's own behaviour."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeprune.checkpoint import ModelBundle, resolve_model
from edgeprune.export import onnx_from_torch
from edgeprune.models import ArchSpec
from edgeprune.prune import CRITERIA, PruneConfig, Target, make_criterion, prune
from edgeprune.prune.criteria._base import ScoreContext
from edgeprune.prune.criteria.baselines_data import channel_independence
from edgeprune.prune.criteria.similarity import (
    cosine_matrix,
    greedy_removal,
    psnr_matrix,
    ssim_matrix,
)
from edgeprune.train import TrainConfig, evaluate, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from odd_models import DenseBlockNet, DepthwiseGroupedSE

ALL = CRITERIA.names()
FAST_OPTS = {"fpar": {"attention_steps": 5}}


def test_all_twelve_are_registered() -> None:
    assert set(ALL) >= {
        "qsfm",
        "fss",
        "easiedge",
        "fpar",
        "l1",
        "l2",
        "fpgm",
        "bn_scale",
        "taylor",
        "hrank",
        "chip",
        "random",
    }


@pytest.fixture(scope="module")
def digits_r20(digits):
    torch.manual_seed(0)
    b = resolve_model("resnet20", data_info=digits.info)
    train(b.model, digits, TrainConfig(epochs=2, lr=0.05, batch_size=64))
    b.model.eval()
    return b


def _cfg(name: str, criterion_options: dict | None = None, **kw) -> PruneConfig:
    opts = {**FAST_OPTS.get(name, {}), **(criterion_options or {})}
    return PruneConfig(
        criterion=name, criterion_options=opts, calib_batches=2, calib_batch_size=32, **kw
    )


@pytest.mark.parametrize("name", ALL)
def test_criterion_on_the_zoo_runs_and_exports(name: str, digits_r20, digits, tmp_path) -> None:
    res = prune(digits_r20, _cfg(name, target=Target("flops", 0.5)), digits)
    assert abs(res.flops_reduction - 0.5) <= 0.06
    m = res.bundle.model.eval()
    x = torch.randn(2, 1, 8, 8)
    assert m(x).shape == (2, 10)
    exp = onnx_from_torch(m, res.bundle.input_shape, tmp_path / "m.onnx")
    assert exp.parity_max_abs_diff <= 1e-4 * max(1.0, exp.parity_output_scale)


@pytest.mark.parametrize("model_cls", [DepthwiseGroupedSE, DenseBlockNet])
@pytest.mark.parametrize("name", ALL)
def test_criterion_on_unseen_models(name: str, model_cls, digits, tmp_path) -> None:
    torch.manual_seed(0)
    model = model_cls(in_channels=1, num_classes=10).eval()
    b = ModelBundle(model, ArchSpec(factory=f"odd_models:{model_cls.__name__}"), (1, 8, 8))
    res = prune(b, _cfg(name, target=Target("ratio", 0.4)), digits)
    pruned = res.bundle.model.eval()
    assert res.macs_after < res.macs_before
    out = pruned(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    exp = onnx_from_torch(pruned, (1, 8, 8), tmp_path / "m.onnx")
    assert exp.parity_max_abs_diff <= 1e-4 * max(1.0, exp.parity_output_scale)
    if model_cls is DenseBlockNet:
        assert pruned.head.out_channels == 10  # the post-processed head kept its width


def test_data_driven_criteria_need_data(digits_r20) -> None:
    from edgeprune.errors import UsageError

    with pytest.raises(UsageError, match="needs --data"):
        prune(digits_r20, _cfg("qsfm", target=Target("ratio", 0.3)))


def test_unknown_option_lists_the_known_ones() -> None:
    from edgeprune.errors import UsageError

    with pytest.raises(
        UsageError, match="its options: compensate, max_ratio, similarity, threshold"
    ):
        make_criterion("qsfm", {"simlarity": "psnr"})
    with pytest.raises(UsageError, match="not one of"):
        make_criterion("qsfm", {"similarity": "mse"})
    assert make_criterion("qsfm", {"compensate": "false"}).opts["compensate"] is False


# --------------------------------------------------------------------------- similarity maths


def test_similarity_matrices() -> None:
    torch.manual_seed(0)
    a = torch.rand(1, 1, 9, 9)
    maps = torch.cat([a, 3 * a + 1, torch.rand(1, 1, 9, 9), torch.zeros(1, 1, 9, 9)], 1)
    s = ssim_matrix(maps)[0]
    assert s[0, 1] == pytest.approx(1.0, abs=1e-4)  # min-max normalisation removes scale and offset
    assert s[0, 2] < 0.5
    assert torch.allclose(s, s.T, atol=1e-5)
    assert s[3, 0] == 1.0 and s[0, 3] == 1.0  # a constant map is fully redundant
    p = psnr_matrix(maps)[0]
    assert p[0, 1] == pytest.approx(100.0) and p[0, 2] < 20
    c = cosine_matrix(maps, centred=True)[0]
    assert c[0, 1] == pytest.approx(1.0, abs=1e-5) and abs(float(c[0, 2])) < 0.5


def test_greedy_removal_drops_one_twin_and_respects_threshold() -> None:
    s = torch.tensor(
        [[1.0, 0.95, 0.2, 0.1], [0.95, 1.0, 0.3, 0.1], [0.2, 0.3, 1.0, 0.6], [0.1, 0.1, 0.6, 1.0]]
    )
    pairs = greedy_removal(s, keep=3)
    assert pairs == [(1, 0)]  # channel 1 has the larger total similarity to the rest
    assert greedy_removal(s, threshold=0.5) == [(1, 0), (2, 3)]
    assert greedy_removal(s, threshold=0.99) == []


class _Twin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, 10)
        with torch.no_grad():
            self.conv1.weight[3] = 2.0 * self.conv1.weight[1]
            self.conv1.bias[3] = 2.0 * self.conv1.bias[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.relu(self.conv1(x))).mean((2, 3)))


@pytest.mark.parametrize("compensate", [True, False])
def test_qsfm_compensation_is_exact_for_a_scaled_twin(compensate: bool, digits) -> None:
    torch.manual_seed(1)
    b = ModelBundle(_Twin().eval(), ArchSpec(factory="tests:_Twin"), (1, 8, 8))
    res = prune(
        b, _cfg("qsfm", widths={"conv1": 3}, criterion_options={"compensate": compensate}), digits
    )
    assert res.bundle.model.conv1.out_channels == 3
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        same = torch.allclose(res.bundle.model(x), b.model(x), atol=1e-4)
    assert same is compensate
    assert res.facts["compensated_channels"] == (1 if compensate else 0)


def test_qsfm_threshold_mode_finds_its_own_ratios(digits_r20, digits) -> None:
    res = prune(digits_r20, _cfg("qsfm", criterion_options={"threshold": 0.6}), digits)
    ratios = res.facts["threshold_ratios"]
    assert len(set(round(r, 3) for r in ratios.values())) > 1  # per-layer ratios differ
    assert 0 < res.flops_reduction < 1


def test_fss_removes_both_members_of_a_duplicate_first(digits) -> None:
    """FSS scores each map by its mean similarity to the others: channel 3 = 2 × channel 1 makes
    both twins the most similar maps of the layer (equally so), so at width 2 both go."""
    from edgeprune.prune._prune import score_model

    torch.manual_seed(2)
    b = ModelBundle(_Twin().eval(), ArchSpec(factory="tests:_Twin"), (1, 8, 8))
    scored = score_model(b, _cfg("fss", widths={"conv1": 2}), digits)
    (conv1,) = [g.index for g in scored.ctx.groups if g.root == "conv1"]
    scores = scored.scores[conv1]
    assert scores[1] == pytest.approx(float(scores[3]), abs=1e-5)
    assert max(scores[1], scores[3]) < min(scores[0], scores[2])
    res = prune(b, _cfg("fss", widths={"conv1": 2}), digits)
    assert res.plan.groups[0].root == "conv1" and res.plan.groups[0].keep == (0, 2)


def test_chip_matches_its_svd_definition() -> None:
    torch.manual_seed(0)
    for shape in [(2, 6, 4, 4), (2, 12, 2, 2)]:
        maps = torch.relu(torch.randn(shape))
        a = maps.reshape(shape[0], shape[1], -1).double()
        ref = torch.zeros(shape[0], shape[1], dtype=torch.float64)
        for i in range(shape[0]):
            full = torch.linalg.svdvals(a[i]).sum()
            for c in range(shape[1]):
                z = a[i].clone()
                z[c] = 0
                ref[i, c] = full - torch.linalg.svdvals(z).sum()
        assert torch.allclose(channel_independence(maps).double(), ref, atol=1e-5)


# --------------------------------------------------------------------------- EasiEdge / FPAR


def test_easiedge_ranks_globally_by_information_gain(digits_r20, digits) -> None:
    crit = make_criterion("easiedge")
    assert crit.default_mode == "global" and crit.comparable_scores
    from edgeprune.prune._prune import score_model

    scored = score_model(digits_r20, _cfg("easiedge", target=Target("flops", 0.5)), digits)
    all_scores = torch.cat(list(scored.scores.values()))
    assert (all_scores >= 0).all() and all_scores.max() > 0
    res = prune(digits_r20, _cfg("easiedge", target=Target("flops", 0.5)), digits)
    kept = {k / w for k, w in res.widths.values()}
    assert len(kept) > 2  # global ranking: uneven per-layer ratios


def test_easiedge_information_gain_ignores_a_dead_channel(digits) -> None:
    torch.manual_seed(3)
    b = ModelBundle(_Twin().eval(), ArchSpec(factory="tests:_Twin"), (1, 8, 8))
    with torch.no_grad():
        b.model.conv2.weight[:, 2] = 0.0  # channel 2 of conv1 cannot influence the output
    from edgeprune.prune._prune import score_model

    scores = score_model(b, _cfg("easiedge", widths={"conv1": 3}), digits).scores
    s = next(v for v in scores.values() if v.numel() == 4)
    assert float(s[2]) == pytest.approx(0.0, abs=1e-12) and float(s.max()) > 0


def test_easiedge_admm_shrinks_the_filters_it_will_remove(digits_r20, digits) -> None:
    ft = TrainConfig(epochs=1, lr=0.01, batch_size=64)
    cfg = _cfg(
        "easiedge",
        target=Target("flops", 0.5),
        criterion_options={"admm_rounds": 2, "admm_rho": 1.0},
        finetune=ft,
    )
    res = prune(digits_r20, cfg, digits)
    hist = res.facts["admm"]["history"]
    assert (
        len(hist) == 2 and hist[1]["pruned_weight_sq_norm"] < hist[0]["pruned_weight_sq_norm"] * 1.5
    )
    assert evaluate(res.bundle.model, digits).accuracy > 0.3
    skipped = prune(
        digits_r20,
        _cfg("easiedge", target=Target("flops", 0.5), criterion_options={"admm_rounds": 1}),
        digits,
    )
    assert "skipped" in skipped.facts["admm"]


def test_fpar_attention_is_temporary_and_its_premise_is_reported(digits_r20, digits) -> None:
    before = {type(m) for m in digits_r20.model.modules()}
    res = prune(
        digits_r20,
        _cfg("fpar", target=Target("ratio", 0.3), criterion_options={"attention_steps": 20}),
        digits,
    )
    assert {type(m) for m in res.bundle.model.modules()} == before  # no SE modules left behind
    cv = res.facts["attention_cv"]
    assert cv["channels"] > 0 and 0 <= cv["median"] < 0.05
    assert res.facts["attention_seconds"] > 0


# --------------------------------------------------------------------------- plugins


def test_third_party_criterion_via_entry_point(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "my_crit.py").write_text(
        "import torch\n"
        "from edgeprune.prune import Criterion\n"
        "class Mine(Criterion):\n"
        "    '''Keeps the highest-index channels.'''\n"
        "    name = 'mine'\n"
        "    def score(self, ctx):\n"
        "        return {g.index: torch.arange(g.width, dtype=torch.float32) for g in ctx.groups}\n"
    )
    dist = pkg / "my_crit-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-crit\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgeprune.criteria]\nmine = my_crit:Mine\n")
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.setattr(CRITERIA, "_plugins_loaded", False)
    try:
        assert "mine" in CRITERIA.names()
        b = resolve_model("resnet20", {"in_channels": 1}, input_size=8)
        res = prune(b, PruneConfig(criterion="mine", target=Target("ratio", 0.5)))
        assert res.plan.groups[0].keep[-1] == res.plan.groups[0].width - 1
    finally:
        CRITERIA._entries.pop("mine", None)


def test_score_context_is_model_agnostic(digits) -> None:
    # No code path may assume the zoo's class names: a plain Sequential works too.
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 10),
    ).eval()
    b = ModelBundle(model, ArchSpec(factory="x:y"), (1, 8, 8))
    for name in ("qsfm", "hrank", "chip", "easiedge", "fss"):
        res = prune(b, _cfg(name, target=Target("ratio", 0.5)), digits)
        assert res.bundle.model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert ScoreContext.__dataclass_fields__["finetune"].default is None
