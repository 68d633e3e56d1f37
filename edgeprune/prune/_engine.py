"""The one module that talks to Torch-Pruning (DepGraph).

It turns a model into a list of `PrunableGroup` records (channels that must be removed together),
applies a `PrunePlan` (kept channel indices per group) to a model, and counts MACs/params. Every
other part of edgeprune works with plain names and index lists, never with Torch-Pruning objects.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from edgeprune._hooks import probe_forward
from edgeprune.errors import UsageError
from edgeprune.prune.plan import GroupPlan, PrunePlan

ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class LayerPart:
    """How many of a layer's input or output channels belong to one group."""

    group: int
    count: int


@dataclass
class LayerCost:
    """Per-layer facts for the analytic MAC/param model (conv and linear layers)."""

    name: str
    kind: str  # "conv" | "linear" | "bn"
    weight_per_channel_pair: int  # kernel area for convs, 1 for linear, 2 for affine BN
    out_spatial: int  # output positions per sample (H×W for conv2d, 1 for linear on 2-D input)
    cin: int
    cout: int
    groups: int
    depthwise: bool
    bias: bool
    in_parts: list[LayerPart] = field(default_factory=list)
    out_parts: list[LayerPart] = field(default_factory=list)


@dataclass
class PrunableGroup:
    """Channels that DepGraph says must be removed together.

    ``root`` names the layer whose output channels index the group; ``width`` is its channel count.
    ``members`` are all layers whose *output* channels are in the group (more than one conv means
    a residual/shared group); ``consumers`` are layers whose *input* channels change.
    ``channel_groups`` > 1 means a grouped convolution is involved: pruning must remove the same
    local indices from each of that many equal chunks.
    """

    index: int
    root: str
    width: int
    members: list[str]
    consumers: list[str]
    bn: str | None
    channel_groups: int = 1
    n_producers: int = 1

    @property
    def shared(self) -> bool:
        """True for residual/shared groups (outputs of two or more non-depthwise layers coupled)."""
        return self.n_producers > 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "root": self.root,
            "width": self.width,
            "members": self.members,
            "consumers": self.consumers,
            "bn": self.bn,
            "channel_groups": self.channel_groups,
            "shared": self.shared,
        }


