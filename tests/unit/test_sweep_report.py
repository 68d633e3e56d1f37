"""Report helpers: Pareto fronts, speed-ups against the base on the same device, what to deploy,
the plotly page (escaped labels, unstable and invalid points apart, search probes hidden)."""

from __future__ import annotations

from typing import Any

import pytest

from edgeprune.pipeline.report import (
    _aggregate,
    derive_rows,
    pareto_front,
    recommend,
    render_html,
)
from edgeprune.pipeline.report_run import _context_value


def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = [(1.0, 80.0), (2.0, 85.0), (1.5, 79.0), (3.0, 84.0), (2.5, 90.0), (1.0, 70.0)]
    assert pareto_front(pts) == [(1.0, 80.0), (2.0, 85.0), (2.5, 90.0)]
    assert pareto_front([]) == []


def row(
    variant: str,
    device: str,
    median: float,
    flops_after: int,
    acc: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "model": "m", "variant": variant, "device": device, "profile": device.rstrip("0123456789"), "runtime": "ort", "precision": "fp32",
        "threads": 1, "median_ms": median, "valid": True, "flops_before": 100, "flops_after": flops_after,
        "flops_reduction": 1 - flops_after / 100, "accuracy": acc, "speedup": None,
        "ideal_speedup": None, "realised_over_ideal": None, "cv": 0.01, "unstable": False,
        "criterion": None if variant == "base" else variant.split()[0], "target": None, "widths": None,
        "budget": None, "budget_ms": None, "budget_device": None, "deploy_model": f"/c/{variant}.onnx",
        "measurement_id": 1, **extra,
    }  # fmt: skip


def test_speedup_uses_the_base_on_the_same_device() -> None:
    rows = derive_rows(
        [
            row("base", "fast", 2.0, 100, 0.9),
            row("base", "slow", 8.0, 100, 0.9),
            row("l1 ratio=0.5", "fast", 1.0, 25, 0.85),
            row("l1 ratio=0.5", "slow", 2.0, 25, 0.85),
            row("l1 ratio=0.5", "nobase", 2.0, 25, 0.85),
            row(
                "l1 ratio=0.5", "fast2", 0.5, 25, 0.85
            ),  # its base ran on a sibling of profile "fast"
        ]
    )
    by = {(r["variant"], r["device"]): r for r in rows}
    assert by[("l1 ratio=0.5", "fast")]["speedup"] == 2.0
    assert by[("l1 ratio=0.5", "slow")]["speedup"] == 4.0
    assert by[("l1 ratio=0.5", "nobase")]["speedup"] is None
    assert by[("l1 ratio=0.5", "fast")]["speedup_basis"] == "device"
    assert by[("l1 ratio=0.5", "fast2")]["speedup"] == 4.0
    assert by[("l1 ratio=0.5", "fast2")]["speedup_basis"] == "profile"
    assert by[("l1 ratio=0.5", "slow")]["ideal_speedup"] == 4.0
    assert by[("l1 ratio=0.5", "fast")]["realised_over_ideal"] == 0.5
    html, derived = render_html("sweep", "t", rows)
    assert derived["devices"] == ["fast", "fast2", "nobase", "slow"]
    assert derived["pareto_fronts"]["fast"] == [[1.0, 85.0], [2.0, 90.0]]
    # One accuracy-latency chart per device, latency bars, FLOPs vs speed-up (plotly divs).
    assert html.count('class="plotly-graph-div"') == 4 + 1 + 1
    assert "ideal 1\\u002f(1-r)" in html  # plotly's JSON escapes "/" and "<"


def test_recommendation_per_device_and_budget_with_the_deploy_command() -> None:
    rows = derive_rows(
        [
            row("base", "nano", 10.0, 100, 0.92),
            row("l1 ratio=0.3", "nano", 7.0, 60, 0.915),
            row("l1 ratio=0.5", "nano", 5.0, 40, 0.88),
            row("fpgm ratio=0.5", "nano", 4.9, 40, 0.86, unstable=True, cv=0.04),
            row("l1 latency=0.6x", "nano", 5.5, 45, 0.895, budget="0.6x", budget_ms=6.0),
            row("l1 ratio=0.7", "nano", 3.0, 20, 0.70, valid=False),  # throttled: never chosen
            row("base", "pi", 30.0, 100, None, deploy_model=None),
            row("l1 ratio=0.5", "pi", 14.0, 40, None, runtime="ort", threads=2),
        ]
    )
    recs = {(r["device"], r["budget"]): r for r in recommend(_aggregate(rows))}
    # Budget 6 ms on nano: the most accurate variant at or under it.
    b = recs[("nano", "0.6x")]
    assert b["choice"] == "m l1 latency=0.6x" and b["median_ms"] == 5.5
    assert b["speedup"] == pytest.approx(10 / 5.5) and b["accuracy"] == 0.895
    assert b["command"] == "edgeprune deploy '/c/l1 latency=0.6x.onnx' --device nano"
    # No budget: the fastest within 1 accuracy point of the best (base 92% -> l1 0.3 at 91.5%).
    t = recs[("nano", None)]
    assert t["choice"] == "m l1 ratio=0.3" and t["base_ms"] == 10.0
    # No accuracy on pi: the fastest; its non-default threads are in the command.
    p = recs[("pi", None)]
    assert p["choice"] == "m l1 ratio=0.5" and p["command"].endswith("--device pi --threads 2")


