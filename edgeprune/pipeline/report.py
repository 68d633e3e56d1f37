"""`edgeprune report`: one offline HTML page (inline SVG) plus the same numbers as CSV and JSON.

Sources: a run directory (its ``report.json``), a sweep (``SWEEP.yaml``: every stored job of it,
with the facts of its variants), or the whole store (farm variants get their facts by artifact
hash; other measurements only their latency). One row per measurement. Derived per row:
``speedup`` = the base model's median / this median with the same runtime, on the same device, else
on the devices of the same profile (``speedup_basis``; blank when neither measured the base), and
``ideal_speedup`` = FLOPs before / FLOPs after.

Plots: median latency per device and runtime (per model variant group), accuracy vs measured
latency with each device's Pareto front (lower latency and higher accuracy), and FLOPs reduction
vs realised speed-up against the ideal 1/(1 − r).
"""

from __future__ import annotations

import csv
import html
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeprune.bench import Measurement, Store
from edgeprune.errors import UsageError
from edgeprune.pipeline._util import write_json
from edgeprune.pipeline.report_html import grouped_bar_chart, page, table, xy_chart

COLUMNS = (
    "label", "model", "variant", "criterion", "target", "entry", "device", "profile", "runtime",
    "precision", "threads", "median_ms", "p90_ms", "cv", "valid", "unstable", "flops_before",
    "flops_after", "flops_reduction", "params_reduction", "accuracy", "speedup", "ideal_speedup",
    "realised_over_ideal", "speedup_basis", "not_faster", "artifact_sha256", "job_id",
    "measurement_id",
)  # fmt: skip


def _row(m: Measurement, facts: dict[str, Any] | None, **known: Any) -> dict[str, Any]:
    ctx = m.context
    facts = facts or {}
    row: dict[str, Any] = {
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
        "not_faster": None,
        "artifact_sha256": ctx.get("artifact_sha256"),
        "job_id": m.job_id,
        "measurement_id": m.id,
    }
    return row


def _sweep_rows(path: Path) -> tuple[str, list[dict[str, Any]]]:
    from edgeprune.farm import load_sweep, plan_sweep
    from edgeprune.farm.prepare import prep_dir

    spec = load_sweep(path)
    plan = plan_sweep(spec)
    jobs = {j.job_id: j for j in plan.jobs}
    facts: dict[str, dict[str, Any]] = {}
    for pid in plan.preps:
        f = prep_dir(pid) / "facts.json"
        if f.is_file():
            facts[pid] = json.loads(f.read_text())["facts"]
    rows = []
    with Store() as store:
        for m in store.query(job_prefix=plan.prefix):
            job = jobs.get(m.job_id or "")
            if job is None:
                continue  # another sweep whose name starts like this one, or an old plan
            prep = plan.preps[job.prep]
            rows.append(
                _row(
                    m,
                    facts.get(job.prep),
                    model=prep.model.label,
                    variant="base" if prep.is_base else prep.label.split(" ", 1)[1],
                    criterion=prep.criterion.name if prep.criterion else None,
                    target=prep.target.label if prep.target else None,
                    entry=job.entry,
                )
            )
    return spec.name, rows


def _store_rows() -> list[dict[str, Any]]:
    from edgeprune.farm.prepare import variant_facts_by_sha

    by_sha = variant_facts_by_sha()
    rows = []
    with Store() as store:
        for m in store.query():
            rec = by_sha.get(str(m.context.get("artifact_sha256")))
            if rec is None:
                rows.append(_row(m, None))
                continue
            prep = rec["prep"]
            crit, target = prep.get("criterion"), prep.get("target")
            label = str(rec["label"])
            rows.append(
                _row(
                    m,
                    rec["facts"],
                    model=label.split(" ", 1)[0],
                    variant="base" if target is None else label.split(" ", 1)[1],
                    criterion=crit["name"] if crit else None,
                    target=f"{target['kind']}={target['value']}" if target else None,
                )
            )
    return rows


