"""Farm commands: ``edgeprune farm run|status`` and ``edgeprune report``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from edgeprune.cli._app import (
    app,
    console,
    console_err,
    emit_json,
    fmt,
    kv_table,
    on_interrupt,
    progress,
    settings,
)
from edgeprune.cli.options import JsonOpt

SweepArg = Annotated[Path, typer.Argument(help="The sweep file (SWEEP.yaml).")]

farm_app = typer.Typer(
    help="Device-farm sweeps: models x criteria x targets x devices x runtimes, resumable.",
    no_args_is_help=True,
)
app.add_typer(farm_app, name="farm")


def _sweep_progress(snap: dict[str, Any]) -> str:
    """``12/40 jobs, 1 failed, making variants 3/10, 55 s``: what a running sweep is doing."""
    done = snap.get("jobs_done", snap.get("done_before", 0) + snap.get("done_now", 0))
    parts = [f"{done}/{snap['jobs_total']} jobs", f"{len(snap.get('failed') or [])} failed"]
    preps = snap.get("preps") or {}
    if preps.get("pending"):
        made = preps["total"] - preps["pending"]
        parts.append(f"making variants {made}/{preps['total']} (pruning, fine-tuning, export)")
    if snap.get("started_at"):
        parts.append(f"{time.time() - snap['started_at']:.0f} s")
    return ", ".join(parts)


def status_table(snap: dict[str, Any]) -> Table:
    """Devices of a running or finished sweep: state, jobs done, current job, problem."""
    t = Table(
        title=f"sweep {snap['sweep']}: {_sweep_progress(snap)}, state {snap.get('state')}",
        title_justify="left",
    )
    for col in ("device", "profile", "state", "jobs", "current job", "problem"):
        t.add_column(col)
    waiting = bool((snap.get("preps") or {}).get("pending"))
    for name, d in (snap.get("devices") or {}).items():
        cur = d.get("current") or {}
        since = f" ({time.time() - cur['since']:.0f}s)" if cur.get("since") else ""
        problem = (d.get("problems") or [{}])[0].get("message") if d.get("problems") else None
        idle = "waiting for variants" if waiting and d.get("state") == "idle" else "—"
        t.add_row(
            name,
            d.get("profile"),
            d.get("state"),
            str(d.get("jobs")),
            f"{cur.get('label')} {cur.get('runtime') or ''}{since}" if cur else idle,
            fmt(problem),
        )
    return t


class _PlainSweepLines:
    """Sweep progress for logs: a line when jobs finish or variants are made (at most one per
    ``every`` seconds), and at least one per ``heartbeat`` seconds."""

    def __init__(self, every: float = 5.0, heartbeat: float = 60.0) -> None:
        self.every, self.heartbeat = every, heartbeat
        self.last_key: tuple[Any, ...] | None = None
        self.last_at = 0.0

    def __call__(self, snap: dict[str, Any]) -> None:
        preps = snap.get("preps") or {}
        key = (snap.get("done_now"), len(snap.get("failed") or []), preps.get("pending"))
        now = time.monotonic()
        changed = key != self.last_key and now - self.last_at >= self.every
        if changed or now - self.last_at >= self.heartbeat:
            self.last_key, self.last_at = key, now
            console_err.print(f"sweep {snap['sweep']}: {_sweep_progress(snap)}", soft_wrap=True)


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
        typer.Option(
            "--ray-address",
            help="Ray cluster to join (default: $RAY_ADDRESS, else a private local instance).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a sweep, or resume it: jobs already in the store are never repeated."""
    from edgeprune.farm import load_sweep, run_sweep

    spec = load_sweep(sweep)
    last: dict[str, Any] = {}

    def kept() -> str:
        done = last.get("done_before", 0) + last.get("done_now", 0)
        total = last.get("jobs_total", "all")
        return (
            f"{done} of {total} jobs are in the store; rerun `edgeprune farm run {sweep}` to "
            "resume (stored jobs are skipped, made variants are reused)"
        )

    def remember(snap: dict[str, Any]) -> None:
        last.update(snap)

    with on_interrupt(kept):
        if json_out or settings.quiet:
            result = run_sweep(spec, engine, max_parallel, ray_address, on_update=remember)
        elif console_err.is_terminal:
            with Live(console=console_err, refresh_per_second=2, transient=True) as live:

                def show(snap: dict[str, Any]) -> None:
                    remember(snap)
                    live.update(status_table(snap))

                result = run_sweep(spec, engine, max_parallel, ray_address, on_update=show)
        else:
            lines = _PlainSweepLines()

            def log(snap: dict[str, Any]) -> None:
                remember(snap)
                lines(snap)

            result = run_sweep(spec, engine, max_parallel, ray_address, on_update=log)
    if json_out:
        emit_json(result.to_dict())
    else:
        rows = [
            (
                "jobs",
                f"{result.jobs_done}/{result.jobs_total} done ({result.done_now} now, {result.done_before} before)",
            ),
            ("failed", len(result.failed)),
            ("variants made now", result.preps["made_now"]),
            ("engine", result.engine),
            ("wall time (s)", result.wall_seconds),
            ("per-job overhead (s, median)", result.per_job_overhead_s.median),
        ]
        for name, problems in result.out_of_rotation.items():
            rows.append(
                (f"out of rotation: {name}", "; ".join(str(p.get("message")) for p in problems))
            )
        for f in result.failed[:10]:
            rows.append((f"failed: {f.label} on {f.entry}", f.message))
        console.print(kv_table(f"farm run {spec.name}", rows))
    if result.failed:
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
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Include the latency search's own probe measurements (search:…)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """One offline HTML report: what to deploy per device, plots, tables; the same numbers as CSV
    and JSON."""
    from edgeprune.farm.report import write_report

    target = out or Path(
        f"report-{(source.stem if source and source.suffix else source.name) if source else 'store'}"
    )
    with progress(json_out):
        result = write_report(source, target, include_all=all_)
    if json_out:
        emit_json(result)
        return
    recs = result.pop("recommendations")
    console.print(kv_table("report", [(k, v) for k, v in result.items()]))
    for r in recs:
        console.print(recommendation_line(r))


def recommendation_line(r: dict[str, Any]) -> str:
    """One recommendation of the report as a line of text (the HTML page has the same)."""
    where = r["device"] + (
        f" within {r['budget']} ({r['budget_ms']:.3g} ms)" if r["budget"] else ""
    )
    if r["choice"] is None:
        return f"{where}: no measured variant meets it (fastest: {r['fastest']}, {r['fastest_ms']:.3g} ms)"
    acc = "" if r["accuracy"] is None else f", accuracy {100 * r['accuracy']:.2f}%"
    line = f"{where}: deploy {r['choice']} ({r['median_ms']:.3g} ms{acc})"
    return line + (f": {r['command']}" if r["command"] else "")
