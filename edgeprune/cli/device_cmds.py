"""Device commands: ``edgeprune devices add|list|remove|trust|check|provision|clean`` and ``deploy``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
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
    styled,
    warn_slowdowns,
)
from edgeprune.cli.options import (
    INCOMPLETE_MEASUREMENT,
    DurationOpt,
    JsonOpt,
    ModelCodeOpt,
    ModelKwargsOpt,
    RepeatsOpt,
    RunsOpt,
    ThreadsOpt,
    WarmupOpt,
    model_kwargs_of,
    protocol_config,
)

NameArg = Annotated[str, typer.Argument(help="Device name from devices.yaml.")]
WaitOpt = Annotated[
    float | None,
    typer.Option(
        "--wait",
        metavar="[SECONDS]",
        help="Queue for a busy device up to SECONDS (alone: until it is free); "
        "without it a busy device fails at once, naming who holds it.",
    ),
]


def print_waiting(holder: str) -> None:
    """``--wait``'s note on stderr: who holds the device (user text: never Rich markup)."""
    console_err.print(f"waiting for the device: {holder}", markup=False, highlight=False)


devices_app = typer.Typer(
    help="The device inventory (devices.yaml): add, trust, check and provision SSH devices.",
    no_args_is_help=True,
)
app.add_typer(devices_app, name="devices")


def _mib(v: Any) -> str:
    return "—" if v is None else f"{v / (1024 * 1024):.0f} MiB"


