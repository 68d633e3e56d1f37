"""The checkpoint contract and the one resolver for MODEL arguments.

A checkpoint (``.pt``) is a dict of tensors and primitives only::

    {format_version, arch (ArchSpec dict), plan (PrunePlan dict), state_dict, input_shape [C,H,W],
     normalization {mean, std}, class_names, dataset, metrics, train (optional resume state),
     edgeprune_version}

Loading rebuilds the architecture from ``arch``, replays ``plan`` and then loads the weights.
Everything is read with ``torch.load(weights_only=True)``: a file holding arbitrary Python
objects is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.data import DatasetInfo
from edgeprune.errors import CheckpointError, NotFoundError, ShapeMismatchError, UsageError
from edgeprune.models import (
    ArchSpec,
    build_model,
    default_input_size,
    is_factory_ref,
    spec_from_ref,
)
from edgeprune.prune._engine import apply_plan
from edgeprune.prune.plan import PrunePlan

FORMAT_VERSION = 1


@dataclass
class ModelBundle:
    """A model plus everything needed to rebuild, feed and describe it."""

    model: nn.Module
    arch: ArchSpec
    input_shape: tuple[int, int, int]
    plan: PrunePlan = field(default_factory=PrunePlan)
    normalization: dict[str, list[float]] | None = None
    class_names: list[str] = field(default_factory=list)
    dataset: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    train_state: dict[str, Any] | None = None

    def example_input(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.input_shape), generator=gen)

    @property
    def label(self) -> str:
        return self.arch.label if not self.plan.groups else f"{self.arch.label} (pruned)"


def _edgeprune_version() -> str:
    from edgeprune import __version__

    return __version__


def save_checkpoint(
    bundle: ModelBundle, path: str | Path, train_state: dict[str, Any] | None = None
) -> Path:
    """Write ``bundle`` to ``path`` atomically (a crash never leaves a half-written checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "arch": bundle.arch.to_dict(),
        "plan": bundle.plan.to_dict(),
        "state_dict": {
            k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()
        },
        "input_shape": list(bundle.input_shape),
        "normalization": bundle.normalization,
        "class_names": list(bundle.class_names),
        "dataset": bundle.dataset,
        "metrics": dict(bundle.metrics),
        "train": train_state,
        "edgeprune_version": _edgeprune_version(),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint dict (no model is built). Raises `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(
            f"checkpoint not found: {path}", hint="check the path, or pass a zoo model name"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data; refusing to load it",
            hint="only load checkpoints written by edgeprune or re-save the weights as a plain state_dict",
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is truncated or not a PyTorch checkpoint ({str(e).splitlines()[0][:120]})",
            hint="re-create or re-download the file",
        ) from e
    if (
        not isinstance(payload, dict)
        or "format_version" not in payload
        or "state_dict" not in payload
    ):
        raise CheckpointError(
            f"{path} is not an edgeprune checkpoint (no format_version/state_dict)",
            hint="create one with `edgeprune train` or `edgeprune prune`, or import weights with edgeprune.checkpoint.bundle_from_model",
        )
    version = int(payload["format_version"])
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}; this edgeprune reads up to {FORMAT_VERSION}",
            hint="upgrade edgeprune",
        )
    return payload


def load_checkpoint(path: str | Path) -> ModelBundle:
    """Rebuild the (pruned) model stored at ``path`` and load its weights."""
    payload = read_checkpoint(path)
    try:
        arch = ArchSpec.from_dict(payload["arch"])
        plan = PrunePlan.from_dict(payload.get("plan"))
        input_shape = tuple(int(v) for v in payload["input_shape"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a malformed header: {e}") from e
    model = build_model(arch)
    example = torch.zeros((1, *input_shape))
    apply_plan(model, plan, example)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the rebuilt architecture (missing {len(missing)}, unexpected {len(unexpected)})",
            hint="the factory or plan changed since the checkpoint was written",
        )
    model.eval()
    return ModelBundle(
        model=model,
        arch=arch,
        input_shape=input_shape,  # type: ignore[arg-type]
        plan=plan,
        normalization=payload.get("normalization"),
        class_names=list(payload.get("class_names") or []),
        dataset=payload.get("dataset"),
        metrics=dict(payload.get("metrics") or {}),
        source=str(path),
        train_state=payload.get("train"),
    )


def looks_like_checkpoint(ref: str) -> bool:
    return ref.endswith((".pt", ".pth", ".ckpt")) or (
        Path(ref).is_file() and not ref.endswith(".py")
    )


def resolve_model(
    ref: str,
    kwargs: dict[str, Any] | None = None,
    data_info: DatasetInfo | None = None,
    input_size: int | None = None,
) -> ModelBundle:
    """Turn a MODEL argument into a `ModelBundle`.

    ``ref`` is a checkpoint path, a zoo name (random init) or ``FILE.py:factory``/``pkg.mod:fn``.
    For zoo names and factories, ``data_info`` supplies in_channels/num_classes/input size; without
    data the zoo defaults (3 channels, 10 classes, the model's input size) are used. A checkpoint
    must match ``data_info`` when both are given (`ShapeMismatchError` otherwise).
    """
    kwargs = dict(kwargs or {})
    if looks_like_checkpoint(ref) and not is_factory_ref(ref):
        if kwargs:
            raise UsageError(
                "--model-kwargs cannot change a checkpoint's architecture",
                hint="drop --model-kwargs",
            )
        bundle = load_checkpoint(ref)
        if data_info is not None:
            check_fits(bundle, data_info)
        return bundle
    spec = spec_from_ref(ref, kwargs)
    if spec.name is not None:
        defaults: dict[str, Any] = {}
        if data_info is not None:
            defaults = {"in_channels": data_info.in_channels, "num_classes": data_info.num_classes}
        spec = spec.with_kwargs(**{**defaults, **spec.kwargs})
    model = build_model(spec)
    model.eval()
    if data_info is not None:
        shape = data_info.input_shape
    else:
        size = input_size or default_input_size(spec)
        channels = int(spec.kwargs.get("in_channels", _first_in_channels(model)))
        if size is None:
            raise UsageError(
                f"cannot tell the input size of {ref}", hint="pass --data or --input-size"
            )
        shape = (channels, size, size)
    bundle = ModelBundle(
        model=model,
        arch=spec,
        input_shape=shape,
        normalization=data_info.normalization() if data_info else None,
        class_names=list(data_info.class_names) if data_info else [],
        dataset=data_info.name if data_info else None,
        source=ref,
    )
    check_runs(bundle)
    if data_info is not None:
        check_fits(bundle, data_info)
    return bundle


def _first_in_channels(model: nn.Module, default: int = 3) -> int:
    """Input channels of the first convolution (the image channels a model was built for)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return int(m.in_channels)
    return default


def check_runs(bundle: ModelBundle) -> torch.Tensor:
    """Run one example through the model; a shape error becomes a `ShapeMismatchError`."""
    try:
        with torch.no_grad():
            return bundle.model.eval()(bundle.example_input())
    except RuntimeError as e:
        raise ShapeMismatchError(
            f"{bundle.arch.label} does not accept input of shape {list(bundle.input_shape)}: {str(e).splitlines()[0][:160]}",
            hint="pass --input-size, or model kwargs such as in_channels that match the data",
        ) from e


def check_fits(bundle: ModelBundle, info: DatasetInfo) -> None:
    """Raise `ShapeMismatchError` unless the model's input shape and classes match the dataset."""
    if tuple(bundle.input_shape) != tuple(info.input_shape):
        raise ShapeMismatchError(
            f"model expects input {list(bundle.input_shape)} but dataset {info.name} gives {list(info.input_shape)}",
            hint="use the dataset the model was trained on, or pass --image-size to resize the data",
        )
    out = check_runs(bundle)
    if out.dim() != 2 or out.shape[1] != info.num_classes:
        raise ShapeMismatchError(
            f"model outputs {list(out.shape[1:])} values but dataset {info.name} has {info.num_classes} classes",
            hint="build the model with num_classes matching the data",
        )


def bundle_from_model(
    model: nn.Module, arch: ArchSpec, input_shape: tuple[int, int, int], **extra: Any
) -> ModelBundle:
    """Wrap an existing in-memory model (Python API)."""
    return ModelBundle(model=model, arch=arch, input_shape=input_shape, **extra)
