"""The criterion plugin interface.

A criterion scores every channel of every prunable group (higher = keep). It may also choose its
own keep counts (QSFM's threshold mode), its own indices (QSFM's greedy pair removal), and adjust
weights just before the plan is applied (QSFM's compensation). Third-party criteria subclass
`Criterion`, decorate it with `register_criterion`, and expose their module through the
``edgeprune.criteria`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from edgeprune._registry import Registry
from edgeprune.data import Dataset
from edgeprune.errors import UsageError
from edgeprune.prune._engine import DependencyIndex, PrunableGroup
from edgeprune.prune.plan import PrunePlan


@dataclass(frozen=True)
class Option:
    """A criterion knob settable with ``--criterion-opt name=value``."""

    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None

    def parse(self, name: str, raw: Any) -> Any:
        if isinstance(raw, str):
            text = raw.strip()
            if self.type is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    value: Any = True
                elif text.lower() in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise UsageError(f"criterion option {name} expects true/false, got {raw!r}")
            else:
                try:
                    value = self.type(text)
                except ValueError:
                    raise UsageError(
                        f"criterion option {name} expects a {self.type.__name__}, got {raw!r}"
                    ) from None
        else:
            value = raw
            if self.type is float and isinstance(raw, int) and not isinstance(raw, bool):
                value = float(raw)
            if not isinstance(value, self.type):
                raise UsageError(
                    f"criterion option {name} expects a {self.type.__name__}, got {raw!r}"
                )
        if self.choices is not None and value not in self.choices:
            raise UsageError(
                f"criterion option {name}={value!r} is not one of {', '.join(map(str, self.choices))}"
            )
        return value


@dataclass
class ScoreContext:
    """Everything a criterion may use. ``groups`` are the groups to score (convention applied)."""

    model: nn.Module
    index: DependencyIndex
    groups: list[PrunableGroup]
    data: Dataset | None
    example: torch.Tensor
    calib_batches: int = 5
    calib_batch_size: int = 128
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Training a criterion may do before the hard prune (EasiEdge's ADMM rounds); None = none allowed.
    finetune: Any = None
    # Keep counts for given scores under the run's target (used by criteria that iterate).
    solve: Callable[[Mapping[int, torch.Tensor]], dict[int, int]] | None = None

    def module(self, name: str) -> nn.Module:
        return self.index.modules[name]

    def require_data(self, criterion: str) -> Dataset:
        if self.data is None:
            raise UsageError(
                f"criterion {criterion} is data-driven and needs --data",
                hint="pass --data DATASET (e.g. fashion-mnist)",
            )
        return self.data


class Criterion(ABC):
    """Base class for pruning criteria (see module docstring)."""

    name: ClassVar[str] = ""
    needs_data: ClassVar[bool] = False
    options: ClassVar[Mapping[str, Option]] = {}
    # Selection mode when the user gives none ("uniform" per-group ratio, or "global" ranking).
    default_mode: ClassVar[str] = "uniform"
    # True when scores share one unit across groups, so global ranking uses them unnormalised.
    comparable_scores: ClassVar[bool] = False

    def __init__(self, **opts: Any) -> None:
        self.facts: dict[str, Any] = {}
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UsageError(
                f"criterion {self.name} has no option {', '.join(unknown)}",
                hint=f"its options: {known}",
            )
        self.opts = {k: o.default for k, o in self.options.items()}
        for k, v in opts.items():
            self.opts[k] = self.options[k].parse(k, v)

    @abstractmethod
    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        """Per-channel importance for each group index in ``ctx.groups`` (higher = keep)."""

    def chooses_own_widths(self) -> bool:
        """True when this configuration picks per-group widths itself (no target needed)."""
        return False

    def keep_counts(
        self, ctx: ScoreContext, scores: Mapping[int, torch.Tensor]
    ) -> dict[int, int] | None:
        """Keep counts chosen by the criterion itself (None = use the target solver)."""
        return None

    def own_widths(
        self,
        ctx: ScoreContext,
        scores: Mapping[int, torch.Tensor],
        fits: Callable[[dict[int, int]], bool],
    ) -> dict[int, int] | None:
        """The widths this criterion's own allocation gives for a target that ``fits`` checks
        (QSFM: its threshold mode, the threshold bisected), or None when it has none. The
        allocator ranks this plan beside its own (`edgeprune.prune.allocate`)."""
        return None

    def select(
        self, ctx: ScoreContext, scores: Mapping[int, torch.Tensor], keep: Mapping[int, int]
    ) -> PrunePlan | None:
        """Indices chosen by the criterion itself (None = keep the top-scored channels)."""
        return None

    def before_apply(self, ctx: ScoreContext, plan: PrunePlan) -> dict[str, Any]:
        """Adjust the unpruned model's weights right before ``plan`` is applied (e.g. compensation).

        Returns facts for the report.
        """
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.opts)}


CRITERIA: Registry[type[Criterion]] = Registry("criterion", entry_point_group="edgeprune.criteria")


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    doc = (cls.__doc__ or "").strip().splitlines()
    CRITERIA.add(cls.name, cls, doc[0] if doc else "", needs_data=cls.needs_data)
    return cls


def make_criterion(name: str, options: Mapping[str, Any] | None = None) -> Criterion:
    return CRITERIA.get(name)(**dict(options or {}))


def parse_criterion_opts(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``key=value`` strings."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--criterion-opt expects key=value, got {item!r}",
                hint="e.g. --criterion-opt similarity=psnr",
            )
        out[key.strip()] = value
    return out


def filter_weight_norm(module: nn.Module, p: float) -> torch.Tensor:
    """L_p norm of each output filter of a conv/linear layer (one value per output channel)."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    w = weight.detach()
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        w = w.transpose(0, 1)
    return w.flatten(1).abs().pow(p).sum(1).pow(1.0 / p)


def weight_scores(
    ctx: ScoreContext, fn: Callable[[nn.Module], torch.Tensor]
) -> dict[int, torch.Tensor]:
    """Average a per-filter function over each group's coupled producer layers.

    A producer may hold more channels than the group (a layer after a concatenation) or only
    some of them (a slice): each of its filters counts toward the group channel it carries."""
    out = {}
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    for g in ctx.groups:
        total = torch.zeros(g.width)
        count = torch.zeros(g.width)
        for name in g.members:
            mod = ctx.module(name)
            cm = g.out_maps.get(name)
            if not isinstance(mod, kinds) or cm is None:
                continue
            values = fn(mod).float().cpu()
            root = torch.tensor(cm.root, dtype=torch.long)
            total.index_add_(0, root, values[torch.tensor(cm.local, dtype=torch.long)])
            count.index_add_(0, root, torch.ones(len(root)))
        out[g.index] = total / count.clamp_min(1.0)
    return out
