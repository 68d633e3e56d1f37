"""The built-in ``local`` device: the same agent and protocol, run as subprocesses on this host."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import cast

from edgeprune.device.transport import (
    DEFAULT_TIMEOUT_S,
    ByteSource,
    Channel,
    CommandResult,
    Transport,
    log,
)
from edgeprune.errors import DeviceError, RemoteTimeoutError

KILL_GRACE_S = 5.0


class LocalTransport(Transport):
    """Runs argv lists with `subprocess` (no shell), each in its own process group.

    Deadlines mirror ``timeout -k 5 T`` on a remote device: SIGTERM to the whole group at the
    deadline, SIGKILL five seconds later.
    """

    def __init__(self, device: str = "local", env: dict[str, str] | None = None) -> None:
        self.device = device
        self.env = env

    def run(
        self, argv: list[str], timeout: float = DEFAULT_TIMEOUT_S, check: bool = True
    ) -> CommandResult:
        log.debug("%s: run %s", self.device, " ".join(argv))
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
                env=self.env,
            )
        except OSError as e:
            raise DeviceError(
                f"cannot start {argv[0]} on {self.device}: {e}",
                device=self.device,
                command=" ".join(argv),
            ) from e
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise RemoteTimeoutError(
                f"command on {self.device} passed its {timeout:g}s deadline and was killed",
                hint="raise the timeout (--timeout) or check the device",
                device=self.device,
                command=" ".join(argv),
                stderr_tail=(err or "")[-2000:],
            ) from None
        result = CommandResult(list(argv), proc.returncode, out, err, time.perf_counter() - t0)
        if check:
            self.check_failed(result, argv[0])
        return result

    def open_channel(self, argv: list[str]) -> Channel:
        """Start ``argv`` in its own process group with pipes for stdin/stdout/stderr."""
        log.debug("%s: open channel %s", self.device, " ".join(argv))
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=self.env,
            )
        except OSError as e:
            raise DeviceError(
                f"cannot start {argv[0]} on {self.device}: {e}",
                device=self.device,
                command=" ".join(argv),
            ) from e
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        def close() -> None:
            with contextlib.suppress(OSError):
                stdin.close()  # the agent exits on EOF
            try:
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc)

        stderr = cast(ByteSource, proc.stderr)  # a BufferedReader: read1 returns what has arrived
        return Channel(self.device, proc.stdout, stderr, write, close, proc.poll)

    def put(self, local: Path, remote: str) -> None:
        try:
            shutil.copyfile(local, remote)
        except OSError as e:
            raise DeviceError(
                f"copy of {local} to {remote} failed: {e}", hint=_os_hint(e), device=self.device
            ) from e

    def get(self, remote: str, local: Path) -> None:
        try:
            shutil.copyfile(remote, local)
        except OSError as e:
            raise DeviceError(f"copy of {remote} failed: {e}", device=self.device) from e


def _os_hint(e: OSError) -> str | None:
    import errno

    if e.errno == errno.EROFS:
        return "the work directory is read-only; choose a writable one"
    if e.errno == errno.ENOSPC:
        return "the disk is full; free space or run `edgeprune cache prune`"
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
        proc.wait(timeout=KILL_GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    # Children of the leader (e.g. a runtime it started) share the group: make sure none survive.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
