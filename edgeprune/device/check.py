"""``edgeprune devices check``: ask every device's agent for its facts, in parallel, with deadlines.

A bounded pool of daemon threads (not `ThreadingGroup`: it has no timeout and merges duplicate
hosts) runs the agent's ``info`` verb per device. Each device has its own deadline counted from
when its check starts; a device past it is reported as not answering while the others finish.
Results are keyed by device name, in inventory order, each with problems and how to fix them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgeprune.device.inventory import DeviceSpec, Inventory
from edgeprune.device.session import DeviceSession
from edgeprune.errors import EdgePruneError

CHECK_TIMEOUT_S = 60.0
MAX_WORKERS = 8
LOW_DISK_BYTES = 500 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """Something wrong with a device and the command or change that fixes it."""

    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "fix": self.fix}


@dataclass
class DeviceCheck:
    """One device's check result. ``info`` is the agent's ``info`` reply when it answered."""

    device: str
    host: str | None
    profile: str
    reachable: bool = False
    seconds: float | None = None
    info: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems

    def summary(self) -> dict[str, Any]:
        """The table's columns: arch, Python, runtimes + versions, TensorRT, thermal, free disk."""
        info = self.info or {}
        rts = info.get("runtimes") or {}
        state = info.get("state") or {}
        temps = state.get("temperatures") or {}
        throttle = state.get("throttle") or {}
        trt = (rts.get("tensorrt") or {}).get("version")
        if trt is None and "trtexec" in rts:
            trt = f"trtexec at {rts['trtexec'].get('path')}"
        return {
            "arch": info.get("arch"),
            "python": info.get("python"),
            "runtimes": {
                k: v.get("version")
                for k, v in rts.items()
                if k in ("onnxruntime", "numpy") and "version" in v
            },
            "tensorrt": trt,
            "max_temp_c": max(temps.values()) if temps else None,
            "throttled": bool(throttle.get("active")),
            "governor": (state.get("clocks") or {}).get("governor"),
            "disk_free_bytes": info.get("disk_free_bytes"),
            # Partial uploads a killed host left behind (swept by the next locked session).
            "stale_parts_bytes": (info.get("stale_parts") or {}).get("bytes"),
            "stale_parts_files": (info.get("stale_parts") or {}).get("files"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "host": self.host,
            "profile": self.profile,
            "reachable": self.reachable,
            "ok": self.ok,
            "seconds": self.seconds,
            **self.summary(),
            "problems": [p.to_dict() for p in self.problems],
            "info": self.info,
        }


def problems_for(spec: DeviceSpec, info: dict[str, Any]) -> list[Problem]:
    """What stops ``spec`` from benchmarking, judged from its agent's ``info`` reply."""
    out: list[Problem] = []
    name = spec.name
    rts = info.get("runtimes") or {}
    for pkg in ("onnxruntime", "numpy"):
        if "missing" in (rts.get(pkg) or {"missing": "not reported"}):
            out.append(Problem(f"{pkg} missing", f"run `edgeprune devices provision {name}`"))
    profile = _profile(spec.profile)
    if isinstance(profile, Problem):
        out.append(profile)
    elif profile is not None:
        arch = info.get("arch")
        if profile.arch != "any" and arch and arch != profile.arch:
            out.append(
                Problem(
                    f"profile {profile.name} expects {profile.arch} but the device's Python is {arch}",
                    "fix `profile:` in devices.yaml (or the device's `python:`)",
                )
            )
        if profile.uses_tensorrt and "trtexec" not in rts:
            out.append(
                Problem(
                    "trtexec not found (TensorRT runs need it)",
                    "install TensorRT (JetPack) on the device, or deploy with --runtime ort",
                )
            )
    throttle = (info.get("state") or {}).get("throttle") or {}
    if throttle.get("active"):
        out.append(
            Problem(
                f"the device is throttling now (flags {throttle.get('flags')})",
                "cool it down and check its power supply; throttled runs are stored as invalid",
            )
        )
    free = info.get("disk_free_bytes")
    if isinstance(free, int) and free < LOW_DISK_BYTES:
        out.append(
            Problem(
                f"only {free // (1024 * 1024)} MiB free in the work directory",
                f"free space or run `edgeprune devices clean {name}`",
            )
        )
    return out


def _profile(name: str) -> Any:
    try:
        from edgeprune.profiles import load_profile
    except ImportError:
        return None
    try:
        return load_profile(name)
    except EdgePruneError as e:
        return Problem(
            f"profile {name!r} not found", e.hint or "add it under $EDGEPRUNE_CONFIG/profiles/"
        )


def check_one(spec: DeviceSpec, inventory: Inventory | None = None) -> DeviceCheck:
    """Connect, run the agent's ``info`` and judge the reply. Never raises for device faults."""
    res = DeviceCheck(spec.name, spec.host, spec.profile)
    t0 = time.perf_counter()
    try:
        with DeviceSession(spec, lock=False, inventory=inventory, import_runtimes=True) as dev:
            res.info = dev.info
        res.reachable = True
        res.problems = problems_for(spec, res.info)
    except EdgePruneError as e:
        res.problems = [Problem(e.message, e.hint)]
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def check_devices(
    names: list[str] | None = None,
    timeout: float = CHECK_TIMEOUT_S,
    workers: int = MAX_WORKERS,
    inventory: Inventory | None = None,
) -> list[DeviceCheck]:
    """Check ``names`` (default: every device, ``local`` included) in parallel.

    At most ``workers`` devices are contacted at once; each gets ``timeout`` seconds from the
    moment its check starts. Returns one result per device in the order given.
    """
    inv = inventory or Inventory.load()
    specs = [inv.get(n) for n in dict.fromkeys(names)] if names else inv.all()
    slots = threading.BoundedSemaphore(max(1, workers))
    started: dict[str, float] = {}
    done: dict[str, DeviceCheck] = {}
    lock = threading.Lock()
    finished = threading.Condition(lock)

    def work(spec: DeviceSpec) -> None:
        with slots:
            with lock:
                started[spec.name] = time.monotonic()
            result = check_one(spec, inv)
        with finished:
            done.setdefault(spec.name, result)
            finished.notify_all()

    for spec in specs:
        # Daemon threads: a device that never answers must not keep the process alive.
        threading.Thread(target=work, args=(spec,), name=f"check-{spec.name}", daemon=True).start()
    with finished:
        while len(done) < len(specs):
            now = time.monotonic()
            for spec in specs:
                t0 = started.get(spec.name)
                if spec.name not in done and t0 is not None and now - t0 > timeout:
                    late = DeviceCheck(spec.name, spec.host, spec.profile, seconds=now - t0)
                    late.problems = [
                        Problem(
                            f"no answer within {timeout:g}s",
                            "check the device and the link; raise --timeout for slow boards",
                        )
                    ]
                    done[spec.name] = late
            finished.wait(0.1)
    return [done[s.name] for s in specs]
