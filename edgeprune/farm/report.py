"""`edgeprune report` over its three sources: a run directory, a sweep, or the whole store.

The rows of a sweep (every stored job of ``SWEEP.yaml``, with the facts of its variants) and of
the store (farm variants get their facts by artifact hash) need the farm's plans and prepared
variants, so they are collected here, above the pipeline; the page itself, a run directory's
rows and the derived columns are `edgeprune.pipeline.report`'s.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edgeprune._files import check_writable, write_json
from edgeprune.bench import Store
from edgeprune.errors import UsageError
from edgeprune.farm.plan import plan_sweep
from edgeprune.farm.prepare import prep_dir, variant_facts_by_sha
from edgeprune.farm.sweep import load_sweep
from edgeprune.pipeline.report import (
    COLUMNS,
    SEARCH_PROBE_PREFIX,
    cached_artifact,
    csv_cell,
    derive_rows,
    measurement_row,
    render_html,
    run_rows,
)


def sweep_rows(path: Path) -> tuple[str, list[dict[str, Any]]]:
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
                measurement_row(
                    m,
                    facts.get(job.prep),
                    model=prep.model.label,
                    variant="base" if prep.is_base else prep.label.split(" ", 1)[1],
                    criterion=prep.criterion.name if prep.criterion else None,
                    target=prep.target.label if prep.target else None,
                    entry=job.entry,
                    deploy_model=cached_artifact(m.context.get("artifact_sha256")),
                )
            )
    return spec.name, rows


def store_rows(include_all: bool = False) -> list[dict[str, Any]]:
    by_sha = variant_facts_by_sha()
    rows = []
    with Store() as store:
        for m in store.query():
            if not include_all and str(m.label or "").startswith(SEARCH_PROBE_PREFIX):
                continue
            sha = m.context.get("artifact_sha256")
            rec = by_sha.get(str(sha))
            if rec is None:
                rows.append(measurement_row(m, None, deploy_model=cached_artifact(sha)))
                continue
            prep = rec["prep"]
            crit, target = prep.get("criterion"), prep.get("target")
            label = str(rec["label"])
            rows.append(
                measurement_row(
                    m,
                    rec["facts"],
                    model=label.split(" ", 1)[0],
                    variant="base" if target is None else label.split(" ", 1)[1],
                    criterion=crit["name"] if crit else None,
                    target=f"{target['kind']}={target['value']}" if target else None,
                    deploy_model=cached_artifact(sha),
                )
            )
    return rows


def collect_rows(
    source: str | Path | None, include_all: bool = False
) -> tuple[str, str, list[dict[str, Any]]]:
    """(kind, name, rows) for a run directory, a SWEEP.yaml, or the whole store (None)."""
    if source is None:
        return "store", "measurement store", derive_rows(store_rows(include_all))
    p = Path(source)
    if p.is_dir():
        if not (p / "report.json").is_file():
            raise UsageError(
                f"{p} is not a run directory (no report.json)",
                hint="give a run dir, a SWEEP.yaml, or nothing for the whole store",
            )
        report = json.loads((p / "report.json").read_text())
        return "run", p.name, derive_rows(run_rows(report, p))
    if p.suffix in (".yaml", ".yml"):
        name, rows = sweep_rows(p)
        return "sweep", name, derive_rows(rows)
    raise UsageError(
        f"cannot report on {p}",
        hint="give a run directory, a SWEEP.yaml, or nothing for the whole store",
    )


def write_report(
    source: str | Path | None, out: str | Path, include_all: bool = False
) -> dict[str, Any]:
    """Write ``OUT/report.html``, ``OUT/report.csv`` and ``OUT/report.json``; return a summary.

    ``include_all`` keeps the latency search's probe measurements (``search:…``) in a store
    report. Raises `UsageError` for a source that is not a run directory or sweep, or a sweep or
    store without measurements, or an ``out`` that cannot be written (checked first). Text
    cells of the CSV that a spreadsheet would run as a formula are escaped (`csv_cell`); the
    JSON keeps them as they are.
    """
    check_writable(Path(out), directory=True)
    kind, name, rows = collect_rows(source, include_all)
    run = None
    if kind == "run":
        run = json.loads((Path(str(source)) / "report.json").read_text())
    elif not rows:
        raise UsageError(
            f"no measurements found for {kind} {name}",
            hint="run the sweep first (`edgeprune farm run SWEEP.yaml`)",
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    html_text, derived = render_html(kind, name, rows, run=run, run_dir=source)
    (out / "report.html").write_text(html_text)
    with (out / "report.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)
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
        "recommendations": derived["recommendations"],
        "html": str(out / "report.html"),
        "csv": str(out / "report.csv"),
        "json": str(out / "report.json"),
    }
