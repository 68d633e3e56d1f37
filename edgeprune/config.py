"""Paths and settings, resolved in one place.

`None` in any API means "use the default"; the defaults are decided here. Environment variables
override platform defaults:

- ``EDGEPRUNE_HOME``: root for the measurement store, caches and the demo checkpoint
  (default: ``$XDG_DATA_HOME/edgeprune`` or ``~/.local/share/edgeprune``).
- ``EDGEPRUNE_DATA``: dataset cache (default: ``$EDGEPRUNE_HOME/data``).
- ``EDGEPRUNE_CONFIG``: user config dir holding ``devices.yaml`` (default:
  ``$XDG_CONFIG_HOME/edgeprune`` or ``~/.config/edgeprune``).
- ``EDGEPRUNE_MAX_CHECKPOINT_BYTES``: the largest checkpoint (declared uncompressed size) that is
  loaded, in bytes or with a K/M/G/T suffix (binary units; default 2G).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgeprune.errors import UsageError

DEFAULT_MAX_CHECKPOINT_BYTES = 2 << 30
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def home_dir() -> Path:
    """Root of edgeprune's own state (store, caches)."""
    value = os.environ.get("EDGEPRUNE_HOME")
    if value:
        return Path(value).expanduser()
    return _xdg("XDG_DATA_HOME", ".local/share") / "edgeprune"


def data_dir() -> Path:
    value = os.environ.get("EDGEPRUNE_DATA")
    return Path(value).expanduser() if value else home_dir() / "data"


def cache_dir() -> Path:
    return home_dir() / "cache"


def config_dir() -> Path:
    value = os.environ.get("EDGEPRUNE_CONFIG")
    if value:
        return Path(value).expanduser()
    return _xdg("XDG_CONFIG_HOME", ".config") / "edgeprune"


def store_path() -> Path:
    """The SQLite measurement store."""
    return home_dir() / "edgeprune.db"


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_checkpoint_bytes() -> int:
    """The checkpoint size cap from ``EDGEPRUNE_MAX_CHECKPOINT_BYTES`` (default 2 GiB)."""
    value = os.environ.get("EDGEPRUNE_MAX_CHECKPOINT_BYTES")
    if not value:
        return DEFAULT_MAX_CHECKPOINT_BYTES
    m = _SIZE_RE.match(value)
    if m is None or int(m.group(1)) == 0:
        raise UsageError(
            f"EDGEPRUNE_MAX_CHECKPOINT_BYTES={value!r} is not a size",
            hint="use bytes or a K/M/G/T suffix, e.g. EDGEPRUNE_MAX_CHECKPOINT_BYTES=4G",
        )
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))
