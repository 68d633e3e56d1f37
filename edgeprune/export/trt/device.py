"""Engines built on a device with its own trtexec, through the on-device agent.

`engine_on_device` sends the ONNX file once per content hash, runs trtexec with the flags of the
device's TensorRT version (`edgeprune.export.trt.version`) through the agent's ``build_engine``
verb, and keeps the engine in the device's cache (``WORKDIR/engines``) under a key of (profile,
L4T, TensorRT version, precision, shapes, ONNX sha256): engines are not portable across GPUs or
TensorRT versions. Benchmarking an engine is `edgeprune.bench`'s job.

This module does not import the device layer: it takes any object with the `AgentSession`
methods (`edgeprune.device.DeviceSession` has them).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgeprune._files import sha256_file
from edgeprune.errors import DeviceError
from edgeprune.export.trt.version import (
    INT8_NO_CALIBRATION_WARNING,
    TrtVersion,
    detect_version,
    l4t_from_tegra_release,
    trtexec_build_argv,
)
from edgeprune.profiles import DeviceProfile
from edgeprune.vocab import Precision


class AgentSession(Protocol):
    """What the device functions need from a session (`edgeprune.device.DeviceSession`)."""

    info: dict[str, Any]

    def call(self, verb: str, timeout: float, **request: Any) -> dict[str, Any]: ...

    def push_artifact(self, local: Path, sha256: str) -> tuple[str, bool]: ...

    def remote_path(self, *parts: str) -> str: ...


@dataclass(frozen=True)
class DeviceTrt:
    """The TensorRT facts of one device."""

    trtexec: str
    version: TrtVersion
    version_source: str
    l4t: tuple[int, int, int] | None


@dataclass
class DeviceEngine:
    """An engine in a device's cache."""

    path: str
    key: str
    cached: bool
    trt_version: str
    precision: str
    seconds: float
    sha256: str | None
    log_tail: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def engine_cache_key(
    profile: str,
    l4t: tuple[int, int, int] | None,
    trt_version: TrtVersion,
    precision: str,
    shapes: dict[str, Sequence[int]] | None,
    onnx_sha256: str,
) -> str:
    """Engines are not portable across GPUs or TensorRT versions: key them on all of it."""
    parts = {
        "profile": profile,
        "l4t": list(l4t) if l4t else None,
        "tensorrt": str(trt_version),
        "precision": precision,
        "shapes": {k: [int(d) for d in v] for k, v in sorted((shapes or {}).items())},
        "onnx": onnx_sha256,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def device_trt(session: AgentSession, trtexec: str | None = None) -> DeviceTrt:
    """Ask the device's agent for trtexec and read the TensorRT version from what it reports."""
    facts = session.call("trt_info", timeout=120, trtexec=trtexec)
    if not facts.get("trtexec"):
        raise DeviceError(
            "trtexec was not found on the device",
            hint="install TensorRT (JetPack) or set trtexec: to its absolute path in the profile",
        )
    version, source = detect_version(
        facts.get("banner"), facts.get("nv_tegra_release"), facts.get("dpkg")
    )
    return DeviceTrt(
        trtexec=facts["trtexec"],
        version=version,
        version_source=source,
        l4t=l4t_from_tegra_release(facts.get("nv_tegra_release") or ""),
    )


def engine_on_device(
    session: AgentSession,
    onnx: str | Path,
    profile: DeviceProfile,
    precision: str = "fp16",
    workspace_mib: int = 1024,
    shapes: dict[str, Sequence[int]] | None = None,
    calib_cache: str | None = None,
    timeout_s: float = 3600.0,
    force: bool = False,
    trt: DeviceTrt | None = None,
) -> DeviceEngine:
    """Build (or reuse) the engine for ``onnx`` in the device's cache (``WORKDIR/engines``).

    The ONNX file travels once per content hash; trtexec runs with flags for the device's
    TensorRT version. Engine builds take minutes on a Nano: ``timeout_s`` is separate from
    benchmark timeouts. Raises `DeviceError` with trtexec's log tail when the build fails.
    """
    precision = Precision.parse(precision)
    trt = trt or device_trt(session, profile.trtexec)
    onnx = Path(onnx)
    onnx_sha = sha256_file(onnx)
    remote_onnx, _ = session.push_artifact(onnx, onnx_sha)
    key = engine_cache_key(profile.name, trt.l4t, trt.version, precision, shapes, onnx_sha)
    engine = session.remote_path("engines", f"{key}.engine")
    part = f"{engine}.{uuid.uuid4().hex[:12]}.part"
    argv = trtexec_build_argv(
        trt.trtexec, trt.version, remote_onnx, part, precision, workspace_mib, shapes, calib_cache
    )
    reply = session.call(
        "build_engine",
        timeout=timeout_s + 60,
        argv=argv,
        engine=engine,
        part=part,
        timeout_s=timeout_s,
        force=force,
    )
    if not reply.get("built"):
        raise DeviceError(
            f"trtexec could not build an engine for {onnx.name} "
            f"(TensorRT {trt.version}, {precision}, exit {reply.get('exit_code')})",
            hint="run `edgeprune lint MODEL.onnx --profile P`; see the log tail for trtexec's reason",
            command=" ".join(argv),
            exit_code=reply.get("exit_code"),
            stderr_tail=reply.get("log_tail"),
        )
    warnings = (
        [INT8_NO_CALIBRATION_WARNING] if precision is Precision.INT8 and not calib_cache else []
    )
    return DeviceEngine(
        path=engine,
        key=key,
        cached=bool(reply.get("cached")),
        trt_version=str(trt.version),
        precision=precision,
        seconds=float(reply.get("seconds") or 0.0),
        sha256=reply.get("sha256"),
        log_tail=reply.get("log_tail") or "",
        warnings=warnings,
    )
