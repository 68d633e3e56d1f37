"""Offline HTML reports with inline SVG plots (no JavaScript, no network, no plotting library)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _esc(v: Any) -> str:
    return html.escape(str(v))


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    unit: str = "",
    width: int = 360,
    height: int = 220,
) -> str:
    """A vertical bar chart as an SVG string."""
    top, bottom, left, right = 30, 40, 50, 10
    h = height - top - bottom
    w = width - left - right
    vmax = max([v for v in values if v is not None] + [1e-12]) * 1.15
    n = max(1, len(values))
    bw = w / n * 0.6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{_esc(title)}</text>',
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#333"/>',
    ]
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        x = left + (i + 0.2) * w / n
        if v is None:
            continue
        bh = h * v / vmax
        parts.append(
            f'<rect x="{x:.1f}" y="{top + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        parts.append(
            f'<text x="{x + bw / 2:.1f}" y="{top + h - bh - 4:.1f}" text-anchor="middle" font-size="11">{v:.4g}{_esc(unit)}</text>'
        )
        parts.append(
            f'<text x="{x + bw / 2:.1f}" y="{top + h + 15:.1f}" text-anchor="middle" font-size="11">{_esc(lab)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return _esc(f"{v:.4g}")
    return _esc("" if v is None else v)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555;font-size:90%}pre{background:#f7f7f7;padding:8px;overflow:auto}"""


def page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{CSS}</style></head><body><h1>{_esc(title)}</h1>{body}</body></html>"


def write_run_html(report: dict[str, Any], path: Path) -> Path:
    """The report page of one prune run: base vs pruned accuracy, FLOPs, params and measured latency."""
    pct = lambda v: None if v is None else 100.0 * v  # noqa: E731
    rows = [
        [
            "FLOPs (MMAC)",
            report["flops_before"] / 1e6,
            report["flops_after"] / 1e6,
            f"-{report['flops_reduction']:.1%}",
        ],
        [
            "parameters (M)",
            report["params_before"] / 1e6,
            report["params_after"] / 1e6,
            f"-{report['params_reduction']:.1%}",
        ],
    ]
    charts = [
        bar_chart(
            "FLOPs (MMAC)",
            ["base", "pruned"],
            [report["flops_before"] / 1e6, report["flops_after"] / 1e6],
        ),
        bar_chart(
            "Parameters (M)",
            ["base", "pruned"],
            [report["params_before"] / 1e6, report["params_after"] / 1e6],
        ),
    ]
    if "accuracy_before" in report:
        rows.insert(
            0,
            [
                "top-1 accuracy (%)",
                pct(report["accuracy_before"]),
                pct(report["accuracy_after"]),
                f"{100 * (report['accuracy_after'] - report['accuracy_before']):+.2f} pp",
            ],
        )
        if "accuracy_pruned_no_finetune" in report:
            rows.insert(
                1,
                [
                    "accuracy before fine-tune (%)",
                    None,
                    pct(report["accuracy_pruned_no_finetune"]),
                    "",
                ],
            )
        charts.insert(
            0,
            bar_chart(
                "Top-1 accuracy (%)",
                ["base", "pruned"],
                [pct(report["accuracy_before"]), pct(report["accuracy_after"])],
            ),
        )
    lat = report.get("latency")
    ctx: dict[str, Any] = {}
    for entry in [lat, *((lat or {}).get("others") or {}).values()] if lat else []:
        b, p, dev = entry["base"]["stats"], entry["pruned"]["stats"], entry["device"]
        rows.append(
            [
                f"latency median on {dev} (ms)",
                b["median"],
                p["median"],
                f"{b['median'] / p['median']:.2f}× faster",
            ]
        )
        rows.append([f"latency p90 on {dev} (ms)", b["p90"], p["p90"], ""])
        charts.append(
            bar_chart(
                f"Measured latency on {dev} (median, ms)",
                ["base", "pruned"],
                [b["median"], p["median"]],
            )
        )
        ctx = ctx or entry["pruned"].get("context", {})
    if lat and lat.get("budget_ms") is not None:
        rows.append(
            [
                f"latency budget ({lat['budget']}, {lat['percentile']})",
                None,
                lat["budget_ms"],
                "met" if lat["met"] else "NOT met",
            ]
        )
    body = [
        f"<p>Model <b>{_esc(report['model']['arch'].get('name') or report['model']['arch'].get('factory'))}</b>, "
        f"criterion <b>{_esc(report['criterion'])}</b>, dataset <b>{_esc(report['model'].get('dataset'))}</b>.</p>",
        f"<div class='charts'>{''.join(charts)}</div>",
        table(["", "base", "pruned", "change"], rows),
    ]
    body[1:1] = [
        f"<p class='note' style='color:#b00'><b>{_esc(w)}</b></p>"
        for w in report.get("warnings") or []
    ]
    if ctx:
        keep = (
            "device",
            "profile",
            "arch",
            "runtime",
            "runtime_version",
            "threads",
            "batch",
            "input_shape",
            "governor",
            "protocol",
        )
        body.append(
            "<h2>Measurement context</h2>"
            + table(["field", "value"], [[k, json.dumps(ctx.get(k))] for k in keep])
        )
    body.append(
        f"<p class='note'>FLOPs are multiply-accumulates per image. Command: <code>{_esc(report.get('command'))}</code></p>"
    )
    path.write_text(page("edgeprune run report", "".join(body)))
    return path


