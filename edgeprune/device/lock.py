"""Host-side per-device locks (the device side holds its own flock in the agent)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edgeprune import config
from edgeprune.errors import DeviceBusyError


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


class DeviceLock(PidFlock):
    """Exclusive, non-blocking lock on ``$EDGEPRUNE_HOME/locks/<device>.lock``.

    Released when the holder exits, even if it is killed (the kernel drops flocks).
    """

    def __init__(self, device: str, lock_dir: Path | None = None) -> None:
        super().__init__((lock_dir or config.home_dir() / "locks") / f"{device}.lock")
        self.device = device

    def acquire(self) -> DeviceLock:
        holder = self.try_acquire()
        if holder is not None:
            raise DeviceBusyError(
                f"device {self.device} is busy (held by process {holder or 'unknown'} on this host)",
                hint="wait for the other run to finish, or pick another device of the same profile",
                device=self.device,
            )
        return self

    def __enter__(self) -> DeviceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
