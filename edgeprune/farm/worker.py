"""`DeviceWorker`: runs farm tasks on one device, one at a time, keeping its session open.

The same class runs in a host thread (threads engine) and as a Ray actor that holds the device's
custom resource (ray engine). No method raises. `health` returns a `HealthResult`, `run` a
`BenchResult` for a `BenchTask` or a `VariantResult` for a `SearchTask`; a call that fails returns
a `Failure` instead, whose ``kind`` is ``device`` (a fault of the device or the link: retried, and
the device is checked), ``busy`` (another process holds the device), ``job`` (the job cannot
work: not retried) or ``bug``. These types are in `edgeprune.farm.tasks`.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from pathlib import Path

from edgeprune import config
from edgeprune._files import sha256_file
from edgeprune.bench import measure
from edgeprune.device.check import Problem, problems_for
from edgeprune.device.inventory import DeviceSpec, Inventory
from edgeprune.device.session import DeviceSession
from edgeprune.errors import DeviceError, UsageError
from edgeprune.farm.prepare import make_variant
from edgeprune.farm.tasks import (
    Artifact,
    BenchResult,
    BenchTask,
    Failure,
    HealthResult,
    RunResult,
    SearchTask,
    Task,
    VariantResult,
)


class DeviceWorker:
    """Works on device ``spec``. ``env`` is applied first (a Ray actor gets the driver's
    ``EDGEPRUNE_HOME``/``EDGEPRUNE_CONFIG``); ``inventory`` is the path of the devices.yaml that
    names the device's jump hosts."""

    def __init__(
        self,
        spec: DeviceSpec,
        env: dict[str, str] | None = None,
        inventory: str | None = None,
        engine: str = "threads",
    ) -> None:
        if env:
            os.environ.update(env)
        self.spec = spec
        self._inventory_path = inventory
        self._engine = engine
        self._session: DeviceSession | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def _inventory(self) -> Inventory:
        return (
            Inventory.load(Path(self._inventory_path)) if self._inventory_path else Inventory.load()
        )

    def _open(self) -> DeviceSession:
        if self._session is None:
            session = DeviceSession(self.spec, inventory=self._inventory(), stable_clocks=True)
            session.__enter__()
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the session (restores clocks, releases the device's locks)."""
        if self._session is not None:
            try:
                self._session.close()
            finally:
                self._session = None

    def health(self) -> HealthResult | Failure:
        """Open (or reopen) the session and judge the device's facts like `devices check`."""
        t0 = time.time()
        try:
            self.close()
            dev = self._open()
            problems = problems_for(self.spec, dev.info)
        except Exception as e:  # a worker never raises: the scheduler decides
            self.close()
            problem = Problem(getattr(e, "message", str(e)), getattr(e, "hint", None))
            return replace(Failure.from_exception(e), problems=(problem,))
        if problems:
            self.close()
        return HealthResult(tuple(problems), time.time() - t0)

    def run(self, task: Task) -> RunResult:
        """Run a `BenchTask` or a `SearchTask`; see the module docstring for the reply."""
        started = time.time()
        try:
            match task:
                case BenchTask():
                    return self._bench(task, started)
                case SearchTask():
                    return self._search(task)
                case _:
                    raise UsageError(f"unknown farm task {type(task).__name__}")
        except Exception as e:
            if isinstance(e, DeviceError):
                self.close()  # the link may be broken: the next task reconnects
            return Failure.from_exception(e)

    # ------------------------------------------------------------------ tasks

    def _artifact(self, art: Artifact) -> Path:
        """The artifact as a local file: the driver's path when this host has it, else the bytes
        from Ray's object store, written once into this host's cache."""
        path = Path(art.path)
        if path.is_file() and sha256_file(path) == art.sha256:
            return path
        local = config.cache_dir() / "farm-artifacts" / f"{art.sha256}{path.suffix}"
        if local.is_file() and sha256_file(local) == art.sha256:
            return local
        if art.ref is None:
            raise UsageError(f"artifact {art.sha256[:12]} is not on this host ({path})")
        import ray  # only reached inside a Ray worker

        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}")
        tmp.write_bytes(ray.get(art.ref))
        os.replace(tmp, local)
        return local

    def _bench(self, task: BenchTask, started: float) -> BenchResult:
        path = self._artifact(task.artifact)
        dev = self._open()
        extra = {
            "farm": {
                "sweep": task.sweep,
                "job_started_at": started,
                "engine": self._engine,
                "worker_host": socket.gethostname(),
                "worker_pid": os.getpid(),
                "entry": task.entry,
                "attempt": task.attempt,
            }
        }
        m = measure(
            dev,
            path,
            task.bench,
            store=None,
            label=task.label,
            job_id=task.job_id,
            extra_context=extra,
        )
        return BenchResult([x.to_dict(raw=True) for x in (m, *m.related)])

    def _search(self, task: SearchTask) -> VariantResult:
        self.close()  # the search leases this device itself
        return VariantResult(make_variant(task.prep, device=self.name))
