"""The one module that talks to Torch-Pruning (DepGraph).

It turns a model into a list of `PrunableGroup` records (channels that must be removed together,
with which channel of each layer carries which channel of the group), applies a `PrunePlan` (kept
channel indices per group) to a model, and counts MACs/params. Every other part of edgeprune
works with plain names and index lists, never with Torch-Pruning objects.

Torch-Pruning is trusted only as far as it can be checked. Each group it forms is compared with
the forward pass's own channel routing (`edgeprune.prune._flow`); a group that disagrees, whose
channel propagation does not terminate, or that Torch-Pruning fails on is *refused* (left at
full width) with a reason, instead of producing a model that runs but is not a sub-network of
the original. Building the groups shows progress and stops at a deadline. A plan is checked
against the groups before it is applied, and the pruned model against the plan after.
"""

from __future__ import annotations

import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch_pruning.dependency import graph as tp_graph
from torch_pruning.dependency import index_mapping as tp_index_mapping

from edgeprune._hooks import probe_forward
from edgeprune._progress import track
from edgeprune.errors import PruningError, UsageError
from edgeprune.prune._flow import Perturbation, channel_reach, is_depthwise
from edgeprune.prune.plan import GroupPlan, PrunePlan

ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Seconds Torch-Pruning may take to form all groups of one model (a ResNet-50 takes ~2 s here).
GRAPH_TIMEOUT_S = 300.0


@dataclass
class LayerPart:
    """How many of a layer's input or output channels belong to one group."""

    group: int
    count: int


@dataclass
class LayerCost:
    """Per-layer facts for the analytic MAC/param model (conv and linear layers)."""

    name: str
    kind: str  # "conv" | "linear" | "bn"
    weight_per_channel_pair: int  # kernel area for convs, 1 for linear, 2 for affine BN
    out_spatial: int  # output positions per sample (H×W for conv2d, 1 for linear on 2-D input)
    cin: int
    cout: int
    groups: int
    depthwise: bool
    bias: bool
    in_parts: list[LayerPart] = field(default_factory=list)
    out_parts: list[LayerPart] = field(default_factory=list)


@dataclass(frozen=True)
class ChannelMap:
    """Which channels of one layer carry which channels of a group: layer channel ``local[i]``
    carries the group's channel ``root[i]``. A layer may carry only some of the group's channels
    (a slice of a concatenation) or one channel many times (a flatten into a linear layer)."""

    root: tuple[int, ...]
    local: tuple[int, ...]

    def of(self, channels: Sequence[int] | set[int]) -> set[int]:
        """The layer's channels that carry any of the group's ``channels``."""
        want = set(channels)
        return {lo for r, lo in zip(self.root, self.local, strict=True) if r in want}

    def index(self, width: int) -> torch.Tensor | None:
        """The layer channel of each group channel 0..width-1, or None unless the layer carries
        every group channel exactly once."""
        if len(self.root) != width or sorted(self.root) != list(range(width)):
            return None
        out = torch.empty(width, dtype=torch.long)
        out[list(self.root)] = torch.tensor(self.local, dtype=torch.long)
        return out


@dataclass
class PrunableGroup:
    """Channels that DepGraph says must be removed together (and the forward pass confirms).

    ``root`` names the layer whose output channels index the group; ``width`` is its channel count.
    ``members`` are all layers whose *output* channels are in the group (more than one conv means
    a residual/shared group); ``consumers`` are layers whose *input* channels change.
    ``out_maps``/``in_maps`` say which of each member's output / consumer's input channels carry
    which group channel. ``channel_groups`` > 1 means a grouped convolution is involved (named by
    ``chunked_by``): pruning must remove the same local indices from each of that many equal chunks.
    """

    index: int
    root: str
    width: int
    members: list[str]
    consumers: list[str]
    bn: str | None
    channel_groups: int = 1
    n_producers: int = 1
    out_maps: dict[str, ChannelMap] = field(default_factory=dict, repr=False)
    in_maps: dict[str, ChannelMap] = field(default_factory=dict, repr=False)
    chunked_by: str | None = None

    @property
    def shared(self) -> bool:
        """True for residual/shared groups (outputs of two or more non-depthwise layers coupled)."""
        return self.n_producers > 1

    def local_channels(self, layer: str) -> torch.Tensor | None:
        """Output channel of member ``layer`` for each group channel (None: not one-to-one)."""
        cm = self.out_maps.get(layer)
        return cm.index(self.width) if cm is not None else None

    def limit(self) -> str | None:
        """Why this group's width moves only in steps (or cannot move), or None."""
        if self.channel_groups <= 1:
            return None
        if self.channel_groups >= self.width:
            return (
                f"not prunable: grouped conv {self.chunked_by} has one channel of it per group "
                "(removing one would remove a whole group)"
            )
        return f"steps of {self.channel_groups}: grouped conv {self.chunked_by}"

    def to_dict(self) -> dict[str, Any]:
        partial = sorted(
            n
            for n, cm in {**self.out_maps, **self.in_maps}.items()
            if len(set(cm.root)) < self.width
        )
        return {
            "index": self.index,
            "root": self.root,
            "width": self.width,
            "members": self.members,
            "consumers": self.consumers,
            "bn": self.bn,
            "channel_groups": self.channel_groups,
            "shared": self.shared,
            "partial_layers": partial,
            "limit": self.limit(),
        }


