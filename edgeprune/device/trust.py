"""Pinned host keys: the only way a device's SSH host key becomes trusted.

edgeprune reads its own known_hosts file — ``$EDGEPRUNE_CONFIG/known_hosts``, or the device
entry's ``known_hosts:`` — never ``~/.ssh/known_hosts``, and never adds a key by itself during a
run. `trust_device` connects (without logging in), shows the key's SHA256 fingerprint and pins it
after an explicit confirmation. Entries use the OpenSSH form: ``host`` for port 22, else
``[host]:port``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.device.inventory import Inventory
from edgeprune.device.known_hosts import known_hosts_path, pin_host_key, pinned_keys
from edgeprune.device.ssh import fetch_host_key, host_key_fingerprint
from edgeprune.errors import HostKeyError, UsageError

__all__ = ["TrustResult", "trust_device"]


@dataclass
class TrustResult:
    """What `trust_device` saw and did."""

    device: str
    address: str
    key_type: str
    fingerprint: str
    known_hosts: str
    previous: list[str] = field(default_factory=list)  # fingerprints pinned before
    pinned: bool = False

    @property
    def already_trusted(self) -> bool:
        return self.previous == [self.fingerprint]

    @property
    def changed(self) -> bool:
        return bool(self.previous) and self.fingerprint not in self.previous

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "already_trusted": self.already_trusted, "changed": self.changed}


def trust_device(
    name: str,
    yes: bool = False,
    confirm: Callable[[TrustResult], bool] | None = None,
    inventory: Inventory | None = None,
    replace: bool = False,
) -> TrustResult:
    """Fetch ``name``'s host key and pin it when ``yes`` or ``confirm(result)`` says so.

    A key that differs from the pinned one is never replaced without ``replace`` (like OpenSSH,
    which never replaces a changed key by itself): `HostKeyError` shows both fingerprints.
    Raises `UsageError` when neither confirms; `DeviceError` when the device cannot be reached;
    `HostKeyError` when a jump host on the way is not trusted itself.
    """
    inv = inventory or Inventory.load()
    spec = inv.get(name)
    if spec.kind != "ssh":
        raise UsageError(f"{name} is the built-in local device; it has no host key")
    key_type, key_b64, fingerprint = fetch_host_key(spec, inv)
    path = known_hosts_path(spec)
    result = TrustResult(
        device=name,
        address=spec.address,
        key_type=key_type,
        fingerprint=fingerprint,
        known_hosts=str(path),
        previous=[host_key_fingerprint(t, b) for t, b in pinned_keys(path, spec.address)],
    )
    if result.already_trusted:
        return result
    if result.changed and not replace:
        raise HostKeyError(
            f"the host key of {name} ({spec.address}) CHANGED: pinned "
            f"{', '.join(result.previous)}, it now offers {key_type} {fingerprint}; nothing was pinned",
            hint="if the device was reinstalled, compare the new fingerprint with "
            f"`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on it, then run "
            f"`edgeprune devices trust {name} --replace`; otherwise someone may be intercepting the connection",
            device=name,
            fingerprint=fingerprint,
            pinned_fingerprint=", ".join(result.previous),
            known_hosts=str(path),
        )
    if not yes and (confirm is None or not confirm(result)):
        raise UsageError(
            f"the host key of {name} was not pinned ({key_type} {fingerprint})",
            hint="compare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the device, then run "
            f"`edgeprune devices trust {name} --yes`" + (" --replace" if result.changed else ""),
        )
    pin_host_key(path, spec.address, key_type, key_b64)
    result.pinned = True
    return result
