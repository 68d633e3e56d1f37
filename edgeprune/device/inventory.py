"""The device inventory: ``devices.yaml`` in the working directory, else the user config dir.

Format::

    devices:
      nano-1:
        host: 192.168.1.20
        port: 22                 # default 22
        user: edge
        key: ~/.ssh/id_ed25519   # or omit and set agent: true to use ssh-agent
        jump: bastion            # optional: another device entry used as jump host
        profile: jetson-nano
        tags: [lab]
        workdir: ~/.edgeprune    # absolute, or ~/… (expanded on the device by its Python)
        python: /usr/bin/python3 # absolute: non-interactive SSH has a short PATH
        agent_mode: session      # or `command`: one agent process per request

No passwords: a ``password`` key is an error. A built-in ``local`` device always exists. Names
start with a letter or digit. Every path (``workdir``, ``python``, ``key``, ``known_hosts``) is
absolute (or ``~/…``) and has no control characters, so none can be read as a command-line option
on either side.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from edgeprune import config
from edgeprune.errors import NotFoundError, UnknownNameError, UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HOST_RE = re.compile(r"^[A-Za-z0-9._:%-]{1,253}$")
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
LOCAL = "local"
INVENTORY_FILE = "devices.yaml"
DEFAULT_WORKDIR = "~/.edgeprune"
AGENT_MODES = ("session", "command")


@dataclass(frozen=True)
class DeviceSpec:
    """One device's description (data only; a transport turns it into connections)."""

    name: str
    kind: str = "ssh"  # "ssh" | "local"
    host: str | None = None
    port: int = 22
    user: str | None = None
    key: str | None = None
    agent: bool = False
    jump: str | None = None
    profile: str = "x86-cpu"
    tags: tuple[str, ...] = ()
    workdir: str = DEFAULT_WORKDIR
    python: str = "/usr/bin/python3"
    known_hosts: str | None = None
    connect_timeout: float = 10.0
    agent_mode: str = "session"

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.kind not in ("ssh", "local"):
            raise UsageError(f"device {self.name}: kind must be ssh or local, got {self.kind!r}")
        if self.kind == "ssh":
            if not self.host or not HOST_RE.match(self.host):
                raise UsageError(
                    f"device {self.name}: invalid host {self.host!r}",
                    hint="use a hostname or IP address",
                )
            if not 1 <= int(self.port) <= 65535:
                raise UsageError(f"device {self.name}: port {self.port} is out of range 1..65535")
            if self.user is not None and not USER_RE.match(self.user):
                raise UsageError(f"device {self.name}: invalid user name {self.user!r}")
            if self.jump is not None:
                validate_name(self.jump)
        validate_path(self.name, "workdir", self.workdir, home_ok=True, example="~/.edgeprune")
        validate_path(self.name, "python", self.python, home_ok=False, example="/usr/bin/python3")
        if self.key is not None:
            validate_path(self.name, "key", self.key, home_ok=True, example="~/.ssh/id_ed25519")
        if self.known_hosts is not None:
            validate_path(
                self.name,
                "known_hosts",
                self.known_hosts,
                home_ok=True,
                example="~/.edgeprune-hosts",
            )
        if self.agent_mode not in AGENT_MODES:
            raise UsageError(
                f"device {self.name}: agent_mode {self.agent_mode!r} is not one of {', '.join(AGENT_MODES)}",
                hint="session (one agent per session, the default) or command (one per request)",
            )

    @property
    def address(self) -> str:
        """``host`` or ``[host]:port`` (known_hosts form)."""
        return str(self.host) if self.port == 22 else f"[{self.host}]:{self.port}"

    def to_yaml_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        d["tags"] = list(self.tags)
        defaults = asdict(DeviceSpec(name="x", host="h"))
        return {k: v for k, v in d.items() if v != defaults.get(k) or k in ("host", "profile")}


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UsageError(
            f"invalid device name {name!r}",
            hint="names start with a letter or digit, then letters, digits, '.', '_' or '-' (1-64 characters)",
        )
    return name


def validate_path(device: str, key: str, value: object, home_ok: bool, example: str) -> str:
    """A devices.yaml path: absolute (or ``~/…`` when ``home_ok``), no control characters.

    Such a path never starts with ``-``, so no program reads it as an option (a workdir of
    ``-cimport os;…`` once ran code through python). Raises `UsageError` naming the key and a fix.
    """
    text = value if isinstance(value, str) else ""
    problem = None
    if not isinstance(value, str):
        problem = "must be a path (a string)"
    elif not text:
        problem = "is empty"
    elif any(ord(c) < 32 or c == "\x7f" for c in text):
        problem = "contains a control character (newline, NUL, ...)"
    elif not (text.startswith("/") or (home_ok and text.startswith("~/"))):
        problem = "must be an absolute path" + (" or start with ~/" if home_ok else "")
    if problem is not None:
        raise UsageError(
            f"device {device}: {key} {value!r} {problem}",
            hint=f"set `{key}:` for {device} in devices.yaml to e.g. {example}",
        )
    return text


def local_device() -> DeviceSpec:
    return DeviceSpec(
        name=LOCAL,
        kind="local",
        profile="local",
        workdir=str((config.home_dir() / "devices" / LOCAL).resolve()),
        python=sys.executable,
    )


def inventory_path(for_write: bool = False) -> Path:
    """``./devices.yaml`` if it exists, else the user config dir's (created when writing)."""
    cwd = Path.cwd() / INVENTORY_FILE
    if cwd.is_file():
        return cwd
    return config.config_dir() / INVENTORY_FILE


