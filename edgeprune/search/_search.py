"""Latency-constrained pruning: choose per-group widths against measured device latency.

Flow (`search`): lease the device; measure the base model; resolve the budget (``8ms`` or
``0.5x`` of the base); score channels with the criterion; build the device's latency model
(lookup tables measured once per device and reused from the store) and calibrate it on the base
model; then run a strategy, verifying candidates on the device:

* ``latency`` (default): the latency model prices a plan in microseconds, so many plans predicted
  to meet the budget are generated (`edgeprune.prune.Allocator`: uniform, Torch-Pruning's global
  plan, greedy importance-per-ms under several normalisations, a HALP knapsack, blends, then an
  evolutionary refinement) and ranked by an accuracy proxy (BN recalibration + accuracy on a
  held-out slice of the training set, EagleEye); the best few are measured on the device and
  steered into the window ``[(1 − tolerance)·budget, budget]``; the most accurate measured one
  wins. Without data the importance-per-ms plan is the only candidate (the report says so).
  The winner is exported the way the deployed file will be and measured again.
* ``uniform``: the baseline — one pruning ratio for every group, bisected against measured latency.
* ``netadapt``: NetAdapt-style (Yang et al. 2018): reach the budget in ``iterations`` latency
  steps; after each step fine-tune briefly and re-score the pruned model before the next.

A measurement whose CV stays above the protocol's threshold is never used as a result: it is
repeated with a longer window and, if it stays unstable, it is unknown. The base model, the
uniform bisection and the deployed file must be measured (`UnstableMeasurementError` says so
when one cannot be); a latency-search candidate that cannot be is dropped, the search goes on
with the others, and the report's notes name it.
A budget that even the smallest allowed model cannot meet raises `BudgetInfeasibleError` with the
best latency measured.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgeprune._progress import track
from edgeprune.bench import BenchConfig, Measurement, Store, measure
from edgeprune.data import Dataset
from edgeprune.device import DeviceSession
from edgeprune.device.lease import run_leased
from edgeprune.errors import BudgetInfeasibleError, UnstableMeasurementError, UsageError
from edgeprune.export import onnx_from_torch, resolve_exporter
from edgeprune.prune import (
    AccuracyProxy,
    AllocationResult,
    Allocator,
    Plan,
    PruneConfig,
    PruneResult,
    Scored,
    TermCost,
    accuracy_proxy,
    allocate,
    materialize,
    normalized,
    round_keep,
    score_model,
    with_round_to,
)
from edgeprune.search.config import SearchConfig
from edgeprune.search.latency_model import PROBE_EXPORTER, LatencyModel
from edgeprune.search.result import Candidate, SearchResult
from edgeprune.train import TrainConfig, train

if TYPE_CHECKING:
    from edgeprune.checkpoint import ModelBundle

log = logging.getLogger(__name__)


class _Verifier:
    """Materialises candidates, exports and measures them on the open device session.

    Keep counts are always given in the *original* model's group indices (the latency model's);
    when the verifier prunes an already pruned model (NetAdapt's later steps) they are mapped onto
    that model's groups by root layer name.
    """

    def __init__(
        self,
        dev: DeviceSession,
        store: Store,
        bundle: ModelBundle,
        scored: Scored,
        prune_cfg: PruneConfig,
        data: Dataset | None,
        scfg: SearchConfig,
        lm: LatencyModel,
        tmp: Path,
        parent: _Verifier | None = None,
    ) -> None:
        self.dev, self.store, self.bundle, self.scored, self.prune_cfg = (
            dev,
            store,
            bundle,
            scored,
            prune_cfg,
        )
        self.data, self.scfg, self.lm, self.tmp = data, scfg, lm, tmp
        self.cache: dict[tuple, tuple[Candidate, PruneResult, Measurement]] = {}
        self.grids: dict[int, list[int]] = {}
        # Children (NetAdapt's later steps) report into the root: one count, one candidate list.
        self.root: _Verifier = parent.root if parent is not None else self
        self.measurements = 0
        self.all_candidates: list[Candidate] = []
        # Candidates whose latency never settled (label, CV): unknown, not results.
        self.unknown: list[tuple[str, float]] = []
        original = parent.root.scored if parent is not None else None
        orig = original or scored
        self.roots = {g.index: g.root for g in orig.ctx.groups}
        own = {g.root: g.index for g in scored.ctx.groups}
        self.to_own = {gi: own[root] for gi, root in self.roots.items() if root in own}

    def measure_onnx(self, path: Path, label: str) -> Measurement:
        return measure_stable(
            self.dev,
            path,
            self.scfg.bench,
            self.store,
            label,
            self.scfg.unstable_retries,
            self.root,
        )

    def __call__(
        self, keep: Mapping[int, int], label: str, proxy_accuracy: float | None = None
    ) -> tuple[Candidate, PruneResult, Measurement]:
        key = tuple(sorted(keep.items()))
        if key in self.cache:
            hit = self.cache[key]
            if proxy_accuracy is not None:
                hit[0].proxy_accuracy = proxy_accuracy
            return hit
        predicted = self.lm.predict(keep)
        own_keep = {self.to_own[gi]: w for gi, w in keep.items() if gi in self.to_own}
        res = materialize(self.bundle, self.scored, own_keep, self.prune_cfg, self.data)
        path = self.tmp / f"cand{self.root.measurements}.onnx"
        # A probe: the deployed model.onnx is exported (dynamo) and measured again by the caller.
        onnx_from_torch(
            res.bundle.model,
            res.bundle.input_shape,
            path,
            opset=self.scfg.opset,
            exporter=PROBE_EXPORTER,
        )
        m = self.measure_onnx(path, f"search:{label}")
        ms = m.stats.get(self.scfg.percentile)
        self.lm.add_point(keep, ms, label)
        cand = Candidate(
            label,
            {self.roots[g]: int(w) for g, w in keep.items()},
            predicted,
            ms,
            res.macs_after,
            res.params_after,
            m.id,
            m.unstable,
            proxy_accuracy,
        )
        self.cache[key] = (cand, res, m)
        self.root.all_candidates.append(cand)
        return self.cache[key]

    def attempt(
        self, keep: Mapping[int, int], label: str, proxy_accuracy: float | None = None
    ) -> tuple[Candidate, PruneResult, Measurement] | None:
        """`__call__`, but a candidate whose latency stays unstable is unknown: logged, kept in
        ``root.unknown`` for the report, and None is returned so the search can go on."""
        try:
            return self(keep, label, proxy_accuracy)
        except UnstableMeasurementError as e:
            cv = e.details.get("cv")
            cv = float(cv) if isinstance(cv, (int, float)) else math.nan
            log.warning("%s: %s; skipped", label, e.message)
            self.root.unknown.append((label, cv))
            return None


def measure_stable(
    dev: DeviceSession,
    path: Path,
    cfg: BenchConfig,
    store: Store,
    label: str,
    retries: int = 2,
    counter: Any = None,
) -> Measurement:
    """`measure`, but an unstable or invalid result is not a result: it is measured again with a
    window twice as long, up to ``retries`` times, and `UnstableMeasurementError` is raised if it
    never settles. ``counter.measurements`` (when given) counts every device measurement."""
    window = cfg
    m: Measurement | None = None
    for attempt in range(retries + 1):
        if counter is not None:
            counter.measurements += 1
        m = measure(dev, path, window, store=store, label=label)
        if not m.unstable and m.valid:
            return m
        window = replace(
            window,
            min_seconds=window.min_seconds * 2,
            max_seconds=max(window.max_seconds, window.min_seconds * 4),
            min_runs=window.min_runs * 2,
        )
        if attempt < retries:
            log.info(
                "%s on %s: unstable (CV %.1f%%), measuring again", label, dev.name, 100 * m.stats.cv
            )
    assert m is not None
    why = (
        "invalid (the device throttled)"
        if not m.valid
        else f"unstable (CV {m.stats.cv:.1%} > {cfg.cv_threshold:.1%})"
    )
    raise UnstableMeasurementError(
        f"the latency of {label} on {dev.name} stayed {why} after {retries + 1} measurements",
        hint="quiet the device (nothing else running, fixed clocks), raise --bench-seconds, "
        "or accept noisier numbers with --max-cv 0.05",
        device=dev.name,
        cv=m.stats.cv,
    )


def _removal_cost(scores: torch.Tensor, current: int, new: int) -> float:
    """Importance lost when a group keeps its top ``new`` channels instead of its top ``current``."""
    ranked = torch.sort(scores, descending=True).values
    return float(ranked[new:current].sum())


def greedy_widths(
    lm: LatencyModel,
    scored: Scored,
    target_ms: float,
    candidates: Mapping[int, list[int]],
    start: Mapping[int, int] | None = None,
) -> dict[int, int]:
    """Shrink, step by step, the group losing the least importance per predicted ms saved."""
    comparable = scored.criterion.comparable_scores
    norm = {gi: (s.double() if comparable else normalized(s)) for gi, s in scored.scores.items()}
    keep = dict(start or lm.full())
    pred = lm.predict(keep)
    while pred > target_ms:
        best: tuple[float, int, int, float] | None = None
        for gi, widths in candidates.items():
            smaller = [w for w in widths if w < keep[gi]]
            if not smaller:
                continue
            w2 = smaller[-1]
            trial_pred = lm.predict({**keep, gi: w2})
            saved = pred - trial_pred
            if saved <= 0:
                continue
            ratio = _removal_cost(norm[gi], keep[gi], w2) / saved
            if best is None or ratio < best[0]:
                best = (ratio, gi, w2, trial_pred)
        if best is None:
            break
        _, gi, w2, pred = best
        keep[gi] = w2
    return keep


def search(
    bundle: ModelBundle, prune_cfg: PruneConfig, scfg: SearchConfig, data: Dataset | None = None
) -> SearchResult:
    """Find per-group widths whose measured latency on ``scfg.device`` meets the budget.

    ``scfg.device`` is a device or a profile (a free device of it is leased for the whole search).
    Raises `BudgetInfeasibleError` (with the best latency reached) when no allowed model is fast
    enough, `DeviceBusyError` when every matching device is busy.
    """
    return run_leased(
        scfg.device, lambda dev: search_in_session(dev, bundle, prune_cfg, scfg, data)
    )


def search_in_session(
    dev: DeviceSession,
    bundle: ModelBundle,
    prune_cfg: PruneConfig,
    scfg: SearchConfig,
    data: Dataset | None = None,
) -> SearchResult:
    """`search` on an already open device session (``scfg.device`` is not used). A
    ``prune_cfg.round_to`` of None becomes the device profile's width granularity."""
    t0 = time.perf_counter()
    notes: list[str] = []
    if scfg.gradual_steps and data is None:
        raise UsageError(
            "--gradual-steps fine-tunes between steps and needs --data",
            hint="pass --data DATASET, or --gradual-steps 0",
        )
    if prune_cfg.round_to is None:
        profile = None if dev.spec.profile == "local" else dev.spec.profile
        try:
            prune_cfg, _ = with_round_to(replace(prune_cfg, runs_on=prune_cfg.runs_on or profile))
        except UsageError:  # a device whose profile file is missing: no rounding
            prune_cfg = replace(prune_cfg, round_to=1)
            notes.append(f"profile {profile!r} not found: widths are not rounded (--round-to 1)")
    with Store() as store, tempfile.TemporaryDirectory(prefix="edgeprune-search-") as tmpdir:
        tmp = Path(tmpdir)
        counter = _Counter()
        with track(f"measure the base model on {dev.name}", total=None):
            onnx_from_torch(
                bundle.model,
                bundle.input_shape,
                tmp / "base.onnx",
                opset=scfg.opset,
                exporter=PROBE_EXPORTER,
            )
            base_m = measure_stable(
                dev,
                tmp / "base.onnx",
                scfg.bench,
                store,
                "search:base",
                scfg.unstable_retries,
                counter,
            )
        base_ms = base_m.stats.get(scfg.percentile)
        budget_ms = scfg.budget.resolve(base_ms)
        scored = score_model(bundle, prune_cfg, data)
        ctx = scored.ctx
        lm = LatencyModel.for_model(
            ctx.model, ctx.example, ctx.index, ctx.groups, step=prune_cfg.round_to or 1
        )
        tables = lm.measure_tables(dev, store, scfg.block_bench)
        lm.add_point(lm.full(), base_ms, "base")
        verify = _Verifier(dev, store, bundle, scored, prune_cfg, data, scfg, lm, tmp)
        verify.measurements = counter.measurements
        # No layer loses more than max_layer_ratio of its channels (AMC's bound, 0.8 by default):
        # without it the greedy step empties the costliest high-resolution blocks down to one
        # channel, which the latency model rewards and accuracy does not survive.
        floors = {
            g.index: round_keep(
                g,
                math.ceil(g.width * (1 - scfg.max_layer_ratio)),
                prune_cfg.round_to,
                prune_cfg.min_channels,
            )  # never below min_keep
            for g in ctx.groups
        }
        cands = {g.index: lm.fast_side_widths(g, floors[g.index]) for g in ctx.groups}
        verify.grids = cands
        for r in scfg.calibration_ratios:
            keep = {g.index: _on_grid(cands[g.index], g.width * (1 - r)) for g in ctx.groups}
            verify.attempt(keep, f"calibration {r:g}")
        allocation: AllocationResult | None = None
        if scfg.strategy == "uniform":
            with track(f"uniform search for {budget_ms:.3f} ms on {dev.name}", total=None):
                chosen = _uniform(verify, ctx.groups, budget_ms, scfg, prune_cfg)
        elif scfg.strategy == "netadapt":
            with track(f"netadapt search for {budget_ms:.3f} ms on {dev.name}", total=None):
                chosen = _netadapt(
                    verify,
                    lm,
                    scored,
                    cands,
                    budget_ms,
                    base_ms,
                    scfg,
                    prune_cfg,
                    bundle,
                    data,
                    dev,
                    store,
                    tmp,
                )
        else:
            chosen, allocation = _accuracy_aware(
                verify, lm, scored, cands, floors, budget_ms, scfg, prune_cfg, data
            )
            notes.extend(allocation.notes)
        chosen, final_m = _check_deployed(verify, chosen, budget_ms, scfg, tmp, notes)
        cand, res, _ = chosen
        if scfg.gradual_steps and scfg.strategy != "netadapt" and data is not None:
            stepped = _gradual(verify, _keep_of(verify, cand), scfg, prune_cfg, data)
            ft = _inner_finetune(scfg)
            if stepped is None:
                notes.append(
                    "the chosen widths could not be reached step by step (a group of the base "
                    "has no counterpart in a stepped model): the model is cut in one step"
                )
            else:
                res = stepped
                notes.append(
                    f"the chosen widths were reached in {scfg.gradual_steps} steps, each followed "
                    f"by {ft.epochs} epoch(s) of fine-tuning on {ft.max_train_samples or 'all'} "
                    "training images (the widths, and so the measured latency, are the chosen "
                    "plan's)"
                )
        if verify.unknown:
            notes.append(
                f"{len(verify.unknown)} candidate(s) could not be measured (CV stayed above "
                f"{scfg.bench.cv_threshold:.1%}) and were skipped: "
                + ", ".join(f"{label} (CV {cv:.1%})" for label, cv in verify.unknown)
            )
        return SearchResult(
            result=res,
            device=dev.name,
            strategy=scfg.strategy,
            budget=str(scfg.budget),
            budget_ms=budget_ms,
            percentile=scfg.percentile,
            base=base_m,
            final=final_m,
            candidates=verify.all_candidates,
            model={**lm.errors(), **tables, "layers": len(lm.terms)},
            device_measurements=verify.measurements,
            wall_seconds=time.perf_counter() - t0,
            allocation=allocation,
            notes=notes,
            roots={g.index: g.root for g in ctx.groups},
        )


class _Counter:
    measurements = 0


def _check_deployed(
    verify: _Verifier,
    chosen: tuple[Candidate, PruneResult, Measurement],
    budget_ms: float,
    scfg: SearchConfig,
    tmp: Path,
    notes: list[str],
) -> tuple[tuple[Candidate, PruneResult, Measurement], Measurement]:
    """Export the winner as the deployed file will be exported and measure that file.

    The probes are TorchScript exports; another exporter can write a different graph (VGG's
    classifier as MatMul+Add instead of Gemm, say) that runs slower. If the deployed export misses
    the budget, the winner's plan is scaled down by what was missed and checked again.
    """
    cand, res, m = chosen
    if resolve_exporter(scfg.exporter, scfg.opset) == PROBE_EXPORTER:
        return chosen, m
    for attempt in range(3):
        path = tmp / f"deployed{attempt}.onnx"
        with track("export the chosen model as it will be deployed", total=None):
            onnx_from_torch(
                res.bundle.model,
                res.bundle.input_shape,
                path,
                opset=scfg.opset,
                exporter=scfg.exporter,
            )
        final = verify.measure_onnx(path, "search:deployed")
        ms = final.stats.get(scfg.percentile)
        if ms <= budget_ms:
            if attempt:
                notes.append(
                    f"the deployed export ran slower than the probe; the plan was cut further ({attempt}x)"
                )
            return (cand, res, final), final
        # Same cut profile (a uniform plan stays uniform), scaled to what the deployed file missed.
        keep = _keep_of(verify, cand)
        alloc = Allocator(
            verify.scored.ctx.groups, verify.scored.scores, verify.lm.term_cost(), verify.grids
        )
        target = verify.lm.predict(keep) * (budget_ms * (1 - scfg.tolerance / 2)) / ms
        smaller = alloc.scaled(alloc.profile_of(keep), target)
        cand, res, _ = verify(smaller, f"deployed correction {attempt + 1}")
    raise BudgetInfeasibleError(
        f"the deployed export of the chosen model runs {ms:.3f} ms on {verify.dev.name}, over the {budget_ms:.3f} ms budget",
        hint="export with the probes' exporter (--opset 17 uses TorchScript) or raise the budget",
        best_ms=ms,
        budget_ms=budget_ms,
    )


def _keep_of(verify: _Verifier, cand: Candidate) -> dict[int, int]:
    by_root = {root: gi for gi, root in verify.roots.items()}
    return {by_root[r]: w for r, w in cand.widths.items()}


def _on_grid(widths: list[int], want: float) -> int:
    """The largest candidate width not above ``want`` (the smallest candidate if none is)."""
    below = [w for w in widths if w <= want + 1e-9]
    return below[-1] if below else widths[0]


def _pick(
    feasible: list[tuple[Candidate, PruneResult, Measurement]], budget_ms: float
) -> tuple[Candidate, PruneResult, Measurement] | None:
    ok = [c for c in feasible if c[0].measured_ms <= budget_ms]
    return max(ok, key=lambda c: c[0].measured_ms) if ok else None


def _fallback(
    verify: _Verifier, floors: Mapping[int, int], budget_ms: float
) -> tuple[Candidate, PruneResult, Measurement]:
    """When no candidate landed in the window: the best one within budget, the smallest allowed
    model if only it is, else `BudgetInfeasibleError` with the best latency measured."""
    verify(dict(floors), "smallest allowed")
    best = _pick(list(verify.cache.values()), budget_ms)
    if best is not None:
        return best
    fastest = min(c.measured_ms for c in verify.root.all_candidates)
    raise BudgetInfeasibleError(
        f"no allowed model meets {budget_ms:.3f} ms on {verify.dev.name}: the best reached is {fastest:.3f} ms",
        hint="raise the budget, lower --min-channels, or use a faster runtime/device",
        best_ms=fastest,
        budget_ms=budget_ms,
    )


def _accuracy_aware(
    verify: _Verifier,
    lm: LatencyModel,
    scored: Scored,
    grids: Mapping[int, list[int]],
    floors: Mapping[int, int],
    budget_ms: float,
    scfg: SearchConfig,
    prune_cfg: PruneConfig,
    data: Dataset | None,
) -> tuple[tuple[Candidate, PruneResult, Measurement], AllocationResult]:
    """Plans predicted to meet the budget, ranked by the accuracy proxy; the best few measured
    and steered into the window; the most accurate one measured within budget wins."""
    aim = budget_ms * (1 - scfg.tolerance / 2)
    alloc = _allocator(scored, lm.term_cost(), grids, prune_cfg)
    proxy = accuracy_proxy(scored, prune_cfg, data)
    target, notes = aim, []
    unbounded: dict[int, list[int]] | None = None

    def past_bound() -> Allocator | None:
        """An allocator over the grids without the per-layer bound (None if the bound cuts
        nothing: the grids are the same)."""
        nonlocal unbounded
        if unbounded is None:
            unbounded = _unbounded_grids(lm, scored, prune_cfg)
        return (
            None
            if unbounded == dict(grids)
            else _allocator(scored, alloc.cost, unbounded, prune_cfg)
        )

    if alloc.cost(alloc.smallest()) > aim:
        # Predicted too slow even at the smallest allowed plan. A prediction is not a
        # measurement: measure that plan (the fit gains its far end), and if it meets the budget
        # the model was wrong there, so allocate against the target corrected by its residual
        # (steering below measures again) instead of shipping the smallest model.
        low = verify.attempt(alloc.smallest(), "smallest allowed")
        if low is None:  # unknown: the floors are a neighbouring plan that must be measured
            low = verify(dict(floors), "smallest allowed (floors)")
        wider = past_bound() if low[0].measured_ms > budget_ms else None
        if wider is not None:
            # Too slow within the per-layer bound: past it, as a FLOPs target is relaxed.
            low = verify(wider.smallest(), "smallest past the per-layer bound")
            if low[0].measured_ms <= budget_ms:
                alloc, grids = wider, wider.grids
                verify.grids = dict(grids)
                floors = {gi: ws[0] for gi, ws in grids.items()}
                notes.append(
                    f"no plan within --max-layer-ratio {scfg.max_layer_ratio:g} meets the budget: "
                    "layers were cut past it"
                )
        if low[0].measured_ms > budget_ms:
            # The smallest plan on the grid measured over the budget; the floors (a plan the
            # latency model may price differently) are measured before concluding anything.
            # Either raises, ships the only plan that meets the budget (it lies in the window),
            # or shows that the budget leaves room: then plans are allocated from that point.
            fb = _fallback(verify, floors, budget_ms)
            if fb[0].measured_ms >= budget_ms * (1 - scfg.tolerance):
                return fb, _no_allocation(aim, proxy)
            notes.append(
                f"the smallest plan on the width grid measured {low[0].measured_ms:.3f} ms, over "
                f"the budget, but {fb[0].label!r} measured {fb[0].measured_ms:.3f} ms: plans "
                "were allocated from there"
            )
            low = fb
        alloc.cost.scale, alloc.cost.offset = lm.alpha, lm.beta
        predicted_low = lm.predict(_keep_of(verify, low[0]))
        if predicted_low > aim:
            target = aim * predicted_low / max(low[0].measured_ms, 1e-9)
            notes.insert(
                0,
                f"the latency model predicted the smallest allowed plan over the budget, but it "
                f"measured {low[0].measured_ms:.3f} ms: plans were allocated for {target:.3f} ms predicted",
            )

    def ranked(a: Allocator, predicted_ms: float, what: str) -> AllocationResult:
        own = scored.criterion.own_widths(
            scored.ctx, scored.scores, lambda keep: a.cost(keep) <= predicted_ms
        )
        return allocate(
            a,
            predicted_ms,
            proxy,
            max_evals=scfg.proxy_evals,
            unit="ms (predicted)",
            proxy_samples=proxy.samples if proxy is not None else None,
            description=f"rank width plans for {aim:.3f} ms{what} on {verify.dev.name}",
            extra=[(own, f"{scored.criterion.name} own")] if own is not None else (),
        )

    allocation = ranked(alloc, target, "")
    if proxy is not None and len(allocation.plans) < scfg.verify_top:
        # A tight budget leaves few plans predicted under it, and the prediction's error is then
        # the size of the differences between plans: let measurements judge plans predicted up
        # to one tolerance over it too (steering cuts any that measure over the budget).
        relaxed = ranked(alloc, target * (1 + scfg.tolerance), " (relaxed)")
        if added := _add_plans(allocation, relaxed):
            allocation.notes.append(
                f"{added} plan(s) predicted up to {scfg.tolerance:.0%} over the budget were "
                f"added for measurement: the budget left fewer than {scfg.verify_top} under it"
            )
        # The per-layer bound binds too. A uniform cut at this budget already goes past it
        # (ResNet-20 at 0.35x: 8 of 64 channels), and it must stay among the candidates, so plans
        # over the unbounded grids join too, for the proxy to judge (a FLOPs target whose bound
        # forbids it is relaxed the same way in `allocate_keep`).
        wider = past_bound()
        if wider is not None and (
            added := _add_plans(allocation, ranked(wider, target, " past the per-layer bound"))
        ):
            allocation.notes.append(
                f"{added} plan(s) cutting some layer by more than --max-layer-ratio "
                f"{scfg.max_layer_ratio:g} were added: under the bound the budget left fewer "
                f"than {scfg.verify_top} plans"
            )
            alloc = wider  # steering may then move along the wider grids
            verify.grids = dict(wider.grids)
    allocation.notes.extend(notes)
    verified: list[tuple[float, tuple[Candidate, PruneResult, Measurement]]] = []
    tried: list[tuple[Candidate, PruneResult, Measurement]] = []
    # The best `verify_top` plans are measured; a plan whose first measurement is unknown (it
    # never settled) does not count, and the next plan takes its place.
    want = min(scfg.verify_top, len(allocation.plans))
    measured = 0
    steered: list[Plan] = []

    def steer(plan: Plan, rank: float) -> bool:
        """Steer ``plan`` into the window, keep what was measured; whether anything was."""
        got, steps = _steer(verify, lm, alloc, plan, aim, budget_ms, scfg, proxy, target)
        tried.extend(steps)
        steered.append(plan)
        if got is not None:
            acc = got[0].proxy_accuracy
            verified.append((acc if acc is not None else -rank, got))
        return bool(steps)

    with track(f"verify {want} plan(s) on {verify.dev.name}", total=want) as step:
        for rank, plan in enumerate(allocation.plans):
            # Without data the plans are not judged: the first that lands in the window wins
            # (one that did not is followed by the next plan, not by the fallback).
            if measured >= want or (proxy is None and verified):
                break
            if steer(plan, float(rank)):
                measured += 1
                step(1)
            elif len(verify.root.unknown) > 2 * scfg.verify_top:
                break  # the device is too noisy to measure plans: what was measured decides
    if proxy is not None and not any(p.label == "uniform" for p in steered):
        # The uniform cut is what a user gets without the search: it is always measured, so
        # the search can pick it when nothing ranked above it by the proxy is better.
        uniform = next((p for p in allocation.plans if p.label == "uniform"), None)
        if uniform is not None:
            steer(uniform, math.inf)
    if proxy is not None and scfg.judge_steps:
        # Every plan measured within the budget is a candidate, in the window or not: on a
        # coarse width grid a plan's steering can jump across the window (ResNet-20's 16-wide
        # stage keeps 8 or 16 channels), and the goal is the most accurate model within budget.
        pool = _judge_pool(tried, budget_ms)
        if len(pool) > 1:
            with track(
                f"judge {len(pool)} plan(s) after {scfg.judge_steps} fine-tune steps",
                total=len(pool),
            ) as step:
                judged = []
                for got in pool:
                    score = proxy.tuned(_keep_of(verify, got[0]), scfg.judge_steps)
                    got[0].tuned_accuracy = score.accuracy
                    got[0].tuned_loss = score.loss
                    judged.append((score.rank_key(), got))
                    step(1)
            allocation.notes.append(
                f"{len(pool)} plans measured within budget were judged after "
                f"{scfg.judge_steps} fine-tune steps on held-out training images"
            )
            best = max(judged, key=lambda v: v[0])[1]
            return _fill(verify, lm, alloc, best, budget_ms, scfg, allocation.notes), allocation
        if pool:
            return _fill(verify, lm, alloc, pool[0], budget_ms, scfg, allocation.notes), allocation
    if verified:
        return max(verified, key=lambda v: v[0])[1], allocation
    return _pick(tried, budget_ms) or _fallback(verify, floors, budget_ms), allocation


def _fill(
    verify: _Verifier,
    lm: LatencyModel,
    alloc: Allocator,
    got: tuple[Candidate, PruneResult, Measurement],
    budget_ms: float,
    scfg: SearchConfig,
    notes: list[str],
) -> tuple[Candidate, PruneResult, Measurement]:
    """The winner with the budget it left unused spent: grid steps added back by importance
    gained per predicted millisecond (`Allocator.grow`, each a superset of the winner's
    channels), kept if it measures within the budget. The window lets a winner stop 7 % under
    the budget; on a coarse grid that is a whole step of a layer (ResNet-20 at 0.7x on an
    AVX-512 host: the winner ran 0.94x of the budget while the uniform baseline reached 0.995x
    with 5.5 pp fewer FLOPs cut)."""
    cand = got[0]
    keep = _keep_of(verify, cand)
    alloc.cost.scale, alloc.cost.offset = lm.alpha, lm.beta
    predicted = max(lm.predict(keep), 1e-9)
    for attempt in range(2):
        # This plan's residual after the refit carries over to its grown neighbours.
        margin = 1 - scfg.tolerance / (4 * (attempt + 1))
        target = predicted * budget_ms * margin / cand.measured_ms
        grown = alloc.grow(keep, target)
        if grown == keep:
            return got
        trial = verify.attempt(grown, f"{cand.label} filled", None)
        if trial is None:
            return got
        if cand.measured_ms < trial[0].measured_ms <= budget_ms:
            notes.append(
                f"the winner measured {cand.measured_ms:.3f} ms; grown by importance into the "
                f"unused budget it measured {trial[0].measured_ms:.3f} ms and was kept"
            )
            return trial
        predicted = max(lm.predict(keep), 1e-9)  # refitted with the trial's point
    return got


# At most this many plans within budget are fine-tuned to judge them (the closest to the budget,
# plus the uniform plan's best): each costs `judge_steps` training steps.
_JUDGE_MAX = 4


def _judge_pool(
    tried: list[tuple[Candidate, PruneResult, Measurement]], budget_ms: float
) -> list[tuple[Candidate, PruneResult, Measurement]]:
    """The distinct plans measured within budget, slowest first, at most `_JUDGE_MAX` of them
    and the slowest uniform one."""
    seen: dict[int, tuple[Candidate, PruneResult, Measurement]] = {}
    for c in tried:
        if c[0].measured_ms <= budget_ms:
            seen.setdefault(id(c[0]), c)
    ranked = sorted(seen.values(), key=lambda c: c[0].measured_ms, reverse=True)
    pool = ranked[:_JUDGE_MAX]
    uniform = next((c for c in ranked if c[0].label.startswith("uniform")), None)
    if uniform is not None and all(c[0] is not uniform[0] for c in pool):
        pool.append(uniform)
    return pool


def _allocator(
    scored: Scored, cost: TermCost, grids: Mapping[int, list[int]], prune_cfg: PruneConfig
) -> Allocator:
    return Allocator(
        scored.ctx.groups,
        scored.scores,
        cost,
        grids,
        comparable=scored.criterion.comparable_scores,
        seed=prune_cfg.seed,
    )


def _add_plans(allocation: AllocationResult, more: AllocationResult) -> int:
    """Merge ``more``'s plans that ``allocation`` lacks into it, best first by proxy score
    (plans without one last); how many were added."""
    have = {tuple(sorted(p.keep.items())) for p in allocation.plans}
    extra = [p for p in more.plans if tuple(sorted(p.keep.items())) not in have]
    if extra:
        allocation.plans = sorted(
            [*allocation.plans, *extra],
            key=lambda p: p.proxy.rank_key() if p.proxy is not None else (-math.inf, 0.0),
            reverse=True,
        )
    return len(extra)


def _unbounded_grids(
    lm: LatencyModel, scored: Scored, prune_cfg: PruneConfig
) -> dict[int, list[int]]:
    """Each group's fast-side widths down to its smallest allowed width (no per-layer bound)."""
    return {
        g.index: lm.fast_side_widths(
            g, round_keep(g, 0, prune_cfg.round_to, prune_cfg.min_channels)
        )
        for g in scored.ctx.groups
    }


def _no_allocation(target: float, proxy: AccuracyProxy | None) -> AllocationResult:
    return AllocationResult(
        [],
        target,
        "ms (predicted)",
        proxy.samples if proxy else None,
        0,
        0.0,
        0,
        ["even the smallest allowed plan is predicted over budget"],
    )


def _steer(
    verify: _Verifier,
    lm: LatencyModel,
    alloc: Allocator,
    plan: Plan,
    aim: float,
    budget_ms: float,
    scfg: SearchConfig,
    proxy: AccuracyProxy | None,
    planned_for: float | None = None,
) -> tuple[
    tuple[Candidate, PruneResult, Measurement] | None,
    list[tuple[Candidate, PruneResult, Measurement]],
]:
    """Measure ``plan``; while it misses the window, refit, rescale its cut profile to a
    corrected target and measure again. Achievable latencies are discrete, so the target is
    bracketed (the loosest that met the budget, the tightest that did not) and bisected
    geometrically once both sides are known. Returns the in-window candidate (or None) and all
    candidates measured. ``planned_for``: the predicted target the plan was allocated for
    (``aim`` unless the allocation's target was corrected)."""
    lower = budget_ms * (1 - scfg.tolerance)
    profile = alloc.profile_of(plan.keep)
    keep, target = dict(plan.keep), planned_for if planned_for is not None else aim
    ok_t: float | None = None
    slow_t: float | None = None
    tried = []
    for i in range(scfg.max_verifications):
        acc = proxy(keep).accuracy if proxy is not None else None
        cand = verify.attempt(keep, f"{plan.label}" + (f" step {i + 1}" if i else ""), acc)
        if cand is None:  # unknown: this plan's steering stops, the other plans go on
            break
        tried.append(cand)
        measured = cand[0].measured_ms
        if lower <= measured <= budget_ms:
            return cand, tried
        alloc.cost.scale, alloc.cost.offset = lm.alpha, lm.beta  # refitted with this point
        if measured <= budget_ms:
            ok_t = target if ok_t is None else max(ok_t, target)
        else:
            slow_t = target if slow_t is None else min(slow_t, target)
        if ok_t is not None and slow_t is not None:
            nxt = math.sqrt(ok_t * slow_t)
        else:
            predicted = max(lm.predict(keep), 1e-9)
            nxt = max(1e-6, aim * predicted / measured)  # this plan's residual after the refit
        new = alloc.grow(alloc.scaled(profile, nxt), nxt)
        if new == keep and (ok_t is None or slow_t is None):
            # The corrected target maps back onto the plan just measured (the refit moved the
            # prediction less than the residual): with one side of the window known, push the
            # target on in that direction until the grid yields another plan. (MobileNetV2 at
            # 224×224, 0.5x: steering stopped at a plan measured 3 % over the budget and the
            # search shipped a fallback at 54 % of it.)
            push = 1 - scfg.tolerance / 2 if measured > budget_ms else 1 + scfg.tolerance / 2
            for _ in range(6):
                nxt *= push
                new = alloc.grow(alloc.scaled(profile, nxt), nxt)
                if new != keep:
                    break
        if new == keep or (abs(nxt - target) / target < 1e-3):
            break
        keep, target = new, nxt
    return None, tried


def _uniform(
    verify: _Verifier, groups: list, budget_ms: float, scfg: SearchConfig, prune_cfg: PruneConfig
) -> tuple[Candidate, PruneResult, Measurement]:
    lower = budget_ms * (1 - scfg.tolerance)
    lo, hi = 0.0, 1.0
    tried = []
    for _ in range(scfg.max_verifications):
        r = (lo + hi) / 2
        keep = {
            g.index: round_keep(g, g.width * (1 - r), prune_cfg.round_to, prune_cfg.min_channels)
            for g in groups
        }
        c = verify(keep, f"uniform {r:.3f}")
        tried.append(c)
        if lower <= c[0].measured_ms <= budget_ms:
            return c
        if c[0].measured_ms > budget_ms:
            lo = r
        else:
            hi = r
    floors = {g.index: round_keep(g, 0, prune_cfg.round_to, prune_cfg.min_channels) for g in groups}
    return _pick(tried, budget_ms) or _fallback(verify, floors, budget_ms)


def _netadapt(
    verify: _Verifier,
    lm: LatencyModel,
    scored: Scored,
    cands: Mapping[int, list[int]],
    budget_ms: float,
    base_ms: float,
    scfg: SearchConfig,
    prune_cfg: PruneConfig,
    bundle: ModelBundle,
    data: Dataset | None,
    dev: DeviceSession,
    store: Store,
    tmp: Path,
) -> tuple[Candidate, PruneResult, Measurement]:
    """Reach the budget in latency steps; after each, fine-tune briefly and re-score the pruned
    model, and prune *that* model in the next step (NetAdapt, Yang et al. 2018)."""
    if data is None:
        raise UsageError("the netadapt strategy fine-tunes between steps and needs --data")
    ft = _inner_finetune(scfg)
    n = max(1, scfg.netadapt_iterations)
    step_verify, keep = verify, lm.full()
    result: tuple[Candidate, PruneResult, Measurement] | None = None
    for i in range(1, n + 1):
        step_budget = base_ms - (base_ms - budget_ms) * i / n
        aim = step_budget * (1 - scfg.tolerance / 3)
        target = aim
        ranked = replace(
            scored, scores=_scores_on_original(step_verify.scored, scored, step_verify.bundle)
        )
        for attempt in range(3):
            new_keep = greedy_widths(lm, ranked, target, cands, start=keep)
            result = step_verify(
                new_keep, f"netadapt {i}/{n}" + (f" retry {attempt}" if attempt else "")
            )
            if result[0].measured_ms <= step_budget:
                break
            target *= aim / result[0].measured_ms
        assert result is not None
        keep = new_keep
        pruned = result[1].bundle
        train(pruned.model, data, ft, description=f"netadapt fine-tune {i}/{n}")
        pruned.model.eval()
        if i < n:
            step_verify = _Verifier(
                dev,
                store,
                pruned,
                score_model(pruned, prune_cfg, data),
                prune_cfg,
                data,
                scfg,
                lm,
                tmp,
                parent=verify,
            )
    assert result is not None
    if result[0].measured_ms > budget_ms:
        return _fallback(verify, {gi: min(ws) for gi, ws in cands.items()}, budget_ms)
    return result


def _inner_finetune(scfg: SearchConfig) -> TrainConfig:
    """The short fine-tune between NetAdapt's steps and the gradual finish's."""
    return scfg.netadapt_finetune or TrainConfig(epochs=1, lr=0.01, max_train_samples=2048)


def _gradual(
    verify: _Verifier,
    keep: Mapping[int, int],
    scfg: SearchConfig,
    prune_cfg: PruneConfig,
    data: Dataset,
) -> PruneResult | None:
    """The base model cut to ``keep`` (original group indices) in ``scfg.gradual_steps`` even
    steps, each followed by a short fine-tune; each step's channels are chosen by the criterion
    re-scored on the fine-tuned model (NetAdapt's schedule, Yang et al. 2018, towards widths the
    search chose; gradual pruning, Zhu & Gupta 2017). One cut leaves the fine-tune to repair
    everything at once: at 0.7x on ResNet-20 the one-cut winner started its fine-tune at 70.8 %
    where NetAdapt's stepped model started at 87.6 %, and ended 0.9 pp lower.

    Returns a `PruneResult` against the base model (its FLOPs, widths and plan), whose widths
    are exactly ``keep``'s, or None when a stepped model lost a group's root (its widths could
    then differ from the measured plan's)."""
    ft = _inner_finetune(scfg)
    n = scfg.gradual_steps
    groups = verify.scored.ctx.groups
    bundle, scored = verify.bundle, verify.scored
    prev = {g.index: g.width for g in groups}
    first: PruneResult | None = None
    res: PruneResult | None = None
    for i in range(1, n + 1):
        step = {}
        for g in groups:
            want = g.width - (g.width - keep[g.index]) * i / n
            w = round_keep(g, want, prune_cfg.round_to, prune_cfg.min_channels)
            step[g.index] = keep[g.index] if i == n else max(keep[g.index], min(prev[g.index], w))
        own = {g.root: g.index for g in scored.ctx.groups}
        if any(g.root not in own for g in groups if step[g.index] < g.width):
            return None
        own_keep = {own[g.root]: step[g.index] for g in groups if g.root in own}
        res = materialize(bundle, scored, own_keep, prune_cfg, data)
        first = first or res
        train(res.bundle.model, data, ft, description=f"gradual fine-tune {i}/{n}")
        res.bundle.model.eval()
        bundle, prev = res.bundle, step
        if i < n:
            scored = score_model(bundle, prune_cfg, data)
    assert res is not None and first is not None
    return replace(
        res,
        macs_before=first.macs_before,
        params_before=first.params_before,
        scoring_seconds=verify.scored.seconds,
        widths={g.root: (keep[g.index], g.width) for g in groups},
    )


def _scores_on_original(
    current: Scored, original: Scored, current_bundle: ModelBundle
) -> dict[int, torch.Tensor]:
    """The current model's channel scores placed at the original groups' channel indices.

    The current model's plan says which original channel each remaining channel is; channels
    already removed get a score below every kept one, so the greedy never counts them as kept.
    """
    if current is original:
        return dict(original.scores)
    plan_keep = {gp.root: gp.keep for gp in current_bundle.plan.groups}
    by_root = {g.root: g for g in current.ctx.groups}
    out: dict[int, torch.Tensor] = {}
    for g in original.ctx.groups:
        cur = by_root.get(g.root)
        kept = plan_keep.get(g.root)
        if cur is None or kept is None or len(kept) != cur.width:
            out[g.index] = original.scores[g.index]
            continue
        fresh = current.scores[cur.index].double()
        s = torch.full((g.width,), float(fresh.min()) - 1.0, dtype=torch.float64)
        s[list(kept)] = fresh
        out[g.index] = s.float()
    return out
