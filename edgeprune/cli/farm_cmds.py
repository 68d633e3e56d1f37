"""Farm commands: ``edgeprune farm run|status`` and ``edgeprune report``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from edgeprune.cli._app import JSON_HELP, app, console, console_err, emit_json, fmt, kv_table

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
SweepArg = Annotated[Path, typer.Argument(help="The sweep file (SWEEP.yaml).")]

farm_app = typer.Typer(
    help="Device-farm sweeps: models x criteria x targets x devices x runtimes, resumable.",
    no_args_is_help=True,
)
app.add_typer(farm_app, name="farm")


def status_table(snap: dict[str, Any]) -> Table:
    """Devices of a running or finished sweep: state, jobs done, current job, problem."""
    done = snap.get("jobs_done", snap.get("done_before", 0) + snap.get("done_now", 0))
    t = Table(
        title=f"sweep {snap['sweep']}: {done}/{snap['jobs_total']} jobs, "
        f"{len(snap.get('failed') or [])} failed, state {snap.get('state')}",
        title_justify="left",
    )
    for col in ("device", "profile", "state", "jobs", "current job", "problem"):
        t.add_column(col)
    for name, d in (snap.get("devices") or {}).items():
        cur = d.get("current") or {}
        since = f" ({time.time() - cur['since']:.0f}s)" if cur.get("since") else ""
        problem = (d.get("problems") or [{}])[0].get("message") if d.get("problems") else None
        t.add_row(
            name,
            d.get("profile"),
            d.get("state"),
            str(d.get("jobs")),
            f"{cur.get('label')} {cur.get('runtime') or ''}{since}" if cur else "—",
            fmt(problem),
        )
    return t


@farm_app.command("run")
def run_cmd(
    sweep: SweepArg,
    engine: Annotated[
        str, typer.Option("--engine", help="threads (this host) or ray.")
    ] = "threads",
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", help="Devices working at once (default: all).")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Ray cluster to join (default: a private local one)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a sweep, or resume it: jobs already in the store are never repeated."""
    from edgeprune.farm import load_sweep, run_sweep

    spec = load_sweep(sweep)
    if json_out:
        result = run_sweep(spec, engine, max_parallel, ray_address)
    else:
        with Live(console=console_err, refresh_per_second=2, transient=True) as live:
            result = run_sweep(
                spec,
                engine,
                max_parallel,
                ray_address,
                on_update=lambda s: live.update(status_table(s)),
            )
    if json_out:
        emit_json(result)
    else:
        ov = result["per_job_overhead_s"]
        rows = [
            (
                "jobs",
                f"{result['jobs_done']}/{result['jobs_total']} done ({result['done_now']} now, {result['done_before']} before)",
            ),
            ("failed", len(result["failed"])),
            ("variants made now", result["preps"]["made_now"]),
            ("engine", result["engine"]),
            ("wall time (s)", result["wall_seconds"]),
            ("per-job overhead (s, median)", ov["median"]),
        ]
        for name, problems in result["out_of_rotation"].items():
            rows.append(
                (f"out of rotation: {name}", "; ".join(str(p.get("message")) for p in problems))
            )
        for f in result["failed"][:10]:
            rows.append((f"failed: {f['label']} on {f['entry']}", f["message"]))
        console.print(kv_table(f"farm run {spec.name}", rows))
    if result["failed"]:
        raise typer.Exit(1)


@farm_app.command("status")
def status_cmd(
    sweep: SweepArg,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until the run ends (Ctrl-C stops watching).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """How far a sweep is: jobs done per device entry and runtime, devices, failures."""
    from edgeprune.farm import load_sweep, sweep_status

    spec = load_sweep(sweep)
    snap = sweep_status(spec)
    if json_out:
        emit_json(snap)
        return
    if watch:
        with Live(status_table(snap), console=console, refresh_per_second=1) as live:
            while snap["state"] == "running":
                time.sleep(1.0)
                snap = sweep_status(spec)
                live.update(status_table(snap))
    t = Table(
        title=f"sweep {spec.name}: {snap['jobs_done']}/{snap['jobs_total']} jobs ({snap['state']})",
        title_justify="left",
    )
    for col in ("device entry", "runtime", "done", "total"):
        t.add_column(col)
    for g in snap["groups"]:
        t.add_row(g["entry"], g["runtime"], str(g["done"]), str(g["total"]))
    console.print(t)
    if snap["devices"] and not watch:
        console.print(status_table(snap))


@app.command("report")
def report_cmd(
    source: Annotated[
        Path | None,
        typer.Argument(help="A run directory, a SWEEP.yaml, or nothing for the whole store."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (default: report-NAME).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """One offline HTML report with plots, plus the same numbers as CSV and JSON."""
    from edgeprune.pipeline.report import write_report

    target = out or Path(
        f"report-{(source.stem if source and source.suffix else source.name) if source else 'store'}"
    )
    result = write_report(source, target)
    if json_out:
        emit_json(result)
        return
    console.print(kv_table("report", [(k, v) for k, v in result.items()]))
