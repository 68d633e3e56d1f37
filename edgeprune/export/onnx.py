"""ONNX export with checks: checker (full), the opset actually written, ONNX Runtime parity.

Facts this code relies on (checked with torch 2.13): the dynamo exporter cannot write opsets below
18 (asked for 13 it warns and keeps 18), so lower opsets go through the TorchScript exporter; and
the dynamo exporter writes weights to a ``.onnx.data`` side file unless ``external_data=False``.
Every file's opset is read back from the file, never trusted from the argument.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune._files import sha256_file
from edgeprune.errors import ExportError, UsageError, one_line
from edgeprune.vocab import check_choice

DYNAMO_MIN_OPSET = 18
MIN_OPSET = 9
PARITY_TOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-1}
EXPORTERS = ("auto", "dynamo", "torchscript")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: list[int | str]
    dtype: str


@dataclass
class ExportResult:
    """What was written and how it was checked."""

    path: str
    opset: int
    exporter: str
    sha256: str
    size_bytes: int
    external_data: bool
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parity_max_abs_diff: float
    parity_output_scale: float
    parity_tolerance: float
    parity_samples: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_opset(model_or_path: Any) -> int:
    """The default-domain opset a model file (or loaded ModelProto) really declares."""
    import onnx

    model = (
        onnx.load(str(model_or_path), load_external_data=False)
        if isinstance(model_or_path, (str, Path))
        else model_or_path
    )
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ExportError(f"{model_or_path} declares no default-domain opset")


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind ``e`` (itself, or in its cause/context chain), if any."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _tensor_specs(values: Any) -> list[TensorSpec]:
    import onnx

    specs = []
    for v in values:
        t = v.type.tensor_type
        shape: list[int | str] = [
            d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim
        ]
        specs.append(
            TensorSpec(v.name, shape, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name)
        )
    return specs


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    # The exporters print progress and warn about torchvision and deprecations; none of it is
    # actionable for our users, and the CLI must keep stdout clean for --json.
    loggers = [
        logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def resolve_exporter(exporter: str, opset: int | None) -> str:
    """The exporter ``exporter='auto'`` stands for at ``opset``: TorchScript below the dynamo
    exporter's lowest opset, dynamo otherwise; other names are returned as they are."""
    if exporter == "auto":
        return "torchscript" if opset is not None and opset < DYNAMO_MIN_OPSET else "dynamo"
    return exporter


