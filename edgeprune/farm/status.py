"""`sweep_status`: how far a sweep is, from the store (the truth) and the run's status file."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from edgeprune.bench import Store
from edgeprune.farm.plan import plan_sweep
from edgeprune.farm.run import done_job_ids, farm_dir
from edgeprune.farm.sweep import SweepSpec


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_status(spec: SweepSpec) -> dict[str, Any]:
    """A snapshot: jobs done/total overall and per (entry, runtime), whether a run is active, its
    devices (state, jobs, current job, problems) and failures, from ``status.json``.

    ``state`` is ``running`` only while the process that wrote the status file is alive on this
    host; a run killed without cleaning up shows ``stopped``.
    """
    plan = plan_sweep(spec)
    with Store() as store:
        done = done_job_ids(store, plan)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for j in plan.jobs:
        g = groups.setdefault(
            (j.entry, j.runtime.label),
            {"entry": j.entry, "runtime": j.runtime.label, "done": 0, "total": 0},
        )
        g["total"] += 1
        g["done"] += j.job_id in done
    path = farm_dir(spec.name) / "status.json"
    live: dict[str, Any] = {}
    if path.is_file():
        try:
            live = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            live = {}
    state = "never run" if not live else str(live.get("state"))
    if state == "running" and (
        live.get("host") != socket.gethostname() or not _alive(int(live.get("pid", 0)))
    ):
        state = "stopped"
    total = len(plan.jobs)
    return {
        "sweep": spec.name,
        "state": state if len(done) < total else "complete",
        "jobs_total": total,
        "jobs_done": len(done),
        "preps_total": len(plan.preps),
        "groups": list(groups.values()),
        "engine": live.get("engine"),
        "pid": live.get("pid"),
        "updated_ago_s": time.time() - float(live["updated_at"])
        if live.get("updated_at")
        else None,
        "devices": live.get("devices", {})
        if state == "running"
        else {n: {**d, "current": None} for n, d in (live.get("devices") or {}).items()},
        "failed": live.get("failed", []),
    }
