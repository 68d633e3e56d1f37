import pickle
import zipfile

import pytest
import torch

from edgeprune.checkpoint import (
    check_archive,
    load_checkpoint,
    read_checkpoint,
    resolve_model,
    save_checkpoint,
)
from edgeprune.errors import (
    CheckpointError,
    NotFoundError,
    ShapeMismatchError,
    UntrustedCodeError,
    UsageError,
)
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


# --------------------------------------------------------------------------- hostile checkpoints


def _factory_checkpoint(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(
        "from torch import nn\n"
        "def build(num_classes=10, in_channels=1):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    b = resolve_model(f"{net}:build", input_size=8)
    return net, save_checkpoint(b, tmp_path / "f.pt")


def test_a_factory_checkpoint_loads_only_through_the_named_unchanged_file(tmp_path) -> None:
    net, ckpt = _factory_checkpoint(tmp_path)
    with pytest.raises(UntrustedCodeError, match="--model-code") as e:
        load_checkpoint(ckpt)
    assert e.value.details["factory"] == f"{net.resolve()}:build"
    # The user names the file; it is imported from where they name it (a copy works).
    copy = tmp_path / "elsewhere" / "net_copy.py"
    copy.parent.mkdir()
    copy.write_bytes(net.read_bytes())
    loaded = load_checkpoint(ckpt, f"{copy}:build")
    assert loaded.arch.factory == f"{copy.resolve()}:build"
    assert loaded.arch.factory_sha256 == e.value.details["factory_sha256"]
    copy.write_text(copy.read_text() + "\n# changed\n")
    with pytest.raises(UntrustedCodeError, match="is not the factory file"):
        load_checkpoint(ckpt, f"{copy}:build")
    with pytest.raises(UntrustedCodeError, match="needs the factory function"):
        load_checkpoint(ckpt, f"{net}:other")
    with pytest.raises(UntrustedCodeError, match="needs the factory "):
        load_checkpoint(ckpt, "json:build")


def test_a_module_factory_needs_the_exact_reference(tmp_path) -> None:
    b = resolve_model("odd_models:make_tiny", input_size=8)
    ckpt = save_checkpoint(b, tmp_path / "m.pt")
    with pytest.raises(UntrustedCodeError, match="odd_models:make_tiny"):
        load_checkpoint(ckpt)
    with pytest.raises(UntrustedCodeError):
        load_checkpoint(ckpt, "hostile:make_tiny")
    assert load_checkpoint(ckpt, "odd_models:make_tiny").arch.factory == "odd_models:make_tiny"
    zoo = save_checkpoint(resolve_model("resnet20", input_size=8), tmp_path / "z.pt")
    with pytest.raises(UsageError, match="drop --model-code"):
        load_checkpoint(zoo, "odd_models:make_tiny")


def test_archive_caps_refuse_before_torch_reads(tmp_path, monkeypatch) -> None:
    b = resolve_model("resnet20", input_size=8)
    ckpt = save_checkpoint(b, tmp_path / "z.pt")
    size = ckpt.stat().st_size
    with pytest.raises(CheckpointError, match="checkpoint limit"):
        check_archive(ckpt, limit=size - 1)
    check_archive(ckpt, limit=size + 1024)
    # Declared sizes count, not the file's: a small file declaring more than the cap is refused.
    bomb = tmp_path / "b.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/data.pkl", b"\0" * (4 << 20))
    with pytest.raises(CheckpointError, match="declares 4194304 bytes"):
        check_archive(bomb, limit=1 << 20)
    monkeypatch.setenv("EDGEPRUNE_MAX_CHECKPOINT_BYTES", "1M")
    with pytest.raises(CheckpointError, match="EDGEPRUNE_MAX_CHECKPOINT_BYTES"):
        load_checkpoint(bomb)
    no_pickle = tmp_path / "n.pt"
    with zipfile.ZipFile(no_pickle, "w") as z:
        z.writestr("a/data/0", b"1234")
    with pytest.raises(CheckpointError, match=r"no data\.pkl"):
        load_checkpoint(no_pickle)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 2 << 30), ("4096", 4096), ("64K", 64 << 10), ("3g", 3 << 30), ("1GiB", 1 << 30)],
)
def test_checkpoint_size_cap_setting(monkeypatch, value, expected) -> None:
    from edgeprune import config

    if value is None:
        monkeypatch.delenv("EDGEPRUNE_MAX_CHECKPOINT_BYTES", raising=False)
    else:
        monkeypatch.setenv("EDGEPRUNE_MAX_CHECKPOINT_BYTES", value)
    assert config.max_checkpoint_bytes() == expected


@pytest.mark.parametrize("value", ["0", "-1", "lots", "1.5G", "12Q"])
def test_a_bad_size_cap_setting_is_a_usage_error(monkeypatch, value) -> None:
    from edgeprune import config

    monkeypatch.setenv("EDGEPRUNE_MAX_CHECKPOINT_BYTES", value)
    with pytest.raises(UsageError, match="is not a size"):
        config.max_checkpoint_bytes()
