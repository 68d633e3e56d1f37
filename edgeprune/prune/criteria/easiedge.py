"""EasiEdge — global filter pruning by information gain (Yu et al., IEEE IoT-J 8(3), 2021).

*The paper states*: global (not layer-wise) filter pruning; ADMM splits the problem into a
performance-improving subproblem and a global pruning subproblem; information gain (IG) measures
how removing a filter changes the network's output class-probability distribution; a Taylor-based
approximate algorithm (TBAA) computes IG cheaply.

*Our reading* (docs/METHODS.md §3, implemented as written):
1. A channel mask m (all ones, shaped N×C so gradients are per example) multiplies every prunable
   group's representative activation. IG_f = E_x KL(p(y|x) ‖ p(y|x; m_f = 0)); its first-order
   Taylor term vanishes, so the second-order (Fisher) term is used:
   ``IG_f ≈ ½ · E_x Σ_y p_y (∂ log p_y / ∂ m_f)²``, estimated with y sampled from p(y|x), one
   backward pass per batch (BatchNorm in eval mode, so examples do not interact).
   ``ig=entropy`` uses the first-order entropy change instead: ``E_x[−∂H/∂m_f]``.
2. All channels of all groups are ranked together by IG (one unit everywhere, so no per-layer
   normalisation) and the lowest are removed until the target is met: the default mode is global.
3. With fine-tuning allowed and ``admm_rounds`` ≥ 1: Z = W projected onto the kept set chosen by
   IG (the to-be-pruned filters zeroed); W is trained with the extra penalty ρ/2‖W − Z + U‖² on
   the to-be-pruned filters; U ← U + W − Z; IG is re-scored and Z re-projected every round; then
   the plan is applied (hard prune) and the pipeline fine-tunes.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.prune.criteria._base import Criterion, Option, ScoreContext, register_criterion
from edgeprune.prune.criteria._fmaps import calibration_batches, hooked, representative_modules


def information_gain(
    ctx: ScoreContext, kind: str = "fisher", seed: int = 0
) -> dict[int, torch.Tensor]:
    """Per-channel IG for every group in ``ctx.groups`` (see module docstring)."""
    model = ctx.model.to(ctx.device)
    was_training = model.training
    model.eval()
    reps = representative_modules(ctx)
    sums = {g.index: torch.zeros(g.width, dtype=torch.float64) for g in ctx.groups}
    masks: dict[int, torch.Tensor] = {}
    count = 0
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def apply_mask(gi: int, out: torch.Tensor) -> torch.Tensor:
        m = masks[gi]
        shape = (m.shape[0], m.shape[1]) + (1,) * (out.dim() - 2)
        return out * m.view(shape)

    params = [p for p in model.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        with hooked(model, reps, apply_mask):
            for x in calibration_batches(ctx):
                n = x.shape[0]
                for g in ctx.groups:
                    masks[g.index] = torch.ones(n, g.width, device=x.device, requires_grad=True)
                with torch.enable_grad():
                    logp = F.log_softmax(model(x).float(), dim=1)
                    if kind == "fisher":
                        y = (
                            torch.multinomial(logp.detach().exp().cpu(), 1, generator=gen)
                            .squeeze(1)
                            .to(x.device)
                        )
                        objective = logp.gather(1, y[:, None]).sum()
                    else:  # entropy
                        objective = -(logp.exp() * logp).sum()
                    grads = torch.autograd.grad(
                        objective, [masks[g.index] for g in ctx.groups], allow_unused=True
                    )
                for g, grad in zip(ctx.groups, grads, strict=True):
                    if grad is None:
                        continue
                    g_ = grad.detach().double().cpu()
                    sums[g.index] += 0.5 * (g_ * g_).sum(0) if kind == "fisher" else -g_.sum(0)
                count += n
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)
    return {gi: (s / max(1, count)).float() for gi, s in sums.items()}


def _filter_slices(ctx: ScoreContext, gi: int) -> list[tuple[nn.Parameter, int]]:
    """(parameter, output-channel dim) pairs holding group ``gi``'s filters (convs, linears, BN)."""
    out = []
    g = next(g for g in ctx.groups if g.index == gi)
    for name in g.members:
        mod = ctx.module(name)
        if isinstance(
            mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.modules.batchnorm._BatchNorm)
        ):
            for p in (mod.weight, mod.bias):
                if isinstance(p, nn.Parameter):
                    out.append((p, 0))
    return out


