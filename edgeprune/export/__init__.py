"""Export: ONNX (checked, parity-tested), later TensorRT engines, target lint and artifacts."""

from edgeprune.export.onnx import (
    PARITY_TOL,
    ExportResult,
    TensorSpec,
    file_opset,
    onnx_from_torch,
    ort_session,
    parity,
    sha256_file,
)

__all__ = [
    "PARITY_TOL",
    "ExportResult",
    "TensorSpec",
    "file_opset",
    "onnx_from_torch",
    "ort_session",
    "parity",
    "sha256_file",
]
