"""What the scheduler sends a device worker or a variant maker, and what comes back.

Tasks: `BenchTask` measures one artifact on the device; `SearchTask` makes a latency-budget
variant by searching on the device. Host preparation takes the `PrepJob` itself.

Results (a call never raises; each returns one of these):

* `HealthResult`: the device check ran; the device is healthy when it found no ``problems``.
* `BenchResult`: the measurements of a `BenchTask`.
* `VariantResult`: a made variant (a `SearchTask`, or a preparation on the host).
* `Failure`: the call failed. ``kind`` is ``device`` (a fault of the device or the link: retried,
  and the device is checked), ``busy`` (another process holds the device), ``job`` (the job
  cannot work: not retried) or ``bug``.

They are plain dataclasses: the threads engine hands them over in memory, its preparation pool
and Ray pickle them. On Ray the artifact's bytes travel as an object ref (`Artifact.ref`).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Literal

from edgeprune.bench import BenchConfig
from edgeprune.device.check import Problem
from edgeprune.errors import DeviceBusyError, DeviceError, EdgePruneError
from edgeprune.farm.plan import PrepJob
from edgeprune.farm.prepare import MadeVariant
from edgeprune.farm.sweep import RuntimeEntry

FailureKind = Literal["device", "busy", "job", "bug"]

# ---------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Artifact:
    """The ONNX file to measure: its path on the driver's host and its sha256. ``ref`` (set by
    the ray engine) is a Ray object ref of its bytes, for a worker on a host without the file."""

    path: str
    sha256: str
    ref: Any = None


@dataclass(frozen=True)
class BenchTask:
    """Measure ``artifact`` as job ``job_id`` of sweep ``sweep`` (its ``attempt``-th try)."""

    job_id: str
    label: str
    sweep: str
    entry: str
    runtime: RuntimeEntry
    bench: BenchConfig
    artifact: Artifact
    attempt: int = 1


@dataclass(frozen=True)
class SearchTask:
    """Make latency-budget variant ``prep`` by searching on the device."""

    prep: PrepJob


Task = BenchTask | SearchTask

# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class HealthResult:
    """A device check that ran: what it found wrong (judged like `devices check`)."""

    problems: tuple[Problem, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def message(self) -> str | None:
        return "; ".join(p.message for p in self.problems) or None


@dataclass(frozen=True)
class BenchResult:
    """The measurement and its related ones, as `Measurement.to_dict(raw=True)` records (the form
    `Measurement.from_dict` reads back into the store)."""

    measurements: list[dict[str, Any]]


@dataclass(frozen=True)
class VariantResult:
    """A made variant, to be saved by the driver (`save_variant`)."""

    variant: MadeVariant


@dataclass(frozen=True)
class Failure:
    """A call that failed (see the module docstring for ``kind``). ``error`` is the exception's
    type name and ``traceback`` its end, for exceptions that are not edgeprune's own. A device
    check that raised says so in ``problems`` too."""

    kind: FailureKind
    message: str
    hint: str | None = None
    error: str | None = None
    traceback: str | None = None
    problems: tuple[Problem, ...] = ()

    @classmethod
    def from_exception(cls, e: BaseException) -> Failure:
        """Classify an exception for the scheduler (see the module docstring)."""
        kind: FailureKind
        if isinstance(e, DeviceBusyError):
            kind = "busy"
        elif isinstance(e, DeviceError):
            kind = "device"
        elif isinstance(e, EdgePruneError):
            kind = "job"
        else:
            kind = "bug"
        if isinstance(e, EdgePruneError):
            return cls(kind, e.message, e.hint, error=type(e).__name__)
        return cls(
            kind,
            f"{type(e).__name__}: {e}",
            None,
            error=type(e).__name__,
            traceback=traceback.format_exc()[-4000:],
        )


RunResult = BenchResult | VariantResult | Failure
Result = HealthResult | BenchResult | VariantResult | Failure