@register_criterion
class EasiEdge(Criterion):
    """EasiEdge: global ranking by information gain (Fisher/Taylor), optional ADMM rounds."""

    name = "easiedge"
    needs_data = True
    default_mode = "global"
    comparable_scores = True
    options = {
        "ig": Option(str, "fisher", "information-gain estimate", ("fisher", "entropy")),
        "admm_rounds": Option(
            int, 0, "ADMM rounds before the hard prune (needs --finetune-epochs > 0)"
        ),
        "admm_rho": Option(float, 1e-2, "ADMM penalty weight ρ"),
        "admm_epochs": Option(float, 1.0, "training epochs per ADMM round"),
        "seed": Option(int, 0, "seed for sampling y ~ p(y|x)"),
    }

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        ctx.require_data(self.name)
        scores = information_gain(ctx, self.opts["ig"], int(self.opts["seed"]))
        rounds = int(self.opts["admm_rounds"])
        if rounds <= 0:
            return scores
        if ctx.finetune is None or ctx.solve is None:
            self.facts["admm"] = "skipped: ADMM trains the model and needs --finetune-epochs > 0"
            return scores
        return self._admm(ctx, scores, rounds)

    def _admm(
        self, ctx: ScoreContext, scores: dict[int, torch.Tensor], rounds: int
    ) -> dict[int, torch.Tensor]:
        from edgeprune.train import train

        assert ctx.solve is not None and ctx.data is not None
        rho = float(self.opts["admm_rho"])
        duals: dict[int, torch.Tensor] = {}  # id(param) → U (same shape)
        history = []
        t0 = time.perf_counter()
        for r in range(rounds):
            keep = ctx.solve(scores)
            pruned: dict[int, torch.Tensor] = {}
            for g in ctx.groups:
                k = keep.get(g.index, g.width)
                if k < g.width:
                    pruned[g.index] = torch.argsort(scores[g.index])[: g.width - k]
            slices = [(p, idx) for gi, idx in pruned.items() for p, _dim in _filter_slices(ctx, gi)]
            masks: dict[int, torch.Tensor] = {}
            for p, idx in slices:
                m = torch.zeros(p.shape[0], dtype=torch.bool)
                m[idx] = True
                masks[id(p)] = masks.get(id(p), torch.zeros_like(m)) | m
                duals.setdefault(id(p), torch.zeros_like(p.detach()))
            params = {id(p): p for p, _ in slices}
            for pid, u in duals.items():
                if pid in masks:
                    u[~masks[pid]] = 0.0  # channels no longer slated for removal lose their dual

            def penalty(
                _model: nn.Module,
                params: dict[int, nn.Parameter] = params,
                masks: dict[int, torch.Tensor] = masks,
            ) -> torch.Tensor:
                total = torch.zeros((), device=ctx.device)
                for pid, p in params.items():
                    sel = masks[pid].to(p.device)
                    total = total + (p[sel] + duals[pid].to(p.device)[sel]).pow(2).sum()
                return 0.5 * rho * total

            cfg = replace(ctx.finetune, epochs=max(1, round(float(self.opts["admm_epochs"]))))
            train(
                ctx.model,
                ctx.data,
                cfg,
                extra_loss=penalty,
                description=f"ADMM round {r + 1}/{rounds}",
            )
            ctx.model.eval()
            with torch.no_grad():
                norm = 0.0
                for pid, p in params.items():
                    sel = masks[pid]
                    duals[pid][sel] += p.detach().cpu()[
                        sel
                    ]  # U ← U + W − Z, Z = 0 on the pruned set
                    norm += float(p.detach()[sel.to(p.device)].pow(2).sum())
            history.append({"round": r + 1, "pruned_weight_sq_norm": norm})
            scores = information_gain(ctx, self.opts["ig"], int(self.opts["seed"]) + r + 1)
        self.facts["admm"] = {
            "rounds": rounds,
            "rho": rho,
            "seconds": time.perf_counter() - t0,
            "history": history,
        }
        return scores

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "default_mode": self.default_mode}
