"""TensorRT on a real board: ``pytest tests/hardware --device NAME`` (NAME from devices.yaml).

Exports a model for the board's profile, lints it, builds the engine on the board with its own
trtexec, benchmarks it, and checks the engine cache. Skipped without ``--device``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeprune.device import DeviceSession, Inventory
from edgeprune.device.inventory import inventory_path
from edgeprune.export.lint import has_errors, lint_onnx
from edgeprune.export.trt import engine_on_device, measure_on_device
from edgeprune.pipeline.flows import export_onnx
from edgeprune.profiles import load_profile

pytestmark = pytest.mark.hardware

# The test isolation fixture moves cwd and EDGEPRUNE_CONFIG; the board is in the real inventory.
REAL_INVENTORY = inventory_path()


def test_engine_build_and_bench_on_the_board(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    inv = Inventory.load(REAL_INVENTORY)
    for name in request.config.getoption("--device"):
        spec = inv.get(name)
        profile = load_profile(spec.profile)
        if not profile.uses_tensorrt:
            continue
        onnx = tmp_path / f"{name}.onnx"
        res = export_onnx("resnet20", onnx, input_size=32, profile=profile.name)
        assert res["opset"] <= profile.max_opset and not has_errors(lint_onnx(onnx, profile))
        precision = profile.fast_precisions[0]
        with DeviceSession(spec, inventory=inv) as dev:
            bench, engine = measure_on_device(dev, onnx, profile, precision=precision, duration_s=3)
            assert bench.version is not None and bench.version.major == profile.tensorrt_version[0]
            assert (
                bench.gpu_compute.n >= 10
                and 0 < bench.gpu_compute.median <= bench.host_latency.median
            )
            again = engine_on_device(dev, onnx, profile, precision=precision)
            assert again.cached and again.path == engine.path
