"""One error root for everything the user can fix.

`EdgePruneError` and its subclasses mean "your input or environment is wrong, here is how to fix
it": the CLI prints one line (message + hint) and exits with code 2. Any other exception is a bug
in edgeprune and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class EdgePruneError(Exception):
    """Something the user can fix. `hint` says how; `details` carries data for scripts."""

    def __init__(self, message: str, hint: str | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            **{k: v for k, v in self.details.items() if _jsonable(v)},
        }


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
            text += f" [stderr: {last[0][:200]}]"
        return text


class DeviceBusyError(DeviceError):
    """Another benchmark holds the device's lock."""


class HostKeyError(DeviceError):
    """The device's host key is unknown or changed."""


class RemoteTimeoutError(DeviceError):
    """A remote command passed its deadline (and was killed on the device)."""


class BudgetInfeasibleError(EdgePruneError):
    """The latency budget cannot be met by any allowed model."""


class PruningError(EdgePruneError):
    """A model or plan cannot be pruned as asked (Torch-Pruning fails on it, or the result would
    not fit together); the hint names the layer to protect."""
