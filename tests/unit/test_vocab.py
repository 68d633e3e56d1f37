"""One vocabulary: runtimes, precisions and statistics are enums defined once (edgeprune.vocab)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from edgeprune.bench import BenchConfig, compute_stats, context_key
from edgeprune.errors import UsageError
from edgeprune.farm.sweep import SweepSpec
from edgeprune.pipeline.deploy import DeployConfig
from edgeprune.profiles import DeviceProfile, load_profile
from edgeprune.vocab import Percentile, Precision, Runtime, check_choice


def test_members_are_their_strings_in_json_yaml_and_keys() -> None:
    assert Runtime.TRT == "trt" and f"{Runtime.TORCH_CUDA}" == "torch-cuda"
    cfg = BenchConfig(runtime="trt", precision="fp16")
    assert cfg.runtime is Runtime.TRT and cfg.precision is Precision.FP16
    assert json.loads(json.dumps(cfg.to_dict()))["runtime"] == "trt"
    assert yaml.safe_load(yaml.safe_dump(cfg.to_dict()))["precision"] == "fp16"
    ctx = {"device": "d", "runtime": "ort", "precision": "fp32"}
    assert context_key({**ctx, "runtime": Runtime.ORT}) == context_key(ctx)


def test_older_spellings_are_accepted_and_mean_the_same_runtime() -> None:
    assert Runtime.parse("tensorrt") is Runtime.TRT and Runtime.parse("onnxruntime") is Runtime.ORT
    assert Runtime("TensorRT") is Runtime.TRT
    ctx = {"device": "d", "precision": "fp16", "provider": "trtexec/gpu_compute"}
    assert context_key({**ctx, "runtime": "tensorrt"}) == context_key({**ctx, "runtime": "trt"})
    assert context_key({**ctx, "runtime": "ort"}) != context_key({**ctx, "runtime": "trt"})


def test_unknown_words_name_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown runtime 'tflite'") as e:
        Runtime.parse("tflite")
    assert e.value.hint == "use one of ort, trt, torch-cuda"
    with pytest.raises(UsageError, match="unknown statistic 'p95'"):
        compute_stats([1.0, 2.0]).get("p95")
    assert compute_stats([1.0, 2.0, 3.0]).get(Percentile.MEDIAN) == 2.0
    with pytest.raises(UsageError, match="unknown deploy runtime 'torch-cuda'"):
        check_choice(Runtime.TORCH_CUDA, (Runtime.ORT, Runtime.TRT), "deploy runtime")


def test_bench_config_refuses_what_the_runtime_cannot_run() -> None:
    for precision in ("fp16", "int8"):
        with pytest.raises(UsageError, match="needs --runtime trt"):
            BenchConfig(precision=precision)
    with pytest.raises(UsageError, match="torch-cuda precision 'int8'"):
        BenchConfig(runtime="torch-cuda", precision="int8")
    with pytest.raises(UsageError, match="no execution provider"):
        BenchConfig(runtime="trt", provider="CUDAExecutionProvider")
    assert BenchConfig(runtime="tensorrt", precision="int8").runtime is Runtime.TRT


def test_deploy_config_hands_runtime_and_precision_to_the_benchmark() -> None:
    cfg = DeployConfig(runtime="trt", precision="fp16")
    assert cfg.bench.runtime is Runtime.TRT and cfg.bench.precision is Precision.FP16
    with pytest.raises(UsageError, match="needs --runtime trt"):
        DeployConfig(precision="int8")
    with pytest.raises(UsageError, match="unknown deploy runtime 'torch-cuda'"):
        DeployConfig(runtime="torch-cuda")


def test_profiles_take_either_spelling() -> None:
    nano = load_profile("jetson-nano")  # the shipped file says tensorrt / onnxruntime
    assert set(nano.runtimes) == {Runtime.TRT, Runtime.ORT} and nano.uses_tensorrt
    data = {**nano.to_dict(), "runtimes": ["trt", "ort"]}
    data.pop("source")
    assert DeviceProfile.from_dict(data).runtimes == (Runtime.TRT, Runtime.ORT)
    with pytest.raises(UsageError, match="runtimes: unknown runtime 'tflite'"):
        DeviceProfile.from_dict({**data, "runtimes": ["tflite"]})
    with pytest.raises(UsageError, match="runtimes must be a non-empty subset"):
        DeviceProfile.from_dict({**data, "runtimes": ["torch-cuda"]})
    assert replace(nano, precisions=("fp16",), fast_precisions=()).precisions == (Precision.FP16,)


def test_a_sweep_takes_the_older_runtime_spelling() -> None:
    spec = SweepSpec.from_dict(
        {
            "name": "s",
            "models": ["resnet20"],
            "targets": [{"ratio": 0.5}],
            "devices": ["local"],
            "runtimes": [{"runtime": "tensorrt", "precision": "fp16"}],
        }
    )
    (rt,) = spec.runtimes
    assert rt.runtime is Runtime.TRT and rt.label == "trt/fp16/t1"
    bench = spec.bench_config(rt)
    assert bench.runtime is Runtime.TRT and bench.precision is Precision.FP16
