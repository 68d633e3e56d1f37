"""`edgeprune report`: one offline HTML page (plotly, inlined) plus the same numbers as CSV and JSON.

Sources: a run directory (its ``report.json``), a sweep (``SWEEP.yaml``: every stored job of it,
with the facts of its variants), or the whole store (farm variants get their facts by artifact
hash; other measurements only their latency; the latency search's own probes, labelled
``search:…``, only with ``include_all``). One row per measurement. Derived per row: ``speedup`` =
the base model's median / this median with the same runtime, on the same device, else on the
devices of the same profile (``speedup_basis``; blank when neither measured the base), and
``ideal_speedup`` = FLOPs before / FLOPs after.

The page opens with a recommendation per device — and per latency budget where a variant was
searched for one — saying which measured variant to deploy and the command that deploys it (see
`recommend`). Then: accuracy against measured latency with the Pareto front per device, median
latency per device and runtime, FLOPs reduction against realised speed-up and the ideal
1/(1 − r), a sortable table of every point, and the unstable (CV above 2.5 %) and invalid
(throttled) measurements, drawn and listed apart. A run directory's page adds the base-vs-pruned
summary, the widths per layer against the base, and for a latency search its candidates
(predicted vs measured latency) and the latency model's error.
"""

from __future__ import annotations

import shlex
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from edgeprune.bench import Measurement, Stats
from edgeprune.pipeline.report_html import (
    INVALID_COLOR,
    PALETTE,
    UNSTABLE_COLOR,
    Cell,
    esc,
    figure,
    num,
    page,
    percent,
    table,
)
from edgeprune.pipeline.report_run import model_name, run_sections, run_target

COLUMNS = (
    "label", "model", "variant", "criterion", "target", "entry", "device", "profile", "runtime",
    "precision", "threads", "median_ms", "p90_ms", "cv", "valid", "unstable", "flops_before",
    "flops_after", "flops_reduction", "params_reduction", "accuracy", "speedup", "ideal_speedup",
    "realised_over_ideal", "speedup_basis", "not_faster", "widths", "budget", "budget_ms",
    "deploy_model", "artifact_sha256", "job_id", "measurement_id",
)  # fmt: skip

SEARCH_PROBE_PREFIX = "search:"
# Without a budget, the recommendation is the fastest variant within this many accuracy points
# of the most accurate one measured on the device.
ACCURACY_TOLERANCE_PP = 1.0


def widths_summary(widths: dict[str, Any] | None, limit: int = 8) -> str | None:
    """``{layer: [kept, base]}`` as ``"38% of channels: conv1 8/16, layer1.0.conv1 8/16, …"``."""
    if not widths:
        return None
    pairs = [(name, int(w[0]), int(w[1])) for name, w in widths.items()]
    kept, base = sum(p[1] for p in pairs), sum(p[2] for p in pairs)
    shown = ", ".join(f"{n} {k}/{b}" for n, k, b in pairs[:limit])
    more = f", … ({len(pairs) - limit} more)" if len(pairs) > limit else ""
    return f"{kept / base:.0%} of channels kept: {shown}{more}"


CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def measurement_row(m: Measurement, facts: dict[str, Any] | None, **known: Any) -> dict[str, Any]:
    ctx = m.context
    facts = facts or {}
    searched = facts.get("search_latency") or {}
    deploy_ctx = ctx.get("deploy")
    if not isinstance(deploy_ctx, dict):
        deploy_ctx = {}
    return {
        "label": m.label,
        "model": known.get("model") or m.label,
        "variant": known.get("variant") or m.label,
        "criterion": known.get("criterion"),
        "target": known.get("target"),
        "entry": known.get("entry") or ctx.get("device"),
        "device": ctx.get("device"),
        "profile": ctx.get("profile"),
        "runtime": ctx.get("runtime"),
        "precision": ctx.get("precision"),
        "threads": ctx.get("threads"),
        "median_ms": m.stats.median,
        "p90_ms": m.stats.p90,
        "cv": m.stats.cv,
        "valid": m.valid,
        "unstable": m.unstable,
        "flops_before": facts.get("flops_before"),
        "flops_after": facts.get("flops_after"),
        "flops_reduction": facts.get("flops_reduction"),
        "params_reduction": facts.get("params_reduction"),
        "accuracy": facts.get("accuracy_after"),
        "speedup": None,
        "ideal_speedup": None,
        "realised_over_ideal": None,
        "speedup_basis": None,
        "widths": widths_summary(facts.get("widths")),
        "budget": searched.get("budget"),
        "budget_ms": searched.get("budget_ms"),
        "budget_device": searched.get("device"),
        "deploy_model": known.get("deploy_model") or deploy_ctx.get("model"),
        "not_faster": None,
        "artifact_sha256": ctx.get("artifact_sha256"),
        "job_id": m.job_id,
        "measurement_id": m.id,
    }


