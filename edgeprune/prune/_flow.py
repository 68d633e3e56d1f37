"""Where a channel really goes: the forward pass's own routing, to check Torch-Pruning's groups.

Torch-Pruning infers which channels of which layers belong together from the autograd graph and
an index-mapping rule per op. For ops it has no rule for (a channel shuffle's view + permute,
slices of a concatenation added to other slices) it can be wrong without failing, and the pruned
model then runs but is not the original network with some channels removed. This probe asks the
model instead. On a copy whose BatchNorms are identities and whose depthwise convolutions pass
each channel through, every other conv/linear layer is frozen to its clean output, so a
perturbation of one output channel travels only along channel-preserving ops (activations,
pooling, add, mul, cat, slice, view, permute...). The input channels it reaches at every conv,
linear and BatchNorm layer are read off directly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
OBSERVED = (*CONVS, nn.Linear, nn.modules.batchnorm._BatchNorm)
# Activation memory one probe chunk may use (the copy runs many perturbations per forward).
CHUNK_BYTES = 256 * 2**20
SAMPLED_POSITIONS = 16


@dataclass(frozen=True)
class Perturbation:
    """Perturb output channel ``channel`` of layer ``layer``; ``sign`` flips the pattern (a gate
    or a clamp that swallows one sign passes the other)."""

    layer: str
    channel: int
    sign: float = 1.0


def is_depthwise(mod: nn.Module) -> bool:
    return (
        isinstance(mod, CONVS)
        and mod.groups == mod.out_channels == mod.in_channels
        and mod.groups > 1
    )


def _channel_dim(mod: nn.Module) -> int:
    return -1 if isinstance(mod, nn.Linear) else 1


def _sampled(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` as batch × channels × a few positions per channel.

    A perturbation covers its whole channel with an alternating pattern, so evenly spaced
    positions, at an odd stride so both signs of the pattern are among them, are enough to see
    it (and keep the comparison cheap on large maps)."""
    xs = x.movedim(dim, 1)
    xs = xs.flatten(2) if xs.dim() > 2 else xs[..., None]
    step = max(1, xs.shape[2] // SAMPLED_POSITIONS) | 1
    return xs[..., ::step]


def _pattern(shape: torch.Size, delta: float) -> torch.Tensor:
    """+δ and −δ/2 on alternate positions: survives ReLU of either sign, and its mean is not 0."""
    n = int(torch.tensor(shape).prod()) if len(shape) else 1
    p = torch.full((n,), delta)
    p[1::2] = -delta / 2
    return p.view(shape) if len(shape) else p.view(())


def channel_reach(
    model: nn.Module, example: torch.Tensor, elements: Sequence[Sequence[Perturbation]]
) -> list[dict[str, frozenset[int]]]:
    """For each element (perturbations applied together in one forward), the input channels it
    reaches at each conv, linear and BatchNorm layer (layers it does not reach are left out).
    ``model`` is not modified."""
    probe = copy.deepcopy(model).eval().cpu()
    modules = dict(probe.named_modules())
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None and m.running_var is not None:
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0)
                if m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            elif isinstance(m, CONVS) and is_depthwise(m):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    frozen = {
        n for n, m in modules.items() if isinstance(m, (*CONVS, nn.Linear)) and not is_depthwise(m)
    }
    observed = {n for n, m in modules.items() if isinstance(m, OBSERVED)}
    wanted = {p.layer for el in elements for p in el}
    if not wanted <= observed:
        raise ValueError(f"not conv/linear/BatchNorm layers: {sorted(wanted - observed)}")

    state: dict[str, Any] = {"mode": "clean", "calls": {}, "perturb": {}, "hits": []}
    # Per (layer, call): the clean input's shape, sampled positions and difference tolerance.
    clean_in: dict[tuple[str, int], tuple[torch.Size, torch.Tensor, float]] = {}
    clean_out: dict[tuple[str, int], torch.Tensor] = {}

    def perturb(name: str, out: torch.Tensor) -> torch.Tensor:
        todo = state["perturb"].get(name)
        if not todo:
            return out
        moved = out.movedim(_channel_dim(modules[name]), 1)
        unit = _pattern(moved.shape[2:], 1.0)
        for e, ch, delta in todo:
            moved[e, ch] += delta * unit
        return out

    def wrap(name: str, mod: nn.Module) -> Callable[..., Any]:
        original = mod.forward
        dim = _channel_dim(mod)

        def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            calls = state["calls"]
            key = (name, calls.get(name, 0))
            calls[name] = key[1] + 1
            if state["mode"] == "clean":
                sample = _sampled(x, dim)
                tol = 1e-3 * (1.0 + float(x.abs().max()))
                clean_in[key] = (x.shape[1:], sample.clone(), tol)
                out = original(x, *args, **kwargs)
                clean_out[key] = out.detach().clone()
                return out
            n = x.shape[0]
            if key not in clean_in or x.shape[1:] != clean_in[key][0]:
                return perturb(name, original(x, *args, **kwargs))
            _shape, ref_in, tol = clean_in[key]
            d = (_sampled(x, dim) - ref_in).abs()
            hit = ((d > tol) | d.isnan()).any(2)
            for e, c in zip(*hit.nonzero(as_tuple=True), strict=True):
                state["hits"][int(e)].setdefault(name, set()).add(int(c))
            ref = clean_out[key]
            out = ref.expand(n, *ref.shape[1:]).clone()
            if name not in frozen:
                rows = hit.any(1).nonzero().flatten()
                if len(rows):
                    out[rows] = original(x[rows], *args, **kwargs)
            return perturb(name, out)

        return forward

    for name in observed:
        mod = modules[name]
        mod.forward = wrap(name, mod)

    x0 = example[:1].detach().cpu()
    with torch.no_grad():
        probe(x0)
    scale: dict[str, float] = {}
    for (name, _i), t in clean_out.items():
        if name in wanted:
            scale[name] = max(scale.get(name, 0.0), 10.0 * (1.0 + float(t.abs().max())))
    # A forward holds a few maps at a time: budget the chunk by the largest one.
    per_sample = 4 * 8 * max(t.numel() for t in clean_out.values())
    chunk = max(1, min(256, CHUNK_BYTES // per_sample))
    reach: list[dict[str, frozenset[int]]] = []
    for start in range(0, len(elements), chunk):
        part = elements[start : start + chunk]
        todo: dict[str, list[tuple[int, int, float]]] = {}
        for e, el in enumerate(part):
            for p in el:
                todo.setdefault(p.layer, []).append(
                    (e, p.channel, p.sign * scale.get(p.layer, 10.0))
                )
        state.update(mode="probe", calls={}, perturb=todo, hits=[{} for _ in part])
        with torch.no_grad():
            probe(x0.expand(len(part), *x0.shape[1:]).contiguous())
        reach.extend({k: frozenset(v) for k, v in hits.items()} for hits in state["hits"])
    return reach