def onnx_from_torch(
    model: nn.Module,
    input_shape: tuple[int, ...],
    out: str | Path,
    *,
    opset: int | None = None,
    exporter: str = "auto",
    external_data: bool = False,
    dynamic_batch: bool = False,
    batch: int = 1,
    input_name: str = "input",
    output_name: str = "logits",
    parity_samples: int = 3,
    tolerance: float = PARITY_TOL["fp32"],
    seed: int = 0,
    check: bool = True,
) -> ExportResult:
    """Export ``model`` (eval mode, CPU) for inputs of ``(batch, *input_shape)`` and check it.

    ``opset`` None lets the dynamo exporter choose (its default, ≥ 18); below 18 the TorchScript
    exporter is used. The file is self-contained unless ``external_data``. Checks: the ONNX checker
    with ``full_check``, the written opset equals the requested one (when given), and ONNX Runtime
    outputs match PyTorch on ``parity_samples`` fixed random inputs: max abs diff at most
    ``tolerance × max(1, largest |output|)`` (see `parity`). The file appears at ``out`` only if
    every check passes. Raises `ExportError`. ``check=False`` skips the checker and parity: only
    for measurement probes (latency blocks), never for a model that is deployed.
    """
    check_choice(exporter, EXPORTERS, "exporter")
    if opset is not None and opset < MIN_OPSET:
        raise UsageError(f"opset {opset} is too old", hint=f"use --opset {MIN_OPSET} or newer")
    exporter = resolve_exporter(exporter, opset)
    if exporter == "dynamo" and opset is not None and opset < DYNAMO_MIN_OPSET:
        raise UsageError(
            f"the dynamo exporter cannot write opset {opset} (it silently keeps {DYNAMO_MIN_OPSET})",
            hint="use --exporter torchscript or --exporter auto",
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    example = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    notes: list[str] = []
    tmpdir = tempfile.mkdtemp(prefix=".export-", dir=out.parent)
    tmp = Path(tmpdir) / out.name
    try:
        kwargs: dict[str, Any] = {
            "input_names": [input_name],
            "output_names": [output_name],
            "verbose": False,
        }
        if opset is not None:
            kwargs["opset_version"] = opset
        if exporter == "dynamo":
            kwargs["dynamo"] = True
            kwargs["external_data"] = external_data
            if dynamic_batch:
                kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
        else:
            kwargs["dynamo"] = False
            if dynamic_batch:
                kwargs["dynamic_axes"] = {input_name: {0: "batch"}, output_name: {0: "batch"}}
        with _quiet_exporter(), torch.no_grad():
            try:
                torch.onnx.export(model, (example,), str(tmp), **kwargs)
            except Exception as e:  # exporter errors are many types; report them as one
                disk = _os_error(e)
                if disk is not None:  # a full disk is not the exporter's fault: say so
                    raise disk from e
                raise ExportError(
                    f"ONNX export failed ({exporter}): {one_line(e)}",
                    hint="try --exporter torchscript or another --opset",
                ) from e
        import onnx

        proto = onnx.load(str(tmp), load_external_data=False)
        has_external = any(
            init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer
        )
        if has_external and not external_data:
            # The TorchScript exporter spills >2 GB models; say so instead of shipping half a model.
            raise ExportError(
                "the exported model needs external data (over 2 GB)", hint="pass --external-data"
            )
        written = file_opset(proto)
        if opset is not None and written != opset:
            raise ExportError(
                f"asked for opset {opset} but the {exporter} exporter wrote opset {written}",
                hint="use --exporter torchscript for opsets below 18",
            )
        if check:
            try:
                onnx.checker.check_model(str(tmp), full_check=True)
            except Exception as e:
                raise ExportError(f"ONNX checker rejected the export: {one_line(e)}") from e
            diff, scale = parity(model, tmp, input_shape, batch, parity_samples, seed)
        else:
            diff, scale, parity_samples = float("nan"), float("nan"), 0
        if check and not diff <= tolerance * max(1.0, scale):
            raise ExportError(
                f"ONNX Runtime output differs from PyTorch by {diff:.3g} (tolerance {tolerance:g} × max(1, |output| {scale:.3g}))",
                hint="report this as a bug with the model; try another --opset or --exporter",
            )
        # Move the checked file (and its side file, if asked for) into place.
        for side in Path(tmpdir).iterdir():
            if side != tmp:
                os.replace(side, out.parent / side.name)
        os.replace(tmp, out)
    finally:
        for leftover in Path(tmpdir).glob("*"):
            leftover.unlink()
        os.rmdir(tmpdir)
    if exporter == "torchscript":
        notes.append(
            "TorchScript exporter (deprecated upstream) used because the opset is below 18"
        )
    return ExportResult(
        path=str(out),
        opset=written,
        exporter=exporter,
        sha256=sha256_file(out),
        size_bytes=out.stat().st_size,
        external_data=has_external,
        inputs=_tensor_specs(proto.graph.input),
        outputs=_tensor_specs(proto.graph.output),
        parity_max_abs_diff=diff,
        parity_output_scale=scale,
        parity_tolerance=tolerance,
        parity_samples=parity_samples,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def ort_session(path: str | Path, threads: int = 1) -> Any:
    """A CPU ONNX Runtime session with explicit thread counts.

    Raises `ExportError` when ONNX Runtime cannot load the model (an invalid graph, an unknown
    operator, a missing side file).
    """
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except (
        ort_state.Fail,
        ort_state.InvalidArgument,
        ort_state.InvalidGraph,
        ort_state.InvalidProtobuf,
        ort_state.NoSuchFile,
        ort_state.NotImplemented,
        ort_state.RuntimeException,
    ) as e:
        raise ExportError(
            f"ONNX Runtime cannot load {path}: {one_line(e)}",
            hint=f"check the file with `edgeprune lint {path} --profile PROFILE`, or re-export it",
        ) from e


def parity(
    model: nn.Module,
    path: str | Path,
    input_shape: tuple[int, ...],
    batch: int = 1,
    samples: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """Max abs difference between ONNX Runtime and PyTorch outputs, and the largest |output|.

    The check passes when ``diff <= tol * max(1, scale)``: an absolute tolerance for outputs of
    order one (trained classifiers), relative for the huge logits of randomly initialised deep nets.
    """
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed + 1)
    worst, scale = 0.0, 0.0
    for _ in range(max(1, samples)):
        x = torch.randn((batch, *input_shape), generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(
                f"ONNX output shape {list(got.shape)} differs from PyTorch {list(ref.shape)}"
            )
        worst = max(worst, float(np.max(np.abs(got - ref))))
        scale = max(scale, float(np.max(np.abs(ref))))
    return worst, scale
