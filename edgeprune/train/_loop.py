"""SGD + cosine training loop, evaluation and BN recalibration.

Resumable: `train` takes an optional `TrainState` (epoch, optimizer and scheduler state) and calls
``on_epoch_end(state)`` after every epoch, so the caller can persist it (the pipeline writes it into
the checkpoint atomically). Shuffling depends only on (seed, epoch), so a resumed run sees the
same data order as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeprune._progress import track
from edgeprune.data import BatchLoader, Dataset
from edgeprune.errors import UsageError


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training or fine-tuning run.

    ``lr`` is the peak learning rate of a cosine schedule (with ``warmup_epochs`` of linear
    warm-up); ``max_train_samples`` trains on a fixed random subset (None = all).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    seed: int = 0
    max_train_samples: int | None = None
    augment: bool = True
    device: str = "auto"
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise UsageError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.lr <= 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainState:
    """Where a run is: completed epochs plus optimizer/scheduler state (tensors and primitives only)."""

    epoch: int = 0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(
            int(d.get("epoch", 0)),
            d.get("optimizer"),
            d.get("scheduler"),
            list(d.get("history") or []),
        )


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    loss: float
    samples: int


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"device {name!r} asked for but CUDA is not available", hint="use --train-device cpu"
        )
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (None leaves torch's default)."""
    if threads is not None:
        torch.set_num_threads(max(1, threads))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No weight decay on BN/bias parameters: the usual choice for CIFAR ResNets.
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def train(
    model: nn.Module,
    data: Dataset,
    cfg: TrainConfig,
    state: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    description: str = "train",
) -> TrainState:
    """Train ``model`` in place for ``cfg.epochs`` epochs (continuing from ``state``).

    ``extra_loss(model)`` is added to the cross-entropy every step (used by ADMM penalties).
    Returns the final state; ``state.history`` holds per-epoch loss, accuracy and throughput.
    """
    state = state or TrainState()
    device = select_device(cfg.device)
    model.to(device)
    channels_last = cfg.channels_last and device.type == "cpu" and channels_last_is_safe(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    split = data.train.subset(cfg.max_train_samples, seed=cfg.seed)
    loader = BatchLoader(
        split,
        data.info,
        cfg.batch_size,
        shuffle=True,
        augment=cfg.augment,
        drop_last=len(split) > cfg.batch_size,
        seed=cfg.seed,
        channels_last=channels_last,
    )
    steps_per_epoch = max(1, len(loader))
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    optimizer = torch.optim.SGD(
        _param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )

    def lr_lambda(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    if state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)

    for epoch in range(state.epoch, cfg.epochs):
        model.train()
        loader.set_epoch(epoch)
        seen, correct, loss_sum = 0, 0, 0.0
        t0 = time.perf_counter()
        with track(f"{description} epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch) as step:
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                if extra_loss is not None:
                    loss = loss + extra_loss(model)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                n = y.shape[0]
                seen += n
                loss_sum += float(loss.detach()) * n
                correct += int((logits.detach().argmax(1) == y).sum())
                elapsed = time.perf_counter() - t0
                step(
                    1,
                    loss=loss_sum / seen,
                    acc=f"{100.0 * correct / seen:.2f}%",
                    img_s=f"{seen / elapsed:.0f}",
                )
        elapsed = time.perf_counter() - t0
        if not math.isfinite(loss_sum):
            raise UsageError(
                f"training diverged at epoch {epoch + 1} (loss is not finite)", hint="lower --lr"
            )
        state.epoch = epoch + 1
        state.optimizer = optimizer.state_dict()
        state.scheduler = scheduler.state_dict()
        state.history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / max(1, seen),
                "train_accuracy": correct / max(1, seen),
                "images_per_s": seen / elapsed,
            }
        )
        if on_epoch_end is not None:
            on_epoch_end(state)
    if channels_last:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return state


# oneDNN's AVX2 / AVX-512 kernels for a strided 1x1 convolution's backward-weights pass write past
# their workspace when the source is channels-last and has fewer input channels than the kernel's
# channel block (8 / 16): uxlfoundation/oneDNN#6035, open. Pruned models hit it (a ResNet shortcut
# cut to 5 or 3 input channels): with torch 2.13 on this project's host, training hung inside
# `jit_avx2_1x1_convolution_bwd_weights` or aborted with "free(): invalid next size".
ONEDNN_NHWC_1X1_MIN_CHANNELS = 16


def channels_last_is_safe(model: nn.Module) -> bool:
    """Whether CPU training may use channels-last: False when a strided 1x1 convolution has
    fewer input channels (per group) than oneDNN's largest channel block (see above)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1):
            strided = any(s > 1 for s in m.stride)
            if strided and m.in_channels // m.groups < ONEDNN_NHWC_1X1_MIN_CHANNELS:
                return False
    return True


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset,
    batch_size: int = 256,
    max_samples: int | None = None,
    device: str = "auto",
    description: str = "eval",
) -> EvalResult:
    """Top-1 accuracy (fraction in [0, 1]) and mean cross-entropy on the test split."""
    dev = select_device(device)
    model.to(dev).eval()
    split = data.test.subset(max_samples, seed=1234)
    loader = BatchLoader(split, data.info, batch_size)
    seen, correct, loss_sum = 0, 0, 0.0
    with track(description, total=len(loader)) as step:
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += y.shape[0]
            step(1)
    return EvalResult(correct / max(1, seen), loss_sum / max(1, seen), seen)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    data: Dataset,
    batches: int = 5,
    batch_size: int = 128,
    seed: int = 0,
    device: str = "auto",
) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on training batches.

    No gradient step is taken; statistics are the exact average over the batches (momentum=None).
    Returns the number of BN layers recalibrated (0 if the model has none).
    """
    dev = select_device(device)
    model.to(dev)
    loader = BatchLoader(data.train, data.info, batch_size, shuffle=True, seed=seed)
    return recalibrate_bn_on(model, (x.to(dev) for x, _ in itertools.islice(loader, batches)))


@torch.no_grad()
def recalibrate_bn_on(model: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """`recalibrate_bn` on given input batches (already on the model's device).

    Every BatchNorm's running statistics are reset and set to the exact average over ``inputs``;
    all other layers run in eval mode. Returns the number of BN layers (0: nothing to do).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for x in inputs:
            model(x)
    finally:
        for m, (momentum, training) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
    return len(bns)
