import onnx
import pytest
import torch

from edgeprune.checkpoint import resolve_model
from edgeprune.errors import UsageError
from edgeprune.export import file_opset, onnx_from_torch, ort_session
from edgeprune.prune import PruneConfig, Target, prune


@pytest.fixture(scope="module")
def pruned_r20():
    torch.manual_seed(0)
    b = resolve_model("resnet20", {"in_channels": 1}, input_size=28)
    return prune(b, PruneConfig(target=Target("flops", 0.5))).bundle


def test_default_export_is_single_file_and_checked(tmp_path, pruned_r20) -> None:
    res = onnx_from_torch(pruned_r20.model, pruned_r20.input_shape, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert not res.external_data
    assert res.opset >= 18 and res.opset == file_opset(tmp_path / "m.onnx")
    assert res.inputs[0].shape == [1, 1, 28, 28] and res.outputs[0].shape == [1, 10]
    assert res.parity_max_abs_diff <= 1e-4 * max(1.0, res.parity_output_scale)
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)


def test_opset_13_uses_torchscript_and_is_verified(tmp_path, pruned_r20) -> None:
    res = onnx_from_torch(pruned_r20.model, pruned_r20.input_shape, tmp_path / "m13.onnx", opset=13)
    assert res.exporter == "torchscript" and res.opset == 13
    assert file_opset(tmp_path / "m13.onnx") == 13
    with pytest.raises(UsageError, match="silently keeps 18"):
        onnx_from_torch(
            pruned_r20.model,
            pruned_r20.input_shape,
            tmp_path / "x.onnx",
            opset=13,
            exporter="dynamo",
        )


def test_external_data_on_request(tmp_path, pruned_r20) -> None:
    res = onnx_from_torch(
        pruned_r20.model, pruned_r20.input_shape, tmp_path / "m.onnx", external_data=True
    )
    assert res.external_data
    assert (tmp_path / "m.onnx.data").is_file()


def test_dynamic_batch(tmp_path, pruned_r20) -> None:
    res = onnx_from_torch(
        pruned_r20.model, pruned_r20.input_shape, tmp_path / "m.onnx", dynamic_batch=True
    )
    assert isinstance(res.inputs[0].shape[0], str)
    sess = ort_session(tmp_path / "m.onnx")
    out = sess.run(None, {"input": torch.randn(5, 1, 28, 28).numpy()})[0]
    assert out.shape == (5, 10)


def test_parity_failure_leaves_nothing(tmp_path, monkeypatch, pruned_r20) -> None:
    from edgeprune.errors import ExportError
    from edgeprune.export import onnx as onnx_mod

    monkeypatch.setattr(onnx_mod, "parity", lambda *a, **k: (1.0, 1.0, 1.0))
    with pytest.raises(ExportError, match="differs from PyTorch"):
        onnx_from_torch(pruned_r20.model, pruned_r20.input_shape, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path, pruned_r20) -> None:
    with pytest.raises(UsageError):
        onnx_from_torch(
            pruned_r20.model, pruned_r20.input_shape, tmp_path / "m.onnx", exporter="tf"
        )
    with pytest.raises(UsageError):
        onnx_from_torch(pruned_r20.model, pruned_r20.input_shape, tmp_path / "m.onnx", opset=5)
