"""The run-directory part of the report page: base-vs-pruned summary, widths per layer against
the base, the latency search's candidates and latency model, and the measurement context.

`edgeprune.pipeline.report.render_html` places these sections above the common charts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgeprune.pipeline.report_html import (
    PALETTE,
    UNSTABLE_COLOR,
    Cell,
    esc,
    figure,
    kv_table,
    num,
    percent,
    table,
)


def model_name(report: dict[str, Any]) -> str:
    arch = report["model"]["arch"]
    return str(arch.get("name") or arch.get("factory"))


def run_target(report: dict[str, Any]) -> str | None:
    cfg = report.get("config") or {}
    search = cfg.get("search")
    if search:
        return f"latency {search.get('budget')}"
    target = (cfg.get("prune") or {}).get("target")
    if target:
        return f"{target['kind']}={target['value']:g}"
    return None


def _context_value(v: Any) -> str:
    """A measurement-context value for people: no JSON quotes, shapes as 1×3×32×32."""
    if v is None:
        return "—"
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return "×".join(str(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_context_value(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_context_value(x) for x in v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return num(v)
    return str(v)


CONTEXT_FIELDS = (
    "device", "profile", "arch", "runtime", "runtime_version", "provider", "threads", "batch",
    "input_shape", "governor", "protocol",
)  # fmt: skip


def _run_summary(report: dict[str, Any]) -> str:
    rows: list[list[Any]] = []
    if "accuracy_before" in report:
        rows.append(
            [
                "top-1 accuracy",
                percent(report["accuracy_before"], 2),
                percent(report.get("accuracy_after"), 2),
                f"{100 * (report['accuracy_after'] - report['accuracy_before']):+.2f} pp",
            ]
        )
        if "accuracy_pruned_no_finetune" in report and report.get("finetune"):
            rows.append(
                [
                    "accuracy before fine-tune",
                    "",
                    percent(report["accuracy_pruned_no_finetune"], 2),
                    "",
                ]
            )
    rows.append(
        [
            "FLOPs (MMAC)",
            num(report["flops_before"] / 1e6),
            num(report["flops_after"] / 1e6),
            f"-{percent(report['flops_reduction'])}",
        ]
    )
    rows.append(
        [
            "parameters (M)",
            num(report["params_before"] / 1e6),
            num(report["params_after"] / 1e6),
            f"-{percent(report['params_reduction'])}",
        ]
    )
    lat = report.get("latency")
    for entry in [lat, *((lat or {}).get("others") or {}).values()] if lat else []:
        q = entry["percentile"]
        b, p = entry["base"]["stats"], entry["pruned"]["stats"]
        rows.append(
            [
                f"latency {q} on {entry['device']} (ms)",
                num(b[q]),
                num(p[q]),
                f"{b[q] / p[q]:.2f}× faster",
            ]
        )
    if lat and lat.get("budget_ms") is not None:
        rows.append(
            [
                f"latency budget {lat['budget']} ({lat['percentile']}, ms)",
                "",
                num(lat["budget_ms"]),
                "met" if lat["met"] else "NOT met",
            ]
        )
    return table(["", "base", "pruned", "change"], rows, sortable=False)


def _widths_html(widths: dict[str, Any] | None, title: str) -> str:
    import plotly.graph_objects as go

    if not widths:
        return ""
    names = list(widths)
    kept = [int(widths[n][0]) for n in names]
    base = [int(widths[n][1]) for n in names]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[esc(n) for n in names], y=base, name="base", marker_color="#c8c8c8"))
    fig.add_trace(go.Bar(x=[esc(n) for n in names], y=kept, name="pruned", marker_color=PALETTE[0]))
    fig.update_layout(
        title=title,
        yaxis_title="channels",
        barmode="overlay",
        height=380,
        xaxis={"tickangle": -40},
    )
    rows = [
        [n, b, k, Cell(esc(percent(1 - k / b)), 1 - k / b)]
        for n, k, b in zip(names, kept, base, strict=True)
    ]
    return figure(fig) + table(["layer (group root)", "base", "pruned", "removed"], rows)


def _search_html(search: dict[str, Any]) -> str:
    """The latency search: its result, the latency model's error, the candidates measured."""
    import plotly.graph_objects as go

    m = search.get("latency_model") or {}
    facts: list[tuple[str, Any]] = [
        ("strategy", search.get("strategy")),
        ("device", search.get("device")),
        (
            "budget",
            f"{search.get('budget')} = {num(search.get('budget_ms'))} ms ({search.get('percentile')})",
        ),
        (
            "measured",
            f"{num(search.get('base_ms'))} ms → {num(search.get('pruned_ms'))} ms "
            f"({search.get('speedup', 0):.2f}×), {'met' if search.get('met') else 'NOT met'}",
        ),
        (
            "FLOPs-ideal speed-up",
            f"{search.get('flops_ideal_speedup', 0):.2f}× "
            f"(realised/ideal {search.get('realised_over_ideal', 0):.2f})",
        ),
        (
            "latency model",
            f"{m.get('layers')} layers, {m.get('entries')} table entries "
            f"({m.get('measured')} measured now, {m.get('reused')} reused)",
        ),
        (
            "latency model error vs whole-model measurements",
            f"median {percent(m.get('median_relative_error'))}, "
            f"worst {percent(m.get('worst_relative_error'))} over {m.get('points')} models",
        ),
        ("device measurements", search.get("device_measurements")),
        ("search wall time (s)", num(search.get("wall_seconds"))),
    ]
    parts = [kv_table(facts)]
    detail = search.get("strategy_detail")
    if isinstance(detail, dict) and detail:
        parts.append("<h3>Strategy detail</h3>")
        parts.append(kv_table([(str(k), _context_value(v)) for k, v in detail.items()]))
    elif isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        keys = list(dict.fromkeys(k for d in detail for k in d))
        parts.append("<h3>Strategy detail</h3>")
        parts.append(table(keys, [[_context_value(d.get(k)) for k in keys] for d in detail]))
    cands = search.get("candidates") or []
    if not cands:
        return "".join(parts)
    has_proxy = any(c.get("proxy_accuracy") is not None for c in cands)
    budget = search.get("budget_ms")
    rows, classes = [], []
    for c in cands:
        pred, meas = c.get("predicted_ms"), c["measured_ms"]
        err = None if not pred else pred / meas - 1
        row = [
            c["label"],
            Cell(esc(num(pred)), pred),
            Cell(esc(num(meas)), meas),
            Cell(esc("—" if err is None else f"{100 * err:+.1f}%"), err),
        ]
        if has_proxy:
            pa = c.get("proxy_accuracy")
            row.append(Cell(esc(percent(pa, 2)), pa))
        row += [
            Cell(esc(num(c["flops"] / 1e6)), c["flops"]),
            "yes" if budget is not None and meas <= budget else "no",
            "unstable" if c.get("unstable") else "",
        ]
        rows.append(row)
        classes.append("unstable" if c.get("unstable") else "")
    headers = ["candidate", "predicted ms", "measured ms", "prediction error"]
    headers += ["proxy accuracy"] if has_proxy else []
    headers += ["MMAC", "meets budget", "flag"]
    fig = go.Figure()
    lo = min([c["measured_ms"] for c in cands] + [c["predicted_ms"] or 0 for c in cands])
    hi = max([c["measured_ms"] for c in cands] + [c["predicted_ms"] or 0 for c in cands])
    fig.add_trace(
        go.Scatter(
            x=[0, hi * 1.05],
            y=[0, hi * 1.05],
            mode="lines",
            line={"color": "#888", "dash": "dash"},
            name="prediction = measurement",
            hoverinfo="skip",
        )
    )
    shown = [c for c in cands if c.get("predicted_ms") is not None]
    fig.add_trace(
        go.Scatter(
            x=[c["predicted_ms"] for c in shown],
            y=[c["measured_ms"] for c in shown],
            mode="markers+text",
            text=[esc(c["label"]) for c in shown],
            textposition="top center",
            marker={
                "size": 11,
                "color": [UNSTABLE_COLOR if c.get("unstable") else PALETTE[0] for c in shown],
            },
            name="candidates",
            hovertext=[
                f"<b>{esc(c['label'])}</b><br>predicted {num(c['predicted_ms'])} ms<br>"
                f"measured {num(c['measured_ms'])} ms<br>{num(c['flops'] / 1e6)} MMAC"
                + (
                    f"<br>proxy accuracy {percent(c['proxy_accuracy'], 2)}"
                    if c.get("proxy_accuracy") is not None
                    else ""
                )
                + ("<br><i>unstable</i>" if c.get("unstable") else "")
                for c in shown
            ],
            hoverinfo="text",
        )
    )
    if budget is not None:
        fig.add_hline(
            y=budget,
            line_dash="dot",
            line_color=PALETTE[3],
            annotation_text=f"budget {num(budget)} ms",
        )
    fig.update_layout(
        title="Latency-search candidates: predicted vs measured latency",
        xaxis_title="predicted by the latency model (ms)",
        yaxis_title="measured on the device (ms)",
        height=420,
    )
    fig.update_xaxes(range=[0, hi * 1.1] if lo >= 0 else None)
    fig.update_yaxes(range=[0, hi * 1.1] if lo >= 0 else None)
    parts.append(figure(fig))
    parts.append(table(headers, rows, row_classes=classes))
    return "".join(parts)


