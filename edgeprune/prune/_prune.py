"""`prune()`: score channels with a criterion, choose widths for a target, apply the plan."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgeprune._progress import track
from edgeprune.data import Dataset
from edgeprune.errors import UsageError
from edgeprune.prune._allocate import (
    AccuracyProxy,
    AllocationResult,
    Allocator,
    TermCost,
    allocate,
    round_grid,
)
from edgeprune.prune._cost import CostModel
from edgeprune.prune._engine import DependencyIndex, PrunableGroup, count_macs_params
from edgeprune.prune._select import (
    Target,
    balance_to_target,
    group_step,
    min_keep,
    normalized,
    round_keep,
    solve_global,
    solve_uniform,
    topk_plan,
)
from edgeprune.prune.criteria import Criterion, ScoreContext, make_criterion
from edgeprune.prune.granularity import RoundTo, resolve_round_to
from edgeprune.prune.plan import GroupPlan, PrunePlan
from edgeprune.train import recalibrate_bn, select_device
from edgeprune.vocab import check_choice

if TYPE_CHECKING:  # the bundle record lives with the checkpoint contract, one layer up
    from edgeprune.checkpoint import ModelBundle

MODES = ("uniform", "global", "search")
CONVENTIONS = ("all", "internal")


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how much.

    Exactly one of ``target`` (ratio / FLOPs / params reduction), ``widths`` (kept channels per
    group root) or ``ratios`` (removed fraction per group root: a per-layer ratio vector) — or a
    criterion that picks its own widths (QSFM ``threshold``) — decides the widths.
    ``convention='internal'`` prunes only block-internal groups (HRank/CHIP's ResNet convention);
    ``'all'`` also prunes residual/shared groups (DepGraph). ``mode`` ``search`` chooses per-group
    widths by accuracy (`edgeprune.prune._allocate`: candidate plans meeting the target, ranked by
    BN-recalibrated accuracy on ``proxy_samples`` held-out training images, at most
    ``search_evals`` evaluations, no group losing more than ``max_layer_ratio`` of its channels);
    ``mode`` None means ``search`` for FLOPs/params targets when data is given, else the
    criterion's default (global for EasiEdge, uniform otherwise). ``finetune`` is the training a
    criterion may do before the hard prune (EasiEdge's ADMM rounds); None forbids it.
    ``round_to`` None takes the width granularity of the target the model will run on,
    ``runs_on`` (a profile name; None: this host), from `resolve_round_to`; 1 means no
    rounding.
    """

    criterion: str = "l1"
    criterion_options: Mapping[str, Any] = field(default_factory=dict)
    target: Target | None = None
    widths: Mapping[str, int] | None = None
    ratios: Mapping[str, float] | None = None
    mode: str | None = None
    convention: str = "all"
    round_to: int | None = None
    runs_on: str | None = None
    min_channels: int = 1
    ignored_layers: tuple[str, ...] = ()
    calib_batches: int = 5
    calib_batch_size: int = 128
    recalibrate_bn: bool = True
    seed: int = 0
    device: str = "auto"
    finetune: Any = None
    search_evals: int = 24
    proxy_samples: int = 2048
    max_layer_ratio: float = 0.8

    def __post_init__(self) -> None:
        if self.mode is not None:
            check_choice(self.mode, MODES, "mode")
        check_choice(self.convention, CONVENTIONS, "convention")
        if self.round_to is not None and self.round_to < 1:
            raise UsageError(f"--round-to must be >= 1, got {self.round_to}")
        if self.calib_batches < 1 or self.calib_batch_size < 1:
            raise UsageError("--calib-batches and the calibration batch size must be >= 1")
        if self.min_channels < 1:
            raise UsageError(f"--min-channels must be >= 1, got {self.min_channels}")
        if self.search_evals < 2:
            raise UsageError(f"--search-evals must be >= 2, got {self.search_evals}")
        if self.proxy_samples < 1:
            raise UsageError(f"--proxy-samples must be >= 1, got {self.proxy_samples}")
        if not 0.0 < self.max_layer_ratio <= 1.0:
            raise UsageError(
                f"--max-layer-ratio must be in (0, 1], got {self.max_layer_ratio}",
                hint="e.g. 0.8: no layer loses more than 80% of its channels",
            )
        make_criterion(self.criterion, self.criterion_options)  # validates name and options
        for r in (self.ratios or {}).values():
            if not 0.0 <= r < 1.0:
                raise UsageError(f"per-layer ratios must be in [0, 1), got {r}")

    def require_target(self) -> None:
        """Raise `UsageError` unless something decides the widths. A latency search decides them
        itself, so only flows without one call this."""
        criterion = make_criterion(self.criterion, self.criterion_options)
        if (
            self.target is None
            and self.widths is None
            and self.ratios is None
            and not criterion.chooses_own_widths()
        ):
            raise UsageError(
                "no pruning target given",
                hint="pass --ratio, --flops-reduction, --params-reduction, --ratios-file or "
                "--latency-budget (QSFM: or --criterion-opt threshold=T)",
            )

    def require_data(self, has_data: bool) -> None:
        """Raise `UsageError` when the criterion is data-driven and no data is given: a check
        on the command line alone, made before any model or dataset is loaded."""
        if not has_data and make_criterion(self.criterion, self.criterion_options).needs_data:
            raise UsageError(
                f"criterion {self.criterion} is data-driven and needs --data",
                hint="pass --data DATASET (e.g. fashion-mnist), or use a weight criterion such as l1",
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["criterion_options"] = dict(self.criterion_options)
        d["target"] = asdict(self.target) if self.target else None
        d["finetune"] = self.finetune.to_dict() if self.finetune is not None else None
        return d


@dataclass
class PruneResult:
    bundle: ModelBundle
    plan: PrunePlan
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    scoring_seconds: float
    criterion: dict[str, Any]
    widths: dict[str, tuple[int, int]]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def flops_reduction(self) -> float:
        return 1.0 - self.macs_after / self.macs_before if self.macs_before else 0.0

    @property
    def params_reduction(self) -> float:
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0


def prunable_groups(index: DependencyIndex, convention: str) -> list[PrunableGroup]:
    return [g for g in index.groups if convention == "all" or not g.shared]


@dataclass
class Scored:
    """A scored copy of a model: the context, the criterion instance (it may keep state between
    scoring, selection and compensation), the scores and the scoring time in seconds."""

    ctx: ScoreContext
    criterion: Criterion
    scores: dict[int, torch.Tensor]
    seconds: float


def score_model(bundle: ModelBundle, config: PruneConfig, data: Dataset | None = None) -> Scored:
    """Score every channel of every prunable group of a copy of ``bundle.model``."""
    model = copy.deepcopy(bundle.model).eval()
    device = select_device(config.device)
    example = bundle.example_input()
    index = DependencyIndex(model, example, ignored=list(config.ignored_layers))
    groups = prunable_groups(index, config.convention)
    if not groups:
        raise UsageError(
            f"{bundle.arch.label} has no prunable channel groups",
            hint="check --ignore-layers and --convention",
        )
    criterion = make_criterion(config.criterion, config.criterion_options)
    ctx = ScoreContext(
        model,
        index,
        groups,
        data,
        example,
        config.calib_batches,
        config.calib_batch_size,
        config.seed,
        device,
        finetune=config.finetune,
    )
    ctx.solve = lambda scores: choose_keep(ctx, config, scores, criterion)
    if criterion.needs_data:
        ctx.require_data(config.criterion)
    t0 = time.perf_counter()
    with track(f"score ({config.criterion})", total=None):
        scores = criterion.score(ctx)
    elapsed = time.perf_counter() - t0
    model.to("cpu")
    for g in groups:
        s = scores.get(g.index)
        if s is None or s.shape != (g.width,) or not torch.isfinite(s).all():
            raise RuntimeError(
                f"criterion {config.criterion} returned bad scores for group {g.root}"
            )
    return Scored(ctx, criterion, scores, elapsed)


def choose_keep(
    ctx: ScoreContext, config: PruneConfig, scores: Mapping[int, torch.Tensor], criterion: Criterion
) -> dict[int, int]:
    """Keep counts per group index from explicit widths/ratios, the criterion, or the target."""
    groups = ctx.groups
    by_root = {g.root: g for g in ctx.index.groups}
    if config.widths is not None or config.ratios is not None:
        keep = {g.index: g.width for g in groups}
        for root, value in {**(config.ratios or {}), **(config.widths or {})}.items():
            g = by_root.get(root) or _group_containing(ctx.index, root)
            if g is None:
                raise UsageError(
                    f"no prunable group has layer {root!r}",
                    hint="list groups with `edgeprune prune MODEL --list-groups`",
                )
            exact = root in (config.widths or {})
            want = value if exact else g.width * (1.0 - float(value))
            # Explicit widths are kept as given (only a grouped conv's chunks round them).
            step = None if exact else config.round_to
            keep[g.index] = round_keep(g, float(want), step, config.min_channels)
        return keep
    own = criterion.keep_counts(ctx, scores)
    if own is not None:
        # The criterion's own widths (QSFM's threshold mode) on the width grid every other plan
        # keeps: `--round-to` is the device's granularity, whoever chooses the widths.
        by_index = {g.index: g for g in ctx.groups}
        return {
            gi: round_keep(by_index[gi], k, config.round_to, config.min_channels)
            for gi, k in own.items()
        }
    if config.target is None:
        raise UsageError(
            "no pruning target given", hint="pass --ratio, --flops-reduction or --params-reduction"
        )
    cost = CostModel(ctx.index)
    if (config.mode or criterion.default_mode) == "global":
        # Scores in one unit across groups (EasiEdge's information gain) are ranked as they are;
        # others are divided by their group's mean first.
        norm = (lambda s: s.double()) if criterion.comparable_scores else normalized
        keep = solve_global(
            groups,
            scores,
            cost,
            config.target,
            config.round_to,
            config.min_channels,
            normalize=norm,
        )
    else:
        keep = solve_uniform(groups, cost, config.target, config.round_to, config.min_channels)
    return balance_to_target(
        groups, keep, cost, config.target, config.round_to, config.min_channels
    )


def _group_containing(index: DependencyIndex, layer: str) -> PrunableGroup | None:
    for g in index.groups:
        if layer in g.members:
            return g
    return None


def compose_plans(previous: PrunePlan, new: PrunePlan, index: DependencyIndex) -> PrunePlan:
    """Express ``new`` (indices of an already pruned model) in the unpruned model's indices."""
    old_by_root = {g.root: g for g in previous.groups}
    out: list[GroupPlan] = []
    used: set[str] = set()
    for gp in new.groups:
        grp = _group_containing(index, gp.root) or index.group(gp.root)
        old = next((old_by_root[m] for m in [grp.root, *grp.members] if m in old_by_root), None)
        if old is None:
            out.append(gp)
            continue
        used.add(old.root)
        out.append(GroupPlan(old.root, old.width, tuple(sorted(old.keep[j] for j in gp.keep))))
    out.extend(g for g in previous.groups if g.root not in used)
    return PrunePlan(tuple(out), sorted(set(previous.ignored) | set(new.ignored)))


def resolve_mode(config: PruneConfig, criterion: Criterion, data: Dataset | None) -> str:
    """The selection mode ``config`` asks for: explicit, else ``search`` for a FLOPs/params target
    with data, else the criterion's default. Raises `UsageError` for ``search`` without data."""
    if config.mode == "search" and data is None:
        raise UsageError(
            "--mode search ranks candidate widths by accuracy and needs --data",
            hint="pass --data DATASET, or --mode uniform|global",
        )
    if config.mode is not None:
        return config.mode
    if data is not None and config.target is not None and config.target.kind != "ratio":
        return "search"
    return criterion.default_mode


def accuracy_proxy(
    scored: Scored, config: PruneConfig, data: Dataset | None
) -> AccuracyProxy | None:
    """The accuracy proxy ``config`` asks for on ``scored``'s plans (None without data)."""
    if data is None:
        return None
    return AccuracyProxy(
        lambda keep: build_pruned(scored, keep),
        data,
        samples=config.proxy_samples,
        bn_batches=config.calib_batches,
        batch_size=config.calib_batch_size,
        seed=config.seed,
        device=config.device,
    )


def build_pruned(scored: Scored, keep: Mapping[int, int]) -> nn.Module:
    """The scored model pruned to ``keep`` (a fresh copy; the criterion's selection and weight
    adjustments applied; BatchNorm statistics as they were)."""
    ctx, _, _ = _apply_keep(scored, keep, fresh_copy=True)
    return ctx.model


def allocation_grids(
    groups: list[PrunableGroup], config: PruneConfig, floor_ratio: float | None = None
) -> dict[int, list[int]]:
    """Each group's allowed widths: multiples of its rounding step, at least ``min_keep`` and at
    most ``max_layer_ratio`` of its channels removed, plus the full width."""
    ratio = config.max_layer_ratio if floor_ratio is None else floor_ratio
    grids = {}
    for g in groups:
        floor = round_keep(
            g, math.ceil(g.width * (1 - ratio)), config.round_to, config.min_channels
        )
        step = group_step(g, config.round_to)
        grids[g.index] = round_grid(
            g, step, max(floor, min_keep(g, config.round_to, config.min_channels))
        )
    return grids


def _kept(gi: int, width: int, keep: Mapping[int, int]) -> float:
    return float(keep.get(gi, width))


def allocate_keep(
    scored: Scored, config: PruneConfig, data: Dataset | None
) -> tuple[dict[int, int], AllocationResult]:
    """Per-group widths for ``config.target`` chosen by accuracy (`edgeprune.prune._allocate`)."""
    target = config.target
    if target is None:
        raise UsageError(
            "--mode search needs a target", hint="pass --flops-reduction or --params-reduction"
        )
    ctx = scored.ctx
    cost_model = CostModel(ctx.index)
    full = cost_model.full()
    terms: list[tuple[Callable[[Mapping[int, int]], float], set[int]]]
    if target.kind == "ratio":
        terms = [(partial(_kept, g.index, g.width), {g.index}) for g in ctx.groups]
        budget = (1.0 - target.value) * sum(g.width for g in ctx.groups)
        unit = "channels"
    else:
        terms = cost_model.terms(target.kind)
        base = cost_model.macs(full) if target.kind == "flops" else cost_model.params(full)
        budget = (1.0 - target.value) * base
        unit = "MACs" if target.kind == "flops" else "parameters"
    cost = TermCost(terms)
    alloc = Allocator(
        ctx.groups,
        scored.scores,
        cost,
        allocation_grids(ctx.groups, config),
        comparable=scored.criterion.comparable_scores,
        seed=config.seed,
    )
    if cost(alloc.smallest()) > budget:
        # The per-layer bound keeps too much: the target needs deeper cuts somewhere.
        alloc = Allocator(
            ctx.groups,
            scored.scores,
            cost,
            allocation_grids(ctx.groups, config, floor_ratio=1.0),
            comparable=scored.criterion.comparable_scores,
            seed=config.seed,
        )
        if cost(alloc.smallest()) > budget:
            reached = 1.0 - cost(alloc.smallest()) / (budget / (1.0 - target.value))
            raise UsageError(
                f"a {target.kind} reduction of {target.value:.0%} cannot be reached by pruning these groups (at most {reached:.1%})",
                hint="lower the target, prune more groups (--convention all) or lower --min-channels",
            )
    proxy = accuracy_proxy(scored, config, data)
    own = scored.criterion.own_widths(ctx, scored.scores, lambda keep: cost(keep) <= budget)
    result = allocate(
        alloc,
        budget,
        proxy,
        max_evals=config.search_evals,
        unit=unit,
        proxy_samples=proxy.samples if proxy is not None else None,
        description=f"rank width plans ({target.kind} -{target.value:.0%})",
        extra=[(own, f"{scored.criterion.name} own")] if own is not None else (),
    )
    return result.best.keep, result


def prune(bundle: ModelBundle, config: PruneConfig, data: Dataset | None = None) -> PruneResult:
    """Prune a copy of ``bundle.model`` as ``config`` says; ``bundle`` is left unchanged.

    With ``data`` and ``config.recalibrate_bn`` the pruned model's BatchNorm statistics are
    re-estimated on ``calib_batches`` training batches (no gradient step). In ``search`` mode
    (the default for FLOPs/params targets with data) the widths are chosen by accuracy and
    ``facts["allocation"]`` records the ranked candidates.
    Raises `UsageError` for impossible targets or unknown layers.
    """
    config.require_target()
    config, granularity = with_round_to(config)
    scored = score_model(bundle, config, data)
    allocation = None
    explicit = config.widths is not None or config.ratios is not None
    own = scored.criterion.chooses_own_widths()
    if not explicit and not own and resolve_mode(config, scored.criterion, data) == "search":
        keep, allocation = allocate_keep(scored, config, data)
    else:
        keep = choose_keep(scored.ctx, config, scored.scores, scored.criterion)
    result = materialize(bundle, scored, keep, config, data, fresh_copy=False)
    result.facts["round_to"] = granularity.to_dict()
    if allocation is not None:
        roots = {g.index: g.root for g in scored.ctx.groups}
        result.facts["allocation"] = allocation.to_dict(roots)
    return result


def with_round_to(config: PruneConfig) -> tuple[PruneConfig, RoundTo]:
    """``config`` with its width granularity resolved (`resolve_round_to`), and the resolution."""
    granularity = resolve_round_to(config.round_to, config.runs_on)
    return replace(config, round_to=granularity.value), granularity


def fresh_context(scored: Scored) -> ScoreContext:
    """A context on a new copy of the scored (unpruned) model, with its own dependency index.

    Group indices are identical (the index is built the same way), so scores and criterion state
    keyed by group index carry over.
    """
    ctx = scored.ctx
    model = copy.deepcopy(ctx.model)
    index = DependencyIndex(
        model, ctx.example, ignored=list(ctx.index.ignored), verify=False, refused=ctx.index.refused
    )
    by_index = {g.index for g in ctx.groups}
    groups = [g for g in index.groups if g.index in by_index]
    if [g.root for g in groups] != [g.root for g in ctx.groups]:
        raise RuntimeError("the dependency index of a model copy differs from the original's")
    return replace(ctx, model=model, index=index, groups=groups)


def _apply_keep(
    scored: Scored, keep: Mapping[int, int], fresh_copy: bool
) -> tuple[ScoreContext, PrunePlan, dict[str, Any]]:
    """Select the channels for ``keep``, let the criterion adjust weights, prune the model."""
    ctx = fresh_context(scored) if fresh_copy else scored.ctx
    criterion, scores = scored.criterion, scored.scores
    plan = criterion.select(ctx, scores, keep) or topk_plan(
        ctx.groups, scores, keep, ctx.index.ignored
    )
    facts = {**criterion.facts, **criterion.before_apply(ctx, plan)}
    ctx.index.apply(plan)
    return ctx, plan, facts


def materialize(
    bundle: ModelBundle,
    scored: Scored,
    keep: Mapping[int, int],
    config: PruneConfig,
    data: Dataset | None = None,
    fresh_copy: bool = True,
) -> PruneResult:
    """Apply keep counts (per group index) to the scored model and return the pruned bundle.

    With ``fresh_copy`` (default) the scored model is left untouched, so many candidates can be
    materialised from one scoring pass (the latency search does this).
    """
    macs_before, params_before = count_macs_params(bundle.model, bundle.example_input())
    ctx, plan, facts = _apply_keep(scored, keep, fresh_copy)
    model = ctx.model
    if config.recalibrate_bn and data is not None:
        recalibrate_bn(
            model,
            data,
            config.calib_batches,
            config.calib_batch_size,
            seed=config.seed,
            device=config.device,
        )
        model.to("cpu")
    model.eval()
    macs_after, params_after = count_macs_params(model, bundle.example_input())
    full_plan = compose_plans(bundle.plan, plan, ctx.index) if bundle.plan.groups else plan
    widths = {g.root: (keep.get(g.index, g.width), g.width) for g in ctx.groups}
    new_bundle = replace(bundle, model=model, plan=full_plan, metrics={}, train_state=None)
    return PruneResult(
        bundle=new_bundle,
        plan=full_plan,
        macs_before=macs_before,
        macs_after=macs_after,
        params_before=params_before,
        params_after=params_after,
        scoring_seconds=scored.seconds,
        criterion=scored.criterion.describe(),
        widths=widths,
        facts=facts,
    )
