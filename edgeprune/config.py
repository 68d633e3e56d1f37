"""Paths and settings, resolved in one place.

`None` in any API means "use the default"; the defaults are decided here. Environment variables
override platform defaults:

- ``EDGEPRUNE_HOME``: root for the measurement store, caches and the demo checkpoint
  (default: ``$XDG_DATA_HOME/edgeprune`` or ``~/.local/share/edgeprune``).
- ``EDGEPRUNE_DATA``: dataset cache (default: ``$EDGEPRUNE_HOME/data``).
- ``EDGEPRUNE_CONFIG``: user config dir holding ``devices.yaml`` (default:
  ``$XDG_CONFIG_HOME/edgeprune`` or ``~/.config/edgeprune``).
"""

from __future__ import annotations

import os
from pathlib import Path


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