def _entry_marks(text: str) -> dict[str, tuple[int, int]]:
    """(line, column), 1-based, of each entry under ``devices:`` in a YAML text."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    out: dict[str, tuple[int, int]] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "devices" and isinstance(value, yaml.MappingNode):
                for name, _entry in value.value:
                    out[str(name.value)] = (name.start_mark.line + 1, name.start_mark.column + 1)
    return out


def _located(e: UsageError, path: Path, mark: tuple[int, int] | None) -> UsageError:
    """``e`` with ``PATH:LINE:COLUMN:`` in front of its message (once)."""
    if mark is None:
        return e
    message = e.message.removeprefix(f"{path}: ")
    return UsageError(f"{path}:{mark[0]}:{mark[1]}: {message}", hint=e.hint, **e.details)


def _spec_from_entry(name: str, entry: Any, source: Path) -> DeviceSpec:
    if not isinstance(entry, dict):
        raise UsageError(f"{source}: device {name!r} must be a mapping")
    if any(k in entry for k in ("password", "passphrase")):
        raise UsageError(
            f"{source}: device {name!r} has a password; passwords are not allowed",
            hint="use a key file or ssh-agent",
        )
    allowed = set(DeviceSpec.__dataclass_fields__) - {"name"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise UsageError(
            f"{source}: device {name!r} has unknown keys: {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(allowed))}",
        )
    values = dict(entry)
    try:
        if "tags" in values:
            values["tags"] = tuple(str(t) for t in values["tags"] or ())
        if "port" in values:
            values["port"] = int(values["port"])
        return DeviceSpec(name=name, **values)
    except UsageError as e:
        raise UsageError(f"{source}: {e.message}", hint=e.hint) from None
    except (TypeError, ValueError) as e:
        raise UsageError(
            f"{source}: device {name!r} has an invalid value ({e})",
            hint="see the devices.yaml format in `edgeprune devices add --help`",
        ) from None


@dataclass
class Inventory:
    path: Path
    devices: dict[str, DeviceSpec] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Inventory:
        path = path or inventory_path()
        devices: dict[str, DeviceSpec] = {}
        if path.is_file():
            text = path.read_text()
            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise UsageError(
                    f"{where}: not valid YAML: {problem}",
                    hint="fix the file, or re-create the entry with `edgeprune devices add`",
                ) from e
            entries = data.get("devices", {}) if isinstance(data, dict) else None
            if not isinstance(entries, dict):
                raise UsageError(f"{path}:1:1: must have a top-level 'devices:' mapping")
            marks = _entry_marks(text)
            for name, entry in entries.items():
                try:
                    validate_name(str(name))
                    if name == LOCAL:
                        raise UsageError(
                            f"{path}: 'local' is the built-in device and cannot be redefined"
                        )
                    devices[str(name)] = _spec_from_entry(str(name), entry, path)
                except UsageError as e:
                    raise _located(e, path, marks.get(str(name))) from e
        inv = cls(path, devices)
        for spec in devices.values():
            if spec.jump is not None and spec.jump not in devices:
                raise UsageError(
                    f"{path}: device {spec.name!r} jumps through unknown device {spec.jump!r}"
                )
        return inv

    def all(self) -> list[DeviceSpec]:
        return [local_device(), *sorted(self.devices.values(), key=lambda d: d.name)]

    def get(self, name: str) -> DeviceSpec:
        if name == LOCAL:
            return local_device()
        validate_name(name)
        if name not in self.devices:
            raise UnknownNameError(
                "device",
                name,
                [LOCAL, *self.devices],
                hint=f"add it with `edgeprune devices add {name} --host H --profile P`",
            )
        return self.devices[name]

    def by_profile(self, profile: str) -> list[DeviceSpec]:
        return [d for d in self.all() if d.profile == profile]

    def resolve(self, name_or_profile: str) -> list[DeviceSpec]:
        """A device name gives that device; a profile name gives every device of that profile."""
        if name_or_profile == LOCAL or name_or_profile in self.devices:
            return [self.get(name_or_profile)]
        matches = self.by_profile(name_or_profile)
        if matches:
            return matches
        devices = [LOCAL, *sorted(self.devices)]
        profiles = sorted({d.profile for d in self.all()})
        raise NotFoundError(
            f"unknown device or profile {name_or_profile!r}; devices: {', '.join(devices)}; "
            f"profiles of these devices: {', '.join(profiles)}",
            hint="list devices with `edgeprune devices list`, add one with `edgeprune devices add`",
            kind="device or profile",
            name=name_or_profile,
            choices=sorted({*devices, *profiles}),
        )

    def add(self, spec: DeviceSpec, replace_existing: bool = False) -> None:
        if spec.name == LOCAL:
            raise UsageError("'local' is the built-in device", hint="choose another name")
        if spec.name in self.devices and not replace_existing:
            raise UsageError(
                f"device {spec.name} already exists", hint="remove it first or pass --replace"
            )
        if spec.jump is not None and spec.jump not in self.devices:
            raise NotFoundError(
                f"jump host {spec.jump!r} is not in the inventory",
                hint=f"add it first with `edgeprune devices add {spec.jump} ...`",
            )
        self.devices[spec.name] = spec

    def remove(self, name: str) -> DeviceSpec:
        spec = self.get(name)
        users = [d.name for d in self.devices.values() if d.jump == name]
        if users:
            raise UsageError(
                f"device {name} is the jump host of {', '.join(users)}", hint="remove those first"
            )
        del self.devices[name]
        return spec

    def save(self) -> Path:
        """Write atomically (the file is never half-written)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"devices": {n: d.to_yaml_dict() for n, d in sorted(self.devices.items())}}
        fd, tmp = tempfile.mkstemp(prefix=".devices.", suffix=".yaml", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        os.replace(tmp, self.path)
        return self.path


def with_overrides(spec: DeviceSpec, **kw: Any) -> DeviceSpec:
    return replace(spec, **{k: v for k, v in kw.items() if v is not None})
