"""Leasing: run work on a named device, or on any free device of a profile."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from edgeprune.device.inventory import Inventory
from edgeprune.device.session import DeviceSession
from edgeprune.errors import DeviceBusyError

T = TypeVar("T")


def run_leased(
    device: str,
    work: Callable[[DeviceSession], T],
    inventory: Inventory | None = None,
    stable_clocks: bool = True,
) -> T:
    """Open a session on ``device`` (a name, or a profile: its devices in inventory order) and
    return ``work(session)``.

    A device whose host lock or on-device lock is held (`DeviceBusyError`, at open or while
    ``work`` runs) is skipped for the next one of the profile; it is never shared. Raises
    `DeviceBusyError` when every candidate is busy; any other error propagates at once.
    """
    inv = inventory or Inventory.load()
    candidates = inv.resolve(device)
    last_busy: DeviceBusyError | None = None
    for spec in candidates:
        try:
            with DeviceSession(spec, inventory=inv, stable_clocks=stable_clocks) as dev:
                return work(dev)
        except DeviceBusyError as e:
            last_busy = e
    assert last_busy is not None
    if len(candidates) > 1:
        raise DeviceBusyError(
            f"all {len(candidates)} devices of profile {device} are busy",
            hint="wait, or add devices to the profile",
            device=device,
        )
    raise last_busy
