"""A device-farm sweep of 200+ benchmark jobs on 8 loopback sshd devices, two of them slowed.

Phases, each checked against the store (markdown on stdout, and in ``--out``):

1. **threads, killed and resumed**: ``edgeprune farm run SWEEP.yaml`` runs as a subprocess and is
   killed with SIGKILL once ``--kill-after`` jobs are stored; a second ``farm run`` completes the
   rest. Checked: every job stored once, none of the jobs finished before the kill measured again,
   no two jobs overlapping on one device (job start on the host .. stored).
2. **ray**: the same sweep under another name (so every job runs again; the variants come from the
   artifact cache) with ``--engine ray`` on a private local Ray instance (loopback only).

Then ``edgeprune report`` on the sweep. Per-job overhead = a job's round trip on the host (sent to
the device worker .. result back) minus the device's own warm-up and timed loops (as the agent
times them), as `run_sweep` reports it. The devices' login shells sleep ``--shell-startup``
seconds (a pyenv/conda ``.bashrc``); ``--agent-mode command`` measures the per-command agent (the
layer before the session agent) on the same farm.

Run: ``python benchmarks/farm_sweep.py [--smoke] [--engines threads,ray] [--out FILE.md]``.
``--smoke`` runs 3 devices and 12 jobs (about a minute) to check that the script works.
Needs ``openssh-server``, root for the cgroup CPU quota of the slowed devices, and for the ray
phase ``pip install 'edgeprune[ray]'``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, markdown_table

from edgeprune.bench import Store

BIN = Path(sys.executable).parent
BENCH = {
    "warmup_runs": 5,
    "warmup_seconds": 0.1,
    "min_runs": 30,
    "min_seconds": 0.2,
    "max_repeats": 1,
}


def train_bases(out: Path, env: dict[str, str], reuse: Path | None) -> list[str]:
    """ResNet-20/32 trained briefly on Fashion-MNIST (1 epoch, 8000 images): real accuracies.
    Copied from ``reuse`` instead when it holds them from an earlier run."""
    paths = []
    for arch in ("resnet20", "resnet32"):
        ckpt = out / f"{arch}-fmnist.pt"
        if ckpt.is_file() or (reuse is not None and (reuse / ckpt.name).is_file()):
            if not ckpt.is_file():
                shutil.copyfile(reuse / ckpt.name, ckpt)
            paths.append(str(ckpt))
            continue
        subprocess.run(
            [str(BIN / "edgeprune"), "train", arch, "--data", "fashion-mnist", "--epochs", "1",
             "--max-train-samples", "8000", "--out", str(ckpt), "--json"],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        paths.append(str(ckpt))
    return paths


def sweep_spec(name: str, smoke: bool, checkpoints: list[str]) -> dict[str, Any]:
    if smoke:
        return {
            "name": name,
            "models": [{"model": "resnet20", "kwargs": {"in_channels": 1}, "input_size": 16}],
            "criteria": ["l1"],
            "targets": [{"ratio": 0.5}],
            "devices": ["loopback"],
            "runtimes": ["ort", {"runtime": "ort", "threads": 2}],
            "repeat": 3,
            "bench": BENCH,
            "farm": {"backoff_s": 0.5},
        }
    return {
        "name": name,
        "models": checkpoints,
        "data": "fashion-mnist",
        "eval_samples": 2000,
        "criteria": ["l1", "fpgm", "random"],
        "targets": [{"ratio": 0.25}, {"ratio": 0.5}, {"flops": 0.5}, {"flops": 0.7}],
        "devices": ["loopback"],
        "runtimes": ["ort", {"runtime": "ort", "threads": 2}],
        "repeat": 4,
        "bench": BENCH,
        "prune": {"round_to": 4},
        "farm": {"backoff_s": 1.0},
    }


def stored(db: Path, prefix: str) -> list[dict[str, Any]]:
    """The sweep's stored jobs: id, job id, device and the job's window (start on the host .. stored)."""
    with Store(db) as st:
        found = st.query(job_prefix=prefix)
    return [
        {
            "id": m.id,
            "job_id": m.job_id,
            "device": m.context["device"],
            "start": m.context["farm"]["job_started_at"],
            "end": m.created_at,
        }
        for m in found
    ]


def overlaps(rows: list[dict[str, Any]]) -> int:
    by: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        by.setdefault(r["device"], []).append((r["start"], r["end"]))
    n = 0
    for spans in by.values():
        spans.sort()
        n += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    return n


def set_agent_mode(inventory: Path, mode: str) -> None:
    from dataclasses import replace

    from edgeprune.device import Inventory

    inv = Inventory.load(inventory)
    for spec in list(inv.devices.values()):
        inv.add(replace(spec, agent_mode=mode), replace_existing=True)
    inv.save()


def farm_run(sweep: Path, engine: str, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    r = subprocess.run([str(BIN / "edgeprune"), "farm", "run", str(sweep), "--engine", engine, "--json"],
                       env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"farm run failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout), wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="3 devices, 12 jobs")
    p.add_argument(
        "--engines",
        default="threads,ray",
        help="phases, in order: threads (killed and resumed), threads-cached, ray",
    )
    p.add_argument("--kill-after", type=int, default=None, help="jobs stored before the kill -9")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temporary home (store, report)")
    p.add_argument(
        "--home",
        type=Path,
        default=None,
        help="reuse the folder a --keep run left (store, variants)",
    )
    p.add_argument(
        "--bases",
        type=Path,
        default=None,
        help="take the trained base checkpoints from this folder",
    )
    p.add_argument("--agent-mode", default="session", choices=["session", "command"])
    p.add_argument(
        "--tag", default="", help="suffix for the sweep names (a new name runs every job again)"
    )
    p.add_argument(
        "--shell-startup", type=float, default=0.25, help="seconds each device's .bashrc sleeps"
    )
    args = p.parse_args(argv)
    out_path = args.out.resolve() if args.out else None  # the script changes directory below
    engines = [e for e in args.engines.split(",") if e]
    tmp = (
        args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="edgeprune-farm-bench-"))
    )
    env = {
        **os.environ,
        "EDGEPRUNE_HOME": str(tmp / "home"),
        "EDGEPRUNE_CONFIG": str(tmp / "config"),
    }
    os.environ.update({k: env[k] for k in ("EDGEPRUNE_HOME", "EDGEPRUNE_CONFIG")})
    db = tmp / "home" / "edgeprune.db"
    from edgeprune._devices.testfarm import Farm, FarmDeviceConfig

    n_dev = 3 if args.smoke else 8
    n_slow = 1 if args.smoke else 2
    devices = [
        FarmDeviceConfig(
            f"dev{i}",
            cpu_quota=0.25 if i >= n_dev - n_slow else None,
            shell_startup_s=args.shell_startup or None,
        )
        for i in range(n_dev)
    ]
    kill_after = args.kill_after if args.kill_after is not None else (4 if args.smoke else 60)
    lines = [
        f"# Farm sweep ({'smoke' if args.smoke else 'full'})",
        "",
        f"Machine: {machine_line()}; load average before: {os.getloadavg()[0]:.1f}.",
        f"Devices: {n_dev} loopback sshd devices in one profile `loopback`; "
        + ", ".join(f"{d.name} at {d.cpu_quota:g} CPU" for d in devices if d.cpu_quota)
        + f" (cgroup v1 quota), the rest at full speed; login shells sleep {args.shell_startup:g} s "
        f"(.bashrc); agent mode `{args.agent_mode}`.",
        f"Command: `python benchmarks/farm_sweep.py {' '.join(sys.argv[1:] if argv is None else argv)}`.",
        "",
    ]
    phases: list[list[Any]] = []
    last_sweep = tmp / "none.yaml"
    checks: list[list[Any]] = []
    with Farm(tmp / "farm", devices) as farm:
        farm.write_inventory(tmp / "config")
        set_agent_mode(tmp / "config" / "devices.yaml", args.agent_mode)
        os.chdir(tmp)
        t0 = time.perf_counter()
        checkpoints = [] if args.smoke else train_bases(tmp, env, args.bases)
        if checkpoints:
            names = ", ".join(Path(c).name for c in checkpoints)
            how = (
                f"reused from {args.home}"
                if args.home
                else f"copied from {args.bases}"
                if args.bases
                else f"trained for this run in {time.perf_counter() - t0:.0f} s"
            )
            lines += [
                f"Base models: {names} (1 epoch, 8000 images), {how}; not in the sweep's times.",
                "",
            ]
        if "threads" in engines:
            name = f"farm-threads{args.tag}"
            sweep = tmp / f"{name}.yaml"
            sweep.write_text(yaml.safe_dump(sweep_spec(name, args.smoke, checkpoints)))
            t0 = time.perf_counter()
            proc = subprocess.Popen([str(BIN / "edgeprune"), "farm", "run", str(sweep), "--json"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            try:
                while proc.poll() is None and (
                    not db.is_file() or len(stored(db, f"{name}/")) < kill_after
                ):
                    time.sleep(0.2)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            killed_wall = time.perf_counter() - t0
            before = {r["job_id"]: r["id"] for r in stored(db, f"{name}/")}
            result, wall = farm_run(sweep, "threads", env)
            after = stored(db, f"{name}/")
            repeated = sum(
                1 for r in after if r["job_id"] in before and before[r["job_id"]] != r["id"]
            )
            ov = result["per_job_overhead_s"]
            phases.append(["threads, until kill -9", len(before), None, killed_wall, None, None])
            phases.append(
                [
                    "threads, resumed",
                    result["done_now"],
                    len(result["failed"]),
                    wall,
                    ov["median"],
                    ov["mean"],
                ]
            )
            checks += [
                ["threads: jobs in the sweep", result["jobs_total"]],
                ["threads: jobs stored before the kill", len(before)],
                [
                    "threads: rows stored / distinct job ids",
                    f"{len(after)} / {len({r['job_id'] for r in after})}",
                ],
                ["threads: finished jobs measured again after resume", repeated],
                ["threads: overlapping jobs on one device", overlaps(after)],
                [
                    "threads: devices out of rotation",
                    ", ".join(result["out_of_rotation"]) or "none",
                ],
                [
                    "threads: jobs per device",
                    ", ".join(f"{d}: {v['jobs']}" for d, v in sorted(result["devices"].items())),
                ],
            ]
            last_sweep = sweep
        # The default engine without pruning beside it, and Ray: every variant from the cache.
        for engine, name, label, key in (
            (
                "threads",
                f"farm-threads-cached{args.tag}",
                "threads, variants cached",
                "threads-cached",
            ),
            ("ray", f"farm-ray{args.tag}", "ray (local instance)", "ray"),
        ):
            if key not in engines:
                continue
            sweep = tmp / f"{name}.yaml"
            sweep.write_text(yaml.safe_dump(sweep_spec(name, args.smoke, checkpoints)))
            result, wall = farm_run(sweep, engine, env)
            after = stored(db, f"{name}/")
            ov = result["per_job_overhead_s"]
            phases.append(
                [label, result["done_now"], len(result["failed"]), wall, ov["median"], ov["mean"]]
            )
            checks += [
                [
                    f"{key}: rows stored / distinct job ids",
                    f"{len(after)} / {len({r['job_id'] for r in after})} of {result['jobs_total']}",
                ],
                [f"{key}: overlapping jobs on one device", overlaps(after)],
                [
                    f"{key}: variants made (the rest came from the artifact cache)",
                    result["preps"]["made_now"],
                ],
                [
                    f"{key}: jobs per device",
                    ", ".join(f"{d}: {v['jobs']}" for d, v in sorted(result["devices"].items())),
                ],
            ]
            last_sweep = sweep
        rep = subprocess.run([str(BIN / "edgeprune"), "report", str(last_sweep), "--out", str(tmp / "report"), "--json"],
                             env=env, capture_output=True, text=True)  # fmt: skip
        report = json.loads(rep.stdout) if rep.returncode == 0 else {"error": rep.stderr[-500:]}
        # How fast each device is: its median latency over the median of all devices for the same
        # (model, variant, runtime) — a slowed device shows a ratio above 1.
        per_dev: dict[str, list[float]] = {}
        rows_all = json.loads(Path(report["json"]).read_text())["rows"] if "json" in report else []
        groups: dict[tuple[Any, ...], list[float]] = {}
        for r in rows_all:
            groups.setdefault((r["model"], r["variant"], r["threads"]), []).append(r["median_ms"])
        for r in rows_all:
            ref = statistics.median(groups[(r["model"], r["variant"], r["threads"])])
            per_dev.setdefault(r["device"], []).append(r["median_ms"] / ref)
        fronts = (
            json.loads(Path(report["json"]).read_text())["pareto_fronts"]
            if "json" in report
            else {}
        )
    lines += [
        "## Phases",
        "",
        markdown_table(
            ["phase", "jobs run", "failed", "wall s", "per-job overhead median s", "mean s"], phases
        ),
        "",
        "## Checks (from the store)",
        "",
        markdown_table(["check", "result"], checks),
        "",
        "## Report",
        "",
        f"`edgeprune report {last_sweep.name}`: {report.get('rows')} rows, devices {report.get('devices')}, "
        f"runtimes {report.get('runtimes')}; html + csv + json.",
        "",
        markdown_table(
            [
                "device",
                "jobs",
                "latency / all devices' median for the same variant (median)",
                "Pareto-front points",
            ],
            [
                [d, len(v), statistics.median(v), len(fronts.get(d, []))]
                for d, v in sorted(per_dev.items())
            ],
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.keep:
        print(f"kept: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    if out_path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
