"""Talking to the on-device agent: two clients with one interface.

* `SessionAgent` (``agent_mode: session``, the default): one agent process per device session,
  started once over one exec channel by the bootstrap (``python -c BOOTSTRAP``: resolve the work
  directory, check the agent's hash, receive it on the same channel when it is missing) and spoken
  to in JSON lines for the rest of the session — labgrid's agentwrapper pattern. The device user's
  shell start-up is paid once per session, not per command. Uploads stream over the same channel
  and are verified and renamed by the agent. The agent enforces each request's deadline itself;
  this side waits a little longer (`LOCAL_BACKSTOP_S`) and then closes the channel, which stops it.
* `AgentClient` (``agent_mode: command``): the agent runs once per request, the request as an
  uploaded JSON file whose sha256 the agent checks. For devices where a long-lived process or
  its channel is a problem.

Both raise `DeviceBusyError` when the board's lock is held, `RemoteTimeoutError` past a deadline,
`DeviceError` for anything else the device reports, with the agent's message.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import posixpath
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgeprune.device.lock import wait_until
from edgeprune.device.transport import (
    DEFAULT_TIMEOUT_S,
    Channel,
    ChannelClosed,
    CommandResult,
    Transport,
    hint_for_text,
    log,
    sha256_file,
    upload_verified,
)
from edgeprune.errors import DeviceBusyError, DeviceError, RemoteTimeoutError

AGENT_FILE = "edgeprune_agent.py"
BOOTSTRAP_FILE = "bootstrap.py"
EXIT_BUSY = 75
# The host's deadline fires this long after the agent's own should have answered.
LOCAL_BACKSTOP_S = 15.0
START_TIMEOUT_S = 120.0
AGENT_MODES = ("session", "command")


@cache
def _packaged(name: str) -> Path:
    path = Path(str(resources.files("edgeprune._devices") / "agent" / name))
    if not path.is_file():
        raise RuntimeError(f"the on-device agent is missing from the installation ({path})")
    return path


def agent_source() -> Path:
    """Path of the agent shipped inside the package (``devices/agent`` in a source checkout)."""
    return _packaged(AGENT_FILE)


def bootstrap_source() -> Path:
    """Path of the ``python -c`` program that resolves the workdir and starts the agent."""
    return _packaged(BOOTSTRAP_FILE)


@cache
def agent_sha256() -> str:
    return sha256_file(agent_source())


def agent_name() -> str:
    return f"edgeprune_agent-{agent_sha256()[:12]}.py"


def holder_record(device: str) -> dict[str, Any]:
    """Who this session is, written into the board's lock so a busy message can say it."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "user": getpass.getuser(),
        "device": device,
        "command": " ".join(
            Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)
        )[:200],
    }


def describe_holder(holder: Any) -> str:
    """``'edgeprune deploy …' (pid 12, root@host, entry dev0, since 12:00:03)`` for a busy message."""
    if not isinstance(holder, dict) or not holder:
        return "another session (no details)"
    if "text" in holder:
        return f"process {holder['text']}"
    parts = []
    if holder.get("pid") is not None:
        parts.append(f"pid {holder['pid']}")
    if holder.get("user") or holder.get("host"):
        parts.append(f"{holder.get('user', '?')}@{holder.get('host', '?')}")
    if holder.get("device"):
        parts.append(f"entry {holder['device']}")
    if isinstance(holder.get("since"), (int, float)):
        parts.append("since " + time.strftime("%H:%M:%S", time.localtime(holder["since"])))
    what = f"`{holder['command']}`" if holder.get("command") else "a session"
    return f"{what} ({', '.join(parts)})" if parts else what


class MissingArtifact(DeviceError):
    """The device's cache does not hold the artifact a request named (send it, then retry)."""


def _error_from_reply(
    device: str,
    verb: str,
    reply: dict[str, Any],
    command: str | None,
    exit_code: int | None,
    stderr: str | None,
) -> DeviceError:
    """The exception for an agent's ``{"ok": false, "error": ...}`` reply."""
    err = reply.get("error") or {}
    kind, message = err.get("type"), str(err.get("message", "unknown error"))
    common: dict[str, Any] = {
        "device": device,
        "command": command,
        "exit_code": exit_code,
        "stderr_tail": stderr,
    }
    if kind == "busy" or exit_code == EXIT_BUSY:
        return DeviceBusyError(
            f"device {device} is busy: its board ({err.get('board', '?')}) is held by "
            f"{describe_holder(err.get('holder'))}",
            hint="wait for it (`--wait [SECONDS]` queues for the lease), or pick another device",
            holder=err.get("holder"),
            **common,
        )
    if kind == "deadline":
        return RemoteTimeoutError(
            f"agent {verb} on {device} {message}",
            hint="raise the timeout (e.g. --duration is within it) or check the device",
            **common,
        )
    if kind == "missing_artifact":
        return MissingArtifact(message, name=err.get("name"), **common)
    if kind == "corrupt":
        return DeviceError(
            f"{verb} to {device}: {message}",
            hint="retry; if it persists, check the device's disk and the link",
            **common,
        )
    return DeviceError(
        f"agent {verb} on {device} failed: {message}",
        hint=hint_for_text(message, device),
        **common,
    )


