"""Feature-map similarity criteria: QSFM and FSS.

QSFM — Quantified Similarity between Feature Maps (Wang et al., IEEE IoT-J 9(23), 2022;
arXiv 2105.06052). *The paper states*: redundancy is found in a layer's C×H×W output by quantifying
the similarity between its feature maps; similar maps mean redundant filters; it works on ordinary
and depthwise-separable convolutions and without fine-tuning; a PSNR variant exists.
*Our reading* (docs/METHODS.md §1, implemented as written): per image, min-max normalise each map to
[0, 1] and compute the C×C similarity (SSIM with a Gaussian window σ=1.5, window = min(11, H)
made odd; or PSNR with data range 1), averaged over the calibration images; greedy removal of
the most similar remaining pair's member with the larger total similarity to the others, until
the layer's quota is met (ratio mode) or the largest remaining similarity is below ``threshold``
(threshold mode: per-layer ratios found by the method itself); compensation folds a dropped
channel into its twin in the consumer layers, ``W_next[:, i] += α·W_next[:, j]`` with the
least-squares α = ⟨F_j, F_i⟩ / ⟨F_i, F_i⟩ on the calibration maps; global score −max_k S[c, k].

FSS — Feature-map Similarity Score (Cui, Wang, Yang, Guan, BDCC 7(4):159, 2023). *The paper
states*: each feature map gets a similarity score that measures its filter's importance;
similarity between a filter's output map and the others measures redundancy. *Our reading*
(docs/METHODS.md §2): ``score_c = mean over images of mean_{k≠c} sim(F_c, F_k)`` with sim ∈ {pearson
(default), cosine, ssim}; the most similar (redundant) channels go first: importance = −score. No
compensation.

Constant maps (e.g. channels a ReLU switched off for an image) carry no information; we define
their similarity to every other map as 1 (fully redundant), so they are removed first — our choice,
the papers do not say.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from edgeprune.prune._select import round_keep, topk_plan
from edgeprune.prune.criteria._base import Criterion, Option, ScoreContext, register_criterion
from edgeprune.prune.criteria._fmaps import GroupSums, as_maps, stream_feature_maps
from edgeprune.prune.criteria._threads import one_thread, per_image
from edgeprune.prune.plan import PrunePlan

_DEAD_EPS = 1e-6
_PSNR_MAX = 100.0


def _normalise(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max normalise each map to [0, 1]; also return N×C flags of constant (dead) maps."""
    flat = maps.flatten(2)
    lo = flat.min(-1).values[..., None, None]
    hi = flat.max(-1).values[..., None, None]
    span = hi - lo
    dead = span[..., 0, 0] < _DEAD_EPS
    return torch.where(
        span > _DEAD_EPS, (maps - lo) / span.clamp_min(_DEAD_EPS), torch.zeros_like(maps)
    ), dead


# Elements of one block of pair products (images × rows × C × H × W): bounds SSIM's memory to a
# few MB whatever the layer width (pairs grow with C²). Measured on ResNet-56's maps (128 images
# on 2 threads; 16×28×28 / 32×14×14 / 64×7×7): 4M elements 113/40/20 ms, 1M 91/30/21 ms, 250k
# 89/62/52 ms — a block that stays near the cache beats fewer, larger ones.
_SSIM_BLOCK = 1_000_000
# Maps at most this small (H·W × Ho·Wo) are filtered by one dense 2-D matrix; larger maps by two
# 1-D passes (a batched matmul of tiny matrices costs more than the dense product there).
_DENSE_FILTER = 4096


