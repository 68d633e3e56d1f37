"""Stable clocks for a benchmark session: store, set, and restore — also after errors and crashes.

A device profile's ``clocks:`` section (`edgeprune.profiles.ClockCommands`) says how: e.g. on a
Jetson ``nvpmodel -m 0`` + ``jetson_clocks`` (after ``jetson_clocks --store``), on a Raspberry Pi
or x86 box the cpufreq governor ``performance``. Every command is an absolute argv run through the
transport (quoted, with a deadline), as root or with ``sudo -n``; a device that allows neither is
measured as it is and the record says why. Before changing anything a restore record is written
to ``WORKDIR/clocks-restore.json`` on the device, so a session that died before restoring (lost
connection, killed client) is repaired by the next session on that device.
"""

from __future__ import annotations

import json
import posixpath
import re
import tempfile
from pathlib import Path
from typing import Any

from edgeprune.device.transport import Transport, upload_verified
from edgeprune.errors import DeviceError

RECORD = "clocks-restore.json"
CMD_TIMEOUT_S = 60.0
GOVERNOR_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_LIST_GOVERNORS = (
    "for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do "
    '[ -f "$f" ] && echo "$f $(cat "$f")"; done; true'
)
_SET_GOVERNORS = 'g=$1; shift; for f in "$@"; do echo "$g" > "$f" || exit 1; done'


def wants_stable_clocks(commands: Any) -> bool:
    """Whether a profile's clock commands ask for any change (not only for reading state)."""
    if commands is None:
        return False
    return any(
        getattr(commands, k, None) is not None
        for k in ("max_clocks", "governor", "set_power_mode", "store_clocks")
    )


