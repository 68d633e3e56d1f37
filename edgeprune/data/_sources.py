"""Dataset sources: Fashion-MNIST, CIFAR-10/100, ImageFolder, scikit-learn digits.

Every downloaded or found file is verified by sha256 before it is parsed. CIFAR's python batches
are pickles; they are read with an allow-list unpickler that can only build dicts, lists, bytes and
numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from edgeprune import config
from edgeprune._files import sha256_file
from edgeprune._registry import Registry
from edgeprune.data._core import ArraySplit, Augment, Dataset, DatasetInfo
from edgeprune.errors import DataError, DependencyMissingError, UnknownNameError, UsageError

DATASETS: Registry[Callable[[str | None, int | None], Dataset]] = Registry(
    "dataset", entry_point_group="edgeprune.datasets"
)

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# sha256 of the *decompressed* idx files: identical whether the .gz came from the official site or
# was recompressed by a distribution package (Debian's dataset-fashion-mnist is).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        "cifar-10-batches-py",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        "cifar-100-python",
    ),
}
DOWNLOAD_TIMEOUT_S = 30


def register_dataset(name: str, summary: str = "") -> Callable:
    """Register ``loader(arg, image_size) -> Dataset``.

    ``arg`` is the part after ``name:`` (or None); ``image_size`` is the requested square size or
    None for the dataset's native size. In-memory datasets may ignore it: `load_dataset` resizes
    their images once after loading.
    """
    return DATASETS.register(name, summary)


def list_datasets() -> list[str]:
    return DATASETS.names()


def load_dataset(spec: str, image_size: int | None = None) -> Dataset:
    """Load ``name`` or ``name:ARG`` (e.g. ``imagefolder:/data/flowers``).

    ``image_size`` resizes every image to a square of that size (None keeps the native size).
    """
    name, _, arg = spec.partition(":")
    if name not in DATASETS:
        raise UnknownNameError("dataset", spec, [*DATASETS.names(), "imagefolder:PATH"])
    if image_size is not None and not 4 <= image_size <= 4096:
        raise UsageError(f"image size {image_size} is out of range", hint="use 4..4096 pixels")
    ds = DATASETS.get(name)(arg or None, image_size)
    if image_size is not None and ds.info.image_size != (image_size, image_size):
        ds = _resized(ds, image_size)
    return ds


def _resize_u8(images: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 4096):
        chunk = images[start : start + 4096].float()
        resized = torch.nn.functional.interpolate(
            chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + 4096] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def _resized(ds: Dataset, size: int) -> Dataset:
    if not isinstance(ds.train, ArraySplit) or not isinstance(ds.test, ArraySplit):
        raise UsageError(f"dataset {ds.info.name} cannot be resized to {size}")
    train = ArraySplit(_resize_u8(ds.train.images, size), ds.train.labels)
    test = ArraySplit(_resize_u8(ds.test.images, size), ds.test.labels)
    mean, std = _channel_stats(train.images)
    info = dataclasses.replace(ds.info, image_size=(size, size), mean=mean, std=std)
    return Dataset(info, train, test)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url: str, dest: Path, sha256: str | None, *, what: str, how: str) -> Path:
    """Download ``url`` to ``dest`` atomically; verify sha256 of the file when given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp,
        ):
            shutil.copyfileobj(resp, out, 1 << 20)
        if sha256 is not None and sha256_file(Path(tmp)) != sha256:
            raise DataError(f"{what}: download from {url} failed its sha256 check", hint=how)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DataError(
            f"{what} is not available locally and cannot be downloaded ({e})", hint=how
        ) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Per-channel mean/std in [0,1] units, computed in chunks to stay at one uint8 copy.
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], 8192):
        chunk = images[start : start + 8192].double() / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += (chunk * chunk).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(raw: bytes, expected_sha: str, label: str, how: str) -> np.ndarray:
    if _sha256_bytes(raw) != expected_sha:
        raise DataError(
            f"Fashion-MNIST file {label} failed its sha256 check (corrupt or not the official data)",
            hint=how,
        )
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_dir() -> Path:
    """Where Fashion-MNIST's four .gz files are (Debian path, else cache, else downloaded)."""
    how = (
        "install Debian's package: apt-get install dataset-fashion-mnist, or place the four "
        f"official .gz files in {config.data_dir() / 'fashion-mnist'}"
    )
    for candidate in (FASHION_MNIST_DEBIAN_DIR, config.data_dir() / "fashion-mnist"):
        if all((candidate / f).is_file() for f in FASHION_MNIST_FILES):
            return candidate
    target = config.data_dir() / "fashion-mnist"
    for fname in FASHION_MNIST_FILES:
        if not (target / fname).is_file():
            # Verified after decompression (see FASHION_MNIST_FILES).
            download(FASHION_MNIST_URL + fname, target / fname, None, what="Fashion-MNIST", how=how)
    return target


