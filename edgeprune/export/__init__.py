"""Export: ONNX (checked, parity-tested), TensorRT engines, target lint and artifacts.

Export builds artifacts and never measures them (that is `edgeprune.bench.measure`).
"""

from edgeprune.export._files import check_onnx_file, load_onnx_header
from edgeprune.export.lint import Finding, has_errors, lint_onnx, opset_for
from edgeprune.export.onnx import (
    PARITY_TOL,
    ExportResult,
    TensorSpec,
    file_opset,
    onnx_from_torch,
    ort_session,
    parity,
    resolve_exporter,
    sha256_file,
)
from edgeprune.export.simplify import SimplifyResult, simplify_onnx
from edgeprune.export.trt import (
    DeviceEngine,
    EngineResult,
    TrtVersion,
    cached_engine_from_onnx,
    engine_from_onnx,
    engine_on_device,
    parse_export_times,
    parse_trtexec_log,
)

__all__ = [
    "PARITY_TOL",
    "DeviceEngine",
    "EngineResult",
    "ExportResult",
    "Finding",
    "SimplifyResult",
    "TensorSpec",
    "TrtVersion",
    "cached_engine_from_onnx",
    "check_onnx_file",
    "engine_from_onnx",
    "engine_on_device",
    "file_opset",
    "has_errors",
    "lint_onnx",
    "load_onnx_header",
    "onnx_from_torch",
    "opset_for",
    "ort_session",
    "parity",
    "parse_export_times",
    "parse_trtexec_log",
    "resolve_exporter",
    "sha256_file",
    "simplify_onnx",
]