def test_no_variant_meets_the_budget() -> None:
    rows = derive_rows([row("base", "d", 10.0, 100, 0.9), row("l1 latency=0.2x", "d", 4.0, 30, 0.5,
                   budget="0.2x", budget_ms=2.0)])  # fmt: skip
    rec = next(r for r in recommend(_aggregate(rows)) if r["budget"])
    assert rec["choice"] is None and rec["fastest_ms"] == 4.0


def test_page_escapes_labels_draws_problems_apart_and_lists_them() -> None:
    rows = derive_rows(
        [
            row("base", "<dev>", 2.0, 100, 0.9),
            row("<b>x</b>", "<dev>", 1.0, 50, 0.8, unstable=True, cv=2.79),
            row("l1 ratio=0.7", "<dev>", 0.5, 30, 0.6, valid=False),
        ]
    )
    html, _ = render_html("sweep", "t", rows)
    assert "<b>x</b>" not in html and "<dev>" not in html
    assert "&lt;dev&gt;" in html  # in the page's own text
    assert "unstable (CV \\u003e 2.5%)" in html and "invalid (throttled)" in html
    assert "279.0%" in html and "unstable: CV above 2.5%" in html
    assert "invalid: the device throttled" in html
    assert "dataset None" not in html


def test_run_page_has_the_search_candidates_widths_and_human_context(tmp_path) -> None:
    report = {
        "model": {"source": "r.pt", "arch": {"name": "resnet20"}, "dataset": None},
        "criterion": "l1",
        "config": {"search": {"budget": "0.5x"}, "prune": {"target": None}},
        "flops_before": 4e7, "flops_after": 2e7, "flops_reduction": 0.5,
        "params_before": 2.7e5, "params_after": 1.4e5, "params_reduction": 0.48,
        "widths": {"conv1": [8, 16], "layer1.0.conv1": [12, 16]},
        "command": "edgeprune prune r.pt --latency-budget 0.5x",
        "search": {
            "device": "local", "strategy": "latency", "budget": "0.5x", "budget_ms": 1.0,
            "percentile": "median", "base_ms": 2.0, "pruned_ms": 0.95, "met": True,
            "speedup": 2.1, "flops_ideal_speedup": 2.0, "realised_over_ideal": 1.05,
            "latency_model": {"layers": 22, "entries": 40, "measured": 40, "reused": 0,
                              "median_relative_error": 0.05, "worst_relative_error": 0.2, "points": 3},
            "device_measurements": 4, "wall_seconds": 30.0,
            "candidates": [
                {"label": "step 1", "predicted_ms": 0.9, "measured_ms": 1.2, "flops": 2.5e7,
                 "unstable": False, "proxy_accuracy": 0.81},
                {"label": "step 2", "predicted_ms": 0.8, "measured_ms": 0.95, "flops": 2e7,
                 "unstable": True, "proxy_accuracy": None},
            ],
            "strategy_detail": {"targets_ms": [0.97, 0.8], "bracket": "converged"},
        },
    }  # fmt: skip
    html, derived = render_html("run", "r", [], run=report, run_dir=tmp_path)
    assert derived["recommendations"] == [] and "Nothing was measured on a device" in html
    assert "dataset" not in html.split("</p>")[0]  # the subtitle names no unknown dataset
    for text in ("Latency search", "proxy accuracy", "81.00%", "-25.0%", "Strategy detail",
                 "targets_ms", "0.970, 0.800", "converged", "median 5.0%, worst 20.0% over 3",
                 "layer1.0.conv1", "Channels per layer"):  # fmt: skip
        assert text in html, text
    without = {**report, "search": {**report["search"], "strategy_detail": None}}
    without["search"]["candidates"] = [
        {k: v for k, v in c.items() if k != "proxy_accuracy"}
        for c in report["search"]["candidates"]
    ]
    html, _ = render_html("run", "r", [], run=without)
    assert "proxy accuracy" not in html and "Strategy detail" not in html


def test_context_values_are_for_people() -> None:
    assert _context_value([1, 3, 32, 32]) == "1×3×32×32"
    assert _context_value("performance") == "performance"
    assert _context_value(None) == "—" and _context_value(True) == "yes"
    assert _context_value({"a": 1, "b": "x"}) == "a=1, b=x"


def test_search_probes_are_hidden_from_the_store_report_unless_all() -> None:
    from edgeprune.bench import Measurement, Stats, Store
    from edgeprune.farm.report import collect_rows

    stats = Stats.from_dict(
        {"n": 3, "median": 1.0, "p90": 1.1, "p99": 1.2, "mean": 1.0, "std": 0.01, "cv": 0.01,
         "min": 0.9, "max": 1.3}
    )  # fmt: skip
    ctx = {"device": "local", "profile": "local", "runtime": "ort", "precision": "fp32",
           "threads": 1, "artifact_sha256": "ab"}  # fmt: skip
    with Store() as store:
        for label in ("model.onnx", "search:base", "search:step 1"):
            store.add(Measurement(stats=stats, context=ctx, raw_ms=[1.0], valid=True,
                                  unstable=False, label=label))  # fmt: skip
    _, _, shown = collect_rows(None)
    _, _, everything = collect_rows(None, include_all=True)
    assert [r["label"] for r in shown] == ["model.onnx"]
    assert sorted(r["label"] for r in everything) == ["model.onnx", "search:base", "search:step 1"]