def cached_artifact(sha: Any) -> str | None:
    """The artifact cache's copy of an ONNX file measured by its hash, if it is still there."""
    if not sha:
        return None
    from edgeprune import config

    path = config.cache_dir() / "artifacts" / f"{sha}.onnx"
    return str(path) if path.is_file() else None


def run_rows(report: dict[str, Any], run_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The measurement rows of one prune run's ``report.json`` (base and pruned per device)."""
    lat = report.get("latency")
    if not lat:
        return []
    model = model_name(report)
    target = run_target(report)
    base_facts = {
        "flops_before": report["flops_before"],
        "flops_after": report["flops_before"],
        "flops_reduction": 0.0,
        "params_reduction": 0.0,
        "accuracy_after": report.get("accuracy_before"),
    }
    pruned_facts: dict[str, Any] = {
        k: report.get(k)
        for k in ("flops_before", "flops_after", "flops_reduction", "params_reduction")
    }
    pruned_facts["accuracy_after"] = report.get("accuracy_after")
    pruned_facts["widths"] = report.get("widths")
    if lat.get("budget_ms") is not None:
        pruned_facts["search_latency"] = {
            "device": lat["device"],
            "budget": lat.get("budget"),
            "budget_ms": lat["budget_ms"],
        }
    pruned_source = str(Path(run_dir) / "model.pt") if run_dir else None
    rows = []
    for entry in [lat, *(lat.get("others") or {}).values()]:
        for key, facts, variant, source in (
            ("base", base_facts, "base", report["model"].get("source")),
            (
                "pruned",
                pruned_facts,
                f"{report['criterion']} {target or ''}".strip(),
                pruned_source,
            ),
        ):
            d = entry[key]
            m = Measurement(
                stats=Stats.from_dict(d["stats"]),
                context=d["context"],
                raw_ms=[],
                valid=d["valid"],
                unstable=d["unstable"],
                id=d.get("id"),
                job_id=d.get("job_id"),
                label=key,
            )
            rows.append(
                measurement_row(
                    m,
                    facts,
                    model=model,
                    variant=variant,
                    criterion=None if key == "base" else report["criterion"],
                    target=None if key == "base" else target,
                    deploy_model=source,
                )
            )
    return rows


def derive_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill speed-ups: the same model's base median with the same runtime config on the same
    device (``speedup_basis`` "device"), else on the devices of the same profile ("profile":
    leasing may have measured the base on a sibling board)."""
    by_device: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    by_profile: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in rows:
        if r["variant"] == "base" and r["valid"]:
            cfg = (r["model"], r["runtime"], r["precision"], r["threads"])
            on_device, on_profile = (*cfg, r["device"]), (*cfg, r["profile"])
            by_device[on_device].append(r["median_ms"])
            by_profile[on_profile].append(r["median_ms"])
    for r in rows:
        if r["flops_before"] and r["flops_after"]:
            r["ideal_speedup"] = r["flops_before"] / r["flops_after"]
        cfg = (r["model"], r["runtime"], r["precision"], r["threads"])
        on_device, on_profile = (*cfg, r["device"]), (*cfg, r["profile"])
        for basis, b in (
            ("device", by_device.get(on_device)),
            ("profile", by_profile.get(on_profile)),
        ):
            if b and r["median_ms"]:
                r["speedup"], r["speedup_basis"] = statistics.median(b) / r["median_ms"], basis
                r["not_faster"] = r["variant"] != "base" and r["speedup"] <= 1.0
                if r["ideal_speedup"]:
                    r["realised_over_ideal"] = r["speedup"] / r["ideal_speedup"]
                break
    return rows


def slowdowns(rows: list[dict[str, Any]]) -> str:
    """One line naming the pruned variants that measured no faster than their base, with the
    fix; empty when every one paid off."""
    slow = [r for r in rows if r.get("not_faster")]
    if not slow:
        return ""
    names = "; ".join(
        f"{r['model']} {r['variant']} on {r['device']} ({r['speedup']:.2f}x)" for r in slow[:6]
    )
    more = f" and {len(slow) - 6} more" if len(slow) > 6 else ""
    return (
        f"{names}{more}. Prune against measured latency (a latency target, --latency-budget) "
        "or to the device's fast width multiple (prune: {round_to: N})."
    )


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with lower-or-equal latency (x) and higher-or-equal
    accuracy (y), sorted by latency."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _aggregate(rows: list[dict[str, Any]], valid: bool = True) -> list[dict[str, Any]]:
    """One point per (model, variant, device, runtime config): the median of its repeats.
    ``valid`` picks the valid measurements, or the invalid ones."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if bool(r["valid"]) == valid:
            groups[
                (r["model"], r["variant"], r["device"], r["runtime"], r["precision"], r["threads"])
            ].append(r)
    out = []
    for rs in groups.values():
        first = dict(rs[0])
        first["median_ms"] = statistics.median(r["median_ms"] for r in rs)
        sp = [r["speedup"] for r in rs if r["speedup"] is not None]
        first["speedup"] = statistics.median(sp) if sp else None
        first["n"] = len(rs)
        first["unstable"] = any(r["unstable"] for r in rs)
        first["cv"] = max(r["cv"] for r in rs)
        out.append(first)
    return out


def _rt(r: dict[str, Any]) -> str:
    return f"{r['runtime']}/{r['precision']}/t{r['threads']}"


def _name(r: dict[str, Any]) -> str:
    if r["model"] == r["variant"]:  # a measurement without variant facts: its label alone
        return str(r["model"])
    return f"{r['model']} {r['variant']}" if r["variant"] != "base" else f"{r['model']} (base)"


def deploy_command(r: dict[str, Any]) -> str | None:
    """The `edgeprune deploy` line that puts this point's model on its device with its runtime
    configuration (None when the measured file is not known any more)."""
    source = r.get("deploy_model")
    if not source:
        return None
    argv = ["edgeprune", "deploy", str(source), "--device", str(r["device"])]
    if r.get("runtime") and r["runtime"] != "ort":
        argv += ["--runtime", str(r["runtime"])]
    if r.get("precision") and r["precision"] != "fp32":
        argv += ["--precision", str(r["precision"])]
    if r.get("threads") and int(r["threads"]) != 1:
        argv += ["--threads", str(r["threads"])]
    return shlex.join(argv)


def _budgets(agg: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{device: {budget label: ms}} of the latency searches behind the points."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for r in agg:
        if r.get("budget_ms") is not None:
            out[str(r.get("budget_device") or r["device"])][str(r["budget"])] = float(
                r["budget_ms"]
            )
    return out


def _best_within(cands: list[dict[str, Any]], limit_ms: float) -> dict[str, Any] | None:
    """The most accurate candidate at or under ``limit_ms`` (without accuracy: the least pruned,
    then the fastest)."""
    ok = [r for r in cands if r["median_ms"] <= limit_ms]
    if not ok:
        return None
    return max(
        ok,
        key=lambda r: (
            r["accuracy"] if r["accuracy"] is not None else -1.0,
            -(r["flops_reduction"] or 0.0),
            -r["median_ms"],
        ),
    )


def recommend(agg: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to deploy, per device: for each latency budget searched on it, the most accurate
    measured variant that meets the budget; and the best trade-off — the fastest variant within
    `ACCURACY_TOLERANCE_PP` accuracy points of the most accurate one (the fastest, without
    accuracy). Invalid measurements never count; an unstable one is flagged."""
    out: list[dict[str, Any]] = []
    budgets = _budgets(agg)
    for dev in sorted({str(r["device"]) for r in agg}):
        cands = [r for r in agg if str(r["device"]) == dev]
        base = next((r for r in cands if r["variant"] == "base"), None)
        for label, ms in sorted(budgets.get(dev, {}).items(), key=lambda kv: kv[1]):
            choice = _best_within(cands, ms)
            out.append(_recommendation(dev, choice, base, label, ms, cands))
        accs = [r["accuracy"] for r in cands if r["accuracy"] is not None]
        if accs:
            floor = max(accs) - ACCURACY_TOLERANCE_PP / 100
            near = [r for r in cands if r["accuracy"] is not None and r["accuracy"] >= floor]
            choice = min(near, key=lambda r: (r["median_ms"], -r["accuracy"]))
        else:
            choice = min(cands, key=lambda r: r["median_ms"])
        out.append(_recommendation(dev, choice, base, None, None, cands))
    return out


def _recommendation(
    device: str,
    choice: dict[str, Any] | None,
    base: dict[str, Any] | None,
    budget: str | None,
    budget_ms: float | None,
    cands: list[dict[str, Any]],
) -> dict[str, Any]:
    rec: dict[str, Any] = {"device": device, "budget": budget, "budget_ms": budget_ms}
    if choice is None:
        fastest = min(cands, key=lambda r: r["median_ms"])
        rec.update(
            {
                "choice": None,
                "fastest": _name(fastest),
                "fastest_ms": fastest["median_ms"],
            }
        )
        return rec
    rec.update(
        {
            "choice": _name(choice),
            "runtime": _rt(choice),
            "median_ms": choice["median_ms"],
            "accuracy": choice["accuracy"],
            "speedup": choice["speedup"],
            "unstable": bool(choice["unstable"]),
            "cv": choice["cv"],
            "base_ms": base["median_ms"] if base else None,
            "base_accuracy": base["accuracy"] if base else None,
            "command": deploy_command(choice),
        }
    )
    return rec


# --------------------------------------------------------------------------- HTML sections


def _recommendation_html(recs: list[dict[str, Any]], measured: bool) -> str:
    parts = ["<section class='recommend'><h2>What to deploy</h2>"]
    if not measured:
        parts.append(
            "<p class='none'>Nothing was measured on a device, so there is nothing to recommend: "
            "prune with <code>--device NAME</code> (or <code>--latency-budget</code>), or measure "
            "with <code>edgeprune bench</code>.</p>"
        )
    for r in recs:
        where = f"On <b>{esc(r['device'])}</b>"
        if r["budget"] is not None:
            where += f", within the budget <b>{esc(r['budget'])}</b> = {num(r['budget_ms'])} ms"
            head = "the most accurate measured variant that meets it"
        else:
            head = (
                f"the fastest variant within {ACCURACY_TOLERANCE_PP:g} accuracy point of the most "
                "accurate one"
                if r.get("accuracy") is not None
                else "the fastest variant (no accuracy was measured)"
            )
        if r["choice"] is None:
            parts.append(
                f"<div class='choice'>{where}: <span class='none'>no measured variant meets it"
                f"</span>; the fastest is {esc(r['fastest'])} at {num(r['fastest_ms'])} ms.</div>"
            )
            continue
        facts = [f"{num(r['median_ms'])} ms median ({esc(r['runtime'])})"]
        if r["speedup"] is not None:
            facts.append(f"{r['speedup']:.2f}× the base's speed ({num(r['base_ms'])} ms)")
        if r["accuracy"] is not None:
            acc = f"accuracy {percent(r['accuracy'], 2)}"
            if r.get("base_accuracy") is not None:
                acc += f" (base {percent(r['base_accuracy'], 2)})"
            facts.append(acc)
        flag = (
            f" <span class='badge unstable'>unstable: CV {percent(r['cv'])}</span>"
            if r["unstable"]
            else ""
        )
        cmd = (
            f"<pre><code>{esc(r['command'])}</code></pre>"
            if r["command"]
            else "<p class='note'>The measured file is no longer known, so no deploy command.</p>"
        )
        parts.append(
            f"<div class='choice'>{where} — {head}: <b>{esc(r['choice'])}</b>{flag}<br>"
            f"{'; '.join(facts)}.{cmd}</div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _hover(r: dict[str, Any]) -> str:
    lines = [
        f"<b>{esc(_name(r))}</b>",
        f"criterion: {esc(r['criterion'] or '—')}, target: {esc(r['target'] or '—')}",
        f"{esc(_rt(r))} on {esc(r['device'])}",
        f"median {num(r['median_ms'])} ms (CV {percent(r['cv'])}, n={r.get('n', 1)})",
    ]
    if r["accuracy"] is not None:
        lines.append(f"accuracy {percent(r['accuracy'], 2)}")
    if r["speedup"] is not None:
        lines.append(f"speed-up {r['speedup']:.2f}×")
    if r.get("widths"):
        lines.append(esc(r["widths"]))
    if r["unstable"]:
        lines.append("<i>unstable: CV above 2.5%</i>")
    if not r["valid"]:
        lines.append("<i>invalid: the device throttled</i>")
    return "<br>".join(lines)


def _pareto_figures(agg: list[dict[str, Any]], invalid: list[dict[str, Any]]) -> tuple[str, dict]:
    import plotly.graph_objects as go

    parts: list[str] = []
    fronts: dict[str, list[list[float]]] = {}
    devices = sorted({str(r["device"]) for r in agg + invalid})
    for i, dev in enumerate(devices):
        pts = [r for r in agg if str(r["device"]) == dev and r["accuracy"] is not None]
        bad = [r for r in invalid if str(r["device"]) == dev and r["accuracy"] is not None]
        if not pts and not bad:
            continue
        color = PALETTE[i % len(PALETTE)]
        front = pareto_front([(r["median_ms"], 100 * r["accuracy"]) for r in pts])
        fronts[dev] = [list(p) for p in front]
        fig = go.Figure()
        if len(front) > 1:
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in front],
                    y=[p[1] for p in front],
                    mode="lines",
                    line={"color": color, "width": 2},
                    name="Pareto front",
                    hoverinfo="skip",
                )
            )
        for name, group, marker in (
            ("stable", [r for r in pts if not r["unstable"]], {"color": color, "size": 11}),
            (
                "unstable (CV > 2.5%)",
                [r for r in pts if r["unstable"]],
                {
                    "color": UNSTABLE_COLOR,
                    "size": 14,
                    "symbol": "diamond",
                    "line": {"color": "#333", "width": 1.5},
                },
            ),
            (
                "invalid (throttled)",
                bad,
                {"color": INVALID_COLOR, "size": 10, "symbol": "x"},
            ),
        ):
            if not group:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r["median_ms"] for r in group],
                    y=[100 * r["accuracy"] for r in group],
                    mode="markers+text",
                    marker=marker,
                    name=name,
                    text=[esc(r["variant"]) for r in group],
                    textposition="top center",
                    textfont={"size": 11, "color": "#555"},
                    hovertext=[_hover(r) for r in group],
                    hoverinfo="text",
                )
            )
        fig.update_layout(
            title=f"Accuracy vs measured latency on {esc(dev)} (line: Pareto front)",
            xaxis_title="median latency (ms)",
            yaxis_title="top-1 accuracy (%)",
            height=420,
            legend={"orientation": "h", "y": -0.2},
        )
        fig.update_xaxes(rangemode="tozero")
        parts.append(figure(fig))
    if not parts:
        parts.append(
            "<p class='note'>No accuracy: the models were not evaluated (give the run or the "
            "sweep <code>--data</code> / <code>data:</code>), so there is no accuracy–latency "
            "front.</p>"
        )
    return "".join(parts), fronts


def _latency_figure(agg: list[dict[str, Any]]) -> str:
    import plotly.graph_objects as go

    parts = []
    runtimes = sorted({_rt(r) for r in agg})
    devices = sorted({str(r["device"]) for r in agg})
    for model in sorted({str(r["model"]) for r in agg}):
        mine = [r for r in agg if r["model"] == model]
        base = [r for r in mine if r["variant"] == "base"] or mine
        what = "base model" if base is not mine else "all variants"
        fig = go.Figure()
        for i, rt in enumerate(runtimes):
            ys: list[float | None] = []
            for dev in devices:
                ms = [r["median_ms"] for r in base if str(r["device"]) == dev and _rt(r) == rt]
                ys.append(statistics.median(ms) if ms else None)
            fig.add_trace(
                go.Bar(
                    x=[esc(d) for d in devices],
                    y=ys,
                    name=esc(rt),
                    marker_color=PALETTE[i % len(PALETTE)],
                    hovertemplate="%{x}: %{y:.3g} ms<extra>" + esc(rt) + "</extra>",
                )
            )
        fig.update_layout(
            title=f"{esc(model)} ({what}): median latency per device and runtime",
            yaxis_title="median latency (ms)",
            barmode="group",
            height=360,
        )
        parts.append(figure(fig))
    return "".join(parts)


def _speedup_figure(agg: list[dict[str, Any]]) -> str:
    import plotly.graph_objects as go

    pts = [
        r
        for r in agg
        if r["speedup"] is not None and r["variant"] != "base" and r["flops_reduction"] is not None
    ]
    if not pts:
        return (
            "<p class='note'>No speed-ups: no base model was measured beside the pruned ones.</p>"
        )
    fig = go.Figure()
    hi = max(100 * r["flops_reduction"] for r in pts)
    xs = [hi * i / 40 for i in range(41)]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[1 / (1 - x / 100) for x in xs],
            mode="lines",
            line={"color": "#888", "dash": "dash"},
            name="ideal 1/(1-r)",
            hoverinfo="skip",
        )
    )
    for i, dev in enumerate(sorted({str(r["device"]) for r in pts})):
        mine = [r for r in pts if str(r["device"]) == dev]
        fig.add_trace(
            go.Scatter(
                x=[100 * r["flops_reduction"] for r in mine],
                y=[r["speedup"] for r in mine],
                mode="markers",
                marker={
                    "color": PALETTE[i % len(PALETTE)],
                    "size": [14 if r["unstable"] else 10 for r in mine],
                    "symbol": ["diamond" if r["unstable"] else "circle" for r in mine],
                    "line": {"color": "#333", "width": 1},
                },
                name=esc(dev),
                hovertext=[_hover(r) for r in mine],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title="FLOPs reduction vs realised speed-up (dashed: the FLOPs-ideal speed-up)",
        xaxis_title="FLOPs removed (%)",
        yaxis_title="speed-up over the base",
        height=400,
    )
    fig.update_xaxes(rangemode="nonnegative", ticksuffix="%")
    fig.update_yaxes(rangemode="tozero")
    return figure(fig)


def _points_table(agg: list[dict[str, Any]]) -> str:
    rows, classes = [], []
    for r in sorted(agg, key=lambda r: (r["model"], str(r["device"]), _rt(r), r["median_ms"])):
        rows.append(
            [
                r["model"],
                r["variant"],
                r["device"],
                _rt(r),
                r.get("n"),
                Cell(esc(num(r["median_ms"])), r["median_ms"]),
                Cell(esc(percent(r["cv"])), r["cv"]),
                Cell(esc("—" if r["speedup"] is None else f"{r['speedup']:.2f}×"), r["speedup"]),
                Cell(esc(percent(r["flops_reduction"])), r["flops_reduction"]),
                Cell(esc(percent(r["accuracy"], 2)), r["accuracy"]),
                "unstable" if r["unstable"] else "",
            ]
        )
        classes.append("unstable" if r["unstable"] else "")
    headers = ["model", "variant", "device", "runtime", "n", "median ms", "CV", "speed-up"]
    headers += ["FLOPs removed", "accuracy", "flag"]
    return table(headers, rows, row_classes=classes)


def _problems_table(rows: list[dict[str, Any]]) -> str:
    bad = [r for r in rows if r["unstable"] or not r["valid"]]
    if not bad:
        return "<p class='note'>Every measurement was valid and stable (CV at most 2.5%).</p>"
    out, classes = [], []
    for r in sorted(bad, key=lambda r: -r["cv"]):
        why = "invalid: the device throttled" if not r["valid"] else "unstable: CV above 2.5%"
        out.append(
            [
                _name(r),
                r["device"],
                _rt(r),
                Cell(esc(num(r["median_ms"])), r["median_ms"]),
                Cell(esc(percent(r["cv"])), r["cv"]),
                why,
                r["measurement_id"],
            ]
        )
        classes.append("invalid" if not r["valid"] else "unstable")
    headers = ["variant", "device", "runtime", "median ms", "CV", "problem", "measurement id"]
    return (
        "<p class='note'>Drawn as orange diamonds (unstable) or grey crosses (invalid) in the "
        "charts. "
        "Re-measure on a quiet device: <code>edgeprune bench MODEL --device NAME</code>.</p>"
        + table(headers, out, row_classes=classes)
    )


# --------------------------------------------------------------------------- run directory


def render_html(
    kind: str,
    name: str,
    rows: list[dict[str, Any]],
    run: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """The page and its derived data (recommendations, Pareto fronts) for the JSON output.

    ``run`` is a prune run's report.json: its sections are added.
    """
    agg = _aggregate(rows)
    invalid = _aggregate(rows, valid=False)
    recs = recommend(agg) if agg else []
    devices = sorted({str(r["device"]) for r in rows})
    runtimes = sorted({_rt(r) for r in rows})
    pareto, fronts = _pareto_figures(agg, invalid)
    subtitle = (
        f"Source: {esc(kind)} <b>{esc(name)}</b>: {len(rows)} measurements on {len(devices)} "
        f"device(s), {len(runtimes)} runtime configuration(s)."
    )
    run_body = ""
    if run is not None:
        subtitle, run_body = run_sections(run, run_dir)
    body = [_recommendation_html(recs, bool(agg))]
    if agg or invalid:
        body.append("<h2>Accuracy and latency</h2>")
        body.append(pareto)
    body.append(run_body)
    if len({(str(r["device"]), _rt(r)) for r in agg}) > 1:
        body.append("<h2>Latency per device and runtime</h2>")
        body.append(_latency_figure(agg))
    if agg:
        body.append("<h2>FLOPs are not latency</h2>")
        body.append(_speedup_figure(agg))
        body.append("<h2>Every point (median of repeats; click a header to sort)</h2>")
        body.append(_points_table(agg))
    if rows:
        body.append("<h2>Unstable and invalid measurements</h2>")
        body.append(_problems_table(rows))
        body.append(
            "<p class='note'>Speed-up: the base model's median with the same runtime on the same "
            "device (or, where leasing measured the base on a sibling, on the devices of the same "
            "profile: column speedup_basis in report.csv) divided by this median. FLOPs are "
            "multiply-accumulates per image.</p>"
        )
    slower = slowdowns(rows)
    if slower:
        body.insert(
            0,
            f"<p class='note' style='color:#b00'><b>Not faster than the base:</b> {esc(slower)}</p>",
        )
    title = f"edgeprune report: {name}"
    derived = {
        "not_faster": [r["label"] for r in rows if r.get("not_faster")],
        "recommendations": recs,
        "pareto_fronts": fronts,
        "devices": devices,
        "runtimes": runtimes,
    }
    return page(title, subtitle, "".join(body)), derived


def csv_cell(value: Any) -> Any:
    """``value`` safe for a spreadsheet: text starting with ``= + - @``, a tab or a carriage return
    would be read as a formula (OWASP "CSV injection"), so it gets a leading apostrophe. Numbers
    stay numbers."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_START):
        return "'" + value
    return value


def write_run_html(
    report: dict[str, Any], path: Path, run_dir: str | Path | None = None
) -> dict[str, Any]:
    """The report page of one prune run (written by `prune_run`); returns the derived data."""
    rows = derive_rows(run_rows(report, run_dir))
    name = Path(run_dir).name if run_dir else "prune run"
    html_text, derived = render_html("run", name, rows, run=report, run_dir=run_dir)
    path.write_text(html_text)
    return derived
