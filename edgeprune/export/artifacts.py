"""Content-addressed local artifact cache (ONNX files, engines).

Files live at ``$EDGEPRUNE_HOME/cache/artifacts/<sha256><suffix>``. An index maps a *source key*
(e.g. the sha256 of a checkpoint plus the export options) to the artifact's hash, so the same
model is never exported twice and never transferred twice (devices cache by the same hash).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune import config
from edgeprune._files import sha256_file


def source_key(**parts: Any) -> str:
    """A stable key for "this input exported with these options"."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Artifact:
    sha256: str
    path: Path
    size_bytes: int
    meta: dict[str, Any]


class ArtifactCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or config.cache_dir() / "artifacts"
        self.root.mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "index.json"

    def _index(self) -> dict[str, Any]:
        try:
            return json.loads(self._index_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {"sources": {}, "meta": {}}

    def _write_index(self, index: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".index.", dir=self.root)
        with os.fdopen(fd, "w") as f:
            json.dump(index, f, indent=1, sort_keys=True)
        os.replace(tmp, self._index_path)

    def path_for(self, sha: str, suffix: str) -> Path:
        return self.root / f"{sha}{suffix}"

    def add(self, path: Path, key: str | None = None, **meta: Any) -> Artifact:
        """Copy ``path`` into the cache (atomically) and remember ``key`` → its hash."""
        sha = sha256_file(path)
        dest = self.path_for(sha, path.suffix)
        if not dest.exists():
            fd, tmp = tempfile.mkstemp(prefix=f".{sha[:12]}.", dir=self.root)
            os.close(fd)
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        index = self._index()
        if key is not None:
            index["sources"][key] = {"sha256": sha, "suffix": path.suffix}
        index["meta"][sha] = {
            **index["meta"].get(sha, {}),
            **meta,
            "suffix": path.suffix,
            "added_at": time.time(),
        }
        self._write_index(index)
        return Artifact(sha, dest, dest.stat().st_size, index["meta"][sha])

    def lookup(self, key: str) -> Artifact | None:
        entry = self._index()["sources"].get(key)
        if not entry:
            return None
        path = self.path_for(entry["sha256"], entry["suffix"])
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            return None
        meta = self._index()["meta"].get(entry["sha256"], {})
        return Artifact(entry["sha256"], path, path.stat().st_size, meta)

    def list(self) -> builtins.list[Artifact]:
        index = self._index()
        out = []
        for sha, meta in sorted(index["meta"].items(), key=lambda kv: kv[1].get("added_at", 0)):
            path = self.path_for(sha, meta.get("suffix", ""))
            if path.is_file():
                out.append(Artifact(sha, path, path.stat().st_size, meta))
        return out

    def prune(
        self, older_than_s: float | None = None, keep: set[str] | None = None
    ) -> builtins.list[Artifact]:
        """Delete artifacts (all, or those added more than ``older_than_s`` ago) not in ``keep``."""
        now = time.time()
        removed = []
        index = self._index()
        for art in self.list():
            if keep and art.sha256 in keep:
                continue
            if (
                older_than_s is not None
                and now - float(art.meta.get("added_at", now)) < older_than_s
            ):
                continue
            art.path.unlink(missing_ok=True)
            index["meta"].pop(art.sha256, None)
            removed.append(art)
        gone = {a.sha256 for a in removed}
        index["sources"] = {k: v for k, v in index["sources"].items() if v["sha256"] not in gone}
        self._write_index(index)
        return removed