def _python_hint(stderr: str, python: str) -> str | None:
    if "No such file" in stderr or "not found" in stderr:
        return f"{python} does not exist on the device; set `python:` in devices.yaml"
    if "SyntaxError" in stderr:
        return "the device's Python is older than 3.6; install python3.6+"
    return None


def _bootstrap_argv(python: str, workdir: str, mode: str) -> list[str]:
    """``PYTHON -c BOOTSTRAP WORKDIR NAME SHA SIZE MODE``: arguments after ``-c CODE`` are data."""
    return [
        python,
        "-c",
        bootstrap_source().read_text(),
        workdir,
        agent_name(),
        agent_sha256(),
        str(agent_source().stat().st_size),
        mode,
    ]


def _bootstrap_error(device: str, python: str, text: str, stderr: str) -> DeviceError:
    return DeviceError(
        f"the agent on {device} could not start: {text}",
        hint=hint_for_text(text, device) or _python_hint(stderr, python),
        device=device,
        stderr_tail=stderr[-2000:] or None,
    )


class AgentClient:
    """Per-command agent: one process per request (see the module docstring).

    The agent is uploaded once per content hash to ``WORKDIR/agent/edgeprune_agent-<sha12>.py``;
    requests travel as uploaded JSON files (never as command-line strings) whose sha256 the agent
    checks before reading them.
    """

    mode = "command"

    def __init__(self, transport: Transport, python: str, workdir: str, device: str) -> None:
        self.t = transport
        self.python = python
        self.workdir = workdir  # resolved to an absolute path by `start`
        self.device = device
        self.holder = holder_record(device)
        self.requests = 0
        self._agent_path: str | None = None

    def start(self) -> str:
        """Resolve the work directory, create it, upload the agent if this version is missing."""
        if self._agent_path is None:
            r = self.t.run(_bootstrap_argv(self.python, self.workdir, "check"), check=False)
            facts = _last_json(r.stdout)
            if facts is None or "error" in facts:
                text = str((facts or {}).get("error") or r.tail() or f"exit {r.exit_code}")
                raise _bootstrap_error(self.device, self.python, text, r.stderr)
            self.workdir = str(facts["workdir"])
            if facts.get("agent_ok"):
                self._agent_path = str(facts["agent"])
            else:
                self._agent_path, _ = upload_verified(
                    self.t,
                    agent_source(),
                    posixpath.join(self.workdir, "agent"),
                    agent_name(),
                    agent_sha256(),
                    skip_if_present=False,
                )
        return self._agent_path

    # (seconds, on_wait) while a request finds the board busy (see `DeviceSession`); None: fail.
    busy_wait: tuple[float, Callable[[str], None] | None] | None = None

    def call(self, verb: str, timeout: float, **request: Any) -> dict[str, Any]:
        """Run ``verb`` with ``request``; return the agent's ``result`` object.

        Each request takes the board's lock itself here (the process ends with the request), so
        with `busy_wait` a request that finds the board busy queues for it.
        """
        if self.busy_wait is None:
            return self._call(verb, timeout, **request)
        seconds, on_wait = self.busy_wait
        found: list[dict[str, Any]] = []
        busy: list[DeviceBusyError] = []

        def attempt() -> bool:
            try:
                found.append(self._call(verb, timeout, **request))
            except DeviceBusyError as e:
                busy[:] = [e]
                return False
            return True

        def waiting() -> None:
            if on_wait is not None and busy:
                on_wait(busy[0].message.split(" is held by ", 1)[-1])

        if not wait_until(attempt, seconds, waiting, poll_s=1.0):
            raise busy[0]
        return found[0]

    def _call(self, verb: str, timeout: float, **request: Any) -> dict[str, Any]:
        agent = self.start()
        payload = {
            "verb": verb,
            "workdir": self.workdir,
            "delete_request": True,
            "deadline_s": timeout,
            "holder": self.holder,
            **request,
        }
        if self.t.holds_stdin:
            payload["exit_on_stdin_eof"] = True
        remote = posixpath.join(self.workdir, "requests", f"{uuid.uuid4().hex}.json")
        reply = None
        self.requests += 1
        try:
            with tempfile.TemporaryDirectory(prefix="edgeprune-req-") as tmp:
                local = Path(tmp) / "request.json"
                local.write_text(json.dumps(payload))
                # The agent checks the sha256 itself (and refuses a corrupt request), which saves
                # the separate verify-and-rename round trip of `upload_verified`.
                sha = sha256_file(local)
                self.t.put(local, remote)
            result = self.t.run(
                [self.python, "--", agent, remote, sha], timeout=timeout, check=False
            )
            reply = _last_json(result.stdout)
        finally:
            if reply is None:  # an agent that answered has removed its request file itself
                self.t.run(["rm", "-f", "--", remote], timeout=30, check=False)
        if reply is None:
            raise DeviceError(
                f"the agent on {self.device} gave no JSON reply to {verb!r} (exit {result.exit_code})",
                hint=_python_hint(result.stderr, self.python),
                device=self.device,
                command=result.command,
                exit_code=result.exit_code,
                stderr_tail=result.tail(),
            )
        if not reply.get("ok"):
            raise _error_from_reply(
                self.device, verb, reply, result.command, result.exit_code, result.tail()
            )
        out = reply["result"]
        out["_command"] = result.command
        out["_agent_version"] = reply.get("agent_version")
        return out

    def upload(self, local: Path, remote_dir: str, name: str, sha256: str) -> str:
        """Send ``local`` to ``remote_dir/name``: verified on the device, renamed atomically."""
        path, _ = upload_verified(self.t, local, remote_dir, name, sha256, skip_if_present=False)
        return path

    def close(self) -> None:
        self._agent_path = None


