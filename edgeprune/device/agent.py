"""Talking to the on-device agent: upload it under its hash, send JSON requests, read JSON replies."""

from __future__ import annotations

import json
import posixpath
import tempfile
import uuid
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgeprune.device.transport import Transport, sha256_file, upload_verified
from edgeprune.errors import DeviceBusyError, DeviceError

AGENT_FILE = "edgeprune_agent.py"
EXIT_BUSY = 75


@cache
def agent_source() -> Path:
    """Path of the agent shipped inside the package (``devices/agent`` in a source checkout)."""
    path = Path(str(resources.files("edgeprune._devices") / "agent" / AGENT_FILE))
    if not path.is_file():
        raise RuntimeError(f"the on-device agent is missing from the installation ({path})")
    return path


@cache
def agent_sha256() -> str:
    return sha256_file(agent_source())


class AgentClient:
    """Calls the agent's verbs on one device through a transport.

    The agent is uploaded once per content hash to ``WORKDIR/agent/edgeprune_agent-<sha12>.py``;
    requests travel as uploaded JSON files (never as command-line strings) whose sha256 the agent
    checks before reading them.
    """

    def __init__(self, transport: Transport, python: str, workdir: str) -> None:
        self.t = transport
        self.python = python
        self.workdir = workdir
        self._agent_path: str | None = None

    SUBDIRS = ("agent", "artifacts", "requests", "outputs")

    @property
    def sha256(self) -> str:
        return agent_sha256()

    def ensure(self) -> str:
        """Create the work directories and upload the agent if this version is not there yet."""
        if self._agent_path is None:
            dirs = [posixpath.join(self.workdir, sub) for sub in self.SUBDIRS]
            name = f"edgeprune_agent-{self.sha256[:12]}.py"
            target = posixpath.join(self.workdir, "agent", name)
            # One round trip: create the directories and hash the agent that may be there.
            r = self.t.run(
                ["sh", "-c", _MKDIRS_AND_HASH, "sh", target, *dirs], timeout=60, check=False
            )
            self.t.check_failed(r, f"creating {self.workdir}")
            if r.stdout.split()[:1] == [self.sha256]:
                self._agent_path = target
            else:
                self._agent_path, _ = upload_verified(
                    self.t,
                    agent_source(),
                    posixpath.dirname(target),
                    name,
                    self.sha256,
                    skip_if_present=False,
                )
        return self._agent_path

    def command(self, request_path: str) -> list[str]:
        return [self.python, self.ensure(), request_path]

    def call(self, verb: str, timeout: float, **request: Any) -> dict[str, Any]:
        """Run ``verb`` with ``request`` and return the agent's ``result`` object.

        Raises `DeviceBusyError` when the device's benchmark lock is held, `DeviceError` for any
        other failure (with the agent's message), `RemoteTimeoutError` past ``timeout``.
        """
        agent = self.ensure()
        payload = {"verb": verb, "workdir": self.workdir, "delete_request": True, **request}
        if self.t.holds_stdin:
            payload["exit_on_stdin_eof"] = True
        remote = posixpath.join(self.workdir, "requests", f"{uuid.uuid4().hex}.json")
        reply = None
        try:
            with tempfile.TemporaryDirectory(prefix="edgeprune-req-") as tmp:
                local = Path(tmp) / "request.json"
                local.write_text(json.dumps(payload))
                # The agent checks the sha256 itself (and refuses a corrupt request), which saves
                # the separate verify-and-rename round trip of `upload_verified`.
                sha = sha256_file(local)
                self.t.put(local, remote)
            argv = [self.python, agent, remote, sha]
            result = self.t.run(argv, timeout=timeout, check=False)
            reply = _parse_reply(result.stdout)
        finally:
            if reply is None:  # an agent that answered has removed its request file itself
                self.t.run(["rm", "-f", "--", remote], timeout=30, check=False)
        if reply is None:
            raise DeviceError(
                f"the agent on {self.t.device} gave no JSON reply to {verb!r} (exit {result.exit_code})",
                hint=_python_hint(result.stderr, self.python),
                device=self.t.device,
                command=result.command,
                exit_code=result.exit_code,
                stderr_tail=result.tail(),
            )
        if not reply.get("ok"):
            err = reply.get("error") or {}
            cls = (
                DeviceBusyError
                if result.exit_code == EXIT_BUSY or err.get("type") == "busy"
                else DeviceError
            )
            raise cls(
                f"agent {verb} on {self.t.device} failed: {err.get('message', 'unknown error')}",
                hint="another run holds the device; wait or pick another device"
                if cls is DeviceBusyError
                else None,
                device=self.t.device,
                command=result.command,
                exit_code=result.exit_code,
                stderr_tail=result.tail(),
            )
        out = reply["result"]
        out["_command"] = result.command
        out["_agent_version"] = reply.get("agent_version")
        return out


# $1 = the agent's path, $2... = directories to create; prints the agent's sha256 if it exists.
_MKDIRS_AND_HASH = 'a=$1; shift; mkdir -p -- "$@" || exit 1; sha256sum -- "$a" 2>/dev/null; exit 0'


def _parse_reply(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _python_hint(stderr: str, python: str) -> str | None:
    if "No such file" in stderr or "not found" in stderr:
        return f"{python} does not exist on the device; set `python:` in devices.yaml"
    if "SyntaxError" in stderr:
        return "the device's Python is older than 3.6; install python3.6+"
    return None
