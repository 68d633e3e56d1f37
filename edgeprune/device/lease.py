"""Leasing: run work on a named device, or on any free device of a profile."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from edgeprune.device.inventory import Inventory
from edgeprune.device.session import DeviceSession
from edgeprune.errors import DeviceBusyError

T = TypeVar("T")
WAIT_POLL_S = 1.0


def run_leased(
    device: str,
    work: Callable[[DeviceSession], T],
    inventory: Inventory | None = None,
    stable_clocks: bool = True,
    wait_s: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> T:
    """Open a session on ``device`` (a name, or a profile: its devices in inventory order) and
    return ``work(session)``.

    A device whose host lock or board lock is held (`DeviceBusyError`, at open or while ``work``
    runs) is skipped for the next one of the profile; it is never shared. When every candidate is
    busy: without ``wait_s`` raise `DeviceBusyError` at once (naming who holds it); with it, queue
    — try the candidates again until one is free or ``wait_s`` seconds (``math.inf``: no limit)
    have passed, telling ``on_wait`` who holds the device. Any other error propagates at once.
    """
    inv = inventory or Inventory.load()
    candidates = inv.resolve(device)
    if len(candidates) == 1:  # the session itself queues for the host lock and the board lock
        with DeviceSession(
            candidates[0],
            inventory=inv,
            stable_clocks=stable_clocks,
            wait_s=wait_s,
            on_wait=on_wait,
        ) as dev:
            return work(dev)
    deadline = time.monotonic() + (wait_s or 0.0)
    told: set[str] = set()
    while True:
        last_busy: DeviceBusyError | None = None
        for spec in candidates:
            try:
                with DeviceSession(spec, inventory=inv, stable_clocks=stable_clocks) as dev:
                    return work(dev)
            except DeviceBusyError as e:
                last_busy = e
        assert last_busy is not None
        left = deadline - time.monotonic()
        if wait_s is None or left <= 0:
            break
        if on_wait is not None and last_busy.message not in told:
            told.add(last_busy.message)
            on_wait(last_busy.message)
        time.sleep(min(WAIT_POLL_S, left))
    raise DeviceBusyError(
        f"all {len(candidates)} devices of profile {device} are busy (last: {last_busy.message})",
        hint="wait for one (`--wait [SECONDS]` queues for the lease), or add devices to the profile",
        device=device,
    )
