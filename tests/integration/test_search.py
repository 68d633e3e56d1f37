"""Latency-constrained search on the `local` device, with real measurements."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from edgeprune.bench import BenchConfig, Store
from edgeprune.checkpoint import ModelBundle, load_checkpoint
from edgeprune.cli import main
from edgeprune.errors import BudgetInfeasibleError, UsageError
from edgeprune.models import ArchSpec
from edgeprune.prune import PruneConfig, prune
from edgeprune.search import Budget, SearchConfig, search

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from odd_models import TinyNet

pytestmark = pytest.mark.integration

TINY = f"{Path(__file__).resolve().parents[1] / 'odd_models.py'}:make_tiny"
# These tests check the search's flow on a machine that may be loaded, where a preempted run can
# push a measurement's CV past 500%; so noisy measurements are accepted here
# (test_unstable_measurements_are_refused checks the refusal itself).
NOISY_OK = 1e9
FAST = BenchConfig(
    warmup_runs=3,
    warmup_seconds=0.1,
    min_runs=30,
    min_seconds=0.3,
    max_repeats=2,
    cv_threshold=NOISY_OK,
)
BLOCKS = BenchConfig(
    warmup_runs=2, warmup_seconds=0.01, min_runs=15, min_seconds=0.03, max_seconds=2, max_repeats=1
)


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("search-home")


@pytest.fixture(autouse=True)
def _share_lookup_tables(shared_home, monkeypatch) -> None:
    # One store for the module: later tests reuse the lookup tables the first one measured,
    # as later searches on the same device do.
    monkeypatch.setenv("EDGEPRUNE_HOME", str(shared_home))


def _tiny(size: int = 32) -> ModelBundle:
    # 32×32: enough work per run that pruning moves latency beyond the per-run overhead.
    torch.manual_seed(0)
    return ModelBundle(TinyNet().eval(), ArchSpec(factory=TINY), (1, size, size))


def _cfg(budget: str, strategy: str = "latency", **kw) -> SearchConfig:
    # The probes' exporter for the deployed file too: TinyNet runs 0.03-0.1 ms, where the dynamo
    # export's graph measured up to 45% slower than the TorchScript probe (0.049 vs 0.034 ms) and
    # no cut removes that; these tests are about the search's flow.
    kw.setdefault("exporter", "torchscript")
    return SearchConfig(
        budget=Budget.parse(budget),
        device="local",
        bench=FAST,
        block_bench=BLOCKS,
        strategy=strategy,
        **kw,
    )


def test_latency_aware_search_meets_a_measured_budget() -> None:
    # 0.75x, not 0.6x: on a fast (AVX-512) host TinyNet's smallest allowed plan runs ~0.6x of
    # the base (0.033 ms for a 0.032 ms budget in one suite run), so 0.6x is at the floor.
    res = search(_tiny(), PruneConfig(criterion="l1"), _cfg("0.75x"))
    assert res.final_ms <= res.budget_ms  # the chosen candidate's measured latency
    assert res.budget_ms == pytest.approx(0.75 * res.base_ms)
    assert res.device_measurements >= 2 and res.candidates
    assert res.final.id is not None and res.base.id is not None  # both stored
    m = res.model
    assert m["entries"] > 0 and m["measured"] + m["reused"] == m["entries"]
    assert m["points"] >= 1 and m["median_relative_error"] is not None
    with Store() as st:
        assert st.lut_count(m["device_key"]) >= m["entries"]
    d = res.to_dict()
    assert d["realised_over_ideal"] > 0 and d["widths"]
    # No layer loses more than max_layer_ratio (0.8) of its channels.
    assert all(k >= math.ceil(0.2 * w) for k, w in res.result.widths.values())


def test_max_layer_ratio_is_validated() -> None:
    with pytest.raises(UsageError, match="max-layer-ratio"):
        _cfg("0.6x", max_layer_ratio=1.5)


def test_second_search_reuses_the_lookup_tables() -> None:
    search(_tiny(), PruneConfig(criterion="l1"), _cfg("0.7x"))  # measures what is missing
    res = search(_tiny(), PruneConfig(criterion="l1"), _cfg("0.7x"))
    assert res.model["measured"] == 0 and res.model["reused"] == res.model["entries"]


def test_uniform_baseline_bisects_on_measurements() -> None:
    res = search(
        _tiny(),
        PruneConfig(criterion="l1", round_to=1),  # no channel grid: one ratio can hold exactly
        _cfg("0.6x", strategy="uniform", max_verifications=5),
    )
    assert res.final_ms <= res.budget_ms
    labels = [c.label for c in res.candidates if c.label.startswith("uniform")]
    assert labels and len(labels) <= 5
    kept = {k / w for k, w in res.result.widths.values()}
    assert max(kept) - min(kept) < 0.1  # one ratio everywhere


def test_infeasible_budget_reports_the_best_latency() -> None:
    with pytest.raises(BudgetInfeasibleError) as e:
        search(
            _tiny(), PruneConfig(criterion="l1", min_channels=8), _cfg("0.02x", max_verifications=2)
        )
    assert (
        "best reached is" in str(e.value)
        and e.value.details["best_ms"] > e.value.details["budget_ms"]
    )


def test_a_per_layer_bound_that_forbids_the_budget_is_cut_past() -> None:
    from edgeprune.data import load_dataset

    # max_layer_ratio 0.05 leaves TinyNet's channel groups (16, 32, 48 wide, on an 8-step grid)
    # nothing to remove: within the bound the smallest plan is the unpruned model, which cannot
    # meet 0.6x. As a FLOPs target is relaxed past the bound, so is the budget's search.
    res = search(
        _tiny(),
        PruneConfig(criterion="l1"),
        _cfg("0.6x", max_layer_ratio=0.05, proxy_evals=4, verify_top=2),
        load_dataset("digits", image_size=32),
    )
    assert res.final_ms <= res.budget_ms
    widths = res.result.widths.values()
    assert any(k < math.ceil(0.95 * w) for k, w in widths)  # some layer cut past the bound
    assert any("--max-layer-ratio" in n for n in res.notes)


def test_netadapt_fine_tunes_between_steps() -> None:
    from edgeprune.data import load_dataset
    from edgeprune.train import TrainConfig

    # 32×32 as in the other tests: at 16×16 TinyNet runs ~0.045 ms, mostly ONNX Runtime's per-run
    # cost, and even the smallest allowed model measured over 0.7x (0.039 vs 0.032 ms) in CI.
    digits32 = load_dataset("digits", image_size=32)
    res = search(
        _tiny(),
        PruneConfig(criterion="l1"),
        _cfg(
            "0.7x",
            strategy="netadapt",
            netadapt_iterations=2,
            netadapt_finetune=TrainConfig(epochs=1, lr=0.01, max_train_samples=256),
        ),
        digits32,
    )
    labels = [c.label for c in res.candidates]
    assert any(lbl.startswith("netadapt 1/2") for lbl in labels) and any(
        lbl.startswith("netadapt 2/2") for lbl in labels
    )
    assert res.final_ms <= res.budget_ms
    # The result was built on the fine-tuned step-1 model: its plan composes two prunes.
    assert res.result.bundle.plan.groups


def test_cli_prune_with_latency_budget_records_base_and_pruned(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "prune",
            TINY,
            "--input-size",
            "32",
            "--latency-budget",
            "0.7x",
            "--device",
            "local",
            "--bench-seconds",
            "0.3",
            "--table-seconds",
            "0.03",
            "--max-cv",
            str(NOISY_OK),
            # The probes' exporter: at 0.1 ms the fixed cost of another exporter's graph can exceed
            # any cut; the search then says so instead of choosing a model.
            "--opset",
            "17",
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    rep = json.loads((out / "report.json").read_text())
    lat = rep["latency"]
    for side in ("base", "pruned"):
        assert lat[side]["context_key"] and lat[side]["stats"]["n"] > 0 and lat[side]["id"]
    assert lat["budget_ms"] == pytest.approx(0.7 * lat["base"]["stats"]["median"])
    # The deployed file itself was measured; the verdict and the exit code follow that number
    # (a loaded machine can push a 0.1 ms model over its budget on the re-measurement: exit 1).
    assert lat["met"] == (lat["pruned"]["stats"]["median"] <= lat["budget_ms"])
    assert code == (0 if lat["met"] else 1), captured.err
    assert lat["pruned"]["context"]["artifact_sha256"] == rep["artifacts"]["model.onnx"]
    assert rep["search"]["device_measurements"] >= 2
    # A checkpoint built by a factory reloads through that factory, named (--model-code).
    assert load_checkpoint(out / "model.pt", TINY).model(torch.randn(1, 1, 32, 32)).shape == (1, 10)


def test_cli_search_writes_a_plan(tmp_path, capsys) -> None:
    plan = tmp_path / "plan.json"
    code = main(
        [
            "search",
            TINY,
            "--input-size",
            "32",
            "--latency-budget",
            "0.8x",
            "--bench-seconds",
            "0.3",
            "--table-seconds",
            "0.03",
            "--max-cv",
            str(NOISY_OK),
            "--out",
            str(plan),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    res = json.loads(captured.out)
    assert res["plan"]["groups"] and json.loads(plan.read_text())["budget"] == "0.8x"
    bad = main(["search", "resnet20", "--latency-budget", "fast"])
    assert bad == 2


def test_latency_budget_with_another_target_is_a_usage_error(tmp_path, capsys) -> None:
    code = main(
        [
            "prune",
            TINY,
            "--input-size",
            "32",
            "--latency-budget",
            "0.5x",
            "--ratio",
            "0.3",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot be combined with --ratio" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / ".r.partial").exists()


def test_unstable_measurements_are_refused() -> None:
    from edgeprune.errors import UnstableMeasurementError

    # No real measurement has a CV of zero: every attempt is "unstable", so after the retries
    # the search must refuse rather than use the number.
    never_stable = BenchConfig(
        warmup_runs=2,
        warmup_seconds=0.01,
        min_runs=10,
        min_seconds=0.05,
        max_repeats=1,
        cv_threshold=0.0,
    )
    cfg = SearchConfig(
        budget=Budget.parse("0.6x"),
        device="local",
        bench=never_stable,
        block_bench=BLOCKS,
        unstable_retries=1,
    )
    with pytest.raises(UnstableMeasurementError, match=r"stayed unstable .* after 2 measurements"):
        search(_tiny(), PruneConfig(criterion="l1"), cfg)


def test_a_candidate_that_never_settles_is_skipped_not_fatal(monkeypatch) -> None:
    """One unstable candidate is unknown: the search goes on with the other plans, the unknown
    one never becomes a result, and the report names it. Noise cannot be summoned on demand, so
    the real measurements of the first ranked plan are marked unstable as noise would leave them."""
    import dataclasses

    import edgeprune.search._search as s

    real = s.measure
    noisy: list[str] = []

    def measure(dev, path, cfg, store=None, label=None):
        m = real(dev, path, cfg, store=store, label=label)
        plan = label.removeprefix("search:")
        # The first plan measured after the base (the calibration plan, which the ranked plans
        # can all coincide with on a small model: then nothing else is measured at all).
        if not noisy and plan not in ("base", "deployed"):
            noisy.append(label)
        if label in noisy:
            return dataclasses.replace(m, unstable=True)
        return m

    monkeypatch.setattr(s, "measure", measure)
    # 0.75x: this test is about the unknown plan, not a tight budget (0.6x sits at the smallest
    # plan's latency on a fast host, 0.032 ms, where noise can make it infeasible).
    res = search(_tiny(), PruneConfig(criterion="l1"), _cfg("0.75x", unstable_retries=1))
    assert noisy and res.final_ms <= res.budget_ms
    unknown = noisy[0].removeprefix("search:")
    assert unknown not in [c.label for c in res.candidates]
    assert any("could not be measured" in n and unknown in n for n in res.notes)


def test_plans_within_budget_are_judged_after_a_short_fine_tune() -> None:
    from edgeprune.data import load_dataset

    res = search(
        _tiny(),
        PruneConfig(criterion="l1", proxy_samples=128),
        _cfg("0.75x", proxy_evals=4, verify_top=2, judge_steps=2),
        load_dataset("digits", image_size=32),
    )
    # The uniform cut is always among the measured plans (under its own label, or under the
    # calibration plan's when the two are the same widths and it was measured once).
    uniform = next(p for p in res.allocation.plans if p.label == "uniform")
    widths = {res.roots[gi]: w for gi, w in uniform.keep.items()}
    assert any(c.label.startswith("uniform") or c.widths == widths for c in res.candidates)
    judged = [c for c in res.candidates if c.tuned_accuracy is not None]
    if len(judged) < 2:
        pytest.skip("fewer than two plans landed within budget on this (loaded) machine")
    kept = {root: k for root, (k, _) in res.result.widths.items()}
    # Ranked as the search ranks them: accuracy, then loss (equal accuracies are common on a
    # 128-image slice).
    best = max(judged, key=lambda c: c.tuned_key())
    # The best judged plan wins, or that plan grown into the budget it left (every group at
    # least as wide, measured within the budget).
    assert kept == best.widths or (
        all(kept[r] >= w for r, w in best.widths.items())
        and any("grown by importance" in n for n in res.allocation.notes)
    )
    assert res.final_ms <= res.budget_ms
    assert any("fine-tune steps" in n for n in res.allocation.notes)


def test_gradual_steps_reach_the_chosen_widths_on_a_fine_tuned_model() -> None:
    from edgeprune.data import load_dataset
    from edgeprune.prune._engine import count_macs_params
    from edgeprune.train import TrainConfig

    base = _tiny()
    data = load_dataset("digits", image_size=32)
    res = search(
        base,
        PruneConfig(criterion="l1", proxy_samples=128),
        _cfg(
            "0.7x",
            proxy_evals=4,
            verify_top=1,
            judge_steps=0,
            gradual_steps=2,
            netadapt_finetune=TrainConfig(epochs=1, lr=0.01, max_train_samples=256),
        ),
        data,
    )
    kept = {root: k for root, (k, _) in res.result.widths.items()}
    # The widths are those of a plan measured within the budget...
    assert any(c.widths == kept and c.measured_ms <= res.budget_ms for c in res.candidates)
    modules = dict(res.result.bundle.model.named_modules())
    assert all(modules[root].out_channels == k for root, k in kept.items())
    # ...reached through a fine-tuned intermediate model: the plan composes two prunes onto the
    # base model's channel indices, and the report is against the base model.
    assert any("reached in 2 steps" in n for n in res.notes)
    assert res.result.macs_before == count_macs_params(base.model, base.example_input())[0]
    assert all(
        width == dict(base.model.named_modules())[r].out_channels
        for r, (_, width) in res.result.widths.items()
    )
    assert {gp.root for gp in res.result.bundle.plan.groups} <= set(kept)
    assert all(len(gp.keep) == kept[gp.root] for gp in res.result.bundle.plan.groups)
    # ...and trained: the same widths cut in one step from the base hold other weights.
    one_cut = prune(base, PruneConfig(criterion="l1", widths=kept), data).bundle.model
    stepped = dict(res.result.bundle.model.named_parameters())
    assert any(not torch.equal(p, stepped[n]) for n, p in one_cut.named_parameters())


def test_gradual_steps_without_data_are_refused_before_measuring() -> None:
    with pytest.raises(UsageError, match="--gradual-steps"):
        search(_tiny(), PruneConfig(criterion="l1"), _cfg("0.7x", gradual_steps=2))
