"""Feature maps of prunable groups, streamed over calibration batches.

A group's *representative activation* is taken where docs/METHODS.md says: after BN+activation where
the block has them, else after the BN, else the conv output. It is found on any model (no class
names assumed) by one probe pass that records which leaf module consumes which tensor: for each
output-channel member of a group (the BN if there is one, else the conv) the representative is
that module's output, or the output of an activation module that consumes it directly. Residual
(shared) groups have several members; their statistics are accumulated over all of them.
Activations applied as functions (``F.relu``) cannot be hooked; there the BN output is used.

Maps are handed to accumulators batch by batch and dropped: memory stays at one batch of
activations whatever the number of calibration batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from edgeprune._hooks import ELEMENTWISE_ACTIVATIONS, Flow
from edgeprune.data import BatchLoader
from edgeprune.prune.criteria._base import ScoreContext

ACTIVATIONS = (*ELEMENTWISE_ACTIVATIONS, nn.PReLU)
PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm)


def calibration_batches(ctx: ScoreContext, with_labels: bool = False) -> Iterator[Any]:
    """``ctx.calib_batches`` batches of ``ctx.calib_batch_size`` training images (fixed by seed)."""
    data = ctx.require_data("this criterion")
    n = ctx.calib_batches * ctx.calib_batch_size
    split = data.train.subset(n, seed=ctx.seed)
    loader = BatchLoader(split, data.info, ctx.calib_batch_size, shuffle=False)
    for i, (x, y) in enumerate(loader):
        if i >= ctx.calib_batches:
            break
        yield (x.to(ctx.device), y.to(ctx.device)) if with_labels else x.to(ctx.device)


Tap = tuple[
    str, str
]  # (source module: BN or conv, module whose output is the map: source or activation)


def representative_modules(ctx: ScoreContext) -> dict[int, list[Tap]]:
    """Group index → (source, representative) module-name pairs giving the group's feature maps."""
    model = ctx.model
    flow = Flow(model, ctx.example.to(ctx.device))
    modules = dict(model.named_modules())
    result: dict[int, list[Tap]] = {}
    for g in ctx.groups:
        members = [n for n in g.members if isinstance(modules[n], PRODUCERS)]
        bns = [n for n in members if isinstance(modules[n], nn.modules.batchnorm._BatchNorm)]
        sources = bns or [
            n
            for n in members
            if isinstance(modules[n], (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        ]
        taps = []
        for src in sources:
            rep = src
            for c in flow.followers.get(src, []):
                if c != src and isinstance(modules[c], ACTIVATIONS):
                    rep = c
                    break
            taps.append((src, rep))
        result[g.index] = taps
    return result


@contextmanager
def hooked(
    model: nn.Module,
    reps: dict[int, list[Tap]],
    sink: Callable[[int, torch.Tensor], torch.Tensor | None],
    groups: list[int] | None = None,
) -> Iterator[None]:
    """While active, each group's maps are passed to ``sink(group_index, maps)`` once per forward.

    If ``sink`` returns a tensor, it replaces the maps in the forward pass (masks, attention).
    An activation module may be called several times per forward (a reused ``self.relu``); its
    output is taken only for the call whose input is the tracked source module's latest output.
    """
    modules = dict(model.named_modules())
    latest: dict[str, torch.Tensor] = {}
    direct: dict[str, list[int]] = {}
    via: dict[str, list[tuple[str, int]]] = {}
    for gi, taps in reps.items():
        if groups is not None and gi not in groups:
            continue
        for src, rep in taps:
            if rep == src:
                direct.setdefault(src, []).append(gi)
            else:
                via.setdefault(rep, []).append((src, gi))
    sources = {src for entries in via.values() for src, _ in entries}
    handles = []
    for name in sorted(set(direct) | sources):

        def on_source(_m: nn.Module, _i: Any, out: torch.Tensor, name: str = name) -> torch.Tensor:
            for gi in direct.get(name, []):
                replaced = sink(gi, out)
                if replaced is not None:
                    out = replaced
            if name in sources:
                latest[name] = out
            return out

        handles.append(modules[name].register_forward_hook(on_source))
    for rep, entries in via.items():

        def on_activation(
            _m: nn.Module, inp: tuple, out: torch.Tensor, entries: list[tuple[str, int]] = entries
        ) -> torch.Tensor:
            for src, gi in entries:
                if latest.get(src) is inp[0]:
                    replaced = sink(gi, out)
                    if replaced is not None:
                        out = replaced
            return out

        handles.append(modules[rep].register_forward_hook(on_activation))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        latest.clear()


def stream_feature_maps(
    ctx: ScoreContext, sink: Callable[[int, torch.Tensor], None], groups: list[int] | None = None
) -> int:
    """Run the calibration batches; call ``sink(group_index, maps N×C×…)`` for each group's maps.

    Returns the number of images seen. The model runs in eval mode without gradients.
    """
    reps = representative_modules(ctx)
    model = ctx.model.to(ctx.device)
    was_training = model.training
    model.eval()
    seen = 0

    def observe(gi: int, out: torch.Tensor) -> None:
        sink(gi, out.detach().float())

    try:
        with hooked(model, reps, observe, groups), torch.no_grad():
            for x in calibration_batches(ctx):
                model(x)
                seen += x.shape[0]
    finally:
        model.train(was_training)
    return seen


def as_maps(t: torch.Tensor) -> torch.Tensor:
    """View activations as N×C×H×W (1-D and fully connected activations become 1×1 or 1×L maps)."""
    if t.dim() == 4:
        return t
    if t.dim() == 2:
        return t[:, :, None, None]
    if t.dim() == 3:
        return t[:, :, None, :]
    return t.flatten(3)


class GroupSums:
    """Per-group running sums of tensors, with a count (for streamed means)."""

    def __init__(self) -> None:
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, float] = {}

    def add(self, gi: int, value: torch.Tensor, count: float) -> None:
        value = value.detach().double().cpu()
        if gi in self.sums:
            self.sums[gi] += value
        else:
            self.sums[gi] = value.clone()
        self.counts[gi] = self.counts.get(gi, 0.0) + count

    def mean(self, gi: int) -> torch.Tensor:
        return (self.sums[gi] / max(self.counts[gi], 1e-12)).float()