class ClockControl:
    """Applies and undoes one profile's clock settings on one device (see the module docstring)."""

    def __init__(self, transport: Transport, commands: Any, workdir: str) -> None:
        self.t = transport
        self.c = commands
        self.record_path = posixpath.join(workdir, RECORD)
        self._prefix: list[str] | None = None
        self.record: dict[str, Any] = {"applied": [], "skipped": [], "restored": []}

    # ------------------------------------------------------------------ privileges

    def _privilege(self) -> list[str] | None:
        """[] as root, ["sudo", "-n"] with passwordless sudo, None when neither."""
        if self._prefix is None:
            uid = self.t.run(["id", "-u"], timeout=CMD_TIMEOUT_S, check=False).stdout.strip()
            if uid == "0":
                self._prefix = []
            elif self.t.run(["sudo", "-n", "true"], timeout=CMD_TIMEOUT_S, check=False).ok:
                self._prefix = ["sudo", "-n"]
            else:
                return None
        return self._prefix

    def _run(self, what: str, argv: list[str], privileged: bool = True) -> str | None:
        prefix = self._privilege() if privileged else []
        if prefix is None:
            self.record["skipped"].append(f"{what}: needs root or passwordless sudo")
            return None
        r = self.t.run([*prefix, *argv], timeout=CMD_TIMEOUT_S, check=False)
        if not r.ok:
            self.record["skipped"].append(f"{what}: exit {r.exit_code}: {r.tail(1)}")
            return None
        return r.stdout

    # ------------------------------------------------------------------ apply / restore

    def apply(self) -> dict[str, Any]:
        """Store the current state (on the device first), then set the profile's clocks."""
        c = self.c
        saved: dict[str, Any] = {}
        if c.query_power_mode:
            out = self._run("query power mode", list(c.query_power_mode), privileged=False)
            if out is not None:
                saved["power_mode_query"] = out.strip()[-300:]
                mode = _last_int(out)
                if mode is not None:
                    saved["power_mode"] = mode
        if c.governor:
            if not GOVERNOR_RE.match(c.governor):
                raise DeviceError(f"invalid governor {c.governor!r} in the device profile")
            govs = self._governors()
            if govs:
                saved["governors"] = govs
            else:
                self.record["skipped"].append("governor: the device exposes no cpufreq governors")
        if self._privilege() is None:
            self.record["skipped"].append(
                "clocks left as they are: needs root or passwordless sudo (sudo -n)"
            )
            self.record["before"] = saved
            return self.record
        saved["stored"] = False
        self._write_record(saved)
        if c.store_clocks and self._run("store clocks", list(c.store_clocks)) is not None:
            saved["stored"] = True
            self._write_record(saved)
            self.record["applied"].append("store clocks")
        if (
            c.set_power_mode
            and c.power_mode is not None
            and self._run("power mode", [*c.set_power_mode, str(c.power_mode)]) is not None
        ):
            self.record["applied"].append(f"power mode {c.power_mode}")
        if c.max_clocks and self._run("max clocks", list(c.max_clocks)) is not None:
            self.record["applied"].append("max clocks")
        if c.governor and saved.get("governors"):
            argv = ["sh", "-c", _SET_GOVERNORS, "sh", c.governor, *saved["governors"]]
            if self._run("governor", argv) is not None:
                self.record["applied"].append(f"governor {c.governor}")
        self.record["before"] = saved
        return self.record

    def restore(self, saved: dict[str, Any] | None = None) -> dict[str, Any]:
        """Undo `apply` (or a crashed session's record) and delete the record on the device."""
        c = self.c
        saved = saved if saved is not None else self.record.get("before") or {}
        if not saved or self._privilege() is None:
            return self.record
        if (
            saved.get("stored")
            and c.restore_clocks
            and self._run("restore clocks", list(c.restore_clocks)) is not None
        ):
            self.record["restored"].append("clocks")
        if c.set_power_mode and saved.get("power_mode") is not None:
            argv = [*c.set_power_mode, str(saved["power_mode"])]
            if self._run("restore power mode", argv) is not None:
                self.record["restored"].append(f"power mode {saved['power_mode']}")
        by_gov: dict[str, list[str]] = {}
        for path, gov in (saved.get("governors") or {}).items():
            if GOVERNOR_RE.match(gov):
                by_gov.setdefault(gov, []).append(path)
        for gov, paths in by_gov.items():
            argv = ["sh", "-c", _SET_GOVERNORS, "sh", gov, *paths]
            if self._run("restore governor", argv) is not None:
                self.record["restored"].append(f"governor {gov}")
        self.t.run(["rm", "-f", "--", self.record_path], timeout=CMD_TIMEOUT_S, check=False)
        return self.record

    def recover(self, text: str | None = None, already_read: bool = False) -> bool:
        """Restore from a record a dead session left on the device. True when there was one.

        With ``already_read``, ``text`` is the record as the session's ``open`` request read it
        (None: there is none); otherwise it is read from the device here.
        """
        if not already_read:
            r = self.t.run(["cat", "--", self.record_path], timeout=CMD_TIMEOUT_S, check=False)
            text = r.stdout if r.ok else None
        if text is None:
            return False
        try:
            saved = json.loads(text)
        except ValueError:
            saved = {}
        self.record["recovered"] = True
        self.restore(saved if isinstance(saved, dict) else {})
        return True

    # ------------------------------------------------------------------ helpers

    def _governors(self) -> dict[str, str]:
        out = self.t.run(["sh", "-c", _LIST_GOVERNORS], timeout=CMD_TIMEOUT_S, check=False)
        govs = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith("/sys/devices/system/cpu/"):
                govs[parts[0]] = parts[1]
        return govs

    def _write_record(self, saved: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="edgeprune-clocks-") as tmp:
            local = Path(tmp) / RECORD
            local.write_text(json.dumps(saved))
            upload_verified(
                self.t,
                local,
                posixpath.dirname(self.record_path),
                RECORD,
                skip_if_present=False,
            )


def _last_int(text: str) -> int | None:
    """``nvpmodel -q`` ends with the mode id on its own line (``NV Power Mode: MAXN`` / ``0``)."""
    for line in reversed(text.strip().splitlines()):
        if line.strip().isdigit():
            return int(line.strip())
    return None
