"""Host-side per-device locks (the board side holds its own flock in the agent).

A lock is taken at once or refused at once (`DeviceBusyError` naming the holder); ``wait`` turns
that into queueing: poll until the holder lets go or the wait is over, telling ``on_wait`` who
holds it.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from edgeprune import config
from edgeprune.errors import DeviceBusyError

WAIT_POLL_S = 0.5


class PidFlock:
    """An exclusive, non-blocking flock on ``path`` holding the owner's PID (for the busy message).

    Released when the holder exits, even if it is killed (the kernel drops flocks).
    ``try_acquire`` returns None when it got the lock, else the holder's PID as written (or '').
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> str | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def describe_pid(pid: str) -> str:
    """``process 123 (`edgeprune search …`)`` from /proc, or just the PID when it is gone."""
    try:
        raw = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return f"process {pid or 'unknown'}"
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if argv and Path(argv[0]).name.startswith("python"):
        argv = argv[2:] if argv[1:2] == ["-m"] else argv[1:]
    if argv:
        argv[0] = Path(argv[0]).name
    text = " ".join(argv)
    return f"process {pid} (`{text[:120]}`)" if text else f"process {pid}"


def wait_until(
    attempt: Callable[[], bool],
    wait_s: float | None,
    on_wait: Callable[[], None],
    poll_s: float = WAIT_POLL_S,
) -> bool:
    """Call ``attempt`` until it returns True or ``wait_s`` seconds pass (None: try once).

    ``on_wait`` runs before each pause. Returns the last attempt's answer.
    """
    deadline = time.monotonic() + (wait_s or 0.0)
    while True:
        if attempt():
            return True
        left = deadline - time.monotonic()
        if wait_s is None or left <= 0:
            return False
        on_wait()
        time.sleep(min(poll_s, left))


class DeviceLock(PidFlock):
    """Exclusive lock on ``$EDGEPRUNE_HOME/locks/<device>.lock`` (see the module docstring)."""

    def __init__(self, device: str, lock_dir: Path | None = None) -> None:
        super().__init__((lock_dir or config.home_dir() / "locks") / f"{device}.lock")
        self.device = device

    def acquire(
        self, wait_s: float | None = None, on_wait: Callable[[str], None] | None = None
    ) -> DeviceLock:
        """Take the lock; with ``wait_s`` queue for it that long (``math.inf``: until free)."""
        holder: list[str | None] = [None]

        def attempt() -> bool:
            holder[0] = self.try_acquire()
            return holder[0] is None

        def waiting() -> None:
            if on_wait is not None:
                on_wait(f"{describe_pid(holder[0] or '')} on this host")

        if not wait_until(attempt, wait_s, waiting):
            waited = "" if wait_s is None else f" after waiting {_seconds(wait_s)}"
            raise DeviceBusyError(
                f"device {self.device} is busy{waited}: held by {describe_pid(holder[0] or '')} on this host",
                hint="wait for it (`--wait [SECONDS]` queues for the lease), or pick another device of the same profile",
                device=self.device,
            )
        return self

    def __enter__(self) -> DeviceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _seconds(s: float) -> str:
    return "indefinitely" if math.isinf(s) else f"{s:g}s"
