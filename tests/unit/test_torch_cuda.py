"""The torch-cuda runtime. Without a CUDA device (these machines) only the refusal is tested."""

import pytest
import torch

from edgeprune.bench import BenchConfig, measure
from edgeprune.bench.torch_cuda import measure_torch_cuda
from edgeprune.checkpoint import resolve_model
from edgeprune.errors import UsageError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this host")


@pytest.fixture(scope="module")
def r20():
    torch.manual_seed(0)
    return resolve_model("resnet20", {"in_channels": 3}, input_size=32)


def test_config_is_validated() -> None:
    with pytest.raises(UsageError, match="torch-cuda mode 'tensorrt'"):
        BenchConfig(runtime="torch-cuda", provider="tensorrt")
    with pytest.raises(UsageError, match="torch-cuda precision 'int8'"):
        BenchConfig(runtime="torch-cuda", precision="int8")
    with pytest.raises(UsageError):
        BenchConfig(runtime="torch-cuda", batch=0)
    with pytest.raises(UsageError, match="needs runtime torch-cuda"):
        measure_torch_cuda(torch.nn.Identity(), (1,), BenchConfig())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_without_cuda_the_runtime_says_so(r20) -> None:
    for run in (
        lambda: measure_torch_cuda(r20.model, r20.input_shape),
        lambda: measure(None, r20, BenchConfig(runtime="torch-cuda")),
    ):
        with pytest.raises(UsageError, match="CUDA is not available") as e:
            run()
        assert e.value.hint and "GPU" in e.value.hint


def test_torch_cuda_takes_a_checkpoint_and_runs_here(tmp_path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="PyTorch checkpoint"):
        measure(None, onnx, BenchConfig(runtime="torch-cuda"))


@needs_cuda
@pytest.mark.parametrize("mode", ["eager", "cuda_graph"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_measures_on_the_gpu(r20, mode, precision) -> None:
    cfg = BenchConfig(
        runtime="torch-cuda",
        provider=mode,
        precision=precision,
        warmup_runs=5,
        warmup_seconds=0.1,
        min_runs=30,
        min_seconds=0.2,
    )
    before = next(r20.model.parameters()).device
    m = measure(None, r20, cfg)
    assert m.stats.n >= 30 and m.stats.min > 0 and m.stats.min <= m.stats.median
    assert m.context["warmup_runs_done"] >= 5 and next(r20.model.parameters()).device == before
    assert m.context["runtime"] == "torch-cuda" and m.context["provider"] == mode
    assert m.context["input_shape"] == [1, 3, 32, 32] and m.context["gpu"]
    assert m.context["device"] == "local" and len(m.context["artifact_sha256"]) == 64