def _run_dir_rows(path: Path) -> tuple[str, list[dict[str, Any]]]:
    report = json.loads((path / "report.json").read_text())
    lat = report.get("latency")
    if not lat:
        raise UsageError(
            f"{path} has no latency measurements",
            hint="prune with --device NAME (or --latency-budget) to measure it",
        )
    model = report["model"]["arch"].get("name") or report["model"]["arch"].get("factory")
    base_facts = {
        "flops_before": report["flops_before"],
        "flops_after": report["flops_before"],
        "flops_reduction": 0.0,
        "params_reduction": 0.0,
        "accuracy_after": report.get("accuracy_before"),
    }
    pruned_facts = {
        k: report.get(k)
        for k in (
            "flops_before",
            "flops_after",
            "flops_reduction",
            "params_reduction",
            "accuracy_after",
        )
    }
    rows = []
    for entry in [lat, *(lat.get("others") or {}).values()]:
        for key, facts, variant in (
            ("base", base_facts, "base"),
            ("pruned", pruned_facts, report["criterion"]),
        ):
            d = entry[key]
            from edgeprune.bench import Stats

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
                _row(
                    m,
                    facts,
                    model=model,
                    variant=variant,
                    criterion=None if key == "base" else report["criterion"],
                )
            )
    return path.name, rows


def collect_rows(source: str | Path | None) -> tuple[str, str, list[dict[str, Any]]]:
    """(kind, name, rows) for a run directory, a SWEEP.yaml, or the whole store (None)."""
    if source is None:
        return "store", "measurement store", _derive(_store_rows())
    p = Path(source)
    if p.is_dir():
        if not (p / "report.json").is_file():
            raise UsageError(
                f"{p} is not a run directory (no report.json)",
                hint="give a run dir, a SWEEP.yaml, or nothing for the whole store",
            )
        name, rows = _run_dir_rows(p)
        return "run", name, _derive(rows)
    if p.suffix in (".yaml", ".yml"):
        name, rows = _sweep_rows(p)
        return "sweep", name, _derive(rows)
    raise UsageError(
        f"cannot report on {p}",
        hint="give a run directory, a SWEEP.yaml, or nothing for the whole store",
    )


