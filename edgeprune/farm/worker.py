"""`DeviceWorker`: runs farm tasks on one device, one at a time, keeping its session open.

The same class runs in a host thread (threads engine) and as a Ray actor that holds the device's
custom resource (ray engine). Every method returns a JSON-able dict and never raises: failures
come back as ``{"ok": False, "kind": ..., "message": ..., "hint": ...}`` where ``kind`` is
``device`` (a fault of the device or the link: retried, and the device is checked), ``busy``
(another process holds the device), ``job`` (the job cannot work: not retried) or ``bug``.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from edgeprune import config
from edgeprune._files import sha256_file
from edgeprune.bench import BenchConfig, measure
from edgeprune.device.check import problems_for
from edgeprune.device.inventory import DeviceSpec, Inventory
from edgeprune.device.session import DeviceSession
from edgeprune.errors import DeviceBusyError, DeviceError, EdgePruneError, UsageError
from edgeprune.farm.plan import PrepJob
from edgeprune.farm.prepare import make_variant


def error_result(e: BaseException) -> dict[str, Any]:
    """Classify an exception for the scheduler (see module docstring)."""
    if isinstance(e, DeviceBusyError):
        kind = "busy"
    elif isinstance(e, DeviceError):
        kind = "device"
    elif isinstance(e, EdgePruneError):
        kind = "job"
    else:
        kind = "bug"
    out: dict[str, Any] = {"ok": False, "kind": kind, "error": type(e).__name__}
    if isinstance(e, EdgePruneError):
        out.update({"message": e.message, "hint": e.hint})
    else:
        out.update(
            {
                "message": f"{type(e).__name__}: {e}",
                "hint": None,
                "traceback": traceback.format_exc()[-4000:],
            }
        )
    return out


class DeviceWorker:
    """Works on device ``spec`` (a `DeviceSpec` as a dict). ``env`` is applied first (a Ray
    actor gets the driver's ``EDGEPRUNE_HOME``/``EDGEPRUNE_CONFIG``); ``inventory`` is the path
    of the devices.yaml that names the device's jump hosts."""

    def __init__(
        self,
        spec: dict[str, Any],
        env: dict[str, str] | None = None,
        inventory: str | None = None,
        engine: str = "threads",
    ) -> None:
        if env:
            os.environ.update(env)
        self.spec = DeviceSpec(**{**spec, "tags": tuple(spec.get("tags") or ())})
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

    def close(self) -> dict[str, Any]:
        """Close the session (restores clocks, releases the device's locks)."""
        if self._session is not None:
            try:
                self._session.close()
            finally:
                self._session = None
        return {"ok": True}

    def health(self) -> dict[str, Any]:
        """Open (or reopen) the session and judge the device's facts like `devices check`."""
        t0 = time.time()
        try:
            self.close()
            dev = self._open()
            problems = problems_for(self.spec, dev.info)
        except Exception as e:  # a worker never raises: the scheduler decides
            self.close()
            return {
                **error_result(e),
                "problems": [
                    {"message": getattr(e, "message", str(e)), "fix": getattr(e, "hint", None)}
                ],
            }
        if problems:
            self.close()
        return {
            "ok": not problems,
            "kind": None if not problems else "device",
            "problems": [p.to_dict() for p in problems],
            "message": "; ".join(p.message for p in problems) or None,
            "seconds": time.time() - t0,
        }

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run a ``bench`` or ``search`` task; see the module docstring for the reply."""
        started = time.time()
        try:
            if task["kind"] == "bench":
                result = self._bench(task, started)
            elif task["kind"] == "search":
                result = self._search(task)
            else:
                raise UsageError(f"unknown farm task {task['kind']!r}")
        except Exception as e:
            if isinstance(e, DeviceError):
                self.close()  # the link may be broken: the next task reconnects
            return {**error_result(e), "started_at": started, "finished_at": time.time()}
        return {"ok": True, "started_at": started, "finished_at": time.time(), **result}

    # ------------------------------------------------------------------ tasks

    def _artifact(self, art: dict[str, Any]) -> Path:
        """The artifact as a local file: the driver's path when this host has it, else the bytes
        from Ray's object store, written once into this host's cache."""
        path = Path(art["path"])
        if path.is_file() and sha256_file(path) == art["sha256"]:
            return path
        local = config.cache_dir() / "farm-artifacts" / f"{art['sha256']}{path.suffix}"
        if local.is_file() and sha256_file(local) == art["sha256"]:
            return local
        if art.get("ref") is None:
            raise UsageError(f"artifact {art['sha256'][:12]} is not on this host ({path})")
        import ray  # only reached inside a Ray worker

        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{os.getpid()}")
        tmp.write_bytes(ray.get(art["ref"]))
        os.replace(tmp, local)
        return local

    def _bench(self, task: dict[str, Any], started: float) -> dict[str, Any]:
        path = self._artifact(task["artifact"])
        dev = self._open()
        cfg = BenchConfig(**task["bench"])
        extra = {
            "farm": {
                "sweep": task["sweep"],
                "job_started_at": started,
                "engine": self._engine,
                "worker_host": socket.gethostname(),
                "worker_pid": os.getpid(),
                "entry": task["entry"],
                "attempt": task.get("attempt", 1),
            }
        }
        m = measure(
            dev,
            path,
            cfg,
            store=None,
            label=task["label"],
            job_id=task["job_id"],
            extra_context=extra,
        )
        return {"measurements": [x.to_dict(raw=True) for x in (m, *m.related)]}

    def _search(self, task: dict[str, Any]) -> dict[str, Any]:
        self.close()  # the search leases this device itself
        return {"variant": make_variant(PrepJob.from_dict(task["prep"]), device=self.name)}