@dataclass(frozen=True)
class RefusedGroup:
    """A group edgeprune will not prune (it stays at full width), and why."""

    root: str
    width: int
    reason: str
    layers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "width": self.width,
            "reason": self.reason,
            "layers": list(self.layers),
        }


# --------------------------------------------------------------------------- Torch-Pruning guards
#
# Two upstream failure modes are contained here rather than patched in Torch-Pruning itself:
# 1. index-mapping rules that raise on ops they misread (update_reshape_index_mapping divides by a
#    channel count of 0 after a channel shuffle; update_concat_index_mapping sums channel counts
#    it could not infer, None, before checking them): the node is left unmapped and recorded,
#    and the verification refuses any group whose channels it routes wrongly;
# 2. channel propagation that never terminates (a view/reshape read as a flatten inside a
#    split → cat → shuffle loop multiplies the index lists on every pass): a group whose index
#    lists outgrow every layer of the model, or that takes too long, is stopped.
# Both act only inside `_guarded()` on the calling thread; elsewhere Torch-Pruning runs unchanged.

_guard = threading.local()


class _Runaway(Exception):
    """Torch-Pruning's propagation for one group does not terminate."""


class _Deadline(Exception):
    """The whole dependency analysis ran out of time."""


_UPDATERS = {
    tp.ops.OPTYPE.CONCAT: tp_index_mapping.update_concat_index_mapping,
    tp.ops.OPTYPE.SPLIT: tp_index_mapping.update_split_index_mapping,
    tp.ops.OPTYPE.RESHAPE: tp_index_mapping.update_reshape_index_mapping,
    tp.ops.OPTYPE.UNBIND: tp_index_mapping.update_unbind_index_mapping,
    tp.ops.OPTYPE.EXPAND: tp_index_mapping.update_expand_index_mapping,
    tp.ops.OPTYPE.SLICE: tp_index_mapping.update_slice_index_mapping,
}
_original_update = tp_index_mapping.update_index_mapping


def _update_index_mapping(graph: Any) -> None:
    """Torch-Pruning's `update_index_mapping`, one node at a time, recording the nodes it fails on."""
    faults = getattr(_guard, "faults", None)
    if faults is None:
        _original_update(graph)
        return
    for node in graph.module2node.values():
        update = _UPDATERS.get(node.type)
        if update is None:
            continue
        try:
            update(graph, node)
        except Exception as e:  # any rule's failure leaves the node as Torch-Pruning had it
            faults[node] = f"{type(e).__name__} in Torch-Pruning's {update.__name__}"


class _BoundedGroup(tp_graph.Group):
    """Torch-Pruning's group, stopped when its propagation runs away or time is up."""

    def add_dep(self, dep: Any, idxs: Any) -> None:
        limits = getattr(_guard, "limits", None)
        if limits is not None:
            max_indices, max_items, deadline = limits
            if len(idxs) > max_indices or len(self._group) >= max_items:
                raise _Runaway(dep.target)
            if time.monotonic() > deadline:
                raise _Deadline()
        super().add_dep(dep, idxs)


tp_index_mapping.update_index_mapping = _update_index_mapping
tp_graph.Group = _BoundedGroup


@contextmanager
def _guarded(faults: dict[Any, str], limits: tuple[int, int, float] | None) -> Iterator[None]:
    _guard.faults, _guard.limits = faults, limits
    try:
        yield
    finally:
        _guard.faults = _guard.limits = None


def _tp_failure(e: BaseException, names: Mapping[Any, str]) -> str:
    """One line for a Torch-Pruning exception, naming the layer it was working on if it can."""
    where = None
    for frame, _line in traceback.walk_tb(e.__traceback__):
        for key in ("module", "layer", "node", "m"):
            obj = frame.f_locals.get(key)
            obj = getattr(obj, "module", obj)
            if obj in names:
                where = names[obj]
    msg = str(e).splitlines()[0][:160] if str(e) else ""
    return f"{type(e).__name__}{': ' + msg if msg else ''}" + (
        f" at layer {where}" if where else ""
    )