def _derive(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def _aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per (model, variant, device, runtime config): the median of the repeats."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["valid"]:
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
        out.append(first)
    return out


def _rt(r: dict[str, Any]) -> str:
    return f"{r['runtime']}/{r['precision']}/t{r['threads']}"


def render_html(kind: str, name: str, rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The page and its derived data (Pareto fronts, groups) for the JSON output."""
    agg = _aggregate(rows)
    devices = sorted({r["device"] for r in agg})
    runtimes = sorted({_rt(r) for r in agg})
    charts: list[str] = []
    for model in sorted({r["model"] for r in agg}):
        mine = [r for r in agg if r["model"] == model]
        base = [r for r in mine if r["variant"] == "base"] or mine
        what = "base model" if base is not mine else "all variants"
        series: dict[str, Sequence[float | None]] = {}
        for rt in runtimes:
            vals: list[float | None] = []
            for dev in devices:
                ms = [r["median_ms"] for r in base if r["device"] == dev and _rt(r) == rt]
                vals.append(statistics.median(ms) if ms else None)
            series[rt] = vals
        charts.append(
            grouped_bar_chart(
                f"{model} ({what}): median latency per device and runtime (ms)",
                devices,
                series,
                " ms",
            )
        )
    fronts: dict[str, list[tuple[float, float]]] = {}
    acc_pts: dict[str, list[tuple[float, float, str]]] = {}
    for dev in devices:
        pts = [r for r in agg if r["device"] == dev and r["accuracy"] is not None]
        if pts:
            acc_pts[dev] = [
                (
                    r["median_ms"],
                    100 * r["accuracy"],
                    f"{r['model']} {r['variant']} {_rt(r)}: {r['median_ms']:.3g} ms, {100 * r['accuracy']:.2f}%",
                )
                for r in pts
            ]
            fronts[dev] = pareto_front([(x, y) for x, y, _ in acc_pts[dev]])
    if acc_pts:
        charts.append(
            xy_chart(
                "Accuracy vs measured latency (lines: Pareto front per device)",
                acc_pts,
                dict(fronts),
                "median latency (ms)",
                "top-1 accuracy (%)",
            )
        )
    else:
        charts.append(
            "<p class='note'>No accuracy: the models were not evaluated (give the sweep <code>data:</code>).</p>"
        )
    sp_pts: dict[str, list[tuple[float, float, str]]] = {}
    for dev in devices:
        pts = [
            r
            for r in agg
            if r["device"] == dev
            and r["speedup"] is not None
            and r["variant"] != "base"
            and r["flops_reduction"] is not None
        ]
        if pts:
            sp_pts[dev] = [
                (
                    100 * r["flops_reduction"],
                    r["speedup"],
                    f"{r['model']} {r['variant']} {_rt(r)}: -{100 * r['flops_reduction']:.1f}% FLOPs, {r['speedup']:.2f}x",
                )
                for r in pts
            ]
    if sp_pts:
        # The ideal curve from 0% (speed-up 1) to the largest reduction measured.
        hi = max(x for s in sp_pts.values() for x, _, _ in s)
        ideal = [(hi * i / 20, 1 / (1 - hi * i / 2000)) for i in range(21)]
        charts.append(
            xy_chart(
                "FLOPs reduction vs realised speed-up",
                sp_pts,
                {"ideal 1/(1-r)": ideal},
                "FLOPs removed (%)",
                "speed-up over the base",
            )
        )
    else:
        charts.append(
            "<p class='note'>No speed-ups: no base model was measured beside the pruned ones.</p>"
        )
    summary_rows = [
        [
            r["model"],
            r["variant"],
            r["device"],
            _rt(r),
            r.get("n"),
            r["median_ms"],
            r["speedup"],
            None if r["flops_reduction"] is None else f"{100 * r['flops_reduction']:.1f}%",
            None if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%",
        ]
        for r in sorted(agg, key=lambda r: (r["model"], r["device"], _rt(r), r["median_ms"]))
    ]
    invalid = sum(1 for r in rows if not r["valid"])
    body = [
        f"<p>Source: {kind} <b>{name}</b>. {len(rows)} measurements on {len(devices)} devices, "
        f"{len(runtimes)} runtime configurations; {invalid} invalid (throttled) not plotted.</p>",
        f"<div class='charts'>{''.join(charts)}</div>",
        "<h2>Per variant, device and runtime (median of repeats)</h2>",
        table(
            [
                "model",
                "variant",
                "device",
                "runtime",
                "n",
                "median ms",
                "speed-up",
                "FLOPs removed",
                "accuracy",
            ],
            summary_rows,
        ),
        "<p class='note'>Speed-up: the base model's median with the same runtime on the same device (or, where "
        "leasing measured the base on a sibling, on the devices of the same profile: column speedup_basis) divided by this median. "
        "FLOPs are multiply-accumulates per image. The same numbers are in report.csv and report.json.</p>",
    ]
    slower = slowdowns(rows)
    if slower:
        body.insert(
            0,
            "<p class='note' style='color:#b00'><b>Not faster than the base:</b> "
            f"{html.escape(slower)}</p>",
        )
    derived = {
        "not_faster": [r["label"] for r in rows if r.get("not_faster")],
        "pareto_fronts": {d: [list(p) for p in f] for d, f in fronts.items()},
        "devices": devices,
        "runtimes": runtimes,
    }
    return page(f"edgeprune report: {name}", "".join(body)), derived


def write_report(source: str | Path | None, out: str | Path) -> dict[str, Any]:
    """Write ``OUT/report.html``, ``OUT/report.csv`` and ``OUT/report.json``; return a summary.

    Raises `UsageError` for a source that is not a run directory or sweep, or has no measurements.
    """
    kind, name, rows = collect_rows(source)
    if not rows:
        raise UsageError(
            f"no measurements found for {kind} {name}",
            hint="run the sweep first (`edgeprune farm run SWEEP.yaml`)",
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_text, derived = render_html(kind, name, rows)
    (out / "report.html").write_text(html_text)
    with (out / "report.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    write_json(
        out / "report.json",
        {"source": kind, "name": name, "columns": list(COLUMNS), "rows": rows, **derived},
    )
    return {
        "source": kind,
        "name": name,
        "rows": len(rows),
        "devices": derived["devices"],
        "runtimes": derived["runtimes"],
        "html": str(out / "report.html"),
        "csv": str(out / "report.csv"),
        "json": str(out / "report.json"),
    }