@devices_app.command("add")
def add_cmd(
    name: NameArg,
    host: Annotated[str, typer.Option("--host", help="Hostname or IP address.")],
    profile: Annotated[
        str,
        typer.Option(
            "--profile", help="Device profile, e.g. jetson-nano or rpi4 (see `edgeprune profiles`)."
        ),
    ],
    port: Annotated[int, typer.Option("--port")] = 22,
    user: Annotated[str | None, typer.Option("--user", help="Login user.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Private key file.")] = None,
    use_agent: Annotated[bool, typer.Option("--agent", help="Use the ssh-agent's keys.")] = False,
    jump: Annotated[
        str | None, typer.Option("--jump", help="Another device entry to jump through.")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    workdir: Annotated[
        str | None,
        typer.Option("--workdir", help="Work directory on the device (default .edgeprune)."),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option("--python", help="Absolute path of python3 on the device."),
    ] = None,
    known_hosts: Annotated[
        str | None,
        typer.Option("--known-hosts", help="Pin this device's key in this file instead."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite an existing entry.")
    ] = False,
    agent_mode: Annotated[
        str | None,
        typer.Option(
            "--agent-mode",
            help="session (default: one agent per session, one shell start-up) or command "
            "(one agent process per request).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add an SSH device. No passwords; pin its host key next with `devices trust NAME`."""
    from edgeprune.device.manage import add_device

    spec, path = add_device(
        name,
        host,
        profile,
        port=port,
        user=user,
        key=key,
        agent=use_agent,
        jump=jump,
        tags=tuple(tag or ()),
        workdir=workdir,
        python=python,
        known_hosts=known_hosts,
        replace=replace,
        agent_mode=agent_mode,
    )
    if json_out:
        emit_json({"device": name, "inventory": str(path), **spec.to_yaml_dict()})
        return
    console.print(f"added {name} ({spec.address}) to {path}")
    console.print(f"next: `edgeprune devices trust {name}` to pin its host key")


@devices_app.command("list")
def list_cmd(json_out: JsonOpt = False) -> None:
    """List the devices (the built-in `local` device included)."""
    from edgeprune.device.manage import list_devices

    specs, path = list_devices()
    rows = [{"name": s.name, "kind": s.kind, **s.to_yaml_dict()} for s in specs]
    if json_out:
        emit_json({"inventory": str(path), "devices": rows})
        return
    t = Table("name", "address", "user", "profile", "jump", "tags", title=f"devices ({path})")
    for s in specs:
        t.add_row(
            s.name,
            s.address if s.kind == "ssh" else "(this host)",
            fmt(s.user),
            s.profile,
            fmt(s.jump),
            ", ".join(s.tags),
        )
    console.print(t)


@devices_app.command("remove")
def remove_cmd(name: NameArg, json_out: JsonOpt = False) -> None:
    """Remove a device entry."""
    from edgeprune.device.manage import remove_device

    _spec, path = remove_device(name)
    if json_out:
        emit_json({"removed": name, "inventory": str(path)})
        return
    console.print(f"removed {name} from {path}")


@devices_app.command("trust")
def trust_cmd(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", help="Pin without asking.")] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Allow replacing a pinned key that CHANGED (a reinstalled device); without it a "
            "changed key is refused and both fingerprints are shown.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show the device's SSH host key fingerprint and pin it (asks first unless --yes)."""
    from edgeprune.device.trust import TrustResult, trust_device

    def ask(r: TrustResult) -> bool:
        if json_out or not sys.stdin.isatty():
            return False
        change = " (it CHANGED from " + ", ".join(r.previous) + ")" if r.changed else ""
        console.print(f"{r.device} ({r.address}) offers {r.key_type} {r.fingerprint}{change}")
        return bool(typer.confirm("pin this key?", default=False))

    res = trust_device(name, yes=yes, confirm=ask, replace=replace)
    if json_out:
        emit_json(res.to_dict())
        return
    if res.already_trusted:
        console.print(f"{name}: {res.key_type} {res.fingerprint} is already pinned")
    else:
        console.print(
            f"pinned {name} ({res.address}) {res.key_type} {res.fingerprint} in {res.known_hosts}"
        )


@devices_app.command("check")
def check_cmd(
    names: Annotated[
        list[str] | None, typer.Argument(help="Devices to check (default: all).")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds per device (from its start).")
    ] = 60.0,
    workers: Annotated[int, typer.Option("--workers", help="Devices contacted at once.")] = 8,
    json_out: JsonOpt = False,
) -> None:
    """Run the agent's `info` on devices in parallel; print facts and problems with fixes.

    Exits 1 when any device has a problem.
    """
    from edgeprune.device.check import check_devices

    with progress(json_out):
        results = check_devices(names or None, timeout=timeout, workers=workers)
    if json_out:
        emit_json({"devices": [r.to_dict() for r in results], "ok": all(r.ok for r in results)})
    else:
        t = Table(
            "device", "reachable", "arch", "python", "runtimes", "TensorRT", "thermal",
            "free disk (stale uploads)", "problems → fixes", title="device check",
        )  # fmt: skip
        for r in results:
            s = r.summary()
            thermal = "—" if s["max_temp_c"] is None else f"{s['max_temp_c']:.0f} °C"
            if s["throttled"]:
                thermal += " THROTTLED"
            t.add_row(
                r.device,
                "yes" if r.reachable else styled("no", "red"),
                fmt(s["arch"]),
                fmt(s["python"]),
                ", ".join(f"{k} {v}" for k, v in s["runtimes"].items()) or "—",
                fmt(s["tensorrt"]),
                thermal,
                _mib(s["disk_free_bytes"])
                + (f" ({_mib(s['stale_parts_bytes'])})" if s["stale_parts_bytes"] else ""),
                "\n".join(f"{p.message} → {p.fix}" if p.fix else p.message for p in r.problems)
                or styled("ok", "green"),
            )
        console.print(t)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@devices_app.command("provision")
def provision_cmd(
    name: NameArg,
    system_site_packages: Annotated[
        bool,
        typer.Option(
            "--system-site-packages", help="Let the venv see system packages (e.g. JetPack's)."
        ),
    ] = False,
    package: Annotated[
        list[str] | None,
        typer.Option("--package", help="pip requirement (repeatable; default onnxruntime numpy)."),
    ] = None,
    pip_arg: Annotated[
        list[str] | None,
        typer.Option("--pip-arg", help="Extra pip argument, e.g. --pip-arg=--find-links=DIR."),
    ] = None,
    base_python: Annotated[
        str | None,
        typer.Option("--base-python", help="Absolute python on the device that creates the venv."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Install the agent's runtime needs in WORKDIR/venv on the device; record its python."""
    from edgeprune.device.provision import PACKAGES, provision_device

    with (
        progress(json_out),
        on_interrupt(f"rerun `edgeprune devices provision {name}`; it is idempotent"),
    ):
        res = provision_device(
            name,
            packages=tuple(package or PACKAGES),
            system_site_packages=system_site_packages,
            pip_args=tuple(pip_arg or ()),
            base_python=base_python,
        )
    if json_out:
        emit_json(res.to_dict())
        return
    console.print(
        kv_table(
            f"provisioned {name}" + (" (already done)" if res.already_provisioned else ""),
            [
                ("venv", res.venv),
                ("python", res.python),
                ("created venv", res.created_venv),
                ("installed", ", ".join(res.installed) or "—"),
                ("versions", ", ".join(f"{k} {v}" for k, v in res.versions.items())),
                ("devices.yaml updated", res.inventory_updated),
                ("seconds", res.seconds),
            ],
        )
    )


@devices_app.command("clean")
def clean_cmd(name: NameArg, json_out: JsonOpt = False) -> None:
    """Delete the device's artifact cache and leftovers (they are re-sent when needed)."""
    from edgeprune.device.manage import clean_device

    with progress(json_out):
        res = clean_device(name)
    if json_out:
        emit_json(res)
        return
    console.print(
        f"cleaned {name}: {_mib(res['freed_bytes'])} freed, "
        f"free disk {_mib(res['disk_free_before'])} → {_mib(res['disk_free_after'])}"
    )


@app.command("deploy")
def deploy_cmd(
    model: Annotated[
        str, typer.Argument(help="ONNX file, checkpoint, zoo name or FILE.py:factory.")
    ],
    device: Annotated[
        str,
        typer.Option("--device", help="Device name or profile (a free device of it is leased)."),
    ],
    runtime: Annotated[str, typer.Option("--runtime", help="ort or trt (TensorRT).")] = "ort",
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, fp16 or int8 (fp16/int8 need trt).")
    ] = "fp32",
    threads: ThreadsOpt = 1,
    runs: RunsOpt = 50,
    duration: DurationOpt = 2.0,
    warmup: WarmupOpt = 10,
    repeats: RepeatsOpt = 3,
    opset: Annotated[
        int | None, typer.Option("--opset", help="Export opset (default: the profile's choice).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="Label stored with the result.")
    ] = None,
    model_kwargs: ModelKwargsOpt = None,
    input_size: Annotated[
        int | None, typer.Option("--input-size", help="Input size for zoo models/factories.")
    ] = None,
    model_code: ModelCodeOpt = None,
    wait: WaitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export for the device's profile, lint, push, (build), check parity, benchmark, store."""
    from edgeprune.pipeline.deploy import DeployConfig, deploy
    from edgeprune.vocab import Precision, Runtime

    cfg = DeployConfig(
        runtime=Runtime.parse(runtime),
        precision=Precision.parse(precision),
        opset=opset,
        label=label,
        bench=protocol_config(threads, runs, duration, warmup, repeats),
    )
    if wait is not None and wait < 0:
        raise typer.BadParameter("must be >= 0 seconds", param_hint="--wait")
    with progress(json_out), on_interrupt(INCOMPLETE_MEASUREMENT):
        res = deploy(
            model,
            device,
            cfg,
            model_kwargs_of(model_kwargs),
            input_size,
            model_code,
            wait_s=wait,
            on_wait=print_waiting,
        )
    warn_slowdowns(res.warnings)
    if json_out:
        emit_json(res.to_dict())
        return
    m = res.measurement
    s, p = m.stats, res.parity
    console.print(
        kv_table(
            f"deployed {Path(model).name} to {res.device} ({res.profile})",
            [
                ("artifact", f"{res.artifact.path} (opset {res.opset})"),
                ("on the device", res.remote_path + ("" if res.sent else "  (cached)")),
                ("runtime / precision", f"{res.runtime} / {res.precision}"),
                (
                    "parity max|Δ|",
                    f"{p['max_abs_diff']:.3g} (tolerance {p['tolerance']:g} × max(1, {p['output_scale']:.3g}))"
                    if "max_abs_diff" in p
                    else f"not checked: {p.get('skipped')}",
                ),
                ("median (ms)", s.median),
                *(
                    [("vs unpruned", f"{v.base_median_ms:.4g} ms base, {v.speedup:.2f}×")]
                    if (v := res.versus_base)
                    else []
                ),
                ("p90 / p99 (ms)", f"{s.p90:.4g} / {s.p99:.4g}"),
                ("CV / runs", f"{s.cv:.2%} / {s.n}"),
                ("valid / unstable", f"{m.valid} / {m.unstable}"),
                ("store id", m.id),
                ("phases (s)", ", ".join(f"{k} {v:.2f}" for k, v in res.phases.items())),
                (
                    "device round trips",
                    "{channels} channel(s), {requests} agent request(s)".format(
                        **res.device_round_trips
                    )
                    + f" ({res.agent_mode} agent)",
                ),
                ("total / overhead (s)", f"{res.total_seconds:.2f} / {res.overhead_seconds:.2f}"),
                *[("lint", f"{f.level}: {f.message}") for f in res.lint],
                *[("note", n) for n in res.notes + m.notes],
            ],
        )
    )
