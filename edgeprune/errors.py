"""One error root for everything the user can fix.

`EdgePruneError` and its subclasses mean "your input or environment is wrong, here is how to fix
it": the CLI prints one line (message + hint) and exits with code 2. Any other exception is a bug
in edgeprune and keeps its traceback.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_MIN_SENTENCE = 16  # a shorter "sentence" ("Error.") says too little to end a message on


class EdgePruneError(Exception):
    """Something the user can fix. `hint` says how; `details` carries data for scripts."""

    def __init__(self, message: str, hint: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        # One line is the contract, even when a path or a quoted error holds a line break.
        return text.replace("\r", "\\r").replace("\n", "\\n")

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            **{k: v for k, v in self.details.items() if _jsonable(v)},
        }


def one_line(text: object, limit: int = 200) -> str:
    """The first non-empty line of ``text`` (an exception or a string), kept whole.

    A line longer than ``limit`` characters ends at its last sentence end before the limit, or
    else at its last word boundary followed by "…", never in the middle of a word. An exception
    with an empty message gives its type name.
    """
    if isinstance(text, BaseException):
        line = one_line(str(text), limit)
        return line or type(text).__name__
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    if len(line) <= limit:
        return line
    head = line[: limit + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() >= _MIN_SENTENCE]
    if ends:
        return head[: ends[-1]]
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else line[:limit]).rstrip(" ,;:") + "…"


def _jsonable(v: object) -> bool:
    return v is None or isinstance(v, (str, int, float, bool, list, dict, tuple))


class UsageError(EdgePruneError):
    """A flag or argument has a value that cannot work."""


class NotFoundError(EdgePruneError):
    """A named thing (file, model, dataset, device, profile) does not exist."""


class UnknownNameError(NotFoundError):
    """A name is not in a registry; the message lists the choices."""

    def __init__(self, kind: str, name: str, choices: Sequence[str], hint: str | None = None):
        shown = ", ".join(sorted(choices))
        super().__init__(
            f"unknown {kind} {name!r}; choose one of: {shown}",
            hint=hint,
            kind=kind,
            name=name,
            choices=sorted(choices),
        )


class CheckpointError(EdgePruneError):
    """A checkpoint is missing, truncated, from an unknown format version or unsafe."""


class UntrustedCodeError(CheckpointError):
    """A checkpoint's architecture needs code the user has not named (or names other code)."""


class StoreError(EdgePruneError):
    """The measurement store cannot be opened or written (a full disk, a read-only database)."""


class FileSystemError(EdgePruneError):
    """A file could not be written or read: a full disk, a read-only filesystem, no permission."""


_OS_HINTS = {
    errno.ENOSPC: "free space on that filesystem and rerun the command (finished work is kept)",
    errno.EDQUOT: "free space within your disk quota and rerun the command (finished work is kept)",
    errno.EROFS: "the filesystem is read-only: choose a writable location",
    errno.EACCES: "check the file's permissions, or choose a location you can write to",
    errno.EPERM: "check the file's permissions, or choose a location you can write to",
    errno.ENAMETOOLONG: "use a shorter file name",
}


@contextmanager
def filesystem_errors() -> Iterator[None]:
    """Turn the OS errors a user fixes (see `_OS_HINTS`) into `FileSystemError`; other OS errors
    are bugs and propagate unchanged."""
    try:
        yield
    except OSError as e:
        hint = _OS_HINTS.get(e.errno or 0)
        if hint is None:
            raise
        where = f": {e.filename}" if e.filename else ""
        raise FileSystemError(f"{e.strerror or e}{where}", hint=hint, errno=e.errno) from e


class DataError(EdgePruneError):
    """A dataset cannot be found, read, verified or does not fit the model."""


class ShapeMismatchError(EdgePruneError):
    """The model's input shape does not match the data or the requested input."""


class ExportError(EdgePruneError):
    """An export failed its checks (ONNX checker, parity, opset)."""


class DependencyMissingError(EdgePruneError):
    """An optional dependency is not installed; the hint names the extra to install."""


class DeviceError(EdgePruneError):
    """A device could not be reached, refused us, or a remote command failed.

    Carries the device name, the command, its exit code and the tail of stderr when known.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        device: str | None = None,
        command: str | None = None,
        exit_code: int | None = None,
        stderr_tail: str | None = None,
        **details: object,
    ) -> None:
        super().__init__(
            message,
            hint=hint,
            device=device,
            command=command,
            exit_code=exit_code,
            stderr_tail=stderr_tail,
            **details,
        )
        self.device = device
        self.command = command
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        text = super().__str__()
        if self.stderr_tail:
            last = self.stderr_tail.strip().splitlines()[-1:] or [""]
            text += f" [stderr: {one_line(last[0])}]"
        return text


class DeviceBusyError(DeviceError):
    """Another benchmark holds the device's lock."""


class HostKeyError(DeviceError):
    """The device's host key is unknown or changed."""


class RemoteTimeoutError(DeviceError):
    """A remote command passed its deadline (and was killed on the device)."""


class BudgetInfeasibleError(EdgePruneError):
    """The latency budget cannot be met by any allowed model."""


class UnstableMeasurementError(EdgePruneError):
    """A latency measurement stayed above the protocol's CV threshold after repeats: the device
    is too noisy for the number to mean anything."""
