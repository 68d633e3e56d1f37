"""Analytic MACs/params of a model as a function of its group widths.

Built once from the dependency index; evaluating a candidate width vector is a few hundred
multiplications, so target solvers can try thousands of candidates without touching the model.
Counts conv, linear and BatchNorm layers the way Torch-Pruning's counter does; parameter-free
element-wise layers (activations, pooling) are left out, so the model reads a few percent low on
networks with many activations (MobileNetV2). Reported figures always come from Torch-Pruning's
counter on the real pruned model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from edgeprune.prune._engine import DependencyIndex, LayerCost


class CostModel:
    def __init__(self, index: DependencyIndex) -> None:
        self.widths = {g.index: g.width for g in index.groups}
        self.layers: list[LayerCost] = index.layer_costs()

    def _channels(self, base: int, parts: list, keep: Mapping[int, int]) -> float:
        removed = 0.0
        for p in parts:
            w = self.widths[p.group]
            removed += p.count * (1.0 - keep.get(p.group, w) / w)
        return max(0.0, base - removed)

    def layer_macs(self, layer: LayerCost, keep: Mapping[int, int]) -> float:
        cin = self._channels(layer.cin, layer.in_parts, keep)
        cout = self._channels(layer.cout, layer.out_parts, keep)
        if layer.depthwise:
            total = layer.weight_per_channel_pair * cout * layer.out_spatial
        else:
            total = layer.weight_per_channel_pair * (cin / layer.groups) * cout * layer.out_spatial
        if layer.bias:
            total += cout * layer.out_spatial
        return total

    def layer_params(self, layer: LayerCost, keep: Mapping[int, int]) -> float:
        cin = self._channels(layer.cin, layer.in_parts, keep)
        cout = self._channels(layer.cout, layer.out_parts, keep)
        if layer.kind == "bn":
            total = 2 * cout
        elif layer.depthwise:
            total = layer.weight_per_channel_pair * cout
        else:
            total = layer.weight_per_channel_pair * (cin / layer.groups) * cout
        if layer.bias:
            total += cout
        return total

    def macs(self, keep: Mapping[int, int]) -> float:
        return sum(self.layer_macs(layer, keep) for layer in self.layers)

    def params(self, keep: Mapping[int, int]) -> float:
        return sum(self.layer_params(layer, keep) for layer in self.layers)

    def terms(self, kind: str) -> list[tuple[Callable[[Mapping[int, int]], float], set[int]]]:
        """Per-layer cost functions with the groups each depends on (``kind``: flops or params),
        for solvers that re-price only the layers a change touches."""
        fn = self.layer_macs if kind == "flops" else self.layer_params
        return [
            (partial(fn, layer), {p.group for p in (*layer.in_parts, *layer.out_parts)})
            for layer in self.layers
        ]

    def full(self) -> dict[int, int]:
        return dict(self.widths)