class SessionAgent:
    """One agent process for the whole device session, spoken to in JSON lines (see module docs).

    Requests are serialised (one at a time per session). After a lost link or a passed deadline
    the channel is closed and every later call raises: open a new session.
    """

    mode = "session"

    def __init__(self, transport: Transport, python: str, workdir: str, device: str) -> None:
        self.t = transport
        self.python = python
        self.workdir = workdir
        self.device = device
        self.holder = holder_record(device)
        self.requests = 0
        self.hello: dict[str, Any] = {}
        self._chan: Channel | None = None
        self._ids = 0
        self._lock = threading.Lock()
        self._command = ""

    def start(self, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Start the agent over one exec channel (sending it when the device lacks this version)."""
        if self._chan is not None:
            return self.hello
        argv = _bootstrap_argv(self.python, self.workdir, "serve")
        self._command = f"{self.python} -c BOOTSTRAP {' '.join(argv[3:])}"
        chan = self.t.open_channel(argv)
        self._chan = chan
        try:
            msg = self._first(chan, timeout)
            if msg.get("need_agent"):
                chan.send_file(agent_source())
                msg = self._first(chan, timeout)
            if "hello" not in msg:
                raise _bootstrap_error(
                    self.device, self.python, str(msg.get("error") or msg), chan.stderr_tail()
                )
        except BaseException:
            self.abort()
            raise
        self.hello = msg["hello"]
        self.workdir = str(self.hello["workdir"])
        return self.hello

    def _first(self, chan: Channel, timeout: float) -> dict[str, Any]:
        try:
            msg, _ = chan.receive(timeout)
        except TimeoutError:
            raise RemoteTimeoutError(
                f"the agent on {self.device} did not start within {timeout:g}s",
                hint="check the device's load and its python",
                device=self.device,
                command=self._command,
            ) from None
        except ChannelClosed:
            time.sleep(0.05)  # let the stderr reader catch the last words
            stderr = chan.stderr_tail()
            text = stderr.strip().splitlines()[-1] if stderr.strip() else "it exited at once"
            if chan.noise:
                text += f" (the login shell printed: {chan.noise[-1]})"
            raise _bootstrap_error(self.device, self.python, text, stderr) from None
        return msg

    def call(
        self, verb: str, timeout: float, _body: Path | None = None, **request: Any
    ) -> dict[str, Any]:
        """Send one request (with ``_body``'s bytes after it for an upload); return the result.

        ``timeout`` is the request's deadline on the device; this side gives up
        `LOCAL_BACKSTOP_S` later and closes the session.
        """
        with self._lock:
            chan = self._chan
            if chan is None or chan.closed:
                raise DeviceError(
                    f"the agent session on {self.device} is closed",
                    hint="open a new session (the previous request lost the link or its deadline)",
                    device=self.device,
                )
            self._ids += 1
            rid = self._ids
            self.requests += 1
            req: dict[str, Any] = {"id": rid, "verb": verb, "deadline_s": timeout, **request}
            req.setdefault("holder", self.holder)
            if _body is not None:
                req["stream_bytes"] = _body.stat().st_size
            log.debug("%s: agent %s %s", self.device, verb, _loggable(request))
            try:
                chan.send(json.dumps(req, separators=(",", ":")).encode() + b"\n")
                if _body is not None:
                    chan.send_file(_body)
                msg, body = chan.receive(timeout + LOCAL_BACKSTOP_S)
            except TimeoutError:
                self.abort()
                raise RemoteTimeoutError(
                    f"agent {verb} on {self.device} passed its {timeout:g}s deadline and got no "
                    "answer; the session was closed",
                    hint="the device or the link may be stuck; `edgeprune devices check` it",
                    device=self.device,
                    command=self._command,
                ) from None
            except ChannelClosed:
                self.abort()
                raise DeviceError(
                    f"lost the connection to {self.device} during {verb}",
                    hint="check that the device is up; rerun the command (finished results are kept)",
                    device=self.device,
                    command=self._command,
                    stderr_tail=chan.stderr_tail()[-2000:] or None,
                ) from None
        if msg.get("id") != rid:
            self.abort()
            raise DeviceError(
                f"the agent on {self.device} answered out of turn ({msg.get('id')} != {rid})",
                device=self.device,
            )
        if not msg.get("ok"):
            err = _error_from_reply(self.device, verb, msg, self._command, None, None)
            if isinstance(err, RemoteTimeoutError):
                self.abort()  # the agent stops itself after a deadline
            raise err
        out = msg["result"]
        if body is not None:
            out["_body"] = body
        out["_command"] = f"agent {verb} (session {self.hello.get('pid')})"
        out["_agent_version"] = msg.get("agent_version")
        return out

    def upload(self, local: Path, remote_dir: str, name: str, sha256: str) -> str:
        """Stream ``local`` to ``remote_dir/name`` on the session channel; the agent writes it to a
        unique ``.part``, checks the sha256 and renames it (nothing is left on failure)."""
        timeout = 60.0 + local.stat().st_size / 1e6  # >= 1 MB/s
        r = self.call(
            "upload",
            timeout,
            _body=local,
            target=posixpath.join(remote_dir, name),
            sha256=sha256,
        )
        return str(r["path"])

    def close(self) -> None:
        """Say goodbye (the agent releases the board lock and exits) and close the channel."""
        chan, self._chan = self._chan, None
        if chan is None or chan.closed:
            return
        try:
            self._ids += 1
            chan.send(json.dumps({"id": self._ids, "verb": "close"}).encode() + b"\n")
            chan.receive(5.0)
        except (ChannelClosed, TimeoutError):
            pass
        chan.close()

    def abort(self) -> None:
        """Close the channel without a goodbye: the agent sees EOF and stops what it runs."""
        chan, self._chan = self._chan, None
        if chan is not None:
            chan.close()


def _loggable(request: dict[str, Any]) -> str:
    """The request for the debug log: argv in full, bulky values shortened."""
    shown = {}
    for k, v in request.items():
        if k == "holder":
            continue
        text = json.dumps(v, default=str)
        shown[k] = v if len(text) <= 200 else f"<{len(text)} chars>"
    return json.dumps(shown, default=str)


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


class AgentTransport(Transport):
    """The `Transport` interface over a session agent: commands are the agent's ``exec`` requests
    (no shell start-up each), files travel on its channel. Lets generic code (clocks, provision,
    verified transfers) use the session without new channels."""

    def __init__(self, agent: SessionAgent, raw: Transport) -> None:
        self.agent = agent
        self.raw = raw
        self.device = agent.device

    @property
    def command_count(self) -> int:  # type: ignore[override]
        return self.raw.command_count

    def run(
        self, argv: list[str], timeout: float = DEFAULT_TIMEOUT_S, check: bool = True
    ) -> CommandResult:
        t0 = time.perf_counter()
        r = self.agent.call("exec", timeout + 10, argv=list(argv), limit_s=timeout)
        result = CommandResult(
            list(argv), int(r["exit_code"]), r["stdout"], r["stderr"], time.perf_counter() - t0
        )
        if r.get("timed_out"):
            raise RemoteTimeoutError(
                f"command on {self.device} passed its {timeout:g}s deadline and was killed there",
                hint="raise the timeout or check the device",
                device=self.device,
                command=result.command,
                exit_code=124,
                stderr_tail=result.tail(),
            )
        if check:
            self.check_failed(result, argv[0])
        return result

    def put(self, local: Path, remote: str) -> None:
        timeout = 60.0 + local.stat().st_size / 1e6
        self.agent.call("upload", timeout, _body=local, target=remote)

    def get(self, remote: str, local: Path) -> None:
        r = self.agent.call("download", 600.0, path=remote)
        local.write_bytes(r.get("_body") or b"")

    def close(self) -> None:
        self.raw.close()


def npy_b64(array: Any) -> str:
    """An array as base64 ``.npy`` bytes (how arrays travel inside requests; never pickled)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def npy_from_b64(text: str) -> Any:
    import io

    import numpy as np

    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)
