"""Latency blocks: each conv/linear layer with the BatchNorm and activation that follow it.

A block can be rebuilt at any input/output width and exported on its own, so that its latency
is measured *as exported* (the exporter folds BN into the conv, the runtime fuses the activation),
the way the same layer runs inside the whole model. Blocks with the same signature (layer type,
kernel, stride, padding, grouping, input size, followers) share lookup-table entries.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgeprune._hooks import ELEMENTWISE_ACTIVATIONS, Flow
from edgeprune.prune import DependencyIndex, LayerCost

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Parameter-free, so a block can copy one whatever its width (PReLU's per-channel slopes cannot).
ACTIVATIONS = ELEMENTWISE_ACTIVATIONS


@dataclass
class BlockSpec:
    """One layer's latency block (see module docstring). Widths are the unpruned model's."""

    layer: str
    module: nn.Module = field(repr=False)
    bn: nn.Module | None = field(repr=False)
    act: nn.Module | None = field(repr=False)
    in_shape: tuple[int, ...]  # input shape without the batch dimension, at the base width
    cin: int
    cout: int
    cost: LayerCost = field(repr=False)

    @property
    def depthwise(self) -> bool:
        m = self.module
        return isinstance(m, CONVS) and m.groups == m.in_channels == m.out_channels and m.groups > 1

    @property
    def groups(self) -> int:
        return int(getattr(self.module, "groups", 1))

    def signature(self) -> str:
        m = self.module
        if isinstance(m, CONVS):
            gmode = "dw" if self.depthwise else str(m.groups)
            core = f"{type(m).__name__}|k{tuple(m.kernel_size)}|s{tuple(m.stride)}|p{m.padding}|d{tuple(m.dilation)}|g{gmode}"
        else:
            core = "Linear"
        bias = int(getattr(m, "bias", None) is not None)
        dims = self.in_shape[:-1] if isinstance(m, nn.Linear) else self.in_shape[1:]
        spatial = "x".join(str(d) for d in dims) or "1"
        follow = f"bn{int(self.bn is not None)}|{type(self.act).__name__ if self.act is not None else 'none'}"
        return f"{core}|b{bias}|in{spatial}|{follow}"

    def build(self, cin: int, cout: int) -> nn.Module:
        """The block at widths (cin, cout), randomly initialised (latency does not depend on values)."""
        m = self.module
        layers: list[nn.Module] = []
        if isinstance(m, CONVS):
            groups = cin if self.depthwise else m.groups
            if self.depthwise:
                cout = cin
            conv_cls: Any = type(m)  # Conv1d/2d/3d take the same arguments
            conv = conv_cls(
                cin,
                cout,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                groups,
                m.bias is not None,
                m.padding_mode,
            )
            layers.append(conv)
        else:
            layers.append(nn.Linear(cin, cout, bias=m.bias is not None))
        if self.bn is not None:
            layers.append(type(self.bn)(cout))
        if self.act is not None:
            layers.append(copy.deepcopy(self.act))
        return nn.Sequential(*layers).eval()

    def input_shape(self, cin: int) -> tuple[int, ...]:
        if isinstance(self.module, nn.Linear):
            return (*self.in_shape[:-1], cin)  # features are the last dimension
        return (cin, *self.in_shape[1:])


def extract_blocks(
    model: nn.Module, example: torch.Tensor, index: DependencyIndex
) -> list[BlockSpec]:
    """One `BlockSpec` per conv/linear layer that runs in a forward pass of ``example``."""
    flow = Flow(model, example[:1])
    modules = dict(model.named_modules())
    costs = {c.name: c for c in index.layer_costs() if c.kind in ("conv", "linear")}

    def sole_follower(name: str, kinds: tuple[type, ...]) -> str | None:
        nxt = flow.followers.get(name, [])
        return nxt[0] if len(nxt) == 1 and isinstance(modules[nxt[0]], kinds) else None

    blocks = []
    for name, cost in costs.items():
        if name not in flow.in_shapes:
            continue  # not executed by this model's forward
        mod = modules[name]
        bn_name = sole_follower(name, (nn.modules.batchnorm._BatchNorm,))
        act_name = sole_follower(bn_name or name, ACTIVATIONS)
        blocks.append(
            BlockSpec(
                layer=name,
                module=mod,
                bn=modules[bn_name] if bn_name else None,
                act=modules[act_name] if act_name else None,
                in_shape=flow.in_shapes[name],
                cin=cost.cin,
                cout=cost.cout,
                cost=cost,
            )
        )
    return blocks
