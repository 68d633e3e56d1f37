"""The default width granularity (``--round-to``): the channel multiple the target runs fastest at.

Measured on this project's x86 host (README, "FLOPs are not latency"): ONNX Runtime's CPU
provider moves convolutions into its blocked NCHWc layout only when their channel counts are
multiples of the block (8 floats with AVX2, 16 with AVX-512; a depthwise or grouped conv needs
it exactly, onnxruntime/core/optimizer/nchwc_transformer.cc). A pruned width off the block drops
that layer back to the plain NCHW kernels (for a depthwise conv, a generic grouped-conv path that
ran 6.6× slower than the blocked one on MobileNetV2) and puts layout reorders around it, so a
model pruned to odd widths can be slower than the unpruned one.

`resolve_round_to` is the one place the default is decided: an explicit value wins; a target
that runs here (no device, the ``local`` device or profile) uses the block this host's ONNX
Runtime reports, found by asking its graph optimiser which depthwise convolutions it takes into
the blocked layout (no timing; a few milliseconds); any other profile uses its ``channel_multiple`` (the pipeline maps a
device name to its profile first).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeprune.errors import UsageError

LOCAL = "local"
NCHWC_DOMAIN = "com.microsoft.nchwc"


@dataclass(frozen=True)
class RoundTo:
    """A width granularity and where it came from (for reports and messages)."""

    value: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_round_to(explicit: int | None, runs_on: str | None = None) -> RoundTo:
    """The width granularity to prune with for a model that will run on ``runs_on`` (a profile
    name; None or ``local``: this host). ``explicit`` (``--round-to N``) wins; 1 means no
    rounding. Raises `UsageError` for an explicit value below 1 or an unknown profile."""
    if explicit is not None:
        if explicit < 1:
            raise UsageError(f"--round-to must be >= 1, got {explicit}")
        return RoundTo(explicit, "--round-to")
    from edgeprune.profiles import load_profile

    profile_name, what = _profile_of(runs_on)
    if profile_name == LOCAL:
        block = measured_channel_multiple()
        if block is not None:
            return RoundTo(
                block,
                f"measured: this host's ONNX Runtime takes convolutions into its blocked layout "
                f"at multiples of {block}",
            )
    profile = load_profile(profile_name)
    return RoundTo(profile.channel_multiple, f"channel_multiple of profile {profile.name}{what}")


def _profile_of(runs_on: str | None) -> tuple[str, str]:
    """(profile name, how it was found) for a profile name or None (this host). Device names
    are mapped to their profile by the caller (`edgeprune.pipeline.flows.runs_on_profile`):
    pruning knows profiles, not the device inventory."""
    if runs_on is None or runs_on == LOCAL:
        return LOCAL, ""
    from edgeprune.profiles import list_profiles

    names = sorted(p.name for p in list_profiles())
    if runs_on not in names:
        raise UsageError(
            f"unknown profile {runs_on!r} for the width granularity",
            hint=f"use one of {', '.join(names)}, or pass --round-to N",
        )
    return runs_on, ""


@functools.lru_cache(maxsize=1)
def measured_channel_multiple() -> int | None:
    """The channel block of this host's ONNX Runtime CPU provider (8 with AVX2, 16 with AVX-512),
    or None where it has no blocked layout (ARM builds) or ONNX Runtime is missing.

    For each candidate width C (powers of two up to 64) a 3×3 depthwise conv over C channels is
    optimised at level ALL; the first one the optimiser takes into the blocked layout shows the
    block as its padded channel count (ONNX Runtime 1.32 pads a 4-channel depthwise conv to 8
    with AVX2: the block is 8, not 4)."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="edgeprune-nchwc-") as tmp:
        for c in (4, 8, 16, 32, 64):
            weight = helper.make_tensor(
                "w", TensorProto.FLOAT, [c, 1, 3, 3], np.ones(c * 9, dtype=np.float32).tolist()
            )
            node = helper.make_node("Conv", ["x", "w"], ["y"], group=c, pads=[1, 1, 1, 1])
            graph = helper.make_graph(
                [node],
                "probe",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8, 8])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 8, 8])],
                [weight],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
            src, dst = Path(tmp) / f"c{c}.onnx", Path(tmp) / f"c{c}.opt.onnx"
            onnx.save(model, str(src))
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.optimized_model_filepath = str(dst)
            so.log_severity_level = 3
            ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
            for n in onnx.load(str(dst)).graph.node:
                if n.domain == NCHWC_DOMAIN and n.op_type == "Conv":
                    group = next((a.i for a in n.attribute if a.name == "group"), c)
                    return max(c, int(group))
    return None
