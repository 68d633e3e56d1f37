"""Device profiles: what a kind of board runs and accepts (pure data + validation).

A profile is a YAML file named ``<name>.yaml``. Lookup order for ``load_profile(name)`` (the first
file found wins, so a user file can replace a built-in one):

1. ``./profiles/<name>.yaml`` (the working directory),
2. ``$EDGEPRUNE_CONFIG/profiles/<name>.yaml`` (the user config dir, see `edgeprune.config`),
3. the profiles shipped with edgeprune (``devices/profiles`` → package ``edgeprune._devices``).

This module imports nothing from export or device code; both import it.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from edgeprune import config
from edgeprune.errors import EdgePruneError, UnknownNameError, UsageError
from edgeprune.vocab import Precision, Runtime, Word, check_subset

PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ARCHES = ("aarch64", "armv7l", "x86_64", "any")
# What a board can run. Profile files may use the package names (``tensorrt``, ``onnxruntime``).
RUNTIMES = (Runtime.TRT, Runtime.ORT)
# The opsets any target here can take: the TorchScript exporter's floor and ONNX 1.17's ceiling.
OPSET_RANGE = (9, 26)


@dataclass(frozen=True)
class ClockCommands:
    """How a board is put into (and read back from) a stable, recorded clock state.

    Every command is an argv (never a shell string). ``None`` means the board has no such tool.
    """

    power_mode: int | None = None  # the nvpmodel mode to benchmark in
    set_power_mode: tuple[str, ...] | None = None  # argv; the mode is appended
    query_power_mode: tuple[str, ...] | None = None
    store_clocks: tuple[str, ...] | None = None
    max_clocks: tuple[str, ...] | None = None
    restore_clocks: tuple[str, ...] | None = None
    telemetry: tuple[str, ...] | None = None  # a logger to run alongside the benchmark
    throttle: tuple[str, ...] | None = None
    temperature: tuple[str, ...] | None = None
    governor: str | None = None  # the cpufreq governor to hold during a run


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device profile (see the module docstring for where profiles come from).

    ``max_opset`` is the highest default-domain ONNX opset the target's parser/runtime accepts;
    ``fast_precisions`` are those with real hardware fast paths (the others run, but slowly or
    only emulated); ``channel_multiple`` is the channel count the target's kernels prefer.
    """

    name: str
    description: str
    arch: str
    os: str
    python: str
    runtimes: tuple[Runtime, ...]
    max_opset: int
    precisions: tuple[Precision, ...]
    fast_precisions: tuple[Precision, ...]
    channel_multiple: int
    tensorrt: str | None = None
    jetpack: str | None = None
    l4t: str | None = None
    cuda: str | None = None
    gpu: str | None = None
    onnxruntime: str | None = None
    trtexec: str | None = None
    clocks: ClockCommands = field(default_factory=ClockCommands)
    notes: tuple[str, ...] = ()
    source: str = "<memory>"

    def __post_init__(self) -> None:
        where = f"profile {self.name!r} ({self.source})"
        if not PROFILE_NAME_RE.match(self.name):
            raise UsageError(f"{where}: invalid name", hint="use letters, digits, '.', '_', '-'")
        if self.arch not in ARCHES:
            raise UsageError(f"{where}: arch must be one of {', '.join(ARCHES)}")
        words: dict[str, type[Word]] = {
            "runtimes": Runtime,
            "precisions": Precision,
            "fast_precisions": Precision,
        }
        for key, word in words.items():
            try:
                parsed = tuple(word.parse(v) for v in getattr(self, key))
            except EdgePruneError as e:
                raise UsageError(f"{where}: {key}: {e.message}", hint=e.hint) from None
            object.__setattr__(self, key, parsed)
        check_subset(self.runtimes, RUNTIMES, "runtimes", where)
        if not OPSET_RANGE[0] <= self.max_opset <= OPSET_RANGE[1]:
            raise UsageError(f"{where}: max_opset must be in {OPSET_RANGE[0]}..{OPSET_RANGE[1]}")
        check_subset(self.precisions, Precision, "precisions", where)
        if any(p not in self.precisions for p in self.fast_precisions):
            raise UsageError(f"{where}: fast_precisions must be listed in precisions too")
        if not 1 <= self.channel_multiple <= 128:
            raise UsageError(f"{where}: channel_multiple must be in 1..128")
        if Runtime.TRT in self.runtimes and not self.tensorrt:
            raise UsageError(f"{where}: a tensorrt runtime needs a tensorrt version")
        if self.tensorrt is not None and not re.match(r"^\d+\.\d+(\.\d+)?$", self.tensorrt):
            raise UsageError(f"{where}: tensorrt version must look like 8.2 or 8.2.1")
        if self.trtexec is not None and not self.trtexec.startswith("/"):
            raise UsageError(
                f"{where}: trtexec must be an absolute path",
                hint="non-interactive SSH has a short PATH, e.g. /usr/src/tensorrt/bin/trtexec",
            )

    @property
    def uses_tensorrt(self) -> bool:
        return Runtime.TRT in self.runtimes

    @property
    def tensorrt_version(self) -> tuple[int, ...] | None:
        """The TensorRT version as an int tuple, e.g. (8, 2)."""
        return tuple(int(p) for p in self.tensorrt.split(".")) if self.tensorrt else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clocks"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d["clocks"].items()}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<memory>") -> DeviceProfile:
        """Build and validate a profile from parsed YAML/JSON. Unknown keys are errors."""
        if not isinstance(data, dict):
            raise UsageError(f"profile {source}: expected a mapping at the top level")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"profile {source}: unknown key(s) {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(known - {'source'}))}",
            )
        missing = [
            f.name
            for f in fields(cls)
            if f.name not in data and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise UsageError(f"profile {source}: missing key(s) {', '.join(missing)}")
        values = dict(data)
        values["clocks"] = _clocks(values.get("clocks") or {}, source)
        for key in ("runtimes", "precisions", "fast_precisions", "notes"):
            if key in values:
                values[key] = _str_tuple(values[key], key, source)
        for key in ("tensorrt", "jetpack", "l4t", "cuda", "python", "onnxruntime"):
            if values.get(key) is not None:
                values[key] = str(values[key])
        values["source"] = source
        try:
            return cls(**values)
        except TypeError as e:
            raise UsageError(f"profile {source}: {e}") from e


def _str_tuple(value: Any, key: str, source: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise UsageError(f"profile {source}: {key} must be a list")
    return tuple(str(v) for v in value)


def _clocks(value: Any, source: str) -> ClockCommands:
    if not isinstance(value, dict):
        raise UsageError(f"profile {source}: clocks must be a mapping")
    known = {f.name for f in fields(ClockCommands)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise UsageError(
            f"profile {source}: unknown clocks key(s) {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
    out: dict[str, Any] = {}
    for k, v in value.items():
        if v is None or k in ("power_mode", "governor"):
            out[k] = v
            continue
        argv = _str_tuple(v, f"clocks.{k}", source)
        if not argv or not argv[0].startswith("/"):
            raise UsageError(
                f"profile {source}: clocks.{k} must start with an absolute path",
                hint="non-interactive SSH has a short PATH",
            )
        out[k] = argv
    if out.get("power_mode") is not None and not isinstance(out["power_mode"], int):
        raise UsageError(f"profile {source}: clocks.power_mode must be an integer")
    return ClockCommands(**out)


def search_dirs() -> list[Path]:
    """Where profiles are looked up, in order (the first file found wins)."""
    return [Path.cwd() / "profiles", config.config_dir() / "profiles", builtin_dir()]


def builtin_dir() -> Path:
    return Path(str(resources.files("edgeprune._devices") / "profiles"))


def _read(path: Path) -> DeviceProfile:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"cannot read profile {path}: {str(e).splitlines()[0]}") from e
    profile = DeviceProfile.from_dict(data, source=str(path))
    if profile.name != path.stem:
        raise UsageError(
            f"profile {path}: its name {profile.name!r} differs from the file name",
            hint=f"rename the file to {profile.name}.yaml or set name: {path.stem}",
        )
    return profile


def load_profile(name: str) -> DeviceProfile:
    """The profile called ``name``. Raises `UnknownNameError` listing the available ones."""
    if not PROFILE_NAME_RE.match(name):
        raise UsageError(f"invalid profile name {name!r}")
    for d in search_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return _read(path)
    raise UnknownNameError(
        "profile",
        name,
        [p.name for p in list_profiles()],
        hint="add your own as ./profiles/NAME.yaml or $EDGEPRUNE_CONFIG/profiles/NAME.yaml",
    )


def list_profiles() -> list[DeviceProfile]:
    """Every available profile, sorted by name; a user file shadows a built-in of the same name."""
    found: dict[str, DeviceProfile] = {}
    for d in search_dirs():
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.yaml")):
            if path.stem not in found and PROFILE_NAME_RE.match(path.stem):
                found[path.stem] = _read(path)
    return [found[k] for k in sorted(found)]
