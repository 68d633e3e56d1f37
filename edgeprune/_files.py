"""File helpers every layer uses: content hashes and atomic JSON writes (stdlib only)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgeprune.errors import UsageError


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_default(o: Any) -> Any:
    """`json.dump` fallback: records with ``to_dict``, paths, sets and tuples."""
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=json_default)
        f.write("\n")
    os.replace(tmp, path)


def check_writable(path: Path, directory: bool = False) -> None:
    """Raise `UsageError` unless ``path`` (a file, or with ``directory`` a run directory) can be
    written, before any work is done for it. Creates nothing: a probe file in the nearest existing
    folder is created and removed (write permission bits do not stop root; a probe does).
    """
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise UsageError(
            f"--out {path} exists and is not a directory", hint="pass a directory path as --out"
        )
    if not directory and path.is_dir():
        raise UsageError(f"--out {path} is a directory", hint="pass a file path as --out")
    anchor = path.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise UsageError(
            f"cannot write --out {path}: {anchor} is not a directory",
            hint="choose an --out whose parent folders are directories",
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeprune-probe-", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(
            f"cannot write --out {path}: {anchor} is not writable ({e.strerror})",
            hint="choose an --out in a folder you can write to",
        ) from e