def _gaussian_1d(size: int, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _valid_filter(n: int, g: torch.Tensor) -> torch.Tensor:
    """(n−k+1)×n matrix applying the 1-D window ``g`` without padding ('valid' correlation)."""
    k = g.numel()
    m = torch.zeros(n - k + 1, n, dtype=g.dtype)
    for i in range(n - k + 1):
        m[i, i : i + k] = g
    return m


def _window_filter(h: int, w: int, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """The SSIM window as a function on …×H×W tensors → …×Ho×Wo ('valid', as a 2-D conv).

    The Gaussian window is separable, so the 2-D filter is ``Fh · X · Fwᵀ`` with banded 1-D
    matrices: two matmuls over a whole batch of maps instead of a single-channel convolution.
    """
    size = min(11, h, w)
    size = max(1, size if size % 2 == 1 else size - 1)
    g = _gaussian_1d(size)
    fh, fw = _valid_filter(h, g), _valid_filter(w, g)
    ho, wo = fh.shape[0], fw.shape[0]
    if h * w * ho * wo <= _DENSE_FILTER:
        dense = torch.kron(fh, fw).T.to(dtype)  # H·W × Ho·Wo

        def filt(t: torch.Tensor) -> torch.Tensor:
            return (t.flatten(-2) @ dense).unflatten(-1, (ho, wo))

        return filt
    fh_, fwt = fh.to(dtype), fw.T.to(dtype)

    def filt2(t: torch.Tensor) -> torch.Tensor:
        return fh_ @ (t @ fwt)

    return filt2


def ssim_matrix(maps: torch.Tensor) -> torch.Tensor:
    """N×C×C SSIM between all pairs of min-max-normalised maps of each image (data range 1).

    Gaussian window σ=1.5, size min(11, H, W) made odd, no padding; the mean of the SSIM map.
    All pairs i ≤ j of a block of rows are filtered at once; the matrix is symmetric by
    construction. Memory is bounded by ``_SSIM_BLOCK`` elements per block.
    """
    x, dead = _normalise(maps)
    n, c, h, w = x.shape
    filt = _window_filter(h, w, x.dtype)
    c1, c2 = 0.01**2, 0.03**2
    s = x.new_empty(n, c, c)
    per_image = c * h * w
    step = max(1, _SSIM_BLOCK // per_image)
    for n0 in range(0, n, step):
        xb = x[n0 : n0 + step]
        nb = xb.shape[0]
        mu = filt(xb)
        mu2 = mu * mu + c1 / 2
        sig2 = filt(xb * xb) - mu * mu + c2 / 2
        rows = max(1, _SSIM_BLOCK // (nb * per_image))
        for i0 in range(0, c, rows):
            i1 = min(c, i0 + rows)
            # Pairs (i, j) with i in [i0, i1) and j ≥ i0; the mirror fills j < i0 of later rows.
            exy = filt(xb[:, i0:i1, None] * xb[:, None, i0:])
            mm = mu[:, i0:i1, None] * mu[:, None, i0:]
            num = exy.sub_(mm).mul_(2).add_(c2).mul_(mm.mul_(2).add_(c1))
            den = (mu2[:, i0:i1, None] + mu2[:, None, i0:]).mul_(
                sig2[:, i0:i1, None] + sig2[:, None, i0:]
            )
            v = num.div_(den).mean((-2, -1))
            s[n0 : n0 + nb, i0:i1, i0:] = v
            s[n0 : n0 + nb, i0:, i0:i1] = v.transpose(1, 2)
    return _mark_dead(s, dead)


def psnr_matrix(maps: torch.Tensor) -> torch.Tensor:
    """N×C×C PSNR (dB, data range 1, capped at 100) between normalised maps of each image."""
    x, dead = _normalise(maps)
    flat = x.flatten(2)
    hw = flat.shape[-1]
    sq = (flat * flat).sum(-1)
    gram = flat @ flat.transpose(1, 2)
    mse = ((sq[:, :, None] + sq[:, None, :] - 2 * gram) / hw).clamp_min(10 ** (-_PSNR_MAX / 10))
    s = 10 * torch.log10(1.0 / mse)
    return _mark_dead(s, dead, value=_PSNR_MAX)


def cosine_matrix(maps: torch.Tensor, centred: bool) -> torch.Tensor:
    """N×C×C cosine similarity of flattened maps (Pearson correlation when ``centred``)."""
    flat = maps.flatten(2)
    if centred:
        flat = flat - flat.mean(-1, keepdim=True)
    norm = flat.norm(dim=-1)
    dead = norm < _DEAD_EPS * max(1.0, math.sqrt(flat.shape[-1]))
    unit = flat / norm.clamp_min(1e-12)[..., None]
    return _mark_dead(unit @ unit.transpose(1, 2), dead)


def _mark_dead(s: torch.Tensor, dead: torch.Tensor, value: float = 1.0) -> torch.Tensor:
    if dead.any():
        s = s.clone()
        s[dead[:, :, None].expand_as(s)] = value
        s[dead[:, None, :].expand_as(s)] = value
    return s


SIMILARITIES = {
    "ssim": ssim_matrix,
    "psnr": psnr_matrix,
    "pearson": lambda m: cosine_matrix(m, centred=True),
    "cosine": lambda m: cosine_matrix(m, centred=False),
}


def collect_similarity(
    ctx: ScoreContext, similarity: str, gram: bool = False
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Mean C×C similarity per group over calibration images; optionally the maps' Gram matrices."""
    fn = SIMILARITIES[similarity]
    sims, grams = GroupSums(), GroupSums()

    def sink(gi: int, out: torch.Tensor) -> None:
        maps = as_maps(out)
        sims.add(gi, per_image(fn, maps).sum(0), maps.shape[0])
        with one_thread():
            if gram:
                # Per image in float32 (sums of H·W products), summed over images in float64:
                # 10x faster than one float64 product of the transposed maps (a copy), same
                # Gram to 2e-8 relative.
                flat = maps.flatten(2)
                grams.add(gi, torch.bmm(flat, flat.transpose(1, 2)).double().sum(0), 1)

    stream_feature_maps(ctx, sink)
    out_s = {g.index: sims.mean(g.index) for g in ctx.groups}
    out_g = {g.index: grams.sums[g.index].float() for g in ctx.groups} if gram else {}
    return out_s, out_g


def greedy_removal(
    sim: torch.Tensor,
    keep: int | None = None,
    threshold: float | None = None,
    max_remove: int | None = None,
) -> list[tuple[int, int]]:
    """QSFM's greedy pair removal on a C×C similarity matrix.

    Repeatedly takes the most similar remaining pair (i, j) and drops the member with the larger
    total similarity to the other remaining channels. Stops when ``keep`` channels remain, or when
    the largest remaining similarity is below ``threshold``, or after ``max_remove`` drops.
    Returns (dropped, twin) pairs in drop order.
    """
    c = sim.shape[0]
    s = sim.double().clone()
    s = (s + s.T) / 2
    s.fill_diagonal_(-math.inf)
    alive = torch.ones(c, dtype=torch.bool)
    pairs: list[tuple[int, int]] = []
    limit = c - 1 if max_remove is None else min(max_remove, c - 1)
    while len(pairs) < limit and (keep is None or int(alive.sum()) > keep):
        flat = int(torch.argmax(s))
        i, j = divmod(flat, c)
        if threshold is not None and float(s[i, j]) < threshold:
            break
        masked = torch.where(
            alive[None, :] & ~torch.eye(c, dtype=torch.bool), s, torch.zeros_like(s)
        )
        drop, twin = (i, j) if float(masked[i].sum()) > float(masked[j].sum()) else (j, i)
        pairs.append((drop, twin))
        alive[drop] = False
        s[drop, :] = -math.inf
        s[:, drop] = -math.inf
    return pairs


def _consumer_slots(ctx: ScoreContext, gi: int) -> dict[str, dict[int, list[int]]]:
    """Consumer layer → {group channel → its input positions in that layer} (sorted)."""
    index = ctx.index
    out: dict[str, dict[int, list[int]]] = {}
    for item in index.tp_group(gi):
        dep, idxs = item.dep, item.idxs
        mod = dep.target.module
        if not isinstance(
            mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
        ) or index.dg.is_out_channel_pruning_fn(dep.handler):
            continue
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and mod.groups > 1:
            continue  # grouped consumers cannot mix channels across groups
        root_idxs = getattr(item, "root_idxs", None) or idxs
        slots: dict[int, list[int]] = {}
        for pos, root in zip(idxs, root_idxs, strict=True):
            slots.setdefault(int(root), []).append(int(pos))
        out[index.names[mod]] = {k: sorted(v) for k, v in slots.items()}
    return out


@register_criterion
class QSFM(Criterion):
    """QSFM: similar feature maps mean redundant filters; greedy pair removal with compensation."""

    name = "qsfm"
    needs_data = True
    options = {
        "similarity": Option(str, "ssim", "similarity between maps", ("ssim", "psnr")),
        "threshold": Option(
            float,
            -1.0,
            "threshold mode: remove while the most similar pair is at least this similar (<0: ratio mode)",
        ),
        "compensate": Option(
            bool, True, "fold dropped channels into their twins in the next layer"
        ),
        "max_ratio": Option(float, 0.9, "threshold mode: remove at most this share of a layer"),
    }

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self._sim: dict[int, torch.Tensor] = {}
        self._gram: dict[int, torch.Tensor] = {}
        self._pairs: dict[int, list[tuple[int, int]]] = {}

    @property
    def threshold(self) -> float | None:
        t = float(self.opts["threshold"])
        return t if t >= 0 else None

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        self._sim, self._gram = collect_similarity(
            ctx, self.opts["similarity"], gram=bool(self.opts["compensate"])
        )
        out = {}
        for g in ctx.groups:
            s = self._sim[g.index].clone()
            s.fill_diagonal_(-math.inf)
            out[g.index] = -s.max(1).values
        return out

    def chooses_own_widths(self) -> bool:
        return self.threshold is not None

    def _keep_at(self, ctx: ScoreContext, thr: float) -> dict[int, int]:
        """Per-group keep counts of the threshold mode at threshold ``thr``."""
        keep = {}
        for g in ctx.groups:
            max_remove = int(g.width * float(self.opts["max_ratio"]))
            pairs = greedy_removal(self._sim[g.index], threshold=thr, max_remove=max_remove)
            keep[g.index] = round_keep(g, g.width - len(pairs), None, 1)
        return keep

    def keep_counts(
        self, ctx: ScoreContext, scores: Mapping[int, torch.Tensor]
    ) -> dict[int, int] | None:
        thr = self.threshold
        if thr is None:
            return None
        keep = self._keep_at(ctx, thr)
        self.facts["threshold_ratios"] = {g.root: 1 - keep[g.index] / g.width for g in ctx.groups}
        return keep

    def own_widths(
        self,
        ctx: ScoreContext,
        scores: Mapping[int, torch.Tensor],
        fits: Callable[[dict[int, int]], bool],
    ) -> dict[int, int] | None:
        """The threshold mode's per-layer widths at the highest threshold (the fewest channels
        removed) whose plan ``fits``: QSFM's own allocation of a target, bisected on it."""
        if not self._sim:
            return None
        lo, hi = 0.0, 1.0  # similarities lie in [0, 1]; a lower threshold removes more
        best = self._keep_at(ctx, lo)
        if not fits(best):
            return None
        for _ in range(20):
            mid = (lo + hi) / 2
            keep = self._keep_at(ctx, mid)
            if fits(keep):
                lo, best = mid, keep
            else:
                hi = mid
        return best

    def select(
        self, ctx: ScoreContext, scores: Mapping[int, torch.Tensor], keep: Mapping[int, int]
    ) -> PrunePlan | None:
        fallback = []
        self._pairs = {}  # one criterion instance may select for several candidates
        for g in ctx.groups:
            k = keep.get(g.index, g.width)
            if k >= g.width:
                continue
            if g.channel_groups > 1:
                fallback.append(g)
                continue
            self._pairs[g.index] = greedy_removal(self._sim[g.index], keep=k)
        plan = (
            topk_plan(fallback, scores, keep, ctx.index.ignored)
            if fallback
            else PrunePlan((), ctx.index.ignored)
        )
        from edgeprune.prune.plan import GroupPlan

        groups = list(plan.groups)
        for g in ctx.groups:
            if g.index in self._pairs:
                dropped = {d for d, _ in self._pairs[g.index]}
                groups.append(
                    GroupPlan(g.root, g.width, tuple(c for c in range(g.width) if c not in dropped))
                )
        return PrunePlan(tuple(groups), list(ctx.index.ignored))

    def before_apply(self, ctx: ScoreContext, plan: PrunePlan) -> dict[str, Any]:
        if not self.opts["compensate"]:
            return {"compensated_channels": 0}
        folded = 0
        with torch.no_grad():
            for gi, pairs in self._pairs.items():
                gram = self._gram[gi]
                slots = _consumer_slots(ctx, gi)
                for name, by_channel in slots.items():
                    weight = ctx.module(name).weight
                    assert isinstance(weight, torch.Tensor)
                    for drop, twin in pairs:
                        denom = float(gram[twin, twin])
                        if denom <= 1e-12 or drop not in by_channel or twin not in by_channel:
                            continue
                        alpha = float(gram[drop, twin]) / denom
                        for pd, pt in zip(by_channel[drop], by_channel[twin], strict=True):
                            weight[:, pt] += alpha * weight[:, pd]
                        folded += 1
        return {"compensated_channels": folded}


@register_criterion
class FSS(Criterion):
    """FSS: a map's mean similarity to the other maps of its layer; the most similar go first."""

    name = "fss"
    needs_data = True
    options = {
        "similarity": Option(
            str, "pearson", "similarity between maps", ("pearson", "cosine", "ssim")
        )
    }

    def score(self, ctx: ScoreContext) -> dict[int, torch.Tensor]:
        sims, _ = collect_similarity(ctx, self.opts["similarity"])
        out = {}
        for g in ctx.groups:
            s = sims[g.index].clone()
            c = s.shape[0]
            s.fill_diagonal_(0.0)
            out[g.index] = -(s.sum(1) / max(1, c - 1))
        return out