def find_output_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the layers whose outputs are the model's outputs (they must keep their width).

    Works on any model: a forward pass records each leaf module's output tensor; the layers whose
    output *is* a model output are the heads. If none is found (the output is post-processed),
    the last conv/linear layer executed is used.
    """
    produced: dict[int, str] = {}
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        name = names[mod]
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                produced[id(t)] = name
        if isinstance(mod, ROOT_TYPES):
            order.append(name)

    out = probe_forward(model, example, hook)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    heads = []
    for t in outs:
        if isinstance(t, torch.Tensor) and id(t) in produced:
            name = produced[id(t)]
            mod = dict(model.named_modules())[name]
            if isinstance(mod, ROOT_TYPES):
                heads.append(name)
            elif order:
                heads.append(order[-1])
    if not heads and order:
        heads.append(order[-1])
    return sorted(set(heads))


class DependencyIndex:
    """DepGraph of one model instance: its prunable groups, the refused ones, and the means to
    prune them.

    ``ignored`` names layers whose output channels must not change (the classifier head is always
    added). With ``verify`` every group is checked against the forward pass's channel routing;
    ``refused`` names groups already known to fail (a copy of a checked model skips the check).
    Raises `UsageError` for unknown ignored layers and `PruningError` when Torch-Pruning cannot
    trace the model or takes longer than ``timeout`` seconds. The index holds references to
    ``model``'s modules: build a new one for another model.
    """

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor,
        ignored: list[str] | None = None,
        *,
        verify: bool = True,
        refused: Sequence[RefusedGroup] = (),
        timeout: float = GRAPH_TIMEOUT_S,
    ) -> None:
        self.model = model
        self.example = example
        self.names: dict[nn.Module, str] = {m: n for n, m in model.named_modules()}
        self.modules: dict[str, nn.Module] = dict(model.named_modules())
        unknown = [n for n in ignored or [] if n not in self.modules]
        if unknown:
            raise UsageError(
                f"ignored layer(s) not in the model: {', '.join(unknown)}",
                hint="use module names as printed by `edgeprune prune --list-groups`",
            )
        self.heads = find_output_layers(model, example)
        self.ignored = sorted(set(ignored or []) | set(self.heads))
        self._channel_groups = {
            m: m.groups
            for m in model.modules()
            if isinstance(m, CONVS) and 1 < m.groups != m.out_channels
        }
        self.groups: list[PrunableGroup] = []
        self.refused: list[RefusedGroup] = []
        self._tp_groups: list[Any] = []
        self._faults: dict[Any, str] = {}
        dims = [1]
        for m in model.modules():
            if isinstance(m, CONVS):
                dims += [m.in_channels, m.out_channels]
            elif isinstance(m, nn.Linear):
                dims += [m.in_features, m.out_features]
        deadline = time.monotonic() + timeout
        self._timeout = timeout
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings(), _guarded(self._faults, None):
                warnings.simplefilter("ignore")
                try:
                    self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=example)
                except Exception as e:  # Torch-Pruning's tracer raises many types
                    raise PruningError(
                        f"Torch-Pruning cannot trace {type(model).__name__}: "
                        f"{_tp_failure(e, self.names)}",
                        hint="protect the layer it names with --ignore-layers, or report the model",
                    ) from e
            # A valid group lists each layer once or twice and at most every channel of the
            # widest layer (a flatten into a linear layer: its features).
            limits = (2 * max(dims), 64 + 2 * len(self.dg.module2node), deadline)
            with warnings.catch_warnings(), _guarded(self._faults, limits):
                warnings.simplefilter("ignore")
                self._collect({id(self.modules[n]) for n in self.ignored}, refused)
        finally:
            model.train(was_training)
        if verify and self.groups:
            self._verify()

    # ------------------------------------------------------------------ forming groups

    def _collect(self, ignored_ids: set[int], known: Sequence[RefusedGroup]) -> None:
        """Torch-Pruning's `get_all_groups`, one root at a time: progress, a deadline, and a
        refusal (not a crash or a hang) for a group Torch-Pruning cannot form."""
        known_by_root = {r.root: r for r in known}
        ignored_ids |= {id(m) for m in self.dg.IGNORED_LAYERS_IN_TRACING}
        roots = [
            m
            for m in self.dg.module2node
            if isinstance(m, ROOT_TYPES) and id(m) not in ignored_ids and m in self.names
        ]
        visited: set[int] = set()
        with track("dependency groups", total=len(roots)) as step:
            for i, m in enumerate(roots):
                step(1)
                if id(m) in visited:
                    continue
                pruner = self.dg.get_pruner_of_module(m)
                width = pruner.get_out_channels(m) if pruner is not None else None
                if width is None:
                    continue
                name = self.names[m]
                known_refusal = known_by_root.get(name)
                if known_refusal is not None and not known_refusal.layers:
                    # Torch-Pruning could not form it: skipped unformed, as it was then.
                    visited.add(id(m))
                    self.refused.append(known_refusal)
                    continue
                try:
                    g = self.dg.get_pruning_group(m, pruner.prune_out_channels, list(range(width)))
                except _Deadline:
                    raise PruningError(
                        f"Torch-Pruning's dependency analysis did not finish within "
                        f"{self._timeout:.0f} s (at group {i + 1} of {len(roots)}, layer {name})",
                        hint=f"protect that layer with --ignore-layers {name}",
                    ) from None
                except _Runaway as e:
                    visited.add(id(m))
                    node = e.args[0]
                    at = self.names.get(node.module) or type(node.module).__name__.strip("_")
                    self.refused.append(
                        RefusedGroup(
                            name,
                            int(width),
                            "Torch-Pruning's channel propagation from this layer does not "
                            f"terminate: its index lists keep growing at {at} (seen after slices "
                            "of a concatenation and after channel shuffles)",
                        )
                    )
                    continue
                except Exception as e:  # a Torch-Pruning bug on this group: refuse it only
                    visited.add(id(m))
                    self.refused.append(
                        RefusedGroup(
                            name, int(width), f"Torch-Pruning failed: {_tp_failure(e, self.names)}"
                        )
                    )
                    continue
                prunable = True
                for dep, _ in g:
                    if self.dg.is_out_channel_pruning_fn(dep.handler):
                        visited.add(id(dep.target.module))
                        if id(dep.target.module) in ignored_ids:
                            prunable = False
                if known_refusal is not None:
                    # Formed, then refused by the routing check: formed again so that its members
                    # are claimed as they were (else each would root a group of its own, and a
                    # model copy's groups would not be the checked model's).
                    self.refused.append(known_refusal)
                elif prunable:
                    self._add_group(g)

    def _add_group(self, g: Any) -> None:
        root_mod = g[0].dep.target.module
        root = self.names[root_mod]
        width = int(self.dg.get_out_channels(root_mod))
        members: list[str] = []
        consumers: list[str] = []
        out_maps: dict[str, ChannelMap] = {}
        in_maps: dict[str, ChannelMap] = {}
        bn = None
        ch_groups, chunked_by = 1, None
        producers = 0
        for item in g:
            dep, idxs = item
            mod = dep.target.module
            if not isinstance(mod, nn.Module) or mod not in self.names:
                continue
            name = self.names[mod]
            cm = ChannelMap(tuple(int(r) for r in item.root_idxs), tuple(int(i) for i in idxs))
            if self.dg.is_out_channel_pruning_fn(dep.handler):
                if name not in members:
                    members.append(name)
                    out_maps[name] = cm
                if isinstance(mod, ROOT_TYPES) and not is_depthwise(mod):
                    producers += 1
                if bn is None and isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    bn = name
            elif name not in consumers:
                consumers.append(name)
                in_maps[name] = cm
            if mod in self._channel_groups and self._channel_groups[mod] > ch_groups:
                ch_groups, chunked_by = self._channel_groups[mod], f"{name} (groups={mod.groups})"
        if width < 2:
            return
        self.groups.append(
            PrunableGroup(
                len(self.groups),
                root,
                width,
                members,
                consumers,
                bn,
                ch_groups,
                max(1, producers),
                out_maps,
                in_maps,
                chunked_by,
            )
        )
        self._tp_groups.append(g)

    # ------------------------------------------------------------------ checking groups

    def _verify(self) -> None:
        """Refuse every group whose channel maps disagree with the forward pass's routing.

        For three channels of each group, the matching output channel of every producing layer
        is perturbed; the input channels reached at every conv/linear/BatchNorm must be exactly
        those the group's maps name for that channel (see `edgeprune.prune._flow`). Groups whose claimed
        channels do not overlap are probed in the same forward pass; a group that fails there is
        probed again on its own before it is refused.
        """
        broken = {pos: why for pos, g in enumerate(self.groups) if (why := self._map_fault(g))}
        samples = {pos: sorted({0, g.width // 2, g.width - 1}) for pos, g in enumerate(self.groups)}
        producers = {
            pos: [
                n
                for n in g.members
                if isinstance(self.modules[n], ROOT_TYPES)
                and (not is_depthwise(self.modules[n]) or n == g.root)
            ]
            for pos, g in enumerate(self.groups)
        }
        claims = {
            (pos, r): self._claim(g, r) for pos, g in enumerate(self.groups) for r in samples[pos]
        }
        every = [pos for pos in range(len(self.groups)) if pos not in broken]
        with track("check channel routing", total=None):
            suspects = self._probe(every, samples, producers, claims, pack=True)
            bad = self._probe(sorted(suspects), samples, producers, claims, pack=False)
        bad.update(broken)
        if not bad:
            return
        kept: list[PrunableGroup] = []
        kept_tp: list[Any] = []
        for pos, (g, tg) in enumerate(zip(self.groups, self._tp_groups, strict=True)):
            if pos in bad:
                layers = tuple(sorted(set(g.members) | set(g.consumers)))
                self.refused.append(RefusedGroup(g.root, g.width, bad[pos], layers))
                continue
            g.index = len(kept)
            kept.append(g)
            kept_tp.append(tg)
        self.groups, self._tp_groups = kept, kept_tp

    def _map_fault(self, g: PrunableGroup) -> str | None:
        """Why ``g``'s channel maps cannot be right, whatever the forward pass does, or None."""
        for side, maps in (("output", g.out_maps), ("input", g.in_maps)):
            for name, cm in maps.items():
                mod = self.modules[name]
                if isinstance(mod, CONVS):
                    size = mod.out_channels if side == "output" else mod.in_channels
                elif isinstance(mod, nn.Linear):
                    size = mod.out_features if side == "output" else mod.in_features
                elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    size = mod.num_features
                else:
                    continue
                if len(set(cm.local)) != len(cm.local) or max(cm.local, default=0) >= size:
                    return (
                        f"Torch-Pruning maps the group onto {len(cm.local)} {side} channels of "
                        f"{name}, which has {size} (indices up to {max(cm.local, default=0)})"
                        + (f"; it could not map {self._fault_text()}" if self._faults else "")
                    )
        return None

    def _claim(self, g: PrunableGroup, r: int) -> set[tuple[str, int]]:
        """The (layer, input channel) pairs Torch-Pruning says carry channel ``r`` of ``g``."""
        out = {(n, c) for n, cm in g.in_maps.items() for c in cm.of([r])}
        for n, cm in g.out_maps.items():
            mod = self.modules[n]
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) or is_depthwise(mod):
                out |= {(n, c) for c in cm.of([r])}
        return out

    def _probe(
        self,
        positions: list[int],
        samples: Mapping[int, list[int]],
        producers: Mapping[int, list[str]],
        claims: Mapping[tuple[int, int], set[tuple[str, int]]],
        pack: bool,
    ) -> dict[int, str]:
        """Probe the groups at ``positions``; return the failing ones with a reason."""
        elements: list[list[Perturbation]] = []
        meta: list[tuple[int, list[int]]] = []  # (sample slot, group positions in the element)
        for i in range(3):
            bins: list[tuple[list[int], set[tuple[str, int]]]] = []
            for pos in positions:
                if i >= len(samples[pos]):
                    continue
                claim = claims[(pos, samples[pos][i])]
                home = next((b for b in bins if pack and b[1].isdisjoint(claim)), None)
                if home is None:
                    bins.append(([pos], set(claim)))
                else:
                    home[0].append(pos)
                    home[1].update(claim)
            # Every producer of a sampled channel is perturbed at once: one that Torch-Pruning
            # maps to the wrong channel then reaches channels the claim does not name.
            for members, _ in bins:
                for sign in (1.0, -1.0):
                    el = [
                        Perturbation(p, c, sign)
                        for pos in members
                        for p in producers[pos]
                        for c in sorted(self.groups[pos].out_maps[p].of([samples[pos][i]]))
                    ]
                    if el:
                        elements.append(el)
                        meta.append((i, members))
        reach = channel_reach(self.model, self.example, elements) if elements else []
        seen: dict[tuple[int, int], set[tuple[str, int]]] = {}
        leaked: set[int] = set()
        for (i, members), hits in zip(meta, reach, strict=True):
            owner = {lc: pos for pos in members for lc in claims[(pos, samples[pos][i])]}
            for layer, chans in hits.items():
                for c in chans:
                    found = owner.get((layer, c))
                    if found is None and len(members) > 1:
                        leaked.update(members)
                        continue
                    at = members[0] if found is None else found
                    seen.setdefault((at, samples[at][i]), set()).add((layer, c))
        bad: dict[int, str] = {}
        for pos in positions:
            if pos in leaked:
                bad[pos] = "leak"
                continue
            for r in samples[pos]:
                got, want = seen.get((pos, r), set()), claims[(pos, r)]
                if got != want:
                    bad[pos] = self._mismatch(r, got, want)
                    break
        return bad

    def _mismatch(self, r: int, got: set[tuple[str, int]], want: set[tuple[str, int]]) -> str:
        layer = sorted({lc[0] for lc in got ^ want})[0]
        g_chans = {c for n, c in got if n == layer}
        w_chans = {c for n, c in want if n == layer}
        return (
            f"Torch-Pruning's channel map disagrees with the forward pass at {layer}: channel {r} "
            f"of the group reaches its input channels {_short(g_chans)}, Torch-Pruning prunes "
            f"{_short(w_chans)}"
            + (f" (it could not map {self._fault_text()})" if self._faults else "")
        )

    def _fault_text(self) -> str:
        shown = []
        for node, why in list(self._faults.items())[:2]:
            shown.append(f"{getattr(node, 'name', None) or node}: {why}")
        return "; ".join(shown)

    # ------------------------------------------------------------------ lookups

    def group(self, root: str) -> PrunableGroup:
        for g in self.groups:
            if g.root == root:
                return g
        for r in self.refused:
            if r.root == root:
                raise UsageError(f"group {root!r} is not prunable: {r.reason}")
        raise UsageError(
            f"{root!r} is not the root of a prunable group",
            hint="list groups with `edgeprune prune --list-groups`",
        )

    def tp_group(self, index: int) -> Any:
        """The Torch-Pruning group object of group ``index`` (its items: dep, idxs, root_idxs)."""
        return self._tp_groups[index]

    def importance(self, index: int, kind: str) -> torch.Tensor | None:
        """One of Torch-Pruning's importance functions on group ``index`` (None if it has no
        parameters of the kind): ``bn_scale`` (|γ|) or ``taylor`` (|Σ w·∂L/∂w| per filter;
        gradients must be populated). Scores are indexed by the group's channels."""
        imp: Any
        if kind == "bn_scale":
            imp = tp.importance.BNScaleImportance(group_reduction="mean", normalizer=None)
        elif kind == "taylor":
            imp = tp.importance.GroupTaylorImportance(
                group_reduction="mean", normalizer=None, multivariable=True
            )
        else:
            raise ValueError(f"unknown Torch-Pruning importance {kind!r}")
        scores = imp(self._tp_groups[index])
        return None if scores is None else scores.detach().float().cpu()

    def layer_costs(self) -> list[LayerCost]:
        """Per-layer MAC/param facts with the groups that control each layer's in/out channels."""
        spatial = _output_spatial(self.model, self.example)
        costs: dict[str, LayerCost] = {}
        for name, mod in self.modules.items():
            if isinstance(mod, CONVS):
                k = int(torch.tensor(mod.kernel_size).prod())
                costs[name] = LayerCost(
                    name,
                    "conv",
                    k,
                    spatial.get(name, 0),
                    mod.in_channels,
                    mod.out_channels,
                    mod.groups,
                    is_depthwise(mod),
                    mod.bias is not None,
                )
            elif isinstance(mod, nn.Linear):
                costs[name] = LayerCost(
                    name,
                    "linear",
                    1,
                    spatial.get(name, 1),
                    mod.in_features,
                    mod.out_features,
                    1,
                    False,
                    mod.bias is not None,
                )
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                # Counted like Torch-Pruning's counter: 2 ops per element when affine.
                per = 2 if mod.affine else 1
                costs[name] = LayerCost(
                    name,
                    "bn",
                    per,
                    spatial.get(name, 0),
                    mod.num_features,
                    mod.num_features,
                    mod.num_features,
                    True,
                    False,
                )
        for g in self.groups:
            for name, cm in g.out_maps.items():
                if name in costs:
                    costs[name].out_parts.append(LayerPart(g.index, len(cm.local)))
                    if costs[name].depthwise:
                        costs[name].in_parts.append(LayerPart(g.index, len(cm.local)))
            for name, cm in g.in_maps.items():
                if name in costs:
                    costs[name].in_parts.append(LayerPart(g.index, len(cm.local)))
        return list(costs.values())

    # ------------------------------------------------------------------ applying a plan

    def check_plan(self, plan: PrunePlan) -> dict[str, tuple[int, int]]:
        """Check ``plan`` against the groups before anything is pruned; return each conv, linear
        and BatchNorm layer's (input, output) channels after it. Raises `UsageError` for a plan
        of another architecture and `PruningError` for one that cannot build a working model."""
        by_layer = {g.root: g for g in self.groups}
        for g in self.groups:
            for m in g.members:
                by_layer.setdefault(m, g)
        refused = {r.root: r for r in self.refused}
        removed_in: dict[str, set[int]] = {}
        removed_out: dict[str, set[int]] = {}
        for gp in plan.groups:
            if gp.root not in by_layer:
                if gp.root in refused:
                    raise PruningError(
                        f"the pruning plan prunes group {gp.root!r}, which edgeprune refuses: "
                        f"{refused[gp.root].reason}",
                        hint=f"re-prune without it (--ignore-layers {gp.root})",
                    )
                raise UsageError(
                    f"the pruning plan names group {gp.root!r}, which this model does not have",
                    hint="the plan belongs to a different architecture",
                )
            grp = by_layer[gp.root]
            if gp.width != grp.width:
                raise UsageError(
                    f"plan width {gp.width} for {gp.root!r} differs from the model's {grp.width}"
                )
            drop = set(range(grp.width)) - set(gp.keep)
            if len(drop) >= grp.width:
                raise UsageError(f"the plan removes every channel of {gp.root!r}")
            if grp.channel_groups > 1 and drop:
                chunk = grp.width // grp.channel_groups
                local = [
                    {i % chunk for i in gp.keep if i // chunk == c}
                    for c in range(grp.channel_groups)
                ]
                if any(s != local[0] for s in local):
                    raise PruningError(
                        f"the plan for {gp.root!r} keeps different channels in the groups of "
                        f"{grp.chunked_by}; a grouped conv needs the same ones in each",
                        hint="keep the same local indices in every chunk",
                    )
            for n, cm in grp.out_maps.items():
                removed_out.setdefault(n, set()).update(cm.of(drop))
            for n, cm in grp.in_maps.items():
                removed_in.setdefault(n, set()).update(cm.of(drop))
        after: dict[str, tuple[int, int]] = {}
        for name, mod in self.modules.items():
            if isinstance(mod, CONVS):
                cin, cout = mod.in_channels, mod.out_channels
            elif isinstance(mod, nn.Linear):
                cin, cout = mod.in_features, mod.out_features
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                cin = cout = mod.num_features
            else:
                continue
            out_gone = removed_out.get(name, set())
            in_gone = removed_in.get(name, set())
            if is_depthwise(mod) or isinstance(mod, nn.modules.batchnorm._BatchNorm):
                out_gone = in_gone = out_gone | in_gone
            new = (cin - len(in_gone), cout - len(out_gone))
            if min(new) < 1:
                raise PruningError(
                    f"the plan leaves layer {name} with {new[0]} input and {new[1]} output channels",
                    hint="prune less (a lower target or --min-channels)",
                )
            groups = int(mod.groups) if isinstance(mod, CONVS) and not is_depthwise(mod) else 1
            if groups > 1 and (new[0] % groups or new[1] % groups):
                raise PruningError(
                    f"the plan leaves grouped conv {name} (groups={groups}) with "
                    f"{new[0]} → {new[1]} channels, not divisible into its groups",
                    hint=f"protect it with --ignore-layers {name}",
                )
            after[name] = new
        return after

    def apply(self, plan: PrunePlan) -> None:
        """Prune ``self.model`` in place to the plan's kept channels (the index is stale after).

        The plan is checked first (`check_plan`); after pruning every layer must have the
        channels the plan gives it and the model must run on the example input, else
        `PruningError` names the first layer that does not fit.
        """
        expected = self.check_plan(plan)
        by_layer = {g.root: g for g in self.groups}
        for g in self.groups:
            for m in g.members:
                by_layer.setdefault(m, g)
        with warnings.catch_warnings(), _guarded(self._faults, None):
            warnings.simplefilter("ignore")
            for gp in plan.groups:
                grp = by_layer[gp.root]
                remove = sorted(set(range(grp.width)) - set(gp.keep))
                if not remove:
                    continue
                root_mod = self.modules[grp.root]
                try:
                    pruner = self.dg.get_pruner_of_module(root_mod)
                    tp_group = self.dg.get_pruning_group(
                        root_mod, pruner.prune_out_channels, remove
                    )
                    if not self.dg.check_pruning_group(tp_group):
                        raise PruningError(
                            f"Torch-Pruning refused to prune group {gp.root!r} as planned",
                            hint=f"protect it with --ignore-layers {gp.root}",
                        )
                    tp_group.prune()
                except PruningError:
                    raise
                except Exception as e:  # a Torch-Pruning bug on this group
                    raise PruningError(
                        f"Torch-Pruning failed to prune group {gp.root!r}: {_tp_failure(e, self.names)}",
                        hint=f"protect it with --ignore-layers {gp.root}",
                    ) from e
        self._check_pruned(expected)

    def _check_pruned(self, expected: Mapping[str, tuple[int, int]]) -> None:
        for name, (cin, cout) in expected.items():
            mod = self.modules[name]
            if isinstance(mod, CONVS):
                got = (mod.in_channels, mod.out_channels)
            elif isinstance(mod, nn.Linear):
                got = (mod.in_features, mod.out_features)
            else:
                got = (mod.num_features, mod.num_features)  # type: ignore[assignment]
            if got != (cin, cout):
                raise PruningError(
                    f"Torch-Pruning left layer {name} with {got[0]} → {got[1]} channels; the plan "
                    f"gives it {cin} → {cout}",
                    hint="protect the group that holds it with --ignore-layers",
                )
        entered: list[str] = []
        names = {m: n for n, m in self.model.named_modules()}

        def enter(mod: nn.Module, _inp: Any) -> None:
            entered.append(names[mod])

        def leave(mod: nn.Module, _inp: Any, _out: Any) -> None:
            entered.remove(names[mod])

        handles = [m.register_forward_pre_hook(enter) for m in names]
        handles += [m.register_forward_hook(leave) for m in names]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(self.example[:1])
        except RuntimeError as e:
            where = entered[-1] if entered else type(self.model).__name__
            raise PruningError(
                f"the pruned model does not fit together at {where}: {str(e).splitlines()[0][:160]}",
                hint="protect the group that holds it with --ignore-layers",
            ) from e
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)


