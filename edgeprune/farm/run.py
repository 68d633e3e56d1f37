"""`run_sweep`: plan a sweep, make its variants, and measure every job not yet in the store.

Scheduling (the same for every engine):

* Jobs queue per device entry (a device name, or a profile). A free, healthy device takes the
  next due job from its own name's queue, else from its profile's; at most ``max_parallel``
  devices work at once and each runs one job at a time (it never gets a second call before the
  first comes back, and its session holds the host lock and the device-side lock).
* Every device is health-checked when the sweep starts (connect, agent, facts judged like
  `devices check`). A device that fails is taken out of rotation and reported; its jobs go to
  the other devices of their profile.
* A job that fails for a device or link fault is retried (``retries`` times, backoff
  ``backoff_s`` · 2^(attempt−1)) on any device of its entry, and the device is checked again.
  A job that cannot work (a user error) or hits a bug fails at once and is reported.
* Variants are made once: base and ratio/FLOPs/params variants on the host (``prep_workers``),
  latency budgets as a search on a device of their entry. Their jobs are queued when they exist.
* Results are stored by this process as they arrive. The store's unique ``job_id`` is the
  source of truth: a rerun skips every stored job, so a killed run loses only the jobs in flight.

Progress goes to ``$EDGEPRUNE_HOME/farm/<sweep>/status.json`` (read by `sweep_status`).
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune import config
from edgeprune._files import write_json
from edgeprune.bench import Measurement, Store
from edgeprune.device.check import Problem
from edgeprune.device.inventory import DeviceSpec, Inventory
from edgeprune.device.lock import PidFlock
from edgeprune.errors import UsageError
from edgeprune.farm.engines import Engine, ThreadEngine
from edgeprune.farm.plan import BenchJob, Plan, plan_sweep
from edgeprune.farm.prepare import Variant, clean_scratch, load_variant, save_variant
from edgeprune.farm.ray_engine import RayEngine
from edgeprune.farm.sweep import SweepSpec
from edgeprune.farm.tasks import (
    Artifact,
    BenchResult,
    BenchTask,
    Failure,
    HealthResult,
    Result,
    RunResult,
    SearchTask,
    Task,
    VariantResult,
)

POLL_S = 0.2
STATUS_EVERY_S = 0.5


def make_engine(name: str, prep_workers: int = 1, ray_address: str | None = None) -> Engine:
    """``threads`` (default) or ``ray`` (needs ``pip install 'edgeprune[ray]'``).

    For ``ray`` without ``ray_address``, ``$RAY_ADDRESS`` names the cluster as it does for Ray's
    own tools; when neither is set a private local instance is started.
    """
    if name == "threads":
        if ray_address is not None:
            raise UsageError("--ray-address needs --engine ray")
        return ThreadEngine(prep_workers)
    if name == "ray":
        return RayEngine(ray_address or os.environ.get("RAY_ADDRESS") or None)
    raise UsageError(f"unknown engine {name!r}", hint="use threads or ray")


def farm_dir(sweep: str) -> Path:
    return config.home_dir() / "farm" / sweep


def done_job_ids(store: Store, plan: Plan) -> set[str]:
    """Job ids of ``plan`` already in the store."""
    return store.job_ids(plan.prefix)


class SweepLock(PidFlock):
    """One `farm run` per sweep on this host: a flock the kernel drops if the process dies."""

    def __init__(self, sweep: str) -> None:
        super().__init__(farm_dir(sweep) / "run.lock")

    def __enter__(self) -> SweepLock:
        holder = self.try_acquire()
        if holder is not None:
            raise UsageError(
                f"sweep {self.path.parent.name} is already running (process {holder or 'unknown'})",
                hint="watch it with `edgeprune farm status SWEEP.yaml`, or wait for it to finish",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class _Item:
    """A queued unit of device work: a benchmark job or a latency search (``prep`` set)."""

    job: BenchJob | None = None
    prep: str | None = None
    attempts: int = 0
    not_before: float = 0.0

    @property
    def key(self) -> str:
        return self.job.job_id if self.job is not None else f"search:{self.prep}"


# Completion tags: what a call the scheduler submitted was for.


@dataclass(frozen=True)
class HealthTag:
    """A health check of ``device``."""

    device: str


@dataclass(frozen=True)
class PrepTag:
    """Making variant ``prep_id`` on the host."""

    prep_id: str


@dataclass(frozen=True)
class RunTag:
    """``item`` (taken from ``entry``'s queue) running on ``device``."""

    device: str
    entry: str
    item: _Item


@dataclass
class _Device:
    spec: DeviceSpec
    serves: list[str]
    state: str = "checking"  # checking | idle | busy | out
    jobs: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, Any] | None = None
    recheck_at: float | None = None
    busy_checks: int = 0