def find_output_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the layers whose outputs are the model's outputs (they must keep their width).

    Works on any model: a forward pass records each leaf module's output tensor; the layers whose
    output *is* a model output are the heads. If none is found (the output is post-processed),
    the last conv/linear layer executed is used.
    """
    produced: dict[int, str] = {}
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        name = names[mod]
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                produced[id(t)] = name
        if isinstance(mod, ROOT_TYPES):
            order.append(name)

    out = probe_forward(model, example, hook)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    heads = []
    for t in outs:
        if isinstance(t, torch.Tensor) and id(t) in produced:
            name = produced[id(t)]
            mod = dict(model.named_modules())[name]
            if isinstance(mod, ROOT_TYPES):
                heads.append(name)
            elif order:
                heads.append(order[-1])
    if not heads and order:
        heads.append(order[-1])
    return sorted(set(heads))


class DependencyIndex:
    """DepGraph of one model instance: its prunable groups and the means to prune them.

    ``ignored`` names layers whose output channels must not change (the classifier head is always
    added). The index holds references to ``model``'s modules: build a new one for another model.
    """

    def __init__(
        self, model: nn.Module, example: torch.Tensor, ignored: list[str] | None = None
    ) -> None:
        self.model = model
        self.example = example
        self.names: dict[nn.Module, str] = {m: n for n, m in model.named_modules()}
        self.modules: dict[str, nn.Module] = dict(model.named_modules())
        unknown = [n for n in ignored or [] if n not in self.modules]
        if unknown:
            raise UsageError(
                f"ignored layer(s) not in the model: {', '.join(unknown)}",
                hint="use module names as printed by `edgeprune prune --list-groups`",
            )
        self.heads = find_output_layers(model, example)
        self.ignored = sorted(set(ignored or []) | set(self.heads))
        ignored_modules: list[nn.Module] = []
        for n in self.ignored:
            ignored_modules.extend(self.modules[n].modules())
        was_training = model.training
        model.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        model.train(was_training)
        self._channel_groups = {
            m: m.groups
            for m in model.modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and 1 < m.groups != m.out_channels
        }
        self.groups: list[PrunableGroup] = []
        self._tp_groups: list[Any] = []
        for g in self.dg.get_all_groups(
            ignored_layers=ignored_modules, root_module_types=ROOT_TYPES
        ):
            self._add_group(g)

    def _add_group(self, g: Any) -> None:
        root_mod = g[0].dep.target.module
        root = self.names[root_mod]
        width = int(self.dg.get_out_channels(root_mod))
        members: list[str] = []
        consumers: list[str] = []
        bn = None
        ch_groups = 1
        producers = 0
        for dep, _idxs in g:
            mod = dep.target.module
            if not isinstance(mod, nn.Module) or mod not in self.names:
                continue
            name = self.names[mod]
            is_out = self.dg.is_out_channel_pruning_fn(dep.handler)
            if is_out:
                if name not in members:
                    members.append(name)
                if isinstance(mod, ROOT_TYPES) and not _is_depthwise(mod):
                    producers += 1
                if bn is None and isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    bn = name
            elif name not in consumers:
                consumers.append(name)
            if mod in self._channel_groups:
                ch_groups = max(ch_groups, self._channel_groups[mod])
        if width < 2:
            return
        self.groups.append(
            PrunableGroup(
                len(self.groups), root, width, members, consumers, bn, ch_groups, max(1, producers)
            )
        )
        self._tp_groups.append(g)

    def group(self, root: str) -> PrunableGroup:
        for g in self.groups:
            if g.root == root:
                return g
        raise UsageError(
            f"{root!r} is not the root of a prunable group",
            hint="list groups with `edgeprune prune --list-groups`",
        )

    def tp_group(self, index: int) -> Any:
        """The Torch-Pruning group object of group ``index`` (its items: dep, idxs, root_idxs)."""
        return self._tp_groups[index]

    def importance(self, index: int, kind: str) -> torch.Tensor | None:
        """One of Torch-Pruning's importance functions on group ``index`` (None if it has no
        parameters of the kind): ``bn_scale`` (|γ|) or ``taylor`` (|Σ w·∂L/∂w| per filter;
        gradients must be populated). Scores are indexed by the group's channels."""
        imp: Any
        if kind == "bn_scale":
            imp = tp.importance.BNScaleImportance(group_reduction="mean", normalizer=None)
        elif kind == "taylor":
            imp = tp.importance.GroupTaylorImportance(
                group_reduction="mean", normalizer=None, multivariable=True
            )
        else:
            raise ValueError(f"unknown Torch-Pruning importance {kind!r}")
        scores = imp(self._tp_groups[index])
        return None if scores is None else scores.detach().float().cpu()

    def layer_costs(self) -> list[LayerCost]:
        """Per-layer MAC/param facts with the groups that control each layer's in/out channels."""
        spatial = _output_spatial(self.model, self.example)
        costs: dict[str, LayerCost] = {}
        for name, mod in self.modules.items():
            if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                k = int(torch.tensor(mod.kernel_size).prod())
                costs[name] = LayerCost(
                    name,
                    "conv",
                    k,
                    spatial.get(name, 0),
                    mod.in_channels,
                    mod.out_channels,
                    mod.groups,
                    _is_depthwise(mod),
                    mod.bias is not None,
                )
            elif isinstance(mod, nn.Linear):
                costs[name] = LayerCost(
                    name,
                    "linear",
                    1,
                    spatial.get(name, 1),
                    mod.in_features,
                    mod.out_features,
                    1,
                    False,
                    mod.bias is not None,
                )
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                # Counted like Torch-Pruning's counter: 2 ops per element when affine.
                per = 2 if mod.affine else 1
                costs[name] = LayerCost(
                    name,
                    "bn",
                    per,
                    spatial.get(name, 0),
                    mod.num_features,
                    mod.num_features,
                    mod.num_features,
                    True,
                    False,
                )
        for gi, g in enumerate(self._tp_groups):
            for dep, idxs in g:
                mod = dep.target.module
                owner = self.names.get(mod) if isinstance(mod, nn.Module) else None
                if owner is None or owner not in costs:
                    continue
                name = owner
                part = LayerPart(gi, len(idxs))
                if self.dg.is_out_channel_pruning_fn(dep.handler):
                    costs[name].out_parts.append(part)
                    if costs[name].depthwise:
                        costs[name].in_parts.append(LayerPart(gi, len(idxs)))
                else:
                    costs[name].in_parts.append(part)
        return list(costs.values())

    def apply(self, plan: PrunePlan) -> None:
        """Prune ``self.model`` in place to the plan's kept channels (index becomes stale after)."""
        by_layer = {g.root: g for g in self.groups}
        for g in self.groups:
            for m in g.members:
                by_layer.setdefault(m, g)
        for gp in plan.groups:
            if gp.root not in by_layer:
                raise UsageError(
                    f"the pruning plan names group {gp.root!r}, which this model does not have",
                    hint="the plan belongs to a different architecture",
                )
            grp = by_layer[gp.root]
            if gp.width != grp.width:
                raise UsageError(
                    f"plan width {gp.width} for {gp.root!r} differs from the model's {grp.width}"
                )
            remove = sorted(set(range(grp.width)) - set(gp.keep))
            if not remove:
                continue
            if len(remove) >= grp.width:
                raise UsageError(f"the plan removes every channel of {gp.root!r}")
            root_mod = self.modules[grp.root]
            pruner = self.dg.get_pruner_of_module(root_mod)
            tp_group = self.dg.get_pruning_group(root_mod, pruner.prune_out_channels, remove)
            if not self.dg.check_pruning_group(tp_group):
                raise UsageError(f"Torch-Pruning refused to prune group {gp.root!r} as planned")
            tp_group.prune()


