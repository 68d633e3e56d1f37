"""`DeviceSession`: the explicit lifecycle of working with one device.

``with DeviceSession(spec) as dev:`` opens the transport, takes the host-side device lock,
uploads the agent (once per hash) and reads the device's facts (``dev.info``). With
``stable_clocks`` an SSH device is put into the clock state its profile asks for (stored first,
restored on exit, also after errors; see `edgeprune.device.clocks`) and the profile's telemetry
logger (e.g. tegrastats) runs alongside benchmarks. Leaving the block releases everything, also
after errors. Calling a method outside the block says so.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from edgeprune.device.agent import AgentClient
from edgeprune.device.clocks import ClockControl, wants_stable_clocks
from edgeprune.device.inventory import DeviceSpec
from edgeprune.device.local import LocalTransport
from edgeprune.device.lock import DeviceLock
from edgeprune.device.transport import Transport, download_verified, upload_verified
from edgeprune.errors import EdgePruneError, UsageError

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

    def __init__(
        self,
        spec: DeviceSpec,
        lock: bool = True,
        inventory: Any = None,
        stable_clocks: bool = False,
    ) -> None:
        self.spec = spec
        self._want_lock = lock
        self._inventory = inventory
        self._want_clocks = stable_clocks and spec.kind == "ssh"
        self._lock: DeviceLock | None = None
        self._transport: Transport | None = None
        self._agent: AgentClient | None = None
        self._clocks: ClockControl | None = None
        self.info: dict[str, Any] = {}
        # What was done to the clocks (None: not asked) and the telemetry argv for benchmarks.
        self.clocks_record: dict[str, Any] | None = None
        self.telemetry: list[str] | None = None

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
            if self._want_clocks:
                self._set_clocks(self._transport)
            self.info = self._agent.call("info", timeout=INFO_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return self

    def _set_clocks(self, t: Transport) -> None:
        commands = _profile_clocks(self.spec.profile)
        if commands is None:
            return
        self.telemetry = list(commands.telemetry) if commands.telemetry else None
        if not wants_stable_clocks(commands):
            return
        control = ClockControl(t, commands, self.spec.workdir)
        control.recover()  # a session that died before restoring left a record behind
        self._clocks = control
        control.apply()
        self.clocks_record = control.record

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._clocks is not None:
            try:
                self._clocks.restore()
            except EdgePruneError as e:  # the device is gone: the next session restores
                self._clocks.record["skipped"].append(f"restore failed: {e.message}")
            self._clocks = None
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


def _profile_clocks(profile: str) -> Any:
    """The clock commands of a device's profile (None when the profile is unknown)."""
    from edgeprune.profiles import load_profile

    try:
        return load_profile(profile).clocks
    except EdgePruneError:
        return None
