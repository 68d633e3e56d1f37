"""Can a CFS CPU quota stand in for a slower board? Latency of one ONNX Runtime loop under quotas.

The slowed loopback device of the test farm (``devices/testfarm.py``) limits its processes with a
cgroup v1 ``cpu`` quota. A real slow board runs every inference slower; a quota instead lets the
process run at full speed until the kernel notices that the quota is spent, at a scheduler tick,
and then stops it until the next period. For each model and CFS period this script runs the same
timing loop (ONNX Runtime CPU, 1 thread, random-init zoo model, fixed input) with no quota and
inside a fresh cgroup whose quota is ``--quota`` × period, and reports median, mean, p90 and CV.
When the quota slows inferences uniformly, the median grows by ~1/quota and the CV stays small;
when it does not, the distribution is bimodal (CV near or above 1). Also reports the kernel's tick
(``CONFIG_HZ``, when readable) and ``sched_cfs_bandwidth_slice_us``. Needs root and a writable
cgroup v1 cpu hierarchy; without one it writes only the no-quota rows and says so.

    python benchmarks/cpu_quota.py --out benchmarks/results/cpu_quota.md
    python benchmarks/cpu_quota.py --smoke
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ORT_LOOP, machine_line, markdown_table


def kernel_hz() -> str:
    """CONFIG_HZ of the running kernel, from /boot/config-* or /proc/config.gz; '?' if unknown."""
    release = platform.release()
    for path in (Path(f"/boot/config-{release}"), Path("/proc/config.gz")):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode(errors="replace")
        for line in text.splitlines():
            if line.startswith("CONFIG_HZ="):
                return line.split("=", 1)[1]
    return "?"


def run_loop(model: Path, warmup: float, seconds: float, cgroup: Path | None) -> list[float]:
    def enter() -> None:  # in the child, before exec: join the cgroup
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    out = subprocess.run(
        # no run-count minimums: warm-up and timed loop by time alone, input seed 0
        [sys.executable, "-c", ORT_LOOP, str(model), "0", str(warmup), "1", str(seconds), "0"],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=enter,
    )
    return [float(v) for v in out.stdout.split()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="resnet20,resnet56", help="comma list of zoo models")
    p.add_argument("--size", type=int, default=28, help="input size (1 channel)")
    p.add_argument("--quota", type=float, default=0.5, help="CPU quota, a fraction of one CPU")
    p.add_argument(
        "--periods-ms",
        default="10,4,2",
        help="CFS periods to try (ms); each quota (period x --quota) must be at least 1 ms",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="timed loop per row")
    p.add_argument("--out", type=Path, default=None, help="also write the tables here")
    p.add_argument("--smoke", action="store_true", help="one tiny model, short loops (seconds)")
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.size, args.periods_ms, args.seconds = "resnet20", 16, "10", 0.3

    from edgeprune._devices.testfarm import CGROUP_CPU, cgroups_available

    from edgeprune.checkpoint import resolve_model
    from edgeprune.export import onnx_from_torch

    can_quota = cgroups_available()
    periods = [float(v) for v in args.periods_ms.split(",") if v]
    if not 0 < args.quota <= 1 or any(pm * args.quota < 1 for pm in periods):
        p.error("each quota (period x --quota) must be at least 1 ms, the kernel's minimum")
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            b = resolve_model(name, {"in_channels": 1}, input_size=args.size)
            model = Path(tmp) / f"{name}.onnx"
            onnx_from_torch(b.model, b.input_shape, model, opset=18)
            settings: list[float | None] = [None, *(periods if can_quota else [])]
            for period in settings:
                group = None
                if period is not None:
                    group = CGROUP_CPU / f"edgeprune-quota-{os.getpid()}"
                    group.mkdir()
                    us = round(period * 1000)
                    (group / "cpu.cfs_period_us").write_text(str(us))
                    (group / "cpu.cfs_quota_us").write_text(str(round(us * args.quota)))
                try:
                    n, med, mean, p90, cv = run_loop(
                        model, min(1.0, args.seconds), args.seconds, group
                    )
                finally:
                    if group is not None:
                        group.rmdir()
                quota = "none" if period is None else f"{args.quota:g} of {period:g} ms"
                rows.append([name, quota, int(n), med, mean, p90, round(cv, 3)])
                print(f"[{name}] quota {quota}: median {med:.3f} ms, CV {cv:.2f}", flush=True)
    slice_path = Path("/proc/sys/kernel/sched_cfs_bandwidth_slice_us")
    slice_us = slice_path.read_text().strip() if slice_path.is_file() else "?"
    lines = [
        "# CPU quota vs a slower board: one ONNX Runtime loop under CFS quotas",
        "",
        f"Models: random-init zoo models, 1×{args.size}×{args.size}, ONNX opset 18, ONNX Runtime "
        f"CPU, 1 thread, {args.seconds:g} s timed loop after a warm-up. Kernel {platform.release()}: "
        f"CONFIG_HZ={kernel_hz()}, sched_cfs_bandwidth_slice_us={slice_us}.",
        machine_line(),
        "",
        f"Command: `python benchmarks/cpu_quota.py{' --smoke' if args.smoke else ''}`",
        "",
    ]
    if not can_quota:
        lines += ["No writable cgroup v1 cpu hierarchy (needs root): only the no-quota rows.", ""]
    lines.append(
        markdown_table(["model", "quota", "n", "median ms", "mean ms", "p90 ms", "CV"], rows)
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
