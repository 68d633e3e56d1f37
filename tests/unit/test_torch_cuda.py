"""The torch-cuda runtime. Without a CUDA device (these machines) only the refusal is tested."""

import pytest
import torch

from edgeprune.bench.torch_cuda import TorchCudaConfig, measure_torch_cuda
from edgeprune.checkpoint import resolve_model
from edgeprune.errors import UsageError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this host")


@pytest.fixture(scope="module")
def r20():
    torch.manual_seed(0)
    return resolve_model("resnet20", {"in_channels": 3}, input_size=32)


def test_config_is_validated() -> None:
    with pytest.raises(UsageError, match="mode"):
        TorchCudaConfig(mode="tensorrt")
    with pytest.raises(UsageError, match="precision"):
        TorchCudaConfig(precision="int8")
    with pytest.raises(UsageError):
        TorchCudaConfig(batch=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_without_cuda_the_runtime_says_so(r20) -> None:
    with pytest.raises(UsageError, match="CUDA is not available") as e:
        measure_torch_cuda(r20.model, r20.input_shape)
    assert e.value.hint and "GPU" in e.value.hint


@needs_cuda
@pytest.mark.parametrize("mode", ["eager", "cuda_graph"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_measures_on_the_gpu(r20, mode, precision) -> None:
    cfg = TorchCudaConfig(
        mode=mode,
        precision=precision,
        warmup_runs=5,
        warmup_seconds=0.1,
        min_runs=30,
        min_seconds=0.2,
    )
    before = next(r20.model.parameters()).device
    res = measure_torch_cuda(r20.model, r20.input_shape, cfg)
    assert res.stats.n >= 30 and res.stats.min > 0 and res.stats.min <= res.stats.median
    assert res.warmup_runs >= 5 and next(r20.model.parameters()).device == before
    m = res.to_measurement({"device": "host-gpu"})
    assert m.context["runtime"] == "torch-cuda" and m.context["provider"] == mode
    assert m.context["input_shape"] == [1, 3, 32, 32] and m.context["gpu"]
