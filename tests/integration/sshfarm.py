"""Helpers shared by the SSH device tests (markers, the fast benchmark config, /proc probes).

Fixtures live in ``conftest.py``; this module is imported by test files directly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from edgeprune._devices.testfarm import SSHD, FarmDeviceConfig, cgroups_available

from edgeprune.bench import BenchConfig

__all__ = [
    "FAST",
    "FarmDeviceConfig",
    "agent_pids",
    "alive",
    "needs_cgroups",
    "needs_root",
    "needs_sshd",
]

# Short benchmarks: these tests check the device layer, not latency.
FAST = BenchConfig(warmup_runs=2, warmup_seconds=0.05, min_runs=20, min_seconds=0.1, max_repeats=2)

needs_sshd = pytest.mark.skipif(
    not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None,
    reason="needs openssh-server (/usr/sbin/sshd, ssh-keygen): run `make sysdeps`",
)
needs_cgroups = pytest.mark.skipif(
    not cgroups_available(), reason="needs a writable cgroup v1 cpu hierarchy (root)"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount)")


def alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def agent_pids(workdir: Path) -> list[int]:
    """Agent processes whose command line mentions ``workdir`` (the farm runs on this machine)."""
    out = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmd.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"edgeprune_agent" in a for a in argv) and any(
            str(workdir).encode() in a for a in argv
        ):
            out.append(int(cmd.parent.name))
    return [p for p in out if alive(p)]


def socket_owner(local_port: int) -> int | None:
    """The pid holding the TCP socket bound to ``local_port`` on this machine (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                inodes.add(fields[9])
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return int(fd.parent.parent.name)
    return None
