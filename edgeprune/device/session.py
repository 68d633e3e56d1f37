"""`DeviceSession`: the explicit lifecycle of working with one device.

``with DeviceSession(spec) as dev:`` takes the host-side device lock, opens the transport, starts
the agent (`SessionAgent`: one process for the whole session over one exec channel; or the
per-command `AgentClient` when the entry says ``agent_mode: command``) and sends one ``open``
request: the board's lock (held by the session agent until the session ends, so two entries or
hosts that reach one board exclude each other), the sweep of stale partial uploads, the clock
restore record and the device's facts (``dev.info``) in a single round trip. A held lock fails at
once with who holds it, or, with ``wait_s``, queues for it.

With ``stable_clocks`` an SSH device is put into the clock state its profile asks for (stored
first, restored on exit, also after errors; see `edgeprune.device.clocks`) and the profile's
telemetry logger (e.g. tegrastats) runs alongside benchmarks. Leaving the block releases
everything, also after errors. Calling a method outside the block says so.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeprune.device.agent import AgentClient, AgentTransport, MissingArtifact, SessionAgent
from edgeprune.device.clocks import RECORD, ClockControl, wants_stable_clocks
from edgeprune.device.inventory import DeviceSpec
from edgeprune.device.local import LocalTransport
from edgeprune.device.lock import DeviceLock, wait_until
from edgeprune.device.transport import (
    UPLOAD_TIMEOUT_S,
    Transport,
    download_verified,
    remote_sha256,
)
from edgeprune.errors import DeviceBusyError, EdgePruneError, UsageError

INFO_TIMEOUT_S = 60.0
# What a benchmarking session will need on the device, imported while the host does other work.
PRELOAD = ("onnxruntime", "numpy")
HAVE_TIMEOUT_S = 30.0

Agent = SessionAgent | AgentClient


def open_transport(spec: DeviceSpec, inventory: Any = None) -> Transport:
    """A transport for ``spec``: a subprocess for ``local``, hardened SSH otherwise."""
    if spec.kind == "local":
        Path(spec.workdir).mkdir(parents=True, exist_ok=True)
        return LocalTransport(spec.name)
    from edgeprune.device.ssh import SSHTransport  # the only importer of fabric/paramiko

    return SSHTransport(spec, inventory=inventory)


def make_agent(spec: DeviceSpec, transport: Transport) -> Agent:
    cls = AgentClient if spec.agent_mode == "command" else SessionAgent
    return cls(transport, spec.python, spec.workdir, spec.name)


class DeviceSession:
    """An open, locked connection to one device with its agent ready (see module docstring).

    ``wait_s``: how long to queue for a busy device (None: fail at once; ``math.inf``: until it
    is free); ``on_wait(holder)`` is told who holds it while waiting. The runtimes' versions come
    from their package metadata, and a locked session starts importing them in the background;
    ``import_runtimes`` imports them before answering instead (catches broken installs).
    """

    def __init__(
        self,
        spec: DeviceSpec,
        lock: bool = True,
        inventory: Any = None,
        stable_clocks: bool = False,
        wait_s: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        import_runtimes: bool = False,
    ) -> None:
        self.spec = spec
        self._import_runtimes = import_runtimes
        self._want_lock = lock
        self._inventory = inventory
        self._want_clocks = stable_clocks and spec.kind == "ssh"
        self.wait_s = wait_s
        self.on_wait = on_wait
        self._lock: DeviceLock | None = None
        self._raw: Transport | None = None
        self._transport: Transport | None = None
        self._agent: Agent | None = None
        self._clocks: ClockControl | None = None
        self._present: set[str] = set()
        self.info: dict[str, Any] = {}
        self.opened: dict[str, Any] = {}
        # What was done to the clocks (None: not asked) and the telemetry argv for benchmarks.
        self.clocks_record: dict[str, Any] | None = None
        self.telemetry: list[str] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def _require_open(self) -> tuple[Transport, Agent]:
        if self._transport is None or self._agent is None:
            raise UsageError(
                f"the session for device {self.name} is not open",
                hint="use `with DeviceSession(spec) as dev:`",
            )
        return self._transport, self._agent

    @property
    def transport(self) -> Transport:
        """Commands and files on the device (through the session agent when there is one)."""
        return self._require_open()[0]

    @property
    def agent(self) -> Agent:
        return self._require_open()[1]

    @property
    def workdir(self) -> str:
        """The device's absolute work directory (``~/…`` resolved on the device)."""
        return self._agent.workdir if self._agent is not None else self.spec.workdir

    def round_trips(self) -> dict[str, int]:
        """Shell start-ups (exec channels) and agent requests this session has cost so far."""
        raw, agent = self._raw, self._agent
        return {
            "channels": raw.command_count if raw is not None else 0,
            "requests": agent.requests if agent is not None else 0,
        }

    def __enter__(self) -> DeviceSession:
        try:
            if self._want_lock:
                self._lock = DeviceLock(self.name).acquire(self.wait_s, self.on_wait)
            self._raw = open_transport(self.spec, self._inventory)
            agent = make_agent(self.spec, self._raw)
            self._agent = agent
            if isinstance(agent, AgentClient) and self.wait_s is not None:
                agent.busy_wait = (self.wait_s, self.on_wait)  # each request takes the lock
            agent.start()
            self._transport = (
                AgentTransport(agent, self._raw) if isinstance(agent, SessionAgent) else self._raw
            )
            self.opened = self._open(agent)
            self.info = self.opened["info"]
            self.info["_agent_version"] = self.opened.get("_agent_version")
            if self._want_clocks:
                self._set_clocks(self._transport, (self.opened.get("files") or {}).get(RECORD))
        except BaseException:
            self.close()
            raise
        return self

    def _open(self, agent: Agent) -> dict[str, Any]:
        """The ``open`` request, retried while the board is busy and ``wait_s`` allows."""
        request: dict[str, Any] = {
            "lock": self._want_lock,
            "stale_after_s": UPLOAD_TIMEOUT_S,
            "read": [RECORD] if self._want_clocks else [],
            "import_runtimes": self._import_runtimes,
            "preload": list(PRELOAD) if self._want_lock else [],
        }
        found: list[Any] = [None]
        busy: list[DeviceBusyError | None] = [None]

        def attempt() -> bool:
            try:
                found[0] = agent.call("open", INFO_TIMEOUT_S, **request)
            except DeviceBusyError as e:
                busy[0] = e
                return False
            return True

        def waiting() -> None:
            if self.on_wait is not None and busy[0] is not None:
                self.on_wait(busy[0].message.split(" is held by ", 1)[-1])

        if wait_until(attempt, self.wait_s, waiting, poll_s=1.0):
            return dict(found[0])
        assert busy[0] is not None
        if self.wait_s is not None:
            waited = "indefinitely" if math.isinf(self.wait_s) else f"{self.wait_s:g}s"
            busy[0].message += f" (waited {waited})"
        raise busy[0]

    def _set_clocks(self, t: Transport, record: str | None) -> None:
        commands = _profile_clocks(self.spec.profile)
        if commands is None:
            return
        self.telemetry = list(commands.telemetry) if commands.telemetry else None
        if not wants_stable_clocks(commands):
            return
        control = ClockControl(t, commands, self.workdir)
        control.recover(
            record, already_read=True
        )  # a session that died before restoring left a record behind
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
        if self._agent is not None:
            self._agent.close()  # the session agent releases the board lock and exits
        if self._raw is not None:
            self._raw.close()
        self._raw = self._transport = None
        self._agent = None
        self._present.clear()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ------------------------------------------------------------------ artifacts

    def artifact_name(self, local: Path, sha256: str) -> str:
        return f"{sha256}{local.suffix}"

    def push_artifact(self, local: Path, sha256: str) -> tuple[str, bool]:
        """Upload into the content-addressed cache ``WORKDIR/artifacts/<sha256><suffix>``.

        Returns (remote path, sent); ``sent`` is False when the device already had it.
        """
        return self.push_artifacts([(local, sha256)])[0]

    def push_artifacts(self, items: list[tuple[Path, str]]) -> list[tuple[str, bool]]:
        """`push_artifact` for many files: one cache query, then only the missing ones travel."""
        t, agent = self._require_open()
        folder = posixpath.join(self.workdir, "artifacts")
        names = [self.artifact_name(p, sha) for p, sha in items]
        if isinstance(agent, SessionAgent):
            todo = [n for n in dict.fromkeys(names) if n not in self._present]
            missing = (
                set(agent.call("have", HAVE_TIMEOUT_S, names=todo)["missing"]) if todo else set()
            )
        else:
            missing = {
                n
                for (p, sha), n in zip(items, names, strict=True)
                if n not in self._present and remote_sha256(t, posixpath.join(folder, n)) != sha
            }
        out = []
        for (local, sha), name in zip(items, names, strict=True):
            sent = name in missing
            if sent:
                agent.upload(local, folder, name, sha)
                missing.discard(name)
            self._present.add(name)
            out.append((posixpath.join(folder, name), sent))
        return out

    def call_with_artifact(
        self, verb: str, timeout: float, local: Path, sha256: str, **request: Any
    ) -> dict[str, Any]:
        """Run ``verb`` on the artifact ``local`` (in the request as ``artifact``/``model``).

        With a session agent the cache check is folded into the request: the agent says when the
        artifact is missing, and only then it is sent and the request repeated. ``_sent`` in the
        result says whether it travelled.
        """
        _t, agent = self._require_open()
        name = self.artifact_name(local, sha256)
        if isinstance(agent, SessionAgent):
            sent = False
            try:
                out = agent.call(verb, timeout, artifact=name, **request)
            except MissingArtifact:
                self._present.discard(name)
                sent = self.push_artifact(local, sha256)[1]
                out = agent.call(verb, timeout, artifact=name, **request)
            self._present.add(name)
        else:
            remote, sent = self.push_artifact(local, sha256)
            out = agent.call(verb, timeout, model=remote, **request)
        out["_sent"] = sent
        return out

    def pull(self, remote: str, local: Path) -> str:
        t, _ = self._require_open()
        return download_verified(t, remote, local)

    def remote_path(self, *parts: str) -> str:
        return posixpath.join(self.workdir, *parts)

    def call(self, verb: str, timeout: float, **request: Any) -> dict[str, Any]:
        return self._require_open()[1].call(verb, timeout, **request)

    def cleanup(self, dirs: list[str], timeout: float = 120.0) -> dict[str, Any]:
        """Empty cache directories of the work directory (under the board lock)."""
        self._present.clear()
        return self.call("cleanup", timeout, dirs=dirs)


def _profile_clocks(profile: str) -> Any:
    """The clock commands of a device's profile (None when the profile is unknown)."""
    from edgeprune.profiles import load_profile

    try:
        return load_profile(profile).clocks
    except EdgePruneError:
        return None
