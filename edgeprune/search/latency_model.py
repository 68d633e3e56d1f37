"""A per-device latency model built from measured lookup tables (NetAdapt/HALP style).

For every conv/linear layer (a `BlockSpec`: the layer with its BN and activation, exported so
fusion is included) the device measures the block's latency over a grid of output widths (input
at full width) and of input widths (output at full width). Grids are multiples of the width
granularity the search prunes with (``step``, ``--round-to``) and of the layer's channel
grouping, so every width a plan can take is measured. A layer at widths (ci, co) is predicted as
``T(CI, co) · T(ci, CO) / T(CI, CO)`` (separable), depthwise layers by their single width;
widths between grid points round *up* to the next measured width, so predictions never hide a
step. The model's raw prediction is the sum over layers; ``alpha · raw + beta`` is fitted
(relative least squares) to whole-model measurements, and the model's error against whole-model
measurements is kept (each point is predicted before it is added to the fit).

The isolated blocks pay costs the layers do not pay inside the model (the runtime's per-call
cost, ONNX Runtime's layout reorders around each conv): at full width the blocks sum to 1.78×
(ResNet-20) and 1.32× (ResNet-56) the whole model's latency on this project's host. The
calibration's ``alpha``/``beta`` absorb that; a model that predicts from MACs instead (fixed
costs taken out) was tried and predicted worse, because widths that leave the runtime's fast
kernels are only visible in the tables (benchmarks/results/latency/latency_model.md).

Lookup-table entries live in the measurement store, keyed by the device context (device, runtime
and version, threads, precision, clocks, agent, protocol), the block signature and the widths, and
are reused by later searches on the same device.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune._progress import track
from edgeprune.bench import BenchConfig, Store
from edgeprune.bench.protocol import device_key, measure_batch
from edgeprune.device import DeviceSession
from edgeprune.export import onnx_from_torch
from edgeprune.prune import DependencyIndex, PrunableGroup, TermCost
from edgeprune.search.blocks import BlockSpec, extract_blocks

GRID_POINTS = 16
BLOCK_OPSET = 17

# Measurement probes (candidates, the base, lookup-table blocks) are exported with the TorchScript
# exporter: the same Conv/BN/ReLU/Add graph as dynamo's, ~15x faster to write (0.2 vs 3.8 s for a
# ResNet-56), and ONNX Runtime times both alike. Parity is still checked on whole models.
PROBE_EXPORTER = "torchscript"


def width_grid(full: int, step: int = 1, points: int = GRID_POINTS) -> list[int]:
    """Measured widths for a dimension of ``full`` channels: multiples of a power-of-two
    multiple of ``step`` (so SIMD-friendly widths are on the grid), about ``points`` of them, plus
    ``full`` itself."""
    q = step
    while full / q > points:
        q *= 2
    return sorted({*range(q, full, q), full})


def ceil_to(grid: list[int], value: float) -> int:
    v = math.ceil(round(value, 6))
    for g in grid:
        if g >= v:
            return g
    return grid[-1]


def _channels(base: int, parts: list, keep: Mapping[int, int], widths: Mapping[int, int]) -> float:
    removed = 0.0
    for p in parts:
        w = widths[p.group]
        removed += p.count * (1.0 - keep.get(p.group, w) / w)
    return max(1.0, base - removed)


@dataclass
class LayerTerm:
    spec: BlockSpec
    in_grid: list[int] | None  # None: the input width never changes
    out_grid: list[int] | None

    def entries(self) -> set[tuple[int, int]]:
        ci, co = self.spec.cin, self.spec.cout
        if self.spec.depthwise and self.out_grid is not None:
            return {(c, c) for c in self.out_grid}
        out = {(ci, co)}
        if self.out_grid is not None:
            out |= {(ci, c) for c in self.out_grid}
        if self.in_grid is not None:
            out |= {(c, co) for c in self.in_grid}
        return out


@dataclass
class ModelPoint:
    keep: dict[int, int]
    measured_ms: float
    predicted_ms: float | None  # the prediction made before this point joined the fit
    label: str = ""


@dataclass
class LatencyModel:
    terms: list[LayerTerm]
    widths: dict[int, int]
    groups: list[PrunableGroup]
    lut: dict[tuple[str, int, int], float] = field(default_factory=dict)
    alpha: float = 1.0
    beta: float = 0.0
    points: list[ModelPoint] = field(default_factory=list)
    device_key: str | None = None
    measured_entries: int = 0
    reused_entries: int = 0

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        example: torch.Tensor,
        index: DependencyIndex,
        groups: list[PrunableGroup],
        step: int = 1,
    ) -> LatencyModel:
        """Terms for every executed conv/linear layer; grids follow the groups that control them,
        on multiples of ``step`` (the width granularity plans are rounded to) and of each group's
        channel grouping."""
        widths = {g.index: g.width for g in index.groups}
        prunable = {g.index for g in groups}
        steps = {g.index: math.lcm(g.channel_groups, max(1, step)) for g in index.groups}
        terms = []
        for spec in extract_blocks(model, example, index):
            c = spec.cost
            in_var = any(p.group in prunable for p in c.in_parts)
            out_var = any(p.group in prunable for p in c.out_parts)
            step_in = max(
                [steps[p.group] for p in c.in_parts] + [spec.groups if not spec.depthwise else 1]
            )
            step_out = max(
                [steps[p.group] for p in c.out_parts] + [spec.groups if not spec.depthwise else 1]
            )
            terms.append(
                LayerTerm(
                    spec,
                    width_grid(spec.cin, step_in) if in_var else None,
                    width_grid(spec.cout, step_out) if out_var else None,
                )
            )
        return cls(terms=terms, widths=widths, groups=groups)

    # ------------------------------------------------------------------ lookup tables

    def required(self) -> dict[tuple[str, int, int], LayerTerm]:
        need: dict[tuple[str, int, int], LayerTerm] = {}
        for t in self.terms:
            sig = t.spec.signature()
            for ci, co in t.entries():
                need.setdefault((sig, ci, co), t)
        return need

    def measure_tables(
        self, dev: DeviceSession, store: Store, cfg: BenchConfig, opset: int = BLOCK_OPSET
    ) -> dict[str, Any]:
        """Measure every lookup-table entry this model needs that the store does not have yet."""
        self.device_key = device_key(dev, cfg)
        need = self.required()
        missing = []
        for key in need:
            hit = store.lut_get(self.device_key, *key)
            if hit is None:
                missing.append(key)
            else:
                self.lut[key] = hit["median"]
        self.reused_entries = len(need) - len(missing)
        with tempfile.TemporaryDirectory(prefix="edgeprune-blocks-") as tmp:
            files: list[Path] = []
            with track("export latency blocks", total=len(missing)) as step:
                for i, (sig, ci, co) in enumerate(missing):
                    spec = need[(sig, ci, co)].spec
                    path = Path(tmp) / f"block{i}.onnx"
                    onnx_from_torch(
                        spec.build(ci, co),
                        spec.input_shape(ci),
                        path,
                        opset=opset,
                        exporter=PROBE_EXPORTER,
                        check=False,
                    )
                    files.append(path)
                    step(1)
            results = measure_batch(dev, files, cfg) if files else []
        for (sig, ci, co), (sha, stats, state) in zip(missing, results, strict=True):
            store.lut_add(
                self.device_key,
                dev.name,
                sig,
                ci,
                co,
                sha,
                stats,
                {"device": dev.name, "protocol": cfg.protocol_id, **state},
            )
            self.lut[(sig, ci, co)] = stats.median
        self.measured_entries = len(missing)
        return {
            "entries": len(need),
            "measured": len(missing),
            "reused": self.reused_entries,
            "device_key": self.device_key,
        }

    # ------------------------------------------------------------------ prediction

    def _term_ms(self, t: LayerTerm, keep: Mapping[int, int]) -> float:
        sig, ci0, co0 = t.spec.signature(), t.spec.cin, t.spec.cout
        c = t.spec.cost
        if t.spec.depthwise and t.out_grid is not None:
            w = ceil_to(t.out_grid, _channels(co0, c.out_parts, keep, self.widths))
            return self.lut[(sig, w, w)]
        full = self.lut[(sig, ci0, co0)]
        co = (
            ceil_to(t.out_grid, _channels(co0, c.out_parts, keep, self.widths))
            if t.out_grid is not None
            else co0
        )
        ci = (
            ceil_to(t.in_grid, _channels(ci0, c.in_parts, keep, self.widths))
            if t.in_grid is not None
            else ci0
        )
        t_out = self.lut[(sig, ci0, co)]
        t_in = self.lut[(sig, ci, co0)]
        return t_out * t_in / full if full > 0 else t_out

    def term_cost(self) -> TermCost:
        """The calibrated prediction as a `TermCost` (solvers re-price only what a change touches).

        Built from the current fit: make a new one after `add_point`, or update its
        ``scale``/``offset`` from ``alpha``/``beta``."""
        return TermCost(
            [
                (
                    partial(self._term_ms, t),
                    {p.group for p in (*t.spec.cost.in_parts, *t.spec.cost.out_parts)},
                )
                for t in self.terms
            ],
            self.alpha,
            self.beta,
        )

    def raw(self, keep: Mapping[int, int]) -> float:
        """The sum of the layers' table latencies (uncalibrated)."""
        return sum(self._term_ms(t, keep) for t in self.terms)

    def predict(self, keep: Mapping[int, int]) -> float:
        return self.alpha * self.raw(keep) + self.beta

    def full(self) -> dict[int, int]:
        return {g.index: g.width for g in self.groups}

    # ------------------------------------------------------------------ calibration

    def add_point(self, keep: Mapping[int, int], measured_ms: float, label: str = "") -> ModelPoint:
        """Record a whole-model measurement (predicted first, then refit)."""
        predicted = self.predict(keep) if self.points else None
        point = ModelPoint(dict(keep), measured_ms, predicted, label)
        self.points.append(point)
        self._fit()
        return point

    def _fit(self) -> None:
        raws = [self.raw(p.keep) for p in self.points]
        ms = [p.measured_ms for p in self.points]
        if len(self.points) == 1 or len({round(r, 9) for r in raws}) == 1:
            self.alpha, self.beta = (sum(ms) / sum(raws)) if sum(raws) > 0 else 1.0, 0.0
            return
        # Relative least squares: minimise Σ ((α r + β − m) / m)².
        w = [1.0 / (m * m) for m in ms]
        sw = sum(w)
        sr = sum(wi * r for wi, r in zip(w, raws, strict=True))
        sm = sum(wi * m for wi, m in zip(w, ms, strict=True))
        srr = sum(wi * r * r for wi, r in zip(w, raws, strict=True))
        srm = sum(wi * r * m for wi, r, m in zip(w, raws, ms, strict=True))
        det = sw * srr - sr * sr
        if abs(det) < 1e-18:
            self.alpha, self.beta = sm / sr, 0.0
            return
        alpha = (sw * srm - sr * sm) / det
        beta = (sm - alpha * sr) / sw
        if alpha <= 0:
            alpha, beta = sm / sr, 0.0
        self.alpha, self.beta = alpha, beta

    def errors(self) -> dict[str, Any]:
        """Relative error of out-of-sample predictions against whole-model measurements."""
        rel = [
            abs(p.predicted_ms - p.measured_ms) / p.measured_ms
            for p in self.points
            if p.predicted_ms is not None
        ]
        return {
            "points": len(rel),
            "median_relative_error": statistics.median(rel) if rel else None,
            "worst_relative_error": max(rel) if rel else None,
            "alpha": self.alpha,
            "beta_ms": self.beta,
        }

    # ------------------------------------------------------------------ candidate widths

    def fast_side_widths(self, group: PrunableGroup, floor: int = 1) -> list[int]:
        """Widths of ``group`` worth choosing: those predicted faster than every larger width.

        A width inside a latency plateau is never faster than the plateau's largest width, so
        only the fast side of each step survives (no latency cliffs). Ascending, ends at full.
        """
        grids = [
            t.out_grid
            for t in self.terms
            if t.out_grid and any(p.group == group.index for p in t.spec.cost.out_parts)
        ]
        grids += [
            t.in_grid
            for t in self.terms
            if t.in_grid and any(p.group == group.index for p in t.spec.cost.in_parts)
        ]
        if not grids:
            return [group.width]
        widths = sorted(
            {w for w in max(grids, key=len) if w >= floor and w % group.channel_groups == 0}
            | {group.width}
        )
        base = self.full()
        lat = {w: self.raw({**base, group.index: w}) for w in widths}
        span = max(lat.values()) - min(lat.values())
        eps = max(1e-6, 0.02 * span)
        keep, best_above = [], math.inf
        for w in reversed(widths):
            if w == group.width or lat[w] < best_above - eps:
                keep.append(w)
                best_above = min(best_above, lat[w])
        return sorted(keep)
