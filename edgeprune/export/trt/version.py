"""TensorRT versions and the trtexec argv each version accepts (pure functions, no TensorRT).

The version comes from trtexec's banner (``[TensorRT v8201]``), dpkg, or the L4T release in
``/etc/nv_tegra_release`` (through the JetPack table in docs/DEVICES.md). trtexec's flags differ
by version: 8.2 has ``--workspace=N``, ``--buildOnly`` and one ``--percentile``; 8.4+ has
``--memPoolSize=workspace:N``; 8.5+ takes ``--percentile=90,95,99``; 8.6+ has
``--skipInference``. Every argv here is generated for the version it will run under.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from edgeprune.errors import DeviceError
from edgeprune.vocab import Precision

INT8_NO_CALIBRATION_WARNING = (
    "INT8 WITHOUT CALIBRATION DATA: the engine's SPEED is valid, its ACCURACY IS MEANINGLESS "
    "(TensorRT used placeholder dynamic ranges); pass calibration data to measure accuracy"
)


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @classmethod
    def parse(cls, text: str) -> TrtVersion:
        """``"8.2.1"``, ``"8.2"``, ``"10.3.0.30"`` → TrtVersion. Raises ValueError."""
        m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
        if not m:
            raise ValueError(f"not a TensorRT version: {text!r}")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))

    @classmethod
    def from_number(cls, number: int) -> TrtVersion:
        """The banner's encoding: 8201 → 8.2.1 (major·1000 + minor·100 + patch) before 10.0,
        100300 → 10.3.0 and 101602 → 10.16.2 (major·10000 + minor·100 + patch) from 10.0."""
        if number >= 10000:
            return cls(number // 10000, (number // 100) % 100, number % 100)
        return cls(number // 1000, (number // 100) % 10, number % 100)

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)


_BANNER_RE = re.compile(r"\[TensorRT v(\d{4,6})\]")
_VERSION_LINE_RE = re.compile(r"TensorRT version: (\d+\.\d+\.\d+)")
_TEGRA_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?")
_DPKG_RE = re.compile(r"^(?:[a-z]{2}\s+)?(libnvinfer\d*|tensorrt)(?::\S+)?\s+(\d+\.\d+\.\d+)", re.M)

# L4T release → TensorRT shipped with it (docs/DEVICES.md, the JetPack table).
L4T_TENSORRT: dict[tuple[int, int], str] = {
    (32, 6): "8.0.1",
    (32, 7): "8.2.1",
    (35, 3): "8.5.2",
    (35, 4): "8.5.2",
    (36, 3): "8.6.2",
    (36, 4): "10.3.0",
}


def version_from_log(text: str) -> TrtVersion | None:
    """The version in trtexec output: its banner, else the ``TensorRT version:`` line."""
    m = _BANNER_RE.search(text)
    if m:
        return TrtVersion.from_number(int(m.group(1)))
    m = _VERSION_LINE_RE.search(text)
    return TrtVersion.parse(m.group(1)) if m else None


def l4t_from_tegra_release(text: str) -> tuple[int, int, int] | None:
    """``# R32 (release), REVISION: 7.6, ...`` → (32, 7, 6)."""
    m = _TEGRA_RE.search(text or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def version_from_l4t(l4t: tuple[int, int, int] | None) -> TrtVersion | None:
    if l4t is None:
        return None
    known = L4T_TENSORRT.get((l4t[0], l4t[1]))
    return TrtVersion.parse(known) if known else None


def version_from_dpkg(text: str) -> TrtVersion | None:
    """From ``dpkg -l`` or ``dpkg-query -W`` lines for libnvinfer*/tensorrt."""
    versions = [TrtVersion.parse(v) for _, v in _DPKG_RE.findall(text or "")]
    return max(versions) if versions else None


def detect_version(
    banner: str | None = None, tegra_release: str | None = None, dpkg: str | None = None
) -> tuple[TrtVersion, str]:
    """The device's TensorRT version and where it came from (banner > dpkg > L4T table).

    Raises `DeviceError` when none of the three says.
    """
    for source, found in (
        ("trtexec banner", version_from_log(banner or "")),
        ("dpkg", version_from_dpkg(dpkg or "")),
        ("/etc/nv_tegra_release", version_from_l4t(l4t_from_tegra_release(tegra_release or ""))),
    ):
        if found is not None:
            return found, source
    raise DeviceError(
        "cannot tell the device's TensorRT version (no trtexec banner, dpkg entry or known L4T)",
        hint="install TensorRT (JetPack's nvidia-tensorrt) or set trtexec: in the device profile",
    )


# --------------------------------------------------------------------------- trtexec flags


def _shape_flags(shapes: dict[str, Sequence[int]] | None) -> list[str]:
    if not shapes:
        return []
    spec = ",".join(
        f"{name}:{'x'.join(str(int(d)) for d in dims)}" for name, dims in shapes.items()
    )
    # One shape for min/opt/max: the engine is tuned for exactly the shape that is measured.
    return [f"--minShapes={spec}", f"--optShapes={spec}", f"--maxShapes={spec}"]


def _precision_flags(precision: str, calib_cache: str | None) -> list[str]:
    p = Precision.parse(precision)
    if p is Precision.FP16:
        return ["--fp16"]
    if p is Precision.INT8:
        # FP16 as well, so layers without INT8 kernels fall back to FP16 rather than FP32.
        flags = ["--int8", "--fp16"]
        return flags + ([f"--calib={calib_cache}"] if calib_cache else [])
    return []


def workspace_flag(version: TrtVersion, mib: int) -> str:
    return f"--memPoolSize=workspace:{mib}" if version.at_least(8, 4) else f"--workspace={mib}"


def build_only_flag(version: TrtVersion) -> str:
    return "--skipInference" if version.at_least(8, 6) else "--buildOnly"


def percentile_flag(version: TrtVersion) -> str:
    return "--percentile=90,95,99" if version.at_least(8, 5) else "--percentile=99"


def trtexec_build_argv(
    trtexec: str,
    version: TrtVersion,
    onnx: str,
    engine_out: str,
    precision: str = "fp16",
    workspace_mib: int = 1024,
    shapes: dict[str, Sequence[int]] | None = None,
    calib_cache: str | None = None,
) -> list[str]:
    """argv that builds ``onnx`` into ``engine_out`` without benchmarking it."""
    return [
        trtexec,
        f"--onnx={onnx}",
        f"--saveEngine={engine_out}",
        workspace_flag(version, workspace_mib),
        build_only_flag(version),
        *_precision_flags(precision, calib_cache),
        *_shape_flags(shapes),
    ]


def trtexec_bench_argv(
    trtexec: str,
    version: TrtVersion,
    engine: str,
    times_json: str,
    warmup_ms: int = 1000,
    duration_s: float = 3.0,
    iterations: int = 50,
    shapes: dict[str, Sequence[int]] | None = None,
    cuda_graph: bool = False,
) -> list[str]:
    """argv that loads ``engine`` and writes per-query times to ``times_json``.

    Spin-wait is always requested so that 8.x and 10.x runs are comparable; CUDA graphs only
    when asked (they change what "host latency" includes).
    """
    argv = [
        trtexec,
        f"--loadEngine={engine}",
        f"--exportTimes={times_json}",
        f"--warmUp={int(warmup_ms)}",
        f"--duration={max(1, math.ceil(duration_s))}",
        f"--iterations={int(iterations)}",
        percentile_flag(version),
        "--useSpinWait",
        *_shape_flags(shapes),
    ]
    if cuda_graph:
        argv.append("--useCudaGraph")
    return argv