def _context_html(report: dict[str, Any]) -> str:
    lat = report.get("latency")
    if not lat:
        return ""
    rows = []
    for entry in [lat, *(lat.get("others") or {}).values()]:
        ctx = entry["pruned"].get("context") or {}
        rows.append([_context_value(ctx.get(k)) for k in CONTEXT_FIELDS])
    return "<h2>Measurement context</h2>" + table(list(CONTEXT_FIELDS), rows, sortable=False)


def run_sections(report: dict[str, Any], run_dir: str | Path | None) -> tuple[str, str]:
    """(subtitle, run sections) of one prune run."""
    bits = [f"model <b>{esc(model_name(report))}</b>"]
    bits.append(f"criterion <b>{esc(report['criterion'])}</b>")
    target = run_target(report)
    if target:
        bits.append(f"target <b>{esc(target)}</b>")
    dataset = (report.get("model") or {}).get("dataset")
    if dataset:
        bits.append(f"dataset <b>{esc(dataset)}</b>")
    if report.get("created_at"):
        bits.append(time.strftime("%Y-%m-%d %H:%M", time.localtime(report["created_at"])))
    subtitle = ", ".join(bits) + "."
    body = [
        f"<p class='note' style='color:#b00'><b>{esc(w)}</b></p>"
        for w in report.get("warnings") or []
    ]
    body += ["<h2>Base vs pruned</h2>", _run_summary(report)]
    body.append(
        _widths_html(report.get("widths"), "Channels per layer: the pruned model against the base")
    )
    search = report.get("search")
    if search:
        body.append("<h2>Latency search</h2>")
        body.append(_search_html(search))
    body.append(_context_html(report))
    notes = [f"Command: <code>{esc(report.get('command'))}</code>"]
    if run_dir is not None:
        notes.append(f"Run directory: <code>{esc(run_dir)}</code>")
    vers = report.get("versions") or {}
    if vers:
        notes.append("Versions: " + esc(", ".join(f"{k} {v}" for k, v in vers.items())))
    body.append("<p class='note'>" + "<br>".join(notes) + "</p>")
    return subtitle, "".join(body)


# --------------------------------------------------------------------------- page
