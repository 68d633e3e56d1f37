"""Report helpers: Pareto fronts, speed-ups against the base on the same device, the SVG charts."""

from __future__ import annotations

from typing import Any

from edgeprune.pipeline.report import _derive, pareto_front, render_html
from edgeprune.pipeline.report_html import grouped_bar_chart, xy_chart


def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = [(1.0, 80.0), (2.0, 85.0), (1.5, 79.0), (3.0, 84.0), (2.5, 90.0), (1.0, 70.0)]
    assert pareto_front(pts) == [(1.0, 80.0), (2.0, 85.0), (2.5, 90.0)]
    assert pareto_front([]) == []


def row(
    variant: str, device: str, median: float, flops_after: int, acc: float | None = None
) -> dict[str, Any]:
    return {
        "model": "m", "variant": variant, "device": device, "profile": device.rstrip("0123456789"), "runtime": "ort", "precision": "fp32",
        "threads": 1, "median_ms": median, "valid": True, "flops_before": 100, "flops_after": flops_after,
        "flops_reduction": 1 - flops_after / 100, "accuracy": acc, "speedup": None,
        "ideal_speedup": None, "realised_over_ideal": None,
    }  # fmt: skip


def test_speedup_uses_the_base_on_the_same_device() -> None:
    rows = _derive(
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
    assert html.count("<svg") == 3  # latency bars, accuracy vs latency, FLOPs vs speed-up
    assert "ideal 1/(1-r)" in html


def test_charts_escape_labels_and_handle_empty_input() -> None:
    svg = grouped_bar_chart("t", ["<dev>"], {"ort": [1.0]})
    assert "&lt;dev&gt;" in svg and "<dev>" not in svg
    assert "no data" in grouped_bar_chart("t", [], {})
    assert "no data" in xy_chart("t", {}, {}, "x", "y")
    two = xy_chart(
        "t", {"a": [(1.0, 2.0, "p")]}, {"a": [(1, 2), (2, 3)], "ideal": [(1, 1), (2, 2)]}, "x", "y"
    )
    assert two.count("<polyline") == 2 and "stroke-dasharray" in two
