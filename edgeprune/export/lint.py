"""Target compatibility lint: every reason an ONNX file would fail or be slow on a device profile.

`lint_onnx(path, profile)` returns findings (error | warning | info), each with a fix. An error
means the target will reject the model; a warning means it will run, but not as intended or not
at full speed; info is advice.

The TensorRT operator table below is the "Supported" column of onnx-tensorrt's
``docs/operators.md`` on the release branches 8.2-GA, 8.4-GA, 8.5-GA, 8.6-GA, 10.0-GA and 10.1-GA
(https://github.com/onnx/onnx-tensorrt). The same files state the INT64 rule: TensorRT 8.x casts
INT64 down to INT32 (clamping to ±INT_MAX); TensorRT 10 supports INT64.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import UsageError
from edgeprune.export._files import external_data, load_onnx_header
from edgeprune.profiles import DeviceProfile, load_profile

LEVELS = ("error", "warning", "info")
INT32_MAX = 2**31 - 1

# onnx-tensorrt release/8.2-GA docs/operators.md, operators marked "Y".
_TRT_8_2 = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
    Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather
    GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LRN LSTM LeakyRelu Less
    LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg
    NonMaxSuppression Not Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RNN RandomUniform
    RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence Round
    ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice
    Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
    TopK Transpose Unsqueeze Upsample Where
    """.split()  # noqa: SIM905  (kept as prose so it diffs against the source table)
)
# Operators each later release branch added to the "Y" list (none were removed).
_TRT_ADDED: tuple[tuple[tuple[int, int], frozenset[str]], ...] = (
    ((8, 4), frozenset({"HardSwish", "RandomNormal", "RandomNormalLike", "Reciprocal", "Shrink"})),
    ((8, 4), frozenset({"Xor"})),
    ((8, 5), frozenset({"GridSample", "MeanVarianceNormalization", "Mod", "NonZero", "OneHot"})),
    ((8, 5), frozenset({"RoiAlign", "Trilu"})),
    ((8, 6), frozenset({"GroupNormalization", "IsInf", "LayerNormalization"})),
    ((10, 0), frozenset({"CastLike", "Gelu", "Hardmax", "Mish"})),
    ((10, 1), frozenset({"DeformConv"})),
)


def _exporter_default_opset() -> int:
    try:  # torch's own default; a private constant, hence the fallback
        from torch.onnx._constants import ONNX_DEFAULT_OPSET

        return int(ONNX_DEFAULT_OPSET)
    except (ImportError, AttributeError):
        return 18


def opset_for(profile: DeviceProfile, requested: int | None = None) -> int:
    """The opset to export for ``profile``: ``requested`` when the target accepts it, else the
    highest the target accepts, capped at the exporter's default. Raises `UsageError` when
    ``requested`` is above the target's limit."""
    if requested is not None:
        if requested > profile.max_opset:
            raise UsageError(
                f"opset {requested} is above {profile.name}'s limit of {profile.max_opset}",
                hint=f"use --opset {profile.max_opset} or leave --opset out",
            )
        return requested
    return min(profile.max_opset, _exporter_default_opset())


def trt_supported_ops(version: tuple[int, ...]) -> frozenset[str]:
    """ONNX operators the ONNX parser of TensorRT ``version`` (e.g. (8, 2, 1)) supports.

    Versions between table entries use the nearest older entry; versions before 8.2 use 8.2's.
    """
    ops = set(_TRT_8_2)
    for since, added in _TRT_ADDED:
        if tuple(version[:2]) >= since:
            ops |= added
    return frozenset(ops)


def trt_version_adding(op: str) -> tuple[int, int] | None:
    """The first TensorRT version in the table whose parser supports ``op`` (None: none does)."""
    if op in _TRT_8_2:
        return (8, 2)
    for since, added in _TRT_ADDED:
        if op in added:
            return since
    return None


@dataclass(frozen=True)
class Finding:
    """One lint result. ``nodes`` names the graph nodes or tensors concerned (may be empty)."""

    level: str
    code: str
    message: str
    fix: str
    nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nodes"] = list(self.nodes)
        return d


