"""Target commands: profiles, lint, cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgeprune.cli._app import app, console, emit_json, fmt, kv_table, styled
from edgeprune.cli.options import JsonOpt
from edgeprune.errors import UsageError

LINT_EXIT_ERRORS = 1

cache_app = typer.Typer(
    help="The local artifact cache (ONNX files and TensorRT engines, by sha256).",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@app.command("profiles")
def profiles_cmd(
    name: Annotated[str | None, typer.Argument(help="Show one profile in full.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List device profiles (./profiles/, $EDGEPRUNE_CONFIG/profiles/, then built-ins)."""
    from edgeprune.profiles import list_profiles, load_profile

    if name is not None:
        prof = load_profile(name).to_dict()
        if json_out:
            emit_json(prof)
            return
        clocks = prof.pop("clocks")
        rows: list[tuple[str, Any]] = [
            (k, ", ".join(v) if isinstance(v, list) else v) for k, v in prof.items()
        ]
        rows += [
            (f"clocks.{k}", " ".join(v) if isinstance(v, list) else v)
            for k, v in clocks.items()
            if v is not None
        ]
        console.print(kv_table(f"profile {name}", rows))
        return
    profiles = [p.to_dict() for p in list_profiles()]
    if json_out:
        emit_json({"profiles": profiles})
        return
    t = Table("name", "arch", "runtimes", "TensorRT", "opset≤", "fast", "×ch", title="Profiles")
    for p in profiles:
        t.add_row(
            p["name"],
            p["arch"],
            ", ".join(p["runtimes"]),
            fmt(p["tensorrt"]),
            str(p["max_opset"]),
            ", ".join(p["fast_precisions"]),
            str(p["channel_multiple"]),
        )
    console.print(t)


@app.command("lint")
def lint_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX file to check.")],
    profile: Annotated[str, typer.Option("--profile", help="Device profile to check against.")],
    json_out: JsonOpt = False,
) -> None:
    """Check an ONNX file against a device profile; exit 1 when a finding is an error."""
    from edgeprune.export.lint import has_errors, lint_onnx

    findings = lint_onnx(model, profile)
    counts = {lv: sum(f.level == lv for f in findings) for lv in ("error", "warning", "info")}
    if json_out:
        emit_json(
            {
                "model": str(model),
                "profile": profile,
                "ok": not has_errors(findings),
                "counts": counts,
                "findings": [f.to_dict() for f in findings],
            }
        )
    else:
        style = {"error": "bold red", "warning": "yellow", "info": "cyan"}
        for f in findings:
            console.print(styled(f.level, style[f.level]) + f" {f.code}: {f.message}")
            console.print(f"    fix: {f.fix}")
        verdict = "fails" if has_errors(findings) else "passes"
        console.print(
            f"{model.name} {verdict} lint for {profile}: {counts['error']} error(s), "
            f"{counts['warning']} warning(s), {counts['info']} note(s)"
        )
    if has_errors(findings):
        raise typer.Exit(LINT_EXIT_ERRORS)


def _artifact_row(art: Any) -> dict[str, Any]:
    meta = dict(art.meta)
    return {
        "sha256": art.sha256,
        "path": str(art.path),
        "size_bytes": art.size_bytes,
        "kind": meta.pop("kind", None),
        "added_at": meta.pop("added_at", None),
        "meta": meta,
    }


def _when(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@cache_app.command("list")
def cache_list_cmd(json_out: JsonOpt = False) -> None:
    """List cached artifacts, oldest first."""
    from edgeprune.export.artifacts import ArtifactCache

    rows = [_artifact_row(a) for a in ArtifactCache().list()]
    if json_out:
        emit_json({"artifacts": rows, "total_bytes": sum(r["size_bytes"] for r in rows)})
        return
    t = Table("sha256", "kind", "size (bytes)", "added", "details", title="Artifact cache")
    for r in rows:
        details = ", ".join(f"{k}={v}" for k, v in sorted(r["meta"].items()) if k != "suffix")
        t.add_row(
            r["sha256"][:12], fmt(r["kind"]), str(r["size_bytes"]), _when(r["added_at"]), details
        )
    console.print(t)


@cache_app.command("prune")
def cache_prune_cmd(
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", help="Remove artifacts added more than DAYS days ago."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every cached artifact.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove cached artifacts (they are re-exported or rebuilt when needed again)."""
    from edgeprune.export.artifacts import ArtifactCache

    if (older_than is None) == (not all_):
        raise UsageError("say what to remove", hint="pass --older-than DAYS or --all")
    if older_than is not None and older_than < 0:
        raise UsageError("--older-than must be >= 0 days")
    removed = ArtifactCache().prune(None if older_than is None else older_than * 86400.0)
    rows = [_artifact_row(a) for a in removed]
    freed = sum(r["size_bytes"] for r in rows)
    if json_out:
        emit_json({"removed": rows, "freed_bytes": freed})
        return
    console.print(f"removed {len(rows)} artifact(s), freed {freed} bytes")
