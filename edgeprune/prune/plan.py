"""The pruning plan: which channels each prunable group keeps.

A plan is plain data (JSON-serialisable, stored in checkpoints) and is replayed on a freshly built
architecture to reproduce the pruned model exactly. Indices refer to the *unpruned* model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PLAN_VERSION = 1


@dataclass(frozen=True)
class GroupPlan:
    root: str
    width: int
    keep: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.keep:
            raise ValueError(f"group {self.root!r} keeps no channels")
        if min(self.keep) < 0 or max(self.keep) >= self.width:
            raise ValueError(f"group {self.root!r}: kept index out of range 0..{self.width - 1}")
        if len(set(self.keep)) != len(self.keep):
            raise ValueError(f"group {self.root!r}: duplicate kept indices")

    @property
    def kept(self) -> int:
        return len(self.keep)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "width": self.width, "keep": list(self.keep)}


@dataclass(frozen=True)
class PrunePlan:
    """Kept channels per group plus the layers that were protected from pruning."""

    groups: tuple[GroupPlan, ...] = ()
    ignored: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return all(g.kept == g.width for g in self.groups)

    def widths(self) -> dict[str, int]:
        return {g.root: g.kept for g in self.groups}

    def channel_reduction(self) -> float:
        total = sum(g.width for g in self.groups)
        return 1.0 - sum(g.kept for g in self.groups) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "groups": [g.to_dict() for g in self.groups if g.kept < g.width],
            "ignored": list(self.ignored),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PrunePlan:
        if not d:
            return cls()
        if int(d.get("version", PLAN_VERSION)) > PLAN_VERSION:
            raise ValueError(
                f"pruning plan version {d.get('version')} is newer than this edgeprune understands"
            )
        groups = tuple(
            GroupPlan(str(g["root"]), int(g["width"]), tuple(int(i) for i in g["keep"]))
            for g in d.get("groups", [])
        )
        return cls(groups, [str(n) for n in d.get("ignored", [])])
