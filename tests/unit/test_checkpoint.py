import pickle
import zipfile

import pytest
import torch

from edgeprune.checkpoint import load_checkpoint, read_checkpoint, resolve_model, save_checkpoint
from edgeprune.errors import CheckpointError, NotFoundError, ShapeMismatchError, UsageError
from edgeprune.prune import PruneConfig, Target, prune


def test_roundtrip_rebuilds_pruned_model(tmp_path, digits) -> None:
    b = resolve_model("resnet20", data_info=digits.info)
    res = prune(b, PruneConfig(target=Target("flops", 0.5)))
    res.bundle.metrics = {"accuracy": 0.5}
    path = save_checkpoint(res.bundle, tmp_path / "m.pt")
    loaded = load_checkpoint(path)
    assert loaded.input_shape == (1, 8, 8)
    assert loaded.normalization == digits.info.normalization()
    assert loaded.class_names == list(digits.info.class_names)
    assert loaded.metrics == {"accuracy": 0.5}
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), res.bundle.model.eval()(x), atol=1e-6)
    # The file holds only tensors and plain data.
    torch.load(path, weights_only=True)


def test_missing_and_truncated(tmp_path) -> None:
    with pytest.raises(NotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    b = resolve_model("resnet20", input_size=8)
    path = save_checkpoint(b, tmp_path / "m.pt")
    data = path.read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "t.pt")


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_is_refused_never_executed(tmp_path) -> None:
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "state_dict": {}, "x": _Exploit(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(evil)
    assert not marker.exists()
    # A plain pickle (not a torch zip) with the same payload is refused too.
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_not_an_edgeprune_checkpoint(tmp_path) -> None:
    p = tmp_path / "sd.pt"
    torch.save({"conv.weight": torch.zeros(1)}, p)
    with pytest.raises(CheckpointError, match="not an edgeprune checkpoint"):
        read_checkpoint(p)


def test_newer_format_is_refused(tmp_path) -> None:
    b = resolve_model("resnet20", input_size=8)
    path = save_checkpoint(b, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(path)


def test_shape_mismatch_with_data(tmp_path, digits, fmnist) -> None:
    b = resolve_model("resnet20", data_info=digits.info)
    path = save_checkpoint(b, tmp_path / "m.pt")
    with pytest.raises(ShapeMismatchError, match=r"expects input \[1, 8, 8\]"):
        resolve_model(str(path), data_info=fmnist.info)
    with pytest.raises(ShapeMismatchError):
        resolve_model("resnet20", {"in_channels": 3}, data_info=digits.info)
    with pytest.raises(UsageError):
        resolve_model(str(path), {"num_classes": 3})


def test_atomic_save_leaves_no_partial_files(tmp_path) -> None:
    b = resolve_model("resnet20", input_size=8)
    save_checkpoint(b, tmp_path / "m.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert zipfile.is_zipfile(tmp_path / "m.pt")
