"""Graph simplification with onnxscript's optimizer (constant folding, dead-node removal).

The optimizer keeps the model's opset; this module checks that it did, runs the full ONNX
checker on the result and replaces the file atomically. Numerical parity against the source
model is the caller's job (`edgeprune.pipeline.flows.export_onnx` re-runs it), because only the
caller has the PyTorch model.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeprune.errors import ExportError, one_line
from edgeprune.export.onnx import file_opset


@dataclass(frozen=True)
class SimplifyResult:
    """Node counts before and after, and the operator types that disappeared or appeared."""

    nodes_before: int
    nodes_after: int
    removed: dict[str, int]
    added: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def simplify_onnx(src: str | Path, dst: str | Path | None = None) -> SimplifyResult:
    """Optimize ``src`` into ``dst`` (default: in place). Raises `ExportError` when the optimizer
    fails, changes the opset, or produces a model the ONNX checker rejects; ``dst`` is then left
    untouched."""
    import onnx
    import onnxscript.optimizer

    src, dst = Path(src), Path(dst) if dst is not None else Path(src)
    model = onnx.load(str(src))
    before = Counter(n.op_type for n in model.graph.node)
    opset = file_opset(model)
    try:
        optimized = onnxscript.optimizer.optimize(model)
    except Exception as e:  # the optimizer raises many types; report them as one
        raise ExportError(
            f"graph simplification failed: {one_line(e)}",
            hint="export without --simplify",
        ) from e
    if file_opset(optimized) != opset:
        raise ExportError(
            f"graph simplification changed the opset from {opset} to {file_opset(optimized)}",
            hint="export without --simplify",
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    os.close(fd)
    try:
        onnx.save(optimized, tmp)
        try:
            onnx.checker.check_model(tmp, full_check=True)
        except Exception as e:
            raise ExportError(
                f"the simplified model fails the ONNX checker: {one_line(e)}",
                hint="export without --simplify",
            ) from e
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    after = Counter(n.op_type for n in optimized.graph.node)
    return SimplifyResult(
        nodes_before=sum(before.values()),
        nodes_after=sum(after.values()),
        removed=dict(before - after),
        added=dict(after - before),
    )
