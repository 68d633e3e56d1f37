"""`RayEngine`: the sweep on a Ray cluster. Each device is a custom resource, so Ray does the leasing.

Every device of the sweep is a custom resource ``edgeprune-device:<name>`` with capacity 1 on
the node(s) that can reach it. The engine starts one `DeviceWorker` actor per device asking for
that resource: Ray places it on such a node and no other actor — of this sweep or any other
driver on the cluster — gets the device until the actor exits. Variants are made in Ray tasks,
with ``num_gpus=1`` when the variant fine-tunes and the cluster has GPUs. Artifacts travel
through Ray's object store when the worker's host does not have the driver's file.

``address`` None starts a private local Ray instance declaring every needed device (the
resources a head would get from ``ray start --head --resources '{...}'``); an address connects to
a running cluster, whose nodes must already declare them (`resources_json` prints the JSON).
Nodes that run device actors need the driver's ``devices.yaml``, ``known_hosts`` and key files at
the same paths (the actor gets the driver's ``EDGEPRUNE_CONFIG``/``EDGEPRUNE_HOME``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from typing import Any

from edgeprune import config
from edgeprune.device.inventory import DeviceSpec
from edgeprune.errors import DependencyMissingError, UsageError
from edgeprune.farm.engines import Completion, make_variant_safe
from edgeprune.farm.plan import PrepJob
from edgeprune.farm.tasks import BenchTask, Failure, Result, Task, VariantResult
from edgeprune.farm.worker import DeviceWorker

RESOURCE_PREFIX = "edgeprune-device:"


def device_resource(name: str) -> str:
    return f"{RESOURCE_PREFIX}{name}"


def resources_json(devices: list[str]) -> str:
    """The ``--resources`` value for ``ray start`` on a node that can reach ``devices``."""
    return json.dumps({device_resource(n): 1 for n in devices})


# Ray advertises the host's outward address even for a single-node instance; with this set to 0
# before Ray is imported, every Ray process of a private local instance uses 127.0.0.1 only.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(loopback: bool = False) -> Any:
    """Import Ray (lazily: it is an optional extra). With ``loopback`` and Ray not yet imported,
    keep a private local instance on 127.0.0.1."""
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:
        raise DependencyMissingError(
            "--engine ray needs Ray, which is not installed",
            hint="pip install 'edgeprune[ray]'",
        ) from None
    return ray


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.ray = import_ray(loopback=address is None)
        self.address = address
        self._actors: dict[str, Any] = {}
        self._pending: dict[Any, object] = {}
        self._refs: dict[str, Any] = {}
        self._started_local = False
        self._prep_fn: Any = None

    def start(self, devices: list[DeviceSpec], inventory: str | None) -> None:
        ray = self.ray
        names = [d.name for d in devices]
        env = {
            "EDGEPRUNE_HOME": str(config.home_dir()),
            "EDGEPRUNE_CONFIG": str(config.config_dir()),
        }
        if ray.is_initialized():
            raise UsageError(
                "Ray is already initialised in this process",
                hint="run the sweep from a fresh process",
            )
        if self.address is None:
            ray.init(
                address="local",
                resources={device_resource(n): 1 for n in names},
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            self._started_local = True
        else:
            self._connect(ray)
        have = ray.cluster_resources()
        missing = [n for n in names if have.get(device_resource(n), 0) < 1]
        if missing:
            self.stop()
            raise UsageError(
                f"the Ray cluster at {self.address} has no resource for device(s) {', '.join(missing)}",
                hint=f"start a node that can reach them with: ray start --resources '{resources_json(missing)}'",
            )
        actor_cls = ray.remote(DeviceWorker)
        for spec in devices:
            self._actors[spec.name] = actor_cls.options(
                resources={device_resource(spec.name): 1},
                num_cpus=0,
                max_restarts=0,
                name=None,
            ).remote(spec, env, inventory, "ray")
        self._prep_fn = ray.remote(_prep_task)
        self._env = env
        self._gpus = float(have.get("GPU", 0))

    def _connect(self, ray: Any) -> None:
        """Join the cluster at ``self.address``; a refused connection is one line with the fix.

        Ray >= 2.5x starts a head with token authentication whenever ``~/.ray/auth_token`` exists,
        but a driver given an explicit address only sends the token with ``RAY_AUTH_MODE=token``.
        """
        try:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as e:
            text = f"{e} {e.__cause__ or ''}"
            auth = "InvalidAuthToken" in text or "Authentication" in text
            mode = os.environ.get("RAY_AUTH_MODE", "unset")
            raise UsageError(
                f"could not join the Ray cluster at {self.address}"
                + (
                    f": it asks for an authentication token (RAY_AUTH_MODE is {mode})"
                    if auth
                    else ""
                ),
                hint=(
                    "export RAY_AUTH_MODE=token and make the cluster's token readable "
                    "(~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)"
                    if auth
                    else f"check the address with: ray status --address {self.address}"
                ),
            ) from None

    def submit_health(self, device: str, tag: object) -> None:
        self._pending[self._actors[device].health.remote()] = tag

    def submit(self, device: str, task: Task, tag: object) -> None:
        if isinstance(task, BenchTask):
            art = task.artifact  # its bytes go along, for a worker on a host without the file
            ref = self._artifact_ref(art.path, art.sha256)
            task = replace(task, artifact=replace(art, ref=ref))
        self._pending[self._actors[device].run.remote(task)] = tag

    def _artifact_ref(self, path: str, sha: str) -> Any:
        if sha not in self._refs:
            with open(path, "rb") as f:
                self._refs[sha] = self.ray.put(f.read())
        return self._refs[sha]

    def submit_prep(self, prep: PrepJob, gpu: bool, tag: object) -> None:
        use_gpu = gpu and self._gpus >= 1
        ref = self._prep_fn.options(num_cpus=1, num_gpus=1 if use_gpu else 0).remote(
            prep, self._env
        )
        self._pending[ref] = tag

    def poll(self, timeout: float) -> list[Completion]:
        ray = self.ray
        if not self._pending:
            time.sleep(timeout)
            return []
        refs = list(self._pending)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        out: list[Completion] = []
        for ref in ready:
            tag = self._pending.pop(ref)
            result: Result
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                result = Failure("device", f"the worker actor died: {str(e).splitlines()[0]}")
            except ray.exceptions.RayError as e:
                result = Failure("bug", str(e).splitlines()[0])
            out.append((tag, result))
        return out

    def stop(self) -> None:
        """Close every device session (clocks restored, locks released), free the actors, and
        shut Ray down (a private local instance) or disconnect (a cluster)."""
        ray = self.ray
        if not ray.is_initialized():
            return
        closing = [a.close.remote() for a in self._actors.values()]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=120)
        for a in self._actors.values():
            ray.kill(a)
        self._actors.clear()
        self._pending.clear()
        self._refs.clear()
        ray.shutdown()


def _prep_task(prep: PrepJob, env: dict[str, str]) -> VariantResult | Failure:
    os.environ.update(env)
    return make_variant_safe(prep)
