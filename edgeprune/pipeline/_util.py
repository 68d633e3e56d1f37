"""Helpers shared by the pipeline flows: versions, atomic JSON, run directories."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from edgeprune._files import json_default, write_json
from edgeprune.errors import UsageError

__all__ = ["RunDir", "command_line", "fingerprint", "versions", "write_json"]


def versions() -> dict[str, str | None]:
    from importlib import metadata

    import onnx
    import onnxruntime
    import torch

    from edgeprune import __version__

    return {
        "edgeprune": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_pruning": metadata.version("torch-pruning"),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def fingerprint(data: Any) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, default=json_default).encode()
    ).hexdigest()[:16]


class RunDir:
    """A run directory built in ``.<name>.partial`` next to it and moved into place when complete.

    Re-running with the same fingerprint resumes from the partial directory's saved steps;
    a different fingerprint starts over. An existing finished run is replaced only with ``force``.
    The partial directory appears with the first file written into it, so an error found before
    any work (a usage error) leaves nothing behind.
    """

    def __init__(self, final: Path, fp: str, force: bool = False) -> None:
        self.final = final
        self.partial = final.parent / f".{final.name}.partial"
        if final.exists() and any(final.iterdir()) and not force:
            raise UsageError(
                f"{final} already exists",
                hint="pass --force to replace it, or choose another --out",
            )
        state = self.partial / "state.json"
        if self.partial.exists():
            try:
                saved = json.loads(state.read_text())
            except (OSError, json.JSONDecodeError):
                saved = {}
            if saved.get("fingerprint") != fp:
                shutil.rmtree(self.partial)
        self._state_path = state
        self.state: dict[str, Any] = (
            json.loads(state.read_text()) if state.is_file() else {"fingerprint": fp, "steps": {}}
        )
        self.resumed = bool(self.state.get("steps"))

    def path(self, name: str) -> Path:
        """Where ``name`` lives in the partial directory (writers create the directory)."""
        return self.partial / name

    def done(self, step: str) -> Any:
        return self.state["steps"].get(step)

    def mark(self, step: str, value: Any = True) -> None:
        self.state["steps"][step] = value
        write_json(self._state_path, self.state)

    def finish(self) -> Path:
        self._state_path.unlink(missing_ok=True)
        if self.final.exists():
            trash = self.final.parent / f".{self.final.name}.old-{int(time.time())}"
            os.replace(self.final, trash)
            os.replace(self.partial, self.final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.partial, self.final)
        return self.final


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
