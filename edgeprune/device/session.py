"""`DeviceSession`: the explicit lifecycle of working with one device.

``with DeviceSession(spec) as dev:`` opens the transport, takes the host-side device lock,
uploads the agent (once per hash) and reads the device's facts (``dev.info``). Leaving the block
releases everything, also after errors. Calling a method outside the block says so.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from edgeprune.device.agent import AgentClient
from edgeprune.device.inventory import DeviceSpec
from edgeprune.device.local import LocalTransport
from edgeprune.device.lock import DeviceLock
from edgeprune.device.transport import Transport, download_verified, upload_verified
from edgeprune.errors import UsageError

INFO_TIMEOUT_S = 60.0


def open_transport(spec: DeviceSpec, inventory: Any = None) -> Transport:
    """A transport for ``spec``: a subprocess for ``local``, hardened SSH otherwise."""
    if spec.kind == "local":
        Path(spec.workdir).mkdir(parents=True, exist_ok=True)
        return LocalTransport(spec.name)
    from edgeprune.device.ssh import SSHTransport  # the only importer of fabric/paramiko

    return SSHTransport(spec, inventory=inventory)


class DeviceSession:
    """An open, locked connection to one device with its agent ready (see module docstring)."""

    def __init__(self, spec: DeviceSpec, lock: bool = True, inventory: Any = None) -> None:
        self.spec = spec
        self._want_lock = lock
        self._inventory = inventory
        self._lock: DeviceLock | None = None
        self._transport: Transport | None = None
        self._agent: AgentClient | None = None
        self.info: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    def _require_open(self) -> tuple[Transport, AgentClient]:
        if self._transport is None or self._agent is None:
            raise UsageError(
                f"the session for device {self.name} is not open",
                hint="use `with DeviceSession(spec) as dev:`",
            )
        return self._transport, self._agent

    @property
    def transport(self) -> Transport:
        return self._require_open()[0]

    @property
    def agent(self) -> AgentClient:
        return self._require_open()[1]

    def __enter__(self) -> DeviceSession:
        try:
            if self._want_lock:
                self._lock = DeviceLock(self.name).acquire()
            self._transport = open_transport(self.spec, self._inventory)
            self._agent = AgentClient(self._transport, self.spec.python, self.spec.workdir)
            self._agent.ensure()
            self.info = self._agent.call("info", timeout=INFO_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._agent = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def push_artifact(self, local: Path, sha256: str) -> tuple[str, bool]:
        """Upload into the content-addressed cache ``WORKDIR/artifacts/<sha256><suffix>``.

        Returns (remote path, sent); ``sent`` is False when the device already had it.
        """
        t, _ = self._require_open()
        return upload_verified(
            t,
            local,
            posixpath.join(self.spec.workdir, "artifacts"),
            f"{sha256}{local.suffix}",
            sha256,
        )

    def pull(self, remote: str, local: Path) -> str:
        t, _ = self._require_open()
        return download_verified(t, remote, local)

    def remote_path(self, *parts: str) -> str:
        return posixpath.join(self.spec.workdir, *parts)

    def call(self, verb: str, timeout: float, **request: Any) -> dict[str, Any]:
        return self._require_open()[1].call(verb, timeout, **request)
