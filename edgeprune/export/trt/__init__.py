"""TensorRT engines, split by job (as Polygraphy's ``backend/trt``):

* `edgeprune.export.trt.version` — TensorRT versions (banner, dpkg, L4T) and the trtexec argv
  each version accepts;
* `edgeprune.export.trt.logs` — trtexec's text summary and ``--exportTimes`` JSON, read;
* `edgeprune.export.trt.host` — engines built here with the ``tensorrt`` Python API (extra
  ``edgeprune[trt]``, imported lazily), INT8 calibrator included;
* `edgeprune.export.trt.device` — engines built on a device with its trtexec, cached there.

Export builds engines and never measures them: benchmarking an engine is
``edgeprune.bench.measure`` with ``BenchConfig(runtime="trt")``.
"""

from edgeprune.export.trt.device import (
    AgentSession,
    DeviceEngine,
    DeviceTrt,
    device_trt,
    engine_cache_key,
    engine_on_device,
)
from edgeprune.export.trt.host import (
    TRT_EXTRA_HINT,
    EngineResult,
    cached_engine_from_onnx,
    engine_from_onnx,
)
from edgeprune.export.trt.logs import (
    MetricSummary,
    TrtexecOutputError,
    TrtexecReport,
    TrtTimes,
    parse_export_times,
    parse_trtexec_log,
)
from edgeprune.export.trt.version import (
    INT8_NO_CALIBRATION_WARNING,
    L4T_TENSORRT,
    TrtVersion,
    build_only_flag,
    detect_version,
    l4t_from_tegra_release,
    percentile_flag,
    trtexec_bench_argv,
    trtexec_build_argv,
    version_from_dpkg,
    version_from_l4t,
    version_from_log,
    workspace_flag,
)

__all__ = [
    "INT8_NO_CALIBRATION_WARNING",
    "L4T_TENSORRT",
    "TRT_EXTRA_HINT",
    "AgentSession",
    "DeviceEngine",
    "DeviceTrt",
    "EngineResult",
    "MetricSummary",
    "TrtTimes",
    "TrtVersion",
    "TrtexecOutputError",
    "TrtexecReport",
    "build_only_flag",
    "cached_engine_from_onnx",
    "detect_version",
    "device_trt",
    "engine_cache_key",
    "engine_from_onnx",
    "engine_on_device",
    "l4t_from_tegra_release",
    "parse_export_times",
    "parse_trtexec_log",
    "percentile_flag",
    "trtexec_bench_argv",
    "trtexec_build_argv",
    "version_from_dpkg",
    "version_from_l4t",
    "version_from_log",
    "workspace_flag",
]