@register_dataset(
    "fashion-mnist",
    "Fashion-MNIST 28×28 grey, 10 classes (Debian dataset-fashion-mnist, cache, or download)",
)
def _fashion_mnist(arg: str | None, image_size: int | None) -> Dataset:
    root = fashion_mnist_dir()
    how = "reinstall dataset-fashion-mnist or delete the cached files to re-download"
    arrays = {}
    for fname, sha in FASHION_MNIST_FILES.items():
        try:
            raw = gzip.decompress((root / fname).read_bytes())
        except (OSError, EOFError) as e:
            raise DataError(f"cannot read {root / fname}: {e}", hint=how) from e
        arrays[fname] = _read_idx(raw, sha, fname, how)
    train_x = torch.from_numpy(arrays["train-images-idx3-ubyte.gz"].copy()).unsqueeze(1)
    test_x = torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"].copy()).unsqueeze(1)
    train_y = torch.from_numpy(arrays["train-labels-idx1-ubyte.gz"].astype(np.int64))
    test_y = torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64))
    mean, std = _channel_stats(train_x)
    info = DatasetInfo(
        "fashion-mnist",
        10,
        1,
        (28, 28),
        mean,
        std,
        FASHION_MNIST_CLASSES,
        Augment(pad=2, flip=True),
    )
    return Dataset(info, ArraySplit(train_x, train_y), ArraySplit(test_x, test_y))


# --------------------------------------------------------------------------- CIFAR


