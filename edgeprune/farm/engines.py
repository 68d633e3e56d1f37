"""Engines run the scheduler's tasks: one `DeviceWorker` per device plus variant preparation.

Both engines have the same small interface (`Engine`): ``start`` the device workers,
``submit_health`` a device check or ``submit`` a task (`edgeprune.farm.tasks`) to one device's
worker, ``submit_prep`` a variant to make, ``poll`` for finished calls: each comes back as the
caller's tag (opaque to the engine) and the call's result. ``stop`` ends it all. The scheduler
(`edgeprune.farm.run`) never submits a second call to a device whose first has not come back, so
each device runs one job at a time.

* `ThreadEngine` (default): a host thread per device, a process pool for preparation.
* `RayEngine` (``edgeprune.farm.ray_engine``): a Ray actor per device holding the device's custom
  resource, preparation as Ray tasks (on a GPU where the cluster has one and the variant fine-tunes).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
import time
from typing import Any, Protocol

from edgeprune.device.inventory import DeviceSpec
from edgeprune.farm.plan import PrepJob
from edgeprune.farm.prepare import make_variant
from edgeprune.farm.tasks import Failure, Result, Task, VariantResult
from edgeprune.farm.worker import DeviceWorker

# A finished call: the tag it was submitted with and its result.
Completion = tuple[object, Result]


class Engine(Protocol):
    name: str

    def start(self, devices: list[DeviceSpec], inventory: str | None) -> None: ...

    def submit_health(self, device: str, tag: object) -> None: ...

    def submit(self, device: str, task: Task, tag: object) -> None: ...

    def submit_prep(self, prep: PrepJob, gpu: bool, tag: object) -> None: ...

    def poll(self, timeout: float) -> list[Completion]: ...

    def stop(self) -> None: ...


def make_variant_safe(prep: PrepJob) -> VariantResult | Failure:
    """`make_variant` whose failures come back as data (never raised)."""
    try:
        return VariantResult(make_variant(prep))
    except Exception as e:
        return Failure.from_exception(e)


# What a device thread is asked to do: a task, or None for a health check (and None instead of
# the pair to stop).
_Call = tuple[Task | None, object]


def _watch_parent() -> None:
    """Pool initializer: a prep worker exits when the sweep process is gone, also after SIGKILL
    (a killed sweep must not leave pruning jobs running)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


class ThreadEngine:
    """Device workers in host threads (one per device). Variants are made in a pool of
    ``prep_workers`` processes, so pruning (Python-heavy) never holds this process's GIL while
    the device threads talk SSH.
    """

    name = "threads"

    def __init__(self, prep_workers: int = 1) -> None:
        self._out: queue.Queue[Completion] = queue.Queue()
        self._inboxes: dict[str, queue.Queue[_Call | None]] = {}
        self._threads: list[threading.Thread] = []
        self._workers: dict[str, DeviceWorker] = {}
        self._prep_workers = prep_workers
        self._pool: Any = None

    def start(self, devices: list[DeviceSpec], inventory: str | None) -> None:
        for spec in devices:
            worker = DeviceWorker(spec, inventory=inventory, engine=self.name)
            inbox: queue.Queue[_Call | None] = queue.Queue()
            t = threading.Thread(
                target=self._loop, args=(worker, inbox), name=f"farm-{spec.name}", daemon=True
            )
            self._workers[spec.name], self._inboxes[spec.name] = worker, inbox
            self._threads.append(t)
            t.start()

    def _loop(self, worker: DeviceWorker, inbox: queue.Queue[_Call | None]) -> None:
        while True:
            item = inbox.get()
            if item is None:
                worker.close()
                return
            task, tag = item
            result: Result
            try:
                result = worker.health() if task is None else worker.run(task)
            except Exception as e:  # DeviceWorker does not raise; this is a last line of defence
                result = Failure.from_exception(e)
            self._out.put((tag, result))

    def submit_health(self, device: str, tag: object) -> None:
        self._inboxes[device].put((None, tag))

    def submit(self, device: str, task: Task, tag: object) -> None:
        self._inboxes[device].put((task, tag))

    def submit_prep(self, prep: PrepJob, gpu: bool, tag: object) -> None:
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
            self._pool = ctx.Pool(self._prep_workers, initializer=_watch_parent)

        def done(r: VariantResult | Failure) -> None:
            self._out.put((tag, r))

        def failed(e: BaseException) -> None:
            self._out.put((tag, Failure.from_exception(e)))

        self._pool.apply_async(make_variant_safe, (prep,), callback=done, error_callback=failed)

    def poll(self, timeout: float) -> list[Completion]:
        out: list[Completion] = []
        with contextlib.suppress(queue.Empty):
            out.append(self._out.get(timeout=timeout))
            while True:
                out.append(self._out.get_nowait())
        return out

    def stop(self) -> None:
        """Close every session (clocks restored, locks released); waits for running calls."""
        for inbox in self._inboxes.values():
            inbox.put(None)
        for t in self._threads:
            t.join(timeout=120)
        if self._pool is not None:
            self._pool.terminate()  # unfinished variants are made again by the next run
            self._pool.join()
            self._pool = None
