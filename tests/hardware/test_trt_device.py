"""TensorRT on a real board: ``pytest tests/hardware --device NAME`` (NAME from devices.yaml).

Exports a model for the board's profile, lints it, builds the engine on the board with its own
trtexec, benchmarks it through `edgeprune.bench.measure`, and checks the engine cache. Skipped
without ``--device``, and skipped (not passed) when none of the named boards has TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeprune.bench import BenchConfig, measure
from edgeprune.device import DeviceSession, Inventory
from edgeprune.device.inventory import inventory_path
from edgeprune.export.lint import has_errors, lint_onnx
from edgeprune.export.trt import engine_on_device
from edgeprune.pipeline.flows import export_onnx
from edgeprune.profiles import load_profile

pytestmark = pytest.mark.hardware

# The test isolation fixture moves cwd and EDGEPRUNE_CONFIG; the board is in the real inventory.
REAL_INVENTORY = inventory_path()


def test_engine_build_and_bench_on_the_board(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    inv = Inventory.load(REAL_INVENTORY)
    boards = [
        (spec, profile)
        for spec in (inv.get(name) for name in request.config.getoption("--device"))
        if (profile := load_profile(spec.profile)).uses_tensorrt
    ]
    if not boards:
        pytest.skip("none of the --device boards has TensorRT in its profile")
    for spec, profile in boards:
        onnx = tmp_path / f"{spec.name}.onnx"
        res = export_onnx("resnet20", onnx, input_size=32, profile=profile.name)
        assert res.export.opset <= profile.max_opset and not has_errors(lint_onnx(onnx, profile))
        precision = profile.fast_precisions[0]
        cfg = BenchConfig(runtime="trt", precision=precision, min_seconds=3)
        with DeviceSession(spec, inventory=inv) as dev:
            host = measure(dev, onnx, cfg, profile=profile)
            (gpu,) = host.related
            version = host.context["runtime_version"]
            assert int(version.split(".")[0]) == profile.tensorrt_version[0]
            assert gpu.stats.n >= 10 and 0 < gpu.stats.median <= host.stats.median
            engine = host.context["engine"]
            again = engine_on_device(dev, onnx, profile, precision=precision)
            assert again.cached and again.path == engine["path"]