class _Scheduler:
    def __init__(
        self,
        plan: Plan,
        engine: Engine,
        store: Store,
        inv: Inventory,
        max_parallel: int | None,
        on_update: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.plan, self.spec, self.engine, self.store = plan, plan.spec, engine, store
        self.opts = plan.spec.farm
        self.on_update = on_update
        self.t0 = time.time()
        done = done_job_ids(store, plan)
        self.todo = [j for j in plan.jobs if j.job_id not in done]
        self.done_before = len(plan.jobs) - len(self.todo)
        self.queues: dict[str, collections.deque[_Item]] = {
            e: collections.deque() for e in self.spec.devices
        }
        self.devices: dict[str, _Device] = {}
        for entry in self.spec.devices:
            if not any(j.entry == entry for j in self.todo):
                continue
            for spec in inv.resolve(entry):
                d = self.devices.setdefault(spec.name, _Device(spec, []))
                d.serves.append(entry)
        for d in self.devices.values():  # a device's own name before its profile
            d.serves.sort(key=lambda e: e != d.spec.name)
        self.max_parallel = max_parallel or self.opts.max_parallel or max(1, len(self.devices))
        self.variants: dict[str, Variant] = {}
        self.pending_preps: set[str] = set()
        self.failed: list[FailedJob] = []
        self.done_now = 0
        self.overheads: list[float] = []
        self.windows: list[float] = []
        self.prepared_now = 0
        self.in_flight: dict[str, float] = {}
        self._last_status = 0.0

    # ------------------------------------------------------------------ setup

    def start(self) -> None:
        clean_scratch()
        needed = {j.prep for j in self.todo}
        for pid in sorted(needed):
            prep = self.plan.preps[pid]
            v = load_variant(prep)
            if v is not None:
                self.variants[pid] = v
                self._release(pid)
            elif prep.on_device:
                assert prep.entry is not None
                self.queues[prep.entry].appendleft(_Item(prep=pid))
                self.pending_preps.add(pid)
            else:
                self.pending_preps.add(pid)
                gpu = bool(prep.settings.get("finetune"))
                self.engine.submit_prep(prep, gpu, PrepTag(pid))
        for name in self.devices:
            self.engine.submit_health(name, HealthTag(name))

    def _release(self, prep_id: str) -> None:
        for j in self.todo:
            if j.prep == prep_id:
                self.queues[j.entry].append(_Item(job=j))

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        self.start()
        while True:
            self._dispatch()
            for tag, result in self.engine.poll(POLL_S):
                self._handle(tag, result)
            self._recheck()
            self._fail_unservable()
            self._status()
            if self._finished():
                break
        self._status(force=True, state="finished")

    def _busy_count(self) -> int:
        return sum(1 for d in self.devices.values() if d.state == "busy")

    def _dispatch(self) -> None:
        now = time.monotonic()
        for d in self.devices.values():
            if d.state != "idle" or self._busy_count() >= self.max_parallel:
                continue
            picked = self._pick(d, now)
            if picked is None:
                continue
            entry, item = picked
            item.attempts += 1
            task: Task
            if item.job is not None:
                task = self._bench_task(item.job, item.attempts)
                d.current = {
                    "job_id": item.job.job_id,
                    "label": item.job.label,
                    "entry": entry,
                    "runtime": item.job.runtime.label,
                    "since": time.time(),
                }
            else:
                assert item.prep is not None
                prep = self.plan.preps[item.prep]
                task = SearchTask(prep)
                d.current = {
                    "job_id": None,
                    "label": f"search {prep.label}",
                    "entry": entry,
                    "since": time.time(),
                }
            d.state = "busy"
            self.in_flight[item.key] = time.time()
            self.engine.submit(d.spec.name, task, RunTag(d.spec.name, entry, item))

    def _pick(self, d: _Device, now: float) -> tuple[str, _Item] | None:
        for entry in d.serves:
            q = self.queues[entry]
            for i, item in enumerate(q):
                if item.not_before <= now:
                    del q[i]
                    return entry, item
        return None

    def _bench_task(self, job: BenchJob, attempt: int) -> BenchTask:
        v = self.variants[job.prep]
        return BenchTask(
            job_id=job.job_id,
            label=job.label,
            sweep=self.spec.name,
            entry=job.entry,
            runtime=job.runtime,
            bench=self.spec.bench_config(job.runtime),
            artifact=Artifact(str(v.path), v.sha256),
            attempt=attempt,
        )

    # ------------------------------------------------------------------ results

    def _handle(self, tag: object, result: Result) -> None:
        match tag, result:
            case HealthTag(device), (HealthResult() | Failure()) as r:
                self._on_health(self.devices[device], r)
            case PrepTag(prep_id), (VariantResult() | Failure()) as r:
                self._on_prep(prep_id, r)
            case RunTag(device, entry, item), (BenchResult() | VariantResult() | Failure()) as r:
                self._on_run(self.devices[device], entry, item, r)
            case _:
                raise AssertionError(f"no handler for {type(result).__name__} on {tag!r}")

    def _on_health(self, d: _Device, r: HealthResult | Failure) -> None:
        if isinstance(r, HealthResult):
            if r.ok:
                d.state, d.problems, d.busy_checks, d.recheck_at = "idle", [], 0, None
                return
            problems = r.problems
        else:  # the check raised, or its call failed (e.g. the Ray actor died)
            problems = r.problems or (Problem(r.message, r.hint),)
        d.problems = [p.to_dict() for p in problems]
        if isinstance(r, Failure) and r.kind == "busy" and d.busy_checks < self.opts.retries:
            d.busy_checks += 1  # another process holds it: look again later
            d.state = "checking"
            d.recheck_at = time.monotonic() + self._backoff(d.busy_checks)
            return
        d.state, d.current = "out", None

    def _recheck(self) -> None:
        now = time.monotonic()
        for name, d in self.devices.items():
            if d.recheck_at is not None and d.recheck_at <= now:
                d.recheck_at = None
                self.engine.submit_health(name, HealthTag(name))

    def _on_prep(self, prep_id: str, r: VariantResult | Failure) -> None:
        self.pending_preps.discard(prep_id)
        if isinstance(r, Failure):
            self._fail_prep(prep_id, r.message, r.hint)
            return
        self.variants[prep_id] = save_variant(self.plan.preps[prep_id], r.variant)
        self.prepared_now += 1
        self._release(prep_id)

    def _fail_prep(self, prep_id: str, message: str, hint: str | None) -> None:
        prep = self.plan.preps[prep_id]
        reason = f"making {prep.label} failed: {message}"
        for j in self.todo:
            if j.prep == prep_id:
                self._fail(j, reason, hint)

    def _on_run(self, d: _Device, entry: str, item: _Item, r: RunResult) -> None:
        started = self.in_flight.pop(item.key, time.time())
        d.current = None
        if not isinstance(r, Failure):
            d.state = "idle"
            d.jobs += 1
            if item.job is not None:
                assert isinstance(r, BenchResult)
                self._store(item.job, r, started)
            else:
                assert item.prep is not None and isinstance(r, VariantResult)
                self._on_prep(item.prep, r)
            return
        if r.kind in ("device", "busy"):
            d.state = "checking"
            self.engine.submit_health(d.spec.name, HealthTag(d.spec.name))
            if item.attempts <= self.opts.retries:
                item.not_before = time.monotonic() + self._backoff(item.attempts)
                self.queues[entry].append(item)
                return
        else:
            d.state = "idle"
        if item.job is not None:
            self._fail(item.job, r.message, r.hint, attempts=item.attempts)
        else:
            assert item.prep is not None
            self.pending_preps.discard(item.prep)
            self._fail_prep(item.prep, r.message, r.hint)

    def _store(self, job: BenchJob, r: BenchResult, dispatched: float) -> None:
        stored: Measurement | None = None
        for md in r.measurements:
            m = self.store.add(Measurement.from_dict(md))
            if m.job_id == job.job_id:
                stored = m
        self.done_now += 1
        if stored is not None:
            ctx = stored.context
            # The device's own warm-up + timed loops; everything else is the farm's overhead.
            window = float(
                ctx.get("bench_window_s") or float(ctx["finished_at"]) - float(ctx["started_at"])
            )
            self.windows.append(window)
            self.overheads.append((time.time() - dispatched) - window)

    def _fail(
        self, job: BenchJob, message: str, hint: str | None, attempts: int | None = None
    ) -> None:
        self.failed.append(
            FailedJob(
                job_id=job.job_id,
                label=job.label,
                entry=job.entry,
                runtime=job.runtime.label,
                message=message,
                hint=hint,
                attempts=attempts,
            )
        )

    def _backoff(self, attempt: int) -> float:
        return float(self.opts.backoff_s * 2 ** max(0, attempt - 1))

    def _fail_unservable(self) -> None:
        for entry, q in self.queues.items():
            if not q:
                continue
            serving = [d for d in self.devices.values() if entry in d.serves]
            if serving and any(d.state != "out" for d in serving):
                continue
            why = "; ".join(
                f"{d.spec.name}: {(d.problems or [{}])[0].get('message')}" for d in serving
            )
            while q:
                item = q.popleft()
                if item.job is not None:
                    self._fail(
                        item.job,
                        f"no healthy device for {entry} ({why or 'none'})",
                        "fix the devices (`edgeprune devices check`) and rerun",
                    )
                elif item.prep is not None:
                    self.pending_preps.discard(item.prep)
                    self._fail_prep(item.prep, f"no healthy device for {entry} ({why})", None)

    def _finished(self) -> bool:
        if self.pending_preps or any(self.queues.values()):
            return False
        return not any(d.state in ("busy", "checking") for d in self.devices.values())

    # ------------------------------------------------------------------ status

    def snapshot(self, state: str = "running") -> dict[str, Any]:
        return {
            "sweep": self.spec.name,
            "source": self.spec.source,
            "state": state,
            "engine": self.engine.name,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self.t0,
            "updated_at": time.time(),
            "jobs_total": len(self.plan.jobs),
            "done_before": self.done_before,
            "done_now": self.done_now,
            "failed": [f.to_dict() for f in self.failed],
            "queued": sum(len(q) for q in self.queues.values()),
            "preps": {
                "total": len(self.plan.preps),
                "pending": len(self.pending_preps),
                "made_now": self.prepared_now,
            },
            "max_parallel": self.max_parallel,
            "devices": {
                n: {
                    "profile": d.spec.profile,
                    "state": d.state,
                    "jobs": d.jobs,
                    "problems": d.problems,
                    "current": d.current,
                }
                for n, d in self.devices.items()
            },
        }

    def _status(self, force: bool = False, state: str = "running") -> None:
        now = time.time()
        if not force and now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        snap = self.snapshot(state)
        write_json(farm_dir(self.spec.name) / "status.json", snap)
        if self.on_update is not None:
            self.on_update(snap)

    def result(self) -> SweepResult:
        snap = self.snapshot("finished")
        return SweepResult(
            sweep=self.spec.name,
            source=self.spec.source,
            state="finished",
            engine=self.engine.name,
            started_at=self.t0,
            jobs_total=len(self.plan.jobs),
            jobs_done=self.done_before + self.done_now,
            done_before=self.done_before,
            done_now=self.done_now,
            failed=list(self.failed),
            queued=snap["queued"],
            preps=snap["preps"],
            max_parallel=self.max_parallel,
            devices=snap["devices"],
            out_of_rotation={n: d.problems for n, d in self.devices.items() if d.state == "out"},
            wall_seconds=time.time() - self.t0,
            per_job_overhead_s=TimeSummary.of(self.overheads),
            bench_window_s=TimeSummary.of(self.windows),
        )


@dataclass(frozen=True)
class FailedJob:
    """A job that did not produce a measurement, and why."""

    job_id: str
    label: str
    entry: str
    runtime: str
    message: str
    hint: str | None
    attempts: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimeSummary:
    """Count, median and mean of a list of seconds (None when empty)."""

    n: int
    median: float | None
    mean: float | None

    @classmethod
    def of(cls, values: list[float]) -> TimeSummary:
        if not values:
            return cls(0, None, None)
        return cls(len(values), statistics.median(values), statistics.fmean(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepResult:
    """`run_sweep`'s summary: jobs done (before this run and by it) and failed, variants made,
    devices out of rotation with their problems, wall time, and per-job overhead (the job's round
    trip on the host minus the device's own warm-up and timed loops). ``devices`` holds each
    device's state as the status file shows it."""

    sweep: str
    source: str | None
    state: str
    engine: str
    started_at: float
    jobs_total: int
    jobs_done: int
    done_before: int
    done_now: int
    failed: list[FailedJob]
    queued: int
    preps: dict[str, int]
    max_parallel: int | None
    devices: dict[str, dict[str, Any]]
    out_of_rotation: dict[str, list[dict[str, Any]]]
    wall_seconds: float
    per_job_overhead_s: TimeSummary
    bench_window_s: TimeSummary

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "source": self.source,
            "state": self.state,
            "engine": self.engine,
            "started_at": self.started_at,
            "jobs_total": self.jobs_total,
            "done_before": self.done_before,
            "done_now": self.done_now,
            "failed": [f.to_dict() for f in self.failed],
            "queued": self.queued,
            "preps": dict(self.preps),
            "max_parallel": self.max_parallel,
            "devices": self.devices,
            "jobs_done": self.jobs_done,
            "wall_seconds": self.wall_seconds,
            "out_of_rotation": self.out_of_rotation,
            "per_job_overhead_s": self.per_job_overhead_s.to_dict(),
            "bench_window_s": self.bench_window_s.to_dict(),
        }


def run_sweep(
    spec: SweepSpec,
    engine: str = "threads",
    max_parallel: int | None = None,
    ray_address: str | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run (or resume) ``spec``; returns its summary (`SweepResult`). ``on_update`` gets each
    status snapshot (the JSON the status file holds).

    Raises `UsageError` when the sweep is already running here, names unknown devices, or the
    engine cannot start. Failed jobs are reported in the result, not raised.
    """
    plan = plan_sweep(spec)
    inv = Inventory.load()
    for entry in spec.devices:
        inv.resolve(entry)  # unknown names fail before anything starts
    if max_parallel is not None and max_parallel < 1:
        raise UsageError(f"--max-parallel must be >= 1, got {max_parallel}")
    with SweepLock(spec.name), Store() as store:
        eng = make_engine(engine, spec.farm.prep_workers, ray_address)
        sched = _Scheduler(plan, eng, store, inv, max_parallel, on_update)
        if not sched.todo:
            return sched.result()
        eng.start(
            [d.spec for d in sched.devices.values()], str(inv.path) if inv.path.is_file() else None
        )
        try:
            sched.run()
        except BaseException:
            # On a full disk the status file cannot be written either; the first error (which
            # names the saved measurement) is the one to report.
            with contextlib.suppress(OSError):
                sched._status(force=True, state="interrupted")
            raise
        finally:
            eng.stop()
        return sched.result()
