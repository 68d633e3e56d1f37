"""What the SSH device layer costs, measured on a loopback sshd farm (real sshd, real agent).

The device ``dev0`` has a slow login shell: its ``.bashrc`` sleeps ``--shell-startup`` seconds
(250 ms: what a pyenv/conda ``.bashrc`` costs every SSH command on a real board). Tables
(markdown on stdout, and in ``--out``):

1. **Deploy overhead**, per agent mode (``command``: one agent process per request, the layer
   before issue 11; ``session``: one agent per session over one exec channel):
   `edgeprune.pipeline.deploy.deploy` of one ONNX file, split into phases; *overhead* = total wall
   time − the device's own warm-up and timed loops. *Cold*: the device's work directory is empty
   (agent and model are uploaded); *cached*: both are already there. Also the cost of one SSH
   command and of one session request.
2. **Agent vs bare loop**: the agent's median (through SSH, by the protocol) against a bare ONNX
   Runtime timing loop in a fresh Python process on the device (same user, environment and
   cgroup) with the same session options, thread count, input and warm-up, in alternating
   order for ``--rounds`` rounds; the same loop in a host process is listed for reference.
3. **Full speed vs slowed**: the same model by the protocol on a full-speed device and on one
   limited to ``--quota`` of a CPU by a cgroup v1 quota (needs root).

Run: ``python benchmarks/device_overhead.py [--smoke] [--out FILE.md]``. ``--smoke`` uses a tiny
model and short runs (a minute) to check that the script works; its numbers mean little.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ORT_LOOP


def table(headers: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def export_model(name: str, in_channels: int, size: int, out: Path) -> Path:
    from edgeprune.checkpoint import resolve_model
    from edgeprune.export import onnx_from_torch

    path = out / f"{name}-{in_channels}x{size}x{size}.onnx"
    if not path.is_file():
        b = resolve_model(name, {"in_channels": in_channels}, input_size=size)
        onnx_from_torch(b.model, b.input_shape, path, opset=18)
    return path


def set_mode(name: str, mode: str) -> None:
    from edgeprune.device import Inventory

    inv = Inventory.load()
    inv.add(replace(inv.get(name), agent_mode=mode), replace_existing=True)
    inv.save()


def link_costs(reps: int, blob: Path) -> dict[str, float]:
    """Medians (seconds) on dev0: one SSH command (an exec channel, the login shell), one request
    to a running session agent, starting a session agent, importing onnxruntime there, and
    uploading ``blob`` as the first and as the second transfer of a fresh connection, over SFTP
    and over the agent's channel."""
    from edgeprune.device import Inventory
    from edgeprune.device.agent import SessionAgent
    from edgeprune.device.ssh import SSHTransport
    from edgeprune.export import sha256_file

    inv = Inventory.load()
    spec = inv.get("dev0")
    sha = sha256_file(blob)
    runs: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def clock(key: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        runs.setdefault(key, []).append(time.perf_counter() - t0)

    with SSHTransport(spec, inv) as t:
        t.run(["true"])
        for _ in range(reps):
            with clock("one SSH command (exec channel + login shell)"):
                t.run(["true"])
    code = (
        "import time; t = time.perf_counter(); import onnxruntime; print(time.perf_counter() - t)"
    )
    for i in range(3):
        with SSHTransport(spec, inv) as t:
            t.sftp_available()
            for n in ("first", "second"):
                with clock(f"SFTP upload, {n} transfer on a fresh connection"):
                    t.put(blob, f"{spec.workdir}/sftp-{i}-{n}")
        with SSHTransport(spec, inv) as t:
            agent = SessionAgent(t, spec.python, spec.workdir, spec.name)
            with clock("session agent start (SSH channel, login shell, python, bootstrap)"):
                agent.start()
            for n in ("first", "second"):
                with clock(f"agent-channel upload, {n} transfer on a fresh connection"):
                    agent.upload(blob, agent.workdir, f"{n}-{i}", sha)
            for _ in range(reps):
                with clock("one session request (exec true)"):
                    agent.call("exec", 30, argv=["true"], limit_s=10)
            r = agent.call("exec", 120, argv=[spec.python, "-c", code], limit_s=100)
            runs.setdefault("import onnxruntime on the device", []).append(float(r["stdout"]))
            agent.close()
    return {k: statistics.median(v) for k, v in runs.items()}


def deploy_overhead(model: Path, bench, reps: int, workdir: Path, mode: str) -> list[dict]:
    from edgeprune.pipeline.deploy import DeployConfig, deploy

    set_mode("dev0", mode)
    cfg = DeployConfig(bench=bench)
    rows = []
    for _ in range(reps):
        for item in workdir.iterdir():  # cold: an empty work directory on the device
            subprocess.run(["rm", "-rf", "--", str(item)], check=True)
        for kind in ("cold", "cached"):
            res = deploy(str(model), "dev0", cfg)
            rows.append({"kind": kind, "mode": mode, **res.to_dict()})
    return rows


def agent_vs_bare(model: Path, bench, rounds: int) -> list[tuple[float, float, float]]:
    """Per round: (bare loop on the device, agent, bare loop in a host process), medians in ms.

    The bare loop on the device is a fresh Python process started through the session agent's
    ``exec`` request: the device's user, login environment and cgroup, as the agent's benchmark
    has them. The host-process loop (a child of this script) is listed for reference: it runs
    outside the device's environment, so it differs by more than the agent does. The order of
    the two device-side runs alternates between rounds, so drift of the host does not favour one.
    """
    from edgeprune.bench import Store
    from edgeprune.device import Inventory
    from edgeprune.device.agent import SessionAgent
    from edgeprune.device.ssh import SSHTransport
    from edgeprune.pipeline.flows import lease_and_measure

    inv = Inventory.load()
    spec = inv.get("dev0")
    argv = [str(model), str(bench.warmup_runs), str(bench.warmup_seconds), str(bench.min_runs)]
    argv += [str(bench.min_seconds), str(bench.seed)]

    def on_device() -> float:
        with SSHTransport(spec, inv) as t:
            agent = SessionAgent(t, spec.python, spec.workdir, spec.name)
            agent.start()
            try:
                r = agent.call("exec", 120, argv=[spec.python, "-c", ORT_LOOP, *argv], limit_s=100)
            finally:
                agent.close()
        return float(r["stdout"].split()[1])  # the median

    def by_agent() -> float:
        with Store() as store:
            return lease_and_measure("dev0", model, bench, store).stats.median

    rows = []
    for i in range(rounds):
        if i % 2 == 0:
            bare, agent = on_device(), by_agent()
        else:
            agent, bare = by_agent(), on_device()
        out = subprocess.run(
            [sys.executable, "-c", ORT_LOOP, *argv], capture_output=True, text=True, check=True
        )
        rows.append((bare, agent, float(out.stdout.split()[1])))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny model, short runs")
    p.add_argument("--model", default=None, help="zoo model (default resnet56, smoke resnet20)")
    p.add_argument("--size", type=int, default=None, help="input size (default 32, smoke 16)")
    p.add_argument("--reps", type=int, default=None, help="cold/warm deploy pairs (default 3)")
    p.add_argument("--rounds", type=int, default=None, help="agent/bare rounds (default 8)")
    p.add_argument("--quota", type=float, default=0.25, help="CPU quota of the slowed device")
    p.add_argument(
        "--shell-startup", type=float, default=0.25, help="seconds dev0's .bashrc sleeps"
    )
    p.add_argument("--modes", default="command,session", help="agent modes to compare")
    p.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="edgeprune-overhead-"))
    os.environ["EDGEPRUNE_HOME"] = str(tmp / "home")
    os.environ["EDGEPRUNE_CONFIG"] = str(tmp / "config")
    os.chdir(tmp)
    from edgeprune._devices.testfarm import Farm, FarmDeviceConfig, cgroups_available

    from edgeprune.bench import BenchConfig, Store
    from edgeprune.pipeline.flows import lease_and_measure

    model_name = args.model or ("resnet20" if args.smoke else "resnet56")
    size = args.size or (16 if args.smoke else 32)
    channels = 1 if args.smoke else 3
    reps = args.reps or (1 if args.smoke else 3)
    rounds = args.rounds or (2 if args.smoke else 8)
    bench = BenchConfig(max_repeats=1)  # the protocol's defaults: >= 10 runs + 1 s, >= 50 + 2 s
    if args.smoke:
        bench = replace(bench, warmup_seconds=0.1, min_seconds=0.2)
    model = export_model(model_name, channels, size, tmp)
    devices = [FarmDeviceConfig("dev0", shell_startup_s=args.shell_startup)]
    if cgroups_available():
        devices.append(FarmDeviceConfig("slow", cpu_quota=args.quota))
    lines = [
        f"Model: {model_name} ({channels}x{size}x{size}, ONNX opset 18, ONNX Runtime CPU, 1 thread); "
        f"benchmark: warm-up >= {bench.warmup_runs} runs and {bench.warmup_seconds:g} s, "
        f"then >= {bench.min_runs} runs and {bench.min_seconds:g} s. Device dev0: loopback "
        f"sshd whose login shell sleeps {args.shell_startup:g} s in .bashrc. "
        f"Command: `python benchmarks/device_overhead.py{' --smoke' if args.smoke else ''}`.",
        f"Load average at the start: {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
    ]
    with Farm(tmp / "farm", devices) as farm:
        farm.write_inventory(tmp / "config")
        costs = link_costs(10, model)
        rows = []
        for mode in args.modes.split(","):
            rows += deploy_overhead(model, bench, reps, farm.devices["dev0"].workdir, mode)
        phase_names = sorted(
            {k for r in rows for k in r["phases"]}, key=list(rows[0]["phases"]).index
        )
        out_rows = []
        for mode in args.modes.split(","):
            for kind in ("cold", "cached"):
                rs = [r for r in rows if r["kind"] == kind and r["mode"] == mode]
                med = {
                    k: statistics.median(r["phases"].get(k, 0.0) for r in rs) for k in phase_names
                }
                trips = [r["device_round_trips"] for r in rs]
                out_rows.append(
                    [
                        mode,
                        kind,
                        len(rs),
                        statistics.median(r["total_seconds"] for r in rs),
                        statistics.median(r["phases"]["bench"] for r in rs),
                        statistics.median(r["overhead_seconds"] for r in rs),
                        ", ".join(f"{k} {v:.2f}" for k, v in med.items() if k != "bench"),
                        "no" if all(not r["sent"] for r in rs) else "yes",
                        f"{statistics.median(t['channels'] for t in trips):g} / "
                        f"{statistics.median(t['requests'] for t in trips):g}",
                    ]
                )
        lines += [
            "### Deploy overhead (seconds, medians)",
            "",
            table(
                [
                    "agent",
                    "run",
                    "n",
                    "total",
                    "benchmark",
                    "overhead",
                    "overhead by phase",
                    "model sent",
                    "exec channels / agent requests",
                ],
                out_rows,
            ),
            "",
            "### Link costs on dev0 (seconds, medians)",
            "",
            table(["what", "seconds"], [[k, v] for k, v in costs.items()]),
            "",
            f"Uploads: the model file ({model.stat().st_size / 1e6:.1f} MB), on three fresh connections.",
            "",
        ]
        set_mode("dev0", "session")
        triples = agent_vs_bare(model, bench, rounds)
        bare = statistics.median(b for b, _, _ in triples)
        agent = statistics.median(a for _, a, _ in triples)
        host = statistics.median(h for _, _, h in triples)
        # Rounds drift together (the host's speed changes between them by more than the agent
        # adds): the paired figure compares the agent with the bare loop of its own round.
        paired = statistics.median(a / b - 1 for b, a, _ in triples)
        lines += [
            "### Agent vs bare ONNX Runtime loop (median latency, ms)",
            "",
            "The bare loop runs on the device in a fresh Python process (started by the agent's "
            "`exec` request: the device user's environment and cgroup); the order alternates "
            "between rounds. The host-process loop runs the same code as a child of this script, "
            "outside the device's environment, for reference.",
            "",
            table(
                [
                    "rounds",
                    "bare loop on the device",
                    "agent (SSH, protocol)",
                    "difference of medians",
                    "median paired difference",
                    "bare loop, host process",
                    "per round (bare/agent/host)",
                ],
                [
                    [
                        rounds,
                        bare,
                        agent,
                        f"{(agent - bare) * 1000:+.0f} µs ({(agent / bare - 1):+.1%})",
                        f"{paired:+.1%}",
                        host,
                        ", ".join(f"{b:.4g}/{a:.4g}/{h:.4g}" for b, a, h in triples),
                    ]
                ],
            ),
            "",
        ]
        if "slow" in farm.devices:
            speed_rows = []
            full = replace(bench, max_repeats=3)
            with Store() as store:
                for name in ("dev0", "slow"):
                    m = lease_and_measure(name, model, full, store)
                    s = m.stats
                    quota = m.context.get("cpu_quota")
                    speed_rows.append(
                        [name, quota if quota else "none", s.median, s.p90, s.mean, f"{s.cv:.1%}", s.n,
                         "yes" if m.unstable else "no"]
                    )  # fmt: skip
            lines += [
                "### Full-speed vs slowed loopback device (ms)",
                "",
                table(
                    ["device", "CPU quota", "median", "p90", "mean", "CV", "n", "unstable"],
                    speed_rows,
                ),
                "",
            ]
        else:
            lines += ["(no writable cgroup v1 cpu hierarchy: the slowed device was skipped)", ""]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines.append(f"Host: {os.cpu_count()} CPUs, load average at the end {load}.")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    subprocess.run(["rm", "-rf", "--", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