def _short(chans: set[int]) -> str:
    items = sorted(chans)
    text = ", ".join(map(str, items[:6])) + (", …" if len(items) > 6 else "")
    return "{" + text + "}"


def _output_spatial(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Output positions per sample for each conv/linear/BN layer (one forward pass)."""
    sizes: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        name = names[m]
        if isinstance(m, nn.Linear):
            sizes[name] = int(out[0].numel() // out.shape[-1]) if out.dim() > 1 else 1
        elif out.dim() <= 2:
            sizes[name] = 1
        else:
            sizes[name] = int(out[0, 0].numel())

    watched = [
        m for m in model.modules() if isinstance(m, (*ROOT_TYPES, nn.modules.batchnorm._BatchNorm))
    ]
    probe_forward(model, example[:1], hook, watched)
    return sizes


def count_macs_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates per sample (what pruning papers call FLOPs) and parameter count."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macs, params = tp.utils.count_ops_and_params(model, example[:1])
    finally:
        model.train(was_training)
    return int(macs), int(params)


def torch_pruning_default(
    model: nn.Module, example: torch.Tensor, ratio: float, ignored: list[str] | None = None
) -> nn.Module:
    """Torch-Pruning's default recipe, pruned in place: MetaPruner with group L1 importance
    (``GroupMagnitudeImportance(p=1)``, its default mean reduction and normaliser) and global
    pruning at ``ratio``, the output layers protected. A baseline for benchmarks: no plan is
    recorded, so the result cannot be saved as an edgeprune checkpoint."""
    modules = dict(model.named_modules())
    protect = [
        modules[n] for n in sorted(set(find_output_layers(model, example)) | set(ignored or []))
    ]
    was_training = model.training
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=ratio,
            global_pruning=True,
            ignored_layers=protect,
        )
        pruner.step()
    model.train(was_training)
    return model


def apply_plan(model: nn.Module, plan: PrunePlan, example: torch.Tensor) -> nn.Module:
    """Prune ``model`` in place to ``plan`` (a fresh dependency index is built for it)."""
    if not plan.groups:
        return model
    names = dict(model.named_modules())
    foreign = [n for n in [*plan.ignored, *(g.root for g in plan.groups)] if n not in names]
    if foreign:
        raise UsageError(
            f"the pruning plan names layer {foreign[0]!r}, which this model does not have",
            hint="the plan belongs to a different architecture",
        )
    DependencyIndex(model, example, ignored=plan.ignored, verify=False).apply(plan)
    return model


__all__ = [
    "ChannelMap",
    "DependencyIndex",
    "GroupPlan",
    "LayerCost",
    "PrunableGroup",
    "PrunePlan",
    "RefusedGroup",
    "apply_plan",
    "count_macs_params",
    "find_output_layers",
    "torch_pruning_default",
]
