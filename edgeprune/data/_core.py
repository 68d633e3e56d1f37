"""Dataset records, the in-memory array split and the batch loader.

Images stay in their decoded uint8 form exactly once (N×C×H×W); each batch is converted to float,
normalised and augmented on the fly, vectorised over the batch. This keeps memory at one copy and
makes loading far cheaper than a training step, without worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Tensor-level training augmentation: random pad-crop and horizontal flip."""

    pad: int = 0
    flip: bool = False

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.pad > 0:
            p = self.pad
            padded = F.pad(x, (p, p, p, p))
            # One gather per batch: per-image random offsets via unfold-free index arithmetic.
            oy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=gen)
            rows = oy[:, None] + torch.arange(h)[None, :]  # n×h
            cols = ox[:, None] + torch.arange(w)[None, :]  # n×w
            idx_n = torch.arange(n)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(
                0, 3, 1, 2
            )
        if self.flip:
            mask = torch.rand(n, generator=gen) < 0.5
            if mask.any():
                x = x.clone()
                x[mask] = x[mask].flip(-1)
        return x


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data (stored in checkpoints)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    augment: Augment = field(default_factory=Augment)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, *self.image_size)

    def normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


class Split(Protocol):
    """A dataset split: a length, labels, random subsets and batch fetches of uint8 images."""

    labels: torch.Tensor

    def __len__(self) -> int: ...

    def subset(self, n: int | None, seed: int = 0) -> Split: ...

    def fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class ArraySplit:
    """One split held as a uint8 N×C×H×W tensor plus int64 labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 N×C×H×W tensor")
        if labels.shape[0] != images.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, n: int | None, seed: int = 0) -> ArraySplit:
        """A class-balanced-in-expectation random subset of ``n`` samples (views, no copy of all)."""
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ArraySplit(self.images[idx], self.labels[idx])

    def fetch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[idx], self.labels[idx]


@dataclass
class Dataset:
    info: DatasetInfo
    train: Split
    test: Split


class BatchLoader:
    """Iterate normalised (and optionally augmented) float batches over an `ArraySplit`.

    Each ``iter()`` is one epoch. With ``shuffle`` the order comes from ``seed`` + epoch, so a
    resumed run sees the same order it would have seen.
    """

    def __init__(
        self,
        split: Split,
        info: DatasetInfo,
        batch_size: int = 128,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.split = split
        self.info = info
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = info.augment if augment else None
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.channels_last = channels_last
        c = info.in_channels
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(1, c, 1, 1) * 255.0
        self._inv_std = 1.0 / (torch.tensor(info.std, dtype=torch.float32).view(1, c, 1, 1) * 255.0)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def normalize(self, images_u8: torch.Tensor) -> torch.Tensor:
        return (images_u8.float() - self._mean) * self._inv_std

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        stop = n - (n % self.batch_size) if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            x_u8, y = self.split.fetch(idx)
            x = self.normalize(x_u8)
            if self.augment is not None:
                x = self.augment(x, gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            elif x.stride() != _row_major_strides(x.shape):
                # Augmentation can leave a one-channel batch with channels-last strides, which
                # `is_contiguous()` accepts (a size-1 dimension's stride is ignored) but which
                # makes every conv downstream run channels-last: NCHW was asked for.
                x = x.clone(memory_format=torch.contiguous_format)
            yield x, y
        self.epoch += 1


def _row_major_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, acc = [], 1
    for size in reversed(shape):
        strides.append(acc)
        acc *= max(1, size)
    return tuple(reversed(strides))
