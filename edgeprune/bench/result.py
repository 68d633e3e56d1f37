"""A measurement: statistics plus the full context that makes the number meaningful."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from edgeprune.bench.stats import Stats
from edgeprune.vocab import Runtime

# The fields that must match for two measurements to be comparable or for one to be reused.
# Temperatures, timestamps and the exact command are recorded but are not part of the key.
KEY_FIELDS = (
    "device",
    "device_id",
    "profile",
    "arch",
    "runtime",
    "runtime_version",
    "provider",
    "precision",
    "threads",
    "batch",
    "input_shape",
    "artifact_sha256",
    "power_mode",
    "governor",
    "max_khz",
    "cpu_quota",
    "agent_sha256",
    "protocol",
)


def canonical_context(context: dict[str, Any]) -> dict[str, Any]:
    """``context`` with the runtime in its canonical spelling (``tensorrt`` → ``trt``); a
    runtime this version does not know is kept as recorded."""
    runtime = context.get("runtime")
    if not isinstance(runtime, str):
        return context
    try:
        canonical = Runtime(runtime)
    except ValueError:
        return context
    return context if runtime == canonical.value else {**context, "runtime": canonical}


def context_key(context: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the key fields (missing fields count as null; the
    runtime in its canonical spelling, so a context recorded as ``tensorrt`` keys as ``trt``)."""
    context = canonical_context(context)
    key = {k: context.get(k) for k in KEY_FIELDS}
    return hashlib.sha256(
        json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass
class Measurement:
    """One benchmark result.

    ``valid`` is False when the device throttled during the run; ``unstable`` is True when the
    coefficient of variation stayed above the threshold after all repeats. ``attempts`` holds the
    statistics of every fresh-process repeat, the chosen one last. ``related`` holds the other
    quantities the same run measured (TensorRT's GPU compute time beside its host latency); each
    is a measurement of its own, stored in its own row and not part of this one's `to_dict`.
    """

    stats: Stats
    context: dict[str, Any]
    raw_ms: list[float]
    valid: bool = True
    unstable: bool = False
    attempts: list[Stats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    id: int | None = None
    created_at: float | None = None
    job_id: str | None = None
    label: str | None = None
    related: list[Measurement] = field(default_factory=list)

    @property
    def key(self) -> str:
        return context_key(self.context)

    def to_dict(self, raw: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "context_key": self.key,
            "label": self.label,
            "job_id": self.job_id,
            "valid": self.valid,
            "unstable": self.unstable,
            "stats": self.stats.to_dict(),
            "attempts": [a.to_dict() for a in self.attempts],
            "notes": list(self.notes),
            "context": self.context,
        }
        if raw:
            d["raw_ms"] = list(self.raw_ms)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        """Inverse of `to_dict` (``raw=True`` to keep the raw times; ``related`` is not in it)."""
        return cls(
            stats=Stats.from_dict(d["stats"]),
            context=canonical_context(d["context"]),
            raw_ms=list(d.get("raw_ms") or []),
            valid=bool(d["valid"]),
            unstable=bool(d["unstable"]),
            attempts=[Stats.from_dict(a) for a in d.get("attempts") or []],
            notes=list(d.get("notes") or []),
            id=d.get("id"),
            created_at=d.get("created_at"),
            job_id=d.get("job_id"),
            label=d.get("label"),
        )
