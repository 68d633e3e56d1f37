"""Farm sweeps on real loopback sshd devices: every job once, one job per device at a time,
profiles leased, a dead device taken out of rotation, resume after ``kill -9``, and the report."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from edgeprune._devices.testfarm import descendants
from sshfarm import FarmDeviceConfig, alive, needs_sshd

from edgeprune import config
from edgeprune.bench import Store
from edgeprune.farm import load_sweep, plan_sweep, run_sweep
from edgeprune.farm.run import farm_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Short benchmarks: these tests check scheduling and bookkeeping, not latency.
BENCH = {
    "warmup_runs": 2,
    "warmup_seconds": 0.02,
    "min_runs": 10,
    "min_seconds": 0.05,
    "max_repeats": 1,
}
MODEL = {"model": "resnet20", "kwargs": {"in_channels": 1}, "input_size": 16}


def write_sweep(path: Path, **over: Any) -> Path:
    data = {"name": "t", "models": [MODEL], "criteria": ["l1"], "targets": [], "devices": ["loopback"],
            "bench": BENCH, "farm": {"backoff_s": 0.2}, **over}  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    return path


def rows(job_prefix: str) -> list[dict[str, Any]]:
    """Stored farm rows: job id, device, the job's window on the host (start .. stored), entry."""
    with Store() as st:
        found = st.query(job_prefix=job_prefix)
    out = []
    for m in found:
        farm = m.context["farm"]
        out.append({"id": m.id, "job_id": m.job_id, "device": m.context["device"],
                    "start": farm["job_started_at"], "end": m.created_at, "entry": farm["entry"],
                    "engine": farm["engine"]})  # fmt: skip
    return out


def assert_no_overlap(stored: list[dict[str, Any]]) -> None:
    by_dev: dict[str, list[tuple[float, float]]] = {}
    for r in stored:
        by_dev.setdefault(r["device"], []).append((r["start"], r["end"]))
    for dev, spans in by_dev.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"two jobs overlapped on {dev}"


