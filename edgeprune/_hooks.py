"""One forward pass with temporary hooks: the probe every model-agnostic analysis uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

Hook = Callable[[nn.Module, tuple, Any], Any]

# Activations that act element by element without parameters (a feature map's "after activation").
ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
)


def leaf_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if len(list(m.children())) == 0]


def probe_forward(
    model: nn.Module, example: torch.Tensor, hook: Hook, modules: Iterable[nn.Module] | None = None
) -> Any:
    """Run ``model(example)`` once in eval mode without gradients, with ``hook`` registered as a
    forward hook on ``modules`` (default: every leaf module). Hooks and the train/eval mode are
    restored even if the forward fails. Returns the model's output."""
    handles = [
        m.register_forward_hook(hook) for m in (leaf_modules(model) if modules is None else modules)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)


class Flow:
    """Who consumes whose output, from one probe pass over the leaf modules.

    ``followers[name]``: leaf modules that took ``name``'s output as an input, in call order (the
    first call of each module counts). ``in_shapes[name]``: its first input's shape without the
    batch dimension. Tensors are held during the pass, so their ids identify them uniquely.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        names = {m: n for n, m in model.named_modules()}
        consumers: dict[int, list[str]] = {}
        outputs: dict[str, int] = {}
        self.in_shapes: dict[str, tuple[int, ...]] = {}
        held: list[torch.Tensor] = []

        def hook(mod: nn.Module, inp: tuple, out: Any) -> None:
            name = names[mod]
            for t in inp:
                if isinstance(t, torch.Tensor):
                    consumers.setdefault(id(t), []).append(name)
                    held.append(t)
            if inp and isinstance(inp[0], torch.Tensor):
                self.in_shapes.setdefault(name, tuple(inp[0].shape[1:]))
            if isinstance(out, torch.Tensor):
                outputs.setdefault(name, id(out))
                held.append(out)

        probe_forward(model, example, hook)
        self.followers: dict[str, list[str]] = {n: consumers.get(i, []) for n, i in outputs.items()}
        held.clear()
