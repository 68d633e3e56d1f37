"""Inventory management behind ``edgeprune devices add|list|remove|clean``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeprune.device.inventory import LOCAL, DeviceSpec, Inventory
from edgeprune.device.session import DeviceSession
from edgeprune.errors import UsageError

CLEAN_TIMEOUT_S = 120.0
# The caches the agent fills (the agent itself stays: it would be uploaded again at once).
CLEAN_DIRS = ("artifacts", "requests", "outputs", "engines")


def add_device(
    name: str,
    host: str,
    profile: str,
    port: int = 22,
    user: str | None = None,
    key: str | None = None,
    agent: bool = False,
    jump: str | None = None,
    tags: tuple[str, ...] = (),
    workdir: str | None = None,
    python: str | None = None,
    known_hosts: str | None = None,
    replace: bool = False,
    agent_mode: str | None = None,
) -> tuple[DeviceSpec, Path]:
    """Validate and add a device entry; returns it and the inventory file written.

    Raises `UnknownNameError` for a profile that is neither built in nor a user profile file.
    The host key is not touched: run ``edgeprune devices trust NAME`` next.
    """
    if key is not None and agent:
        raise UsageError("give --key or --agent, not both")
    from edgeprune.profiles import load_profile

    load_profile(profile)  # an unknown profile is refused, listing the available ones
    if key is not None:
        path = Path(key).expanduser()
        if not path.is_file():
            raise UsageError(f"key file not found: {key}", hint="pass the private key's path")
        key = str(path.resolve())
    inv = Inventory.load()
    values: dict[str, Any] = {
        "host": host,
        "port": port,
        "user": user,
        "key": key,
        "agent": agent,
        "jump": jump,
        "profile": profile,
        "tags": tuple(tags),
        "known_hosts": known_hosts,
    }
    if workdir is not None:
        values["workdir"] = workdir
    if python is not None:
        values["python"] = python
    if agent_mode is not None:
        values["agent_mode"] = agent_mode
    spec = DeviceSpec(name=name, **values)
    inv.add(spec, replace_existing=replace)
    return spec, inv.save()


def remove_device(name: str) -> tuple[DeviceSpec, Path]:
    """Remove an entry (its pinned host key stays in known_hosts)."""
    if name == LOCAL:
        raise UsageError("'local' is built in and cannot be removed")
    inv = Inventory.load()
    spec = inv.remove(name)
    return spec, inv.save()


def list_devices() -> tuple[list[DeviceSpec], Path]:
    inv = Inventory.load()
    return inv.all(), inv.path


def clean_device(name: str) -> dict[str, Any]:
    """Delete the device's artifact cache, stale requests and outputs (re-sent on demand).

    Takes the device's lock, so it never pulls files from under a running benchmark.
    """
    inv = Inventory.load()
    spec = inv.get(name)
    with DeviceSession(spec, inventory=inv) as dev:
        before = dev.info.get("disk_free_bytes")
        res = dev.cleanup(list(CLEAN_DIRS), timeout=CLEAN_TIMEOUT_S)
        dirs = [dev.remote_path(d) for d in CLEAN_DIRS]
    return {
        "device": name,
        "removed": dirs,
        "freed_bytes": res.get("freed_bytes"),
        "disk_free_before": before,
        "disk_free_after": res.get("disk_free_bytes"),
    }
