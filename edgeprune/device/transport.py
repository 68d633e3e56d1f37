"""The transport interface and the file-transfer protocol every transport shares.

A transport runs an argv on the device with a deadline, copies files, and opens a `Channel`: a
long-lived remote process spoken to over its stdin/stdout (the session agent). On top of the
command and copy primitives this module implements checksum-verified atomic uploads into a
content-addressed remote cache: sha256 locally → put to ``.<name>.<uuid>.part`` in the target
directory → ``sha256sum`` on the device → atomic ``mv``. An artifact already present with the
same hash is not sent again.

Every remote argv is logged at DEBUG on the ``edgeprune.device`` logger (``-v`` shows them).
"""

from __future__ import annotations

import collections
import json
import logging
import posixpath
import queue
import shlex
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from edgeprune._files import sha256_file
from edgeprune.errors import DeviceError

DEFAULT_TIMEOUT_S = 60.0
# Uploads are abandoned after this long; a ``.part`` file older than it belongs to no live session.
UPLOAD_TIMEOUT_S = 600.0
STDERR_TAIL_BYTES = 8192
log = logging.getLogger("edgeprune.device")


@dataclass
class CommandResult:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)

    def tail(self, lines: int = 10) -> str:
        return "\n".join((self.stderr or self.stdout).strip().splitlines()[-lines:])


class Transport(ABC):
    """How commands and files reach one device. Implementations: local subprocess, SSH (Fabric)."""

    device: str
    # True when `run` keeps the command's stdin open until it ends and closes it when the link
    # drops (SSH): the agent is then asked to exit on EOF, so a lost connection frees the device.
    holds_stdin: bool = False

    @abstractmethod
    def run(
        self, argv: list[str], timeout: float = DEFAULT_TIMEOUT_S, check: bool = True
    ) -> CommandResult:
        """Run ``argv`` (each element quoted; never interpreted by a shell) within ``timeout`` seconds.

        The process is killed on the device when the deadline passes (`RemoteTimeoutError`). With
        ``check`` a non-zero exit raises `DeviceError` carrying the command, exit code and stderr.
        """

    @abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to exactly ``remote`` (no verification; see `upload_verified`)."""

    @abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy a remote file to ``local``."""

    def open_channel(self, argv: list[str]) -> Channel:
        """Start ``argv`` on the device with no deadline and return its stdin/stdout as a `Channel`.

        The process ends when the channel closes (its stdin reaches EOF): the caller's protocol
        enforces deadlines.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot open channels")

    # Shell start-ups on the device so far (one per exec channel): what the layer's overhead is made of.
    command_count: int = 0

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_failed(self, result: CommandResult, what: str) -> None:
        if not result.ok:
            raise DeviceError(
                f"{what} failed on device {self.device} (exit {result.exit_code})",
                hint=hint_for(result, self.device),
                device=self.device,
                command=result.command,
                exit_code=result.exit_code,
                stderr_tail=result.tail(),
            )


def hint_for(result: CommandResult, device: str = "NAME") -> str | None:
    return hint_for_text(result.stderr + result.stdout, device)


def hint_for_text(text: str, device: str = "NAME") -> str | None:
    """How to fix a device-side failure, judged from its message (disk full, read-only, ...)."""
    text = text.lower()
    if "read-only file system" in text:
        return "the device's work directory is on a read-only file system; set a writable workdir in devices.yaml"
    if "no space left" in text:
        return f"the device's disk is full; free space or run `edgeprune devices clean {device}` (drops its artifact cache)"
    if "permission denied" in text:
        return "the device user cannot write its work directory; fix its permissions or choose another workdir"
    return None


def remote_sha256(t: Transport, path: str, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """sha256 of a remote file, or None when it does not exist."""
    r = t.run(["sha256sum", "--", path], timeout=timeout, check=False)
    if not r.ok:
        return None
    return r.stdout.split()[0] if r.stdout.strip() else None


def mkdirs(t: Transport, path: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    t.check_failed(
        t.run(["mkdir", "-p", "--", path], timeout=timeout, check=False), f"creating {path}"
    )


def upload_verified(
    t: Transport,
    local: Path,
    remote_dir: str,
    name: str,
    sha256: str | None = None,
    timeout: float = UPLOAD_TIMEOUT_S,
    skip_if_present: bool = True,
) -> tuple[str, bool]:
    """Upload ``local`` to ``remote_dir/name`` atomically and verified.

    Returns (remote path, sent) where ``sent`` is False when the same content was already there.
    Raises `DeviceError` on a checksum mismatch (the partial file is removed).
    """
    sha = sha256 or sha256_file(local)
    target = posixpath.join(remote_dir, name)
    if skip_if_present and remote_sha256(t, target) == sha:
        return target, False
    tmp = posixpath.join(remote_dir, f".{name}.{uuid.uuid4().hex}.part")
    try:
        t.put(local, tmp)
        # One round trip: checksum on the device, then the atomic rename (or drop a corrupt copy).
        r = t.run(
            ["sh", "-c", _VERIFY_AND_MOVE, "sh", tmp, sha, target], timeout=timeout, check=False
        )
    except BaseException:
        t.run(["rm", "-f", "--", tmp], timeout=DEFAULT_TIMEOUT_S, check=False)
        raise
    if r.exit_code == _EXIT_CORRUPT:
        got = r.stdout.strip()
        raise DeviceError(
            f"upload of {local.name} to {t.device} is corrupt (sha256 {got[:12]}… != {sha[:12]}…)",
            hint="retry; if it persists, check the device's disk and the link",
            device=t.device,
        )
    t.check_failed(r, f"moving {name} into place")
    return target, True


# $1 = temporary file, $2 = expected sha256, $3 = target. Prints the wrong hash and exits 65 when
# the copy is corrupt; the temporary file never survives a failure.
_EXIT_CORRUPT = 65
_VERIFY_AND_MOVE = (
    'got=$(sha256sum -- "$1") || { rm -f -- "$1"; exit 1; }; got=${got%% *}; '
    'if [ "$got" != "$2" ]; then rm -f -- "$1"; echo "$got"; exit 65; fi; '
    'mv -f -- "$1" "$3" || { rm -f -- "$1"; exit 1; }'
)


def download_verified(
    t: Transport, remote: str, local: Path, timeout: float = UPLOAD_TIMEOUT_S
) -> str:
    """Download ``remote`` to ``local`` and check it against the device's sha256. Returns the hash."""
    expected = remote_sha256(t, remote, timeout)
    if expected is None:
        raise DeviceError(f"{remote} does not exist on {t.device}", device=t.device)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.part")
    try:
        t.get(remote, tmp)
        got = sha256_file(tmp)
        if got != expected:
            raise DeviceError(f"download of {remote} from {t.device} is corrupt", device=t.device)
        tmp.replace(local)
    finally:
        if tmp.exists():
            tmp.unlink()
    return expected