def has_errors(findings: list[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def lint_onnx(path: str | Path, profile: DeviceProfile | str) -> list[Finding]:
    """Check ``path`` against ``profile``; findings sorted errors first.

    Raises `NotFoundError` (missing file or profile) or `ExportError` (not an ONNX model).
    """
    prof = load_profile(profile) if isinstance(profile, str) else profile
    path = Path(path)
    model = load_onnx_header(path)
    findings: list[Finding] = []
    findings += _check_opset(model, prof)
    findings += _check_ops(model, prof)
    findings += _check_shapes(model, prof)
    findings += _check_external_data(model, path)
    findings += _check_int64(model, prof)
    findings += _check_channels(model, prof)
    findings += _check_precision(prof)
    return sorted(findings, key=lambda f: LEVELS.index(f.level))


def _default_opset(model: Any) -> int | None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def _check_opset(model: Any, prof: DeviceProfile) -> list[Finding]:
    opset = _default_opset(model)
    if opset is None:
        return [
            Finding("error", "no-opset", "the model declares no default-domain opset", "re-export")
        ]
    if opset <= prof.max_opset:
        return []
    parser = (
        f"TensorRT {prof.tensorrt}'s ONNX parser"
        if prof.uses_tensorrt
        else f"{prof.name}'s ONNX Runtime"
    )
    return [
        Finding(
            "error",
            "opset-too-new",
            f"the model uses opset {opset}, above {parser} limit of {prof.max_opset}",
            f"re-export with --opset {prof.max_opset}, e.g. `edgeprune export MODEL --profile "
            f"{prof.name} --out MODEL.onnx` (which picks it)",
        )
    ]


def _nodes_by_op(model: Any) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}

    def visit(graph: Any) -> None:
        for node in graph.node:
            domain = "" if node.domain in ("", "ai.onnx") else node.domain
            found.setdefault((domain, node.op_type), []).append(node.name or node.op_type)
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    return found


def _fmt_version(v: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in v)


def _check_ops(model: Any, prof: DeviceProfile) -> list[Finding]:
    out: list[Finding] = []
    by_op = _nodes_by_op(model)
    custom = sorted({(d, op) for d, op in by_op if d})
    for domain, op in custom:
        names = tuple(by_op[(domain, op)][:5])
        if prof.uses_tensorrt:
            out.append(
                Finding(
                    "error",
                    "custom-op",
                    f"{op} from domain {domain!r} has no TensorRT parser support",
                    "export without custom/contrib ops, or load a TensorRT plugin for it",
                    names,
                )
            )
        elif domain not in ("com.microsoft", "ai.onnx.ml"):
            out.append(
                Finding(
                    "error",
                    "custom-op",
                    f"{op} from domain {domain!r} is unknown to ONNX Runtime",
                    "export with standard ONNX operators only",
                    names,
                )
            )
    version = prof.tensorrt_version
    if version is None:
        return out
    supported = trt_supported_ops(version)
    for (domain, op), nodes in sorted(by_op.items()):
        if domain or op in supported:
            continue
        since = trt_version_adding(op)
        fix = (
            f"TensorRT {_fmt_version(since)} and later parse it; on TensorRT {prof.tensorrt}"
            " replace that layer or supply a plugin"
            if since is not None
            else "no TensorRT ONNX parser supports it: replace that layer or supply a plugin"
        )
        out.append(
            Finding(
                "error",
                "unsupported-op",
                f"{op} ({len(nodes)} node{'s' if len(nodes) > 1 else ''}) is not supported by "
                f"TensorRT {prof.tensorrt}'s ONNX parser",
                fix,
                tuple(nodes[:5]),
            )
        )
    return out


def _check_shapes(model: Any, prof: DeviceProfile) -> list[Finding]:
    out = []
    init_names = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in init_names:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = [d.dim_param or (d.dim_value if d.dim_value > 0 else "?") for d in dims]
        if not any(isinstance(s, str) for s in shape):
            continue
        if prof.uses_tensorrt:
            out.append(
                Finding(
                    "warning",
                    "dynamic-shape",
                    f"input {value.name!r} has dynamic shape {shape}; TensorRT then needs an "
                    "optimization profile and tunes kernels for one shape only",
                    "export with static shapes (omit --dynamic-batch), or give min/opt/max shapes "
                    "when building the engine",
                    (value.name,),
                )
            )
        else:
            out.append(
                Finding(
                    "info",
                    "dynamic-shape",
                    f"input {value.name!r} has dynamic shape {shape}",
                    "fine for ONNX Runtime; static shapes let it plan memory once",
                    (value.name,),
                )
            )
    return out


def _check_external_data(model: Any, path: Path) -> list[Finding]:
    out = []
    for d in external_data(model, path):
        if d.escape is not None:
            out.append(
                Finding(
                    "error",
                    "external-data-outside",
                    f"{len(d.tensors)} weight tensors name the side file {d.location!r}, "
                    f"{d.escape}; edgeprune refuses to read or ship it",
                    "external data must be a file next to the model: re-export without "
                    "--external-data (one self-contained file)",
                    d.tensors[:5],
                )
            )
        elif not (path.parent / d.location).is_file():
            out.append(
                Finding(
                    "error",
                    "external-data-missing",
                    f"{len(d.tensors)} weight tensors live in {d.location}, which is not next to "
                    f"{path.name}",
                    "copy the data file next to the model, or re-export without --external-data",
                    d.tensors[:5],
                )
            )
        else:
            out.append(
                Finding(
                    "warning",
                    "external-data",
                    f"{len(d.tensors)} weight tensors live in the side file {d.location}; the model "
                    "is not self-contained and the side file must travel with it",
                    "re-export without --external-data (single-file models below 2 GB)",
                    d.tensors[:5],
                )
            )
    return out


def _check_int64(model: Any, prof: DeviceProfile) -> list[Finding]:
    import onnx
    from onnx import numpy_helper

    version = prof.tensorrt_version
    if version is None or version >= (10,):
        return []
    names, values, clamped = [], 0, 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.INT64:
            continue
        names.append(init.name)
        if init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        arr = numpy_helper.to_array(init)
        values += int(arr.size)
        clamped += int(np.count_nonzero(np.abs(arr.astype(np.float64)) > INT32_MAX))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == onnx.TensorProto.INT64:
                    arr = numpy_helper.to_array(attr.t)
                    names.append(node.output[0])
                    values += int(arr.size)
                    clamped += int(np.count_nonzero(np.abs(arr.astype(np.float64)) > INT32_MAX))
    if not names:
        return []
    extra = (
        f"; {clamped} value(s) exceed the INT32 range and will be clamped to ±INT_MAX"
        " (harmless for the 'to the end' bounds of Slice, wrong anywhere else)"
        if clamped
        else ""
    )
    return [
        Finding(
            "warning",
            "int64-weights",
            f"{len(names)} INT64 constant(s) ({values} values): TensorRT {prof.tensorrt} does not "
            f"support INT64 and casts them down to INT32{extra}",
            "usually shape constants (Reshape, Slice) and harmless; check the engine's outputs "
            "against ONNX Runtime once, or target TensorRT 10, which reads INT64 natively",
            tuple(names[:5]),
        )
    ]


def _conv_out_channels(model: Any) -> list[tuple[str, int]]:
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
            continue
        dims = shapes.get(node.input[1])
        if not dims:
            continue
        if node.op_type == "Conv":
            channels = dims[0]
        else:  # ConvTranspose weights are [C_in, C_out / group, ...]
            group = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
            channels = dims[1] * group
        out.append((node.name or node.output[0], int(channels)))
    return out


def _check_channels(model: Any, prof: DeviceProfile) -> list[Finding]:
    m = prof.channel_multiple
    if m <= 1:
        return []
    off = [(n, c) for n, c in _conv_out_channels(model) if c % m]
    if not off:
        return []
    shown = ", ".join(f"{n} ({c})" for n, c in off[:5]) + (" …" if len(off) > 5 else "")
    return [
        Finding(
            "warning",
            "channel-multiple",
            f"{len(off)} convolution(s) have output channels that are not a multiple of {m}, "
            f"which {prof.name}'s kernels prefer: {shown}",
            f"prune with --round-to {m} so every width is a multiple of {m}",
            tuple(n for n, _ in off[:5]),
        )
    ]


def _check_precision(prof: DeviceProfile) -> list[Finding]:
    if not prof.uses_tensorrt or "fp32" in prof.fast_precisions:
        return []
    fast = ", ".join(prof.fast_precisions)
    return [
        Finding(
            "info",
            "fast-precision",
            f"{prof.name} has fast paths for {fast} only",
            f"build TensorRT engines in {prof.fast_precisions[0]} (trtexec --{prof.fast_precisions[0]}, "
            f"or engine_from_onnx(..., precision={prof.fast_precisions[0]!r}))",
        )
    ]