def _is_depthwise(mod: nn.Module) -> bool:
    return (
        isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        and mod.groups == mod.out_channels == mod.in_channels
        and mod.groups > 1
    )


def _output_spatial(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Output positions per sample for each conv/linear/BN layer (one forward pass)."""
    sizes: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        name = names[m]
        if isinstance(m, nn.Linear):
            sizes[name] = int(out[0].numel() // out.shape[-1]) if out.dim() > 1 else 1
        elif out.dim() <= 2:
            sizes[name] = 1
        else:
            sizes[name] = int(out[0, 0].numel())

    watched = [
        m for m in model.modules() if isinstance(m, (*ROOT_TYPES, nn.modules.batchnorm._BatchNorm))
    ]
    probe_forward(model, example[:1], hook, watched)
    return sizes


def count_macs_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates per sample (what pruning papers call FLOPs) and parameter count."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs, params = tp.utils.count_ops_and_params(model, example[:1])
    finally:
        model.train(was_training)
    return int(macs), int(params)


def torch_pruning_default(
    model: nn.Module, example: torch.Tensor, ratio: float, ignored: list[str] | None = None
) -> nn.Module:
    """Torch-Pruning's default recipe, pruned in place: MetaPruner with group L1 importance
    (``GroupMagnitudeImportance(p=1)``, its default mean reduction and normaliser) and global
    pruning at ``ratio``, the output layers protected. A baseline for benchmarks: no plan is
    recorded, so the result cannot be saved as an edgeprune checkpoint."""
    modules = dict(model.named_modules())
    protect = [
        modules[n] for n in sorted(set(find_output_layers(model, example)) | set(ignored or []))
    ]
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=ratio,
            global_pruning=True,
            ignored_layers=protect,
        )
        pruner.step()
    model.train(was_training)
    return model


def apply_plan(model: nn.Module, plan: PrunePlan, example: torch.Tensor) -> nn.Module:
    """Prune ``model`` in place to ``plan`` (a fresh dependency index is built for it)."""
    if not plan.groups:
        return model
    names = dict(model.named_modules())
    foreign = [n for n in [*plan.ignored, *(g.root for g in plan.groups)] if n not in names]
    if foreign:
        raise UsageError(
            f"the pruning plan names layer {foreign[0]!r}, which this model does not have",
            hint="the plan belongs to a different architecture",
        )
    DependencyIndex(model, example, ignored=plan.ignored).apply(plan)
    return model


__all__ = [
    "DependencyIndex",
    "GroupPlan",
    "LayerCost",
    "PrunableGroup",
    "PrunePlan",
    "apply_plan",
    "count_macs_params",
    "find_output_layers",
    "torch_pruning_default",
]
