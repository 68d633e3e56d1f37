"""edgeprune's own known_hosts file: where it is, what it pins for an address, pinning a key.

The file is ``$EDGEPRUNE_CONFIG/known_hosts``, or the device entry's ``known_hosts:``, never
``~/.ssh/known_hosts``. Entries use the OpenSSH form: ``host`` for port 22, else ``[host]:port``.
The SSH transport reads it (`edgeprune.device.ssh`); only `edgeprune.device.trust` writes it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgeprune import config
from edgeprune.device.inventory import DeviceSpec


def known_hosts_path(spec: DeviceSpec) -> Path:
    """The known_hosts file used for ``spec``."""
    if spec.known_hosts:
        return Path(spec.known_hosts).expanduser()
    return config.config_dir() / "known_hosts"


def pinned_keys(path: Path, address: str) -> list[tuple[str, str]]:
    """(key type, base64) entries pinned for ``address`` (``host`` or ``[host]:port``)."""
    if not path.is_file():
        return []
    keys = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#") and address in parts[0].split(","):
            keys.append((parts[1], parts[2]))
    return keys


def pin_host_key(path: Path, address: str, key_type: str, key_b64: str) -> None:
    """Make ``key`` the only pinned key for ``address`` (atomic rewrite, other hosts untouched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts and address in parts[0].split(","):
                continue
            keep.append(line)
    keep.append(f"{address} {key_type} {key_b64}")
    fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(keep) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