@needs_sshd
def test_sweep_runs_every_job_once_per_profile_without_overlap(
    farm_factory, _isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    farm_factory(
        FarmDeviceConfig("dev0"),
        FarmDeviceConfig("dev1"),
        FarmDeviceConfig("dev2", profile="loopback-slow"),
    )
    sweep = write_sweep(
        _isolated / "sweep.yaml",
        targets=[{"ratio": 0.5}],
        devices=["loopback", "loopback-slow"],
        runtimes=["ort", {"runtime": "ort", "threads": 2}],
        repeat=2,
    )
    spec = load_sweep(sweep)
    plan = plan_sweep(spec)
    assert len(plan.jobs) == 2 * 2 * 2 * 2  # variants x entries x runtimes x repeat
    result = run_sweep(spec)
    assert result.failed == [] and result.out_of_rotation == {}
    assert result.jobs_done == result.done_now == len(plan.jobs)
    assert result.preps["made_now"] == 2
    stored = rows("t/")
    assert sorted(r["job_id"] for r in stored) == sorted(j.job_id for j in plan.jobs)
    assert_no_overlap(stored)
    # Each device worker kept one agent session (one agent process) across all its jobs.
    with Store() as st:
        agents: dict[str, set[str]] = {}
        for m in st.query(job_prefix="t/"):
            agents.setdefault(m.context["device"], set()).add(m.context["command"])
    assert all(len(a) == 1 and "session" in next(iter(a)) for a in agents.values()), agents
    # Profile leasing: loopback jobs shared by dev0 and dev1, the slow profile only on dev2.
    assert {r["device"] for r in stored if r["entry"] == "loopback"} == {"dev0", "dev1"}
    assert {r["device"] for r in stored if r["entry"] == "loopback-slow"} == {"dev2"}
    ov = result.per_job_overhead_s
    assert ov.n == len(plan.jobs) and ov.median is not None and 0 < ov.median < 30

    again = run_sweep(spec)  # resume of a finished sweep: nothing repeated
    assert again.done_now == 0 and again.jobs_done == len(plan.jobs)
    assert len(rows("t/")) == len(plan.jobs)

    from edgeprune.cli import main

    assert main(["report", str(sweep), "--out", "rep", "--json"]) == 0
    table = list(csv.DictReader((_isolated / "rep" / "report.csv").open()))
    assert len(table) == len(plan.jobs)
    pruned = [r for r in table if r["variant"] != "base"]
    assert pruned and all(r["speedup"] for r in pruned)
    assert all(0.4 < float(r["flops_reduction"]) < 0.9 for r in pruned)
    html = (_isolated / "rep" / "report.html").read_text()
    assert (
        "median latency per device and runtime" in html
        and "FLOPs reduction vs realised speed-up" in html
    )
    capsys.readouterr()
    assert main(["farm", "status", str(sweep), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "complete" and status["jobs_done"] == len(plan.jobs)
    assert sum(g["done"] for g in status["groups"]) == len(plan.jobs) and len(status["groups"]) == 4


@needs_sshd
def test_dead_and_dying_devices_leave_the_rotation(farm_factory, _isolated: Path) -> None:
    farm = farm_factory(
        FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"), FarmDeviceConfig("dev2")
    )
    farm.kill("dev2")  # down before the sweep: fails its health check
    # Enough jobs that dev1 is still taking them when it dies (a job takes well under a second
    # on a session agent, and the status that triggers the kill comes every 0.5 s).
    repeat = 20
    sweep = write_sweep(_isolated / "sweep.yaml", devices=["loopback", "dev2"], repeat=repeat)
    killed: list[str] = []

    def on_update(snap: dict[str, Any]) -> None:
        # dev1 dies mid-sweep once it has finished a job: its next job fails and is retried.
        if not killed and snap["devices"]["dev1"]["jobs"] >= 1:
            killed.append("dev1")
            farm.kill("dev1")

    result = run_sweep(load_sweep(sweep), on_update=on_update)
    assert killed == ["dev1"]
    assert set(result.out_of_rotation) == {"dev1", "dev2"}
    # dev2's own jobs cannot run anywhere else; the profile's jobs all finished on dev0/dev1.
    assert {f.entry for f in result.failed} == {"dev2"}
    assert len(result.failed) == repeat and "no healthy device for dev2" in result.failed[0].message
    stored = rows("t/")
    assert len(stored) == repeat and {r["entry"] for r in stored} == {"loopback"}
    assert {r["device"] for r in stored} <= {"dev0", "dev1"}
    status = json.loads((farm_dir("t") / "status.json").read_text())
    assert status["state"] == "finished" and status["devices"]["dev2"]["state"] == "out"


@needs_sshd
def test_kill_9_mid_sweep_then_resume_repeats_nothing(farm_factory, _isolated: Path) -> None:
    farm_factory(FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"))
    sweep = write_sweep(_isolated / "sweep.yaml", repeat=12)
    total = len(plan_sweep(load_sweep(sweep)).jobs)
    cmd = [str(Path(sys.executable).with_name("edgeprune")), "farm", "run", str(sweep), "--json"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if config.store_path().is_file() and len(rows("t/")) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, (
            f"the sweep ended before it could be killed: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}"
        )
        helpers = descendants(proc.pid)  # the variant pool's worker (and its resource tracker)
        assert helpers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # Only the host process was killed: its helpers notice and exit on their own.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in helpers):
            time.sleep(0.1)
        assert not any(alive(p) for p in helpers)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {r["job_id"]: r["id"] for r in rows("t/")}
    assert 4 <= len(before) < total
    status = json.loads((farm_dir("t") / "status.json").read_text())
    assert status["state"] == "running"  # it never got to write "finished"

    from edgeprune.farm import sweep_status

    assert sweep_status(load_sweep(sweep))["state"] == "stopped"
    result = run_sweep(load_sweep(sweep))  # the run lock died with the process
    assert result.failed == []
    assert result.done_before == len(before) and result.done_now == total - len(before)
    after = rows("t/")
    assert len(after) == total and len({r["job_id"] for r in after}) == total
    # Finished jobs kept their original rows: nothing was measured twice.
    assert all({r["job_id"]: r["id"] for r in after}[j] == i for j, i in before.items())
    assert_no_overlap(after)


def test_report_on_a_run_directory_and_on_the_whole_store(_isolated: Path) -> None:
    from sshfarm import FAST

    from edgeprune.farm.report import write_report
    from edgeprune.pipeline.flows import PruneRunConfig, prune_run
    from edgeprune.prune import PruneConfig, Target

    cfg = PruneRunConfig(
        prune=PruneConfig(target=Target("ratio", 0.5)), devices=("local",), bench=FAST
    )
    prune_run(
        "resnet20", None, cfg, _isolated / "run", model_kwargs={"in_channels": 1}, input_size=16
    )
    out = write_report(_isolated / "run", _isolated / "rep-run")
    assert out["source"] == "run" and out["rows"] == 2 and out["devices"] == ["local"]
    data = json.loads(Path(out["json"]).read_text())
    pruned = next(r for r in data["rows"] if r["variant"] != "base")
    base = next(r for r in data["rows"] if r["variant"] == "base")
    assert pruned["speedup"] == pytest.approx(base["median_ms"] / pruned["median_ms"])
    assert 0.4 < pruned["flops_reduction"] < 0.9
    whole = write_report(None, _isolated / "rep-store")
    assert whole["source"] == "store" and whole["rows"] == 2
    with pytest.raises(Exception, match="not a run directory"):
        write_report(_isolated, _isolated / "nope")