def grouped_bar_chart(
    title: str,
    groups: Sequence[str],
    series: dict[str, Sequence[float | None]],
    unit: str = "",
    width: int = 640,
    height: int = 260,
) -> str:
    """Vertical bars grouped by ``groups`` (x axis), one coloured bar per series in each group."""
    top, bottom, left, right = 30, 45, 50, 140
    h, w = height - top - bottom, width - left - right
    vals = [v for s in series.values() for v in s if v is not None]
    if not groups or not vals:
        return f"<p>{_esc(title)}: no data</p>"
    vmax = max(vals) * 1.15
    gw = w / len(groups)
    bw = gw * 0.8 / max(1, len(series))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="4" y="18" font-size="13" font-weight="bold">{_esc(title)}</text>',
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#333"/>',
    ]
    for i in range(5):
        yv = vmax * i / 4
        parts.append(
            f'<text x="{left - 4}" y="{top + h - h * i / 4 + 3:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>'
        )
    for gi, group in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        parts.append(
            f'<text x="{left + (gi + 0.5) * gw:.1f}" y="{top + h + 15}" text-anchor="middle" font-size="11">{_esc(group)}</text>'
        )
        for si, (name, values) in enumerate(series.items()):
            v = values[gi]
            if v is None:
                continue
            bh = h * v / vmax
            x = x0 + si * bw
            parts.append(
                f'<rect x="{x:.1f}" y="{top + h - bh:.1f}" width="{bw * 0.95:.1f}" height="{bh:.1f}" '
                f'fill="{PALETTE[si % len(PALETTE)]}"><title>{_esc(group)} {_esc(name)}: {v:.4g}{_esc(unit)}</title></rect>'
            )
    for si, name in enumerate(series):
        parts.append(
            f'<rect x="{left + w + 10}" y="{top + 14 * si}" width="10" height="10" fill="{PALETTE[si % len(PALETTE)]}"/>'
        )
        parts.append(
            f'<text x="{left + w + 24}" y="{top + 9 + 14 * si}" font-size="11">{_esc(name)[:20]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def xy_chart(
    title: str,
    points: dict[str, list[tuple[float, float, str]]],
    lines: dict[str, list[tuple[float, float]]],
    xlabel: str,
    ylabel: str,
    width: int = 560,
    height: int = 340,
) -> str:
    """Points per series (legend) plus polylines; a line named like a point series takes its
    colour (e.g. a per-device Pareto front), any other line is drawn dashed grey."""
    top, bottom, left, right = 30, 45, 60, 140
    h, w = height - top - bottom, width - left - right
    xs = [p[0] for s in points.values() for p in s] + [p[0] for s in lines.values() for p in s]
    ys = [p[1] for s in points.values() for p in s] + [p[1] for s in lines.values() for p in s]
    if not xs:
        return f"<p>{_esc(title)}: no data</p>"
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    padx, pady = (x1 - x0) * 0.05, (y1 - y0) * 0.08
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return top + h - (y - y0) / (y1 - y0) * h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="4" y="18" font-size="13" font-weight="bold">{_esc(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#333"/>',
        f'<text x="{left + w / 2}" y="{height - 8}" text-anchor="middle" font-size="11">{_esc(xlabel)}</text>',
        f'<text x="14" y="{top + h / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 14 {top + h / 2})">{_esc(ylabel)}</text>',
    ]
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(
            f'<text x="{sx(xv):.1f}" y="{top + h + 14}" text-anchor="middle" font-size="10">{xv:.3g}</text>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{sy(yv) + 3:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>'
        )
    colors = {name: PALETTE[k % len(PALETTE)] for k, name in enumerate(points)}
    for name, line in lines.items():
        if len(line) < 2:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
        style = (
            f'stroke="{colors[name]}" stroke-width="1.5"'
            if name in colors
            else 'stroke="#888" stroke-width="1" stroke-dasharray="4 3"'
        )
        parts.append(
            f'<polyline points="{path}" fill="none" {style}><title>{_esc(name)}</title></polyline>'
        )
    for k, (name, pts) in enumerate(points.items()):
        for x, y, tip in pts:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colors[name]}" fill-opacity="0.8"><title>{_esc(tip)}</title></circle>'
            )
        parts.append(
            f'<rect x="{left + w + 10}" y="{top + 14 * k}" width="10" height="10" fill="{colors[name]}"/>'
        )
        parts.append(
            f'<text x="{left + w + 24}" y="{top + 9 + 14 * k}" font-size="11">{_esc(name)[:20]}</text>'
        )
    extra = [n for n in lines if n not in colors]
    for j, name in enumerate(extra):
        y = top + 14 * (len(points) + j)
        parts.append(
            f'<line x1="{left + w + 10}" y1="{y + 5}" x2="{left + w + 20}" y2="{y + 5}" stroke="#888" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{left + w + 24}" y="{y + 9}" font-size="11">{_esc(name)[:20]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
