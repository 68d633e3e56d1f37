import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from edgeprune.data import BatchLoader, load_dataset
from edgeprune.data import _sources as src
from edgeprune.errors import DataError, UnknownNameError


def test_fashion_mnist_is_real_and_verified(fmnist) -> None:
    assert len(fmnist.train) == 60_000 and len(fmnist.test) == 10_000
    assert fmnist.info.input_shape == (1, 28, 28) and fmnist.info.num_classes == 10
    assert fmnist.train.images.dtype == torch.uint8
    counts = torch.bincount(fmnist.test.labels)
    assert counts.tolist() == [1000] * 10


def test_fashion_mnist_corrupt_file_is_refused(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "data" / "fashion-mnist"
    cache.mkdir(parents=True)
    for f in src.FASHION_MNIST_FILES:
        (cache / f).write_bytes((src.FASHION_MNIST_DEBIAN_DIR / f).read_bytes())
    raw = bytearray(gzip.decompress((cache / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] ^= 1
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setattr(src, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "nope")
    monkeypatch.setenv("EDGEPRUNE_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError, match="sha256"):
        load_dataset("fashion-mnist")


def test_fashion_mnist_offline_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(src, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "nope")
    monkeypatch.setattr(
        src, "FASHION_MNIST_URL", "http://127.0.0.1:9/"
    )  # discard port: refused at once
    monkeypatch.setenv("EDGEPRUNE_DATA", str(tmp_path / "data"))
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in str(e.value)
    assert not list((tmp_path / "data").rglob("*.gz"))  # nothing half-written


def _cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.RandomState(seed)
    return pickle.dumps(
        {
            b"data": rng.randint(0, 255, (n, 3072), dtype=np.uint8),
            b"labels": list(rng.randint(0, 10, n)),
        },
        protocol=2,
    )


def _cifar_dir(root, batches: dict[str, bytes]):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, blob in batches.items():
        (d / name).write_bytes(blob)
    (d / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    )
    return root


def test_cifar_reads_official_python_format(tmp_path) -> None:
    batches = {f"data_batch_{i}": _cifar_batch(20, i) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(10, 9)
    root = _cifar_dir(tmp_path / "c10", batches)
    ds = load_dataset(f"cifar10:{root}")
    assert len(ds.train) == 100 and len(ds.test) == 10
    assert ds.info.input_shape == (3, 32, 32) and ds.info.class_names[0] == "c0"


class _Boom:
    pass


def test_cifar_malicious_pickle_is_refused_not_executed(tmp_path, monkeypatch) -> None:
    target = tmp_path / "pwned"
    monkeypatch.setattr(_Boom, "__reduce__", lambda self: (open, (str(target), "w")))
    batches = {f"data_batch_{i}": _cifar_batch(5, i) for i in range(1, 6)}
    batches["test_batch"] = pickle.dumps({b"data": _Boom(), b"labels": [0]}, protocol=2)
    root = _cifar_dir(tmp_path / "c10", batches)
    with pytest.raises(DataError, match="refusing"):
        load_dataset(f"cifar10:{root}")
    assert not target.exists()


def test_cifar_archive_checksum_is_enforced(tmp_path) -> None:
    root = tmp_path / "c10"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (root / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="sha256"):
        load_dataset(f"cifar10:{root}")


def test_digits(digits) -> None:
    assert digits.info.input_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.test) == 1797


def test_imagefolder(tmp_path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for cls, color in (("cat", 30), ("dog", 220)):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40 + i, 30), (color, color, color)).save(d / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert ds.info.class_names == ("cat", "dog") and ds.info.input_shape == (3, 16, 16)
    x, y = next(iter(BatchLoader(ds.train, ds.info, batch_size=6)))
    assert x.shape == (6, 3, 16, 16)
    assert x[y == 0].mean() < x[y == 1].mean()


def test_imagefolder_without_splits_is_explained(tmp_path) -> None:
    with pytest.raises(DataError, match="train/"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match="fashion-mnist"):
        load_dataset("mnist-fashion")


def test_loader_epochs_are_permutations_and_reproducible(digits) -> None:
    loader = BatchLoader(digits.train, digits.info, batch_size=100, shuffle=True, seed=3)
    loader.set_epoch(2)
    first = torch.cat([y for _, y in loader])
    loader.set_epoch(2)
    again = torch.cat([y for _, y in loader])
    assert torch.equal(first, again)
    assert sorted(first.tolist()) == sorted(digits.train.labels.tolist())


def test_augmentation_is_a_pad_crop_and_flip(fmnist) -> None:
    from edgeprune.data import Augment

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) + 1
    gen = torch.Generator().manual_seed(0)
    out = Augment(pad=1, flip=True)(x, gen)
    assert out.shape == x.shape
    # Every output value is either padding (0) or a value of the same image.
    for i in range(2):
        assert set(out[i].unique().tolist()) <= set(x[i].unique().tolist()) | {0.0}
    loader = BatchLoader(fmnist.test.subset(256), fmnist.info, batch_size=256, augment=True)
    xb, _ = next(iter(loader))
    assert xb.shape == (256, 1, 28, 28)


def test_resize_keeps_one_copy(digits) -> None:
    ds = load_dataset("digits", image_size=16)
    assert ds.info.input_shape == (1, 16, 16) and ds.train.images.dtype == torch.uint8


def test_an_nchw_loader_yields_row_major_batches_after_augmentation(fmnist) -> None:
    # A one-channel batch can come out of pad/crop/flip with channels-last strides, which
    # is_contiguous() accepts; convs then run channels-last (and hit oneDNN's strided-1x1 bug).
    loader = BatchLoader(fmnist.train.subset(512, seed=0), fmnist.info, 128, augment=True)
    for x, _ in loader:
        _, c, h, w = x.shape
        assert x.stride() == (c * h * w, h * w, w, 1)
    cl = BatchLoader(fmnist.train.subset(256, seed=0), fmnist.info, 128, channels_last=True)
    x, _ = next(iter(cl))
    assert x.is_contiguous(memory_format=torch.channels_last)
