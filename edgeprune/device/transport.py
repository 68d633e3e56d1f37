"""The transport interface and the file-transfer protocol every transport shares.

A transport runs an argv on the device with a deadline, and copies files. On top of those two
primitives this module implements checksum-verified atomic uploads into a content-addressed
remote cache: sha256 locally → put to ``.<name>.<uuid>.part`` in the target directory →
``sha256sum`` on the device → atomic ``mv``. An artifact already present with the same hash is not
sent again.
"""

from __future__ import annotations

import posixpath
import shlex
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from edgeprune._files import sha256_file
from edgeprune.errors import DeviceError

DEFAULT_TIMEOUT_S = 60.0


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
                hint=_hint_for(result, self.device),
                device=self.device,
                command=result.command,
                exit_code=result.exit_code,
                stderr_tail=result.tail(),
            )


def _hint_for(result: CommandResult, device: str = "NAME") -> str | None:
    text = (result.stderr + result.stdout).lower()
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
    timeout: float = 600.0,
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


def download_verified(t: Transport, remote: str, local: Path, timeout: float = 600.0) -> str:
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