class _SafeUnpickler(pickle.Unpickler):
    """Builds only what CIFAR batches contain: dicts, lists, bytes, str, numbers, numpy arrays."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, 'latin1'): a pure function.
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _safe_unpickle(data: bytes, what: str = "a CIFAR batch file") -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(
            f"{what} holds objects a dataset never contains ({e}); refusing to load it",
            hint="re-download the official archive",
        ) from e
    except (EOFError, ValueError) as e:
        raise DataError(
            f"{what} is truncated or corrupt: {e}", hint="re-download the official archive"
        ) from e
    if not isinstance(obj, dict):
        raise DataError("a CIFAR batch file does not hold a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar(name: str, arg: str | None) -> Dataset:
    url, sha, folder = CIFAR[name]
    archive_name = url.rsplit("/", 1)[1]
    root = Path(arg).expanduser() if arg else config.data_dir() / name
    how = f"download {url} into {root} (sha256 {sha[:12]}…), or pass {name}:DIR with the extracted '{folder}'"
    extracted = root / folder
    if not extracted.is_dir():
        archive = root / archive_name
        if not archive.is_file():
            download(url, archive, sha, what=name, how=how)
        elif sha256_file(archive) != sha:
            raise DataError(f"{archive} failed its sha256 check", hint=how)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")
    if name == "cifar10":
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files, label_key, meta_file, names_key = (
            ["test_batch"],
            "labels",
            "batches.meta",
            "label_names",
        )
    else:
        train_files, test_files = ["train"], ["test"]
        label_key, meta_file, names_key = "fine_labels", "meta", "fine_label_names"

    def read(files: list[str]) -> ArraySplit:
        xs, ys = [], []
        for f in files:
            path = extracted / f
            if not path.is_file():
                raise DataError(f"{path} is missing", hint=how)
            batch = _safe_unpickle(path.read_bytes(), str(path))
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[label_key], dtype=np.int64))
        return ArraySplit(
            torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
        )

    train, test = read(train_files), read(test_files)
    meta = (
        _safe_unpickle((extracted / meta_file).read_bytes())
        if (extracted / meta_file).is_file()
        else {}
    )
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, []))
    mean, std = _channel_stats(train.images)
    n_cls = 10 if name == "cifar10" else 100
    info = DatasetInfo(name, n_cls, 3, (32, 32), mean, std, classes, Augment(pad=4, flip=True))
    return Dataset(info, train, test)


@register_dataset(
    "cifar10",
    "CIFAR-10 32×32 RGB, 10 classes (official python tarball; cifar10:DIR for a local copy)",
)
def _cifar10(arg: str | None, image_size: int | None) -> Dataset:
    return _cifar("cifar10", arg)


@register_dataset(
    "cifar100",
    "CIFAR-100 32×32 RGB, 100 classes (official python tarball; cifar100:DIR for a local copy)",
)
def _cifar100(arg: str | None, image_size: int | None) -> Dataset:
    return _cifar("cifar100", arg)


# --------------------------------------------------------------------------- digits


@register_dataset(
    "digits", "scikit-learn digits 8×8 grey, 10 classes (bundled with scikit-learn, tiny)"
)
def _digits(arg: str | None, image_size: int | None) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DependencyMissingError(
            "the digits dataset needs scikit-learn", hint="pip install 'edgeprune[digits]'"
        ) from e
    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    # Fixed split: every 5th image is test (stratified enough for 1 797 samples).
    test_mask = torch.arange(len(labels)) % 5 == 0
    train = ArraySplit(images[~test_mask].contiguous(), labels[~test_mask])
    test = ArraySplit(images[test_mask].contiguous(), labels[test_mask])
    mean, std = _channel_stats(train.images)
    info = DatasetInfo(
        "digits", 10, 1, (8, 8), mean, std, tuple(str(i) for i in range(10)), Augment(pad=1)
    )
    return Dataset(info, train, test)


# --------------------------------------------------------------------------- ImageFolder

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}


class ImageFolderSplit:
    """A split decoded lazily from image files (resize shorter side + centre crop to ``size``)."""

    def __init__(
        self, files: list[Path], labels: list[int], size: int, channels: int, threads: int = 4
    ) -> None:
        self.files = files
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.size = size
        self.channels = channels
        self.threads = threads

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, n: int | None, seed: int = 0) -> ImageFolderSplit:
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        return ImageFolderSplit(
            [self.files[i] for i in idx],
            [int(self.labels[i]) for i in idx],
            self.size,
            self.channels,
            self.threads,
        )

    def _decode(self, path: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(path) as im:
                im = im.convert("L" if self.channels == 1 else "RGB")
                w, h = im.size
                scale = self.size / min(w, h)
                im = im.resize(
                    (max(self.size, round(w * scale)), max(self.size, round(h * scale))),
                    Image.Resampling.BILINEAR,
                )
                w, h = im.size
                left, top = (w - self.size) // 2, (h - self.size) // 2
                im = im.crop((left, top, left + self.size, top + self.size))
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise DataError(
                f"cannot decode image {path}: {e}", hint="remove or replace the file"
            ) from e
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    def fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        paths = [self.files[i] for i in idx.tolist()]
        # PIL releases the GIL while decoding, so threads parallelise it.
        with ThreadPoolExecutor(self.threads) as pool:
            arrays = list(pool.map(self._decode, paths))
        return torch.from_numpy(np.stack(arrays)), self.labels[idx]


def _scan_folder(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        for p in sorted((folder / cls).rglob("*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                files.append(p)
                labels.append(label)
    return files, labels


@register_dataset(
    "imagefolder",
    "imagefolder:PATH — PATH/train/<class>/*.jpg and PATH/val (or test)/<class>/*.jpg",
)
def _imagefolder(arg: str | None, image_size: int | None) -> Dataset:
    how = "pass imagefolder:PATH where PATH holds train/<class>/… and val/<class>/… (or test/)"
    if not arg:
        raise DataError("imagefolder needs a path", hint=how)
    root = Path(arg).expanduser()
    size = image_size or 224
    train_dir = root / "train"
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise DataError(f"{root} does not have train/ and val/ (or test/) folders", hint=how)
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{train_dir} has no class folders", hint=how)
    train_files, train_labels = _scan_folder(train_dir, classes)
    test_files, test_labels = _scan_folder(test_dir, classes)
    if not train_files or not test_files:
        raise DataError(
            f"{root} has no images with extensions {sorted(IMAGE_EXTENSIONS)}", hint=how
        )
    from PIL import Image

    with Image.open(train_files[0]) as im:
        channels = 1 if im.mode in ("L", "1", "I;16") else 3
    train = ImageFolderSplit(train_files, train_labels, size, channels)
    test = ImageFolderSplit(test_files, test_labels, size, channels)
    sample = train.subset(min(len(train), 512)).fetch(torch.arange(min(len(train), 512)))[0]
    mean, std = _channel_stats(sample)
    info = DatasetInfo(
        f"imagefolder:{root}",
        len(classes),
        channels,
        (size, size),
        mean,
        std,
        tuple(classes),
        Augment(pad=size // 8, flip=True),
    )
    return Dataset(info, train, test)