# --------------------------------------------------------------------------- channels

_EOF = object()


class ByteSource(Protocol):
    def read1(self, n: int, /) -> bytes: ...


class ChannelClosed(Exception):
    """The remote process's stdout ended (it exited, or the link dropped)."""


class Channel:
    """A remote process's stdin/stdout as a stream of JSON lines, each optionally followed by raw
    bytes (``"stream_bytes": N``), with a deadline on every read.

    A reader thread parses stdout into messages (lines that are not JSON objects, e.g. what a
    device user's ``.bashrc`` prints, are kept as noise for error messages) and a second one keeps
    the tail of stderr, so neither pipe ever fills up. ``write`` and ``close`` come from the
    transport (a paramiko channel or a subprocess).
    """

    def __init__(
        self,
        device: str,
        stdout: IO[bytes],
        stderr: ByteSource | None,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        exit_status: Callable[[], int | None],
    ) -> None:
        self.device = device
        self._write = write
        self._close = close
        self._exit_status = exit_status
        self._messages: queue.Queue[Any] = queue.Queue()
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_size = 0
        self.noise: collections.deque[str] = collections.deque(maxlen=20)
        self.closed = False
        threading.Thread(
            target=self._read, args=(stdout,), name=f"chan-{device}", daemon=True
        ).start()
        if stderr is not None:
            threading.Thread(
                target=self._drain, args=(stderr,), name=f"chan-err-{device}", daemon=True
            ).start()

    def _read(self, out: IO[bytes]) -> None:
        try:
            while True:
                line = out.readline()
                if not line:
                    break
                text = line.strip()
                if not text:
                    continue
                try:
                    msg = json.loads(text)
                except ValueError:
                    msg = None
                if not isinstance(msg, dict):
                    self.noise.append(text[:300].decode(errors="replace"))
                    continue
                body = None
                n = msg.get("stream_bytes")
                if isinstance(n, int) and n > 0:
                    body = _read_exact(out, n)
                    if body is None:
                        break
                self._messages.put((msg, body))
        except (OSError, ValueError, EOFError):
            pass
        self._messages.put(_EOF)

    def _drain(self, err: ByteSource) -> None:
        try:
            while True:
                data = err.read1(4096)
                if not data:
                    return
                self._stderr.append(data)
                self._stderr_size += len(data)
                while self._stderr_size > STDERR_TAIL_BYTES and len(self._stderr) > 1:
                    self._stderr_size -= len(self._stderr.popleft())
        except (OSError, ValueError, EOFError):
            return

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ChannelClosed
        try:
            self._write(data)
        except (OSError, EOFError, ValueError) as e:
            raise ChannelClosed(str(e)) from None

    def send_file(self, path: Path, chunk: int = 1 << 20) -> None:
        with open(path, "rb") as f:
            for data in iter(lambda: f.read(chunk), b""):
                self.send(data)

    def receive(self, timeout: float) -> tuple[dict[str, Any], bytes | None]:
        """The next message, waiting at most ``timeout`` seconds.

        Raises `TimeoutError` when none came in time, `ChannelClosed` when the process is gone.
        """
        try:
            item = self._messages.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise TimeoutError from None
        if item is _EOF:
            self._messages.put(_EOF)  # every later receive sees the end too
            raise ChannelClosed
        msg, body = item
        return msg, body

    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")[-STDERR_TAIL_BYTES:]

    def exit_status(self) -> int | None:
        return self._exit_status()

    def close(self) -> None:
        """Close the process's stdin and the link; the remote process exits on EOF."""
        if not self.closed:
            self.closed = True
            self._close()


def _read_exact(out: IO[bytes], n: int) -> bytes | None:
    parts, left = [], n
    while left > 0:
        data = out.read(left)
        if not data:
            return None
        parts.append(data)
        left -= len(data)
    return b"".join(parts)
