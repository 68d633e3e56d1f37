"""The checkpoint contract and the one resolver for MODEL arguments.

A checkpoint (``.pt``) is a dict of tensors and primitives only::

    {format_version, arch (ArchSpec dict), plan (PrunePlan dict), state_dict, input_shape [C,H,W],
     normalization {mean, std}, class_names, dataset, metrics, train (optional resume state),
     edgeprune_version}

Loading rebuilds the architecture from ``arch``, replays ``plan`` and then loads the weights.
Loading never runs code the user did not name: the file is read with
``torch.load(weights_only=True)`` (a file holding arbitrary Python objects is refused), after its
zip directory is checked against a size cap (`check_archive`), and an ``arch`` that needs a
factory is built only through the factory the user names with ``--model-code`` (`allowed_arch`,
like ``trust_remote_code``). Zoo checkpoints need nothing.
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

from edgeprune import config
from edgeprune.data import DatasetInfo
from edgeprune.errors import (
    CheckpointError,
    NotFoundError,
    ShapeMismatchError,
    UntrustedCodeError,
    UsageError,
    one_line,
)
from edgeprune.models import (
    ArchSpec,
    build_model,
    default_input_size,
    factory_file,
    file_sha256,
    is_factory_ref,
    spec_from_ref,
)
from edgeprune.prune import apply_plan
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
    try:
        # Through a Python file object a full disk raises OSError(ENOSPC); torch's own writer
        # reports it as an opaque RuntimeError.
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# A deflated member bigger than this that inflates more than MAX_INFLATE_RATIO times is a bomb:
# torch.save stores tensors uncompressed, and real weights deflate by a few percent at most.
BOMB_MIN_BYTES = 16 << 20
MAX_INFLATE_RATIO = 100
MAX_MEMBERS = 100_000
# The example input built from a checkpoint's input_shape: 16 Mi values (3x2048x2048 fits).
MAX_INPUT_ELEMENTS = 1 << 24


def check_archive(path: str | Path, limit: int | None = None) -> None:
    """Refuse ``path`` before torch reads a byte of it: empty, not a zip archive (text, a legacy
    pickle), larger than ``limit`` bytes (default `config.max_checkpoint_bytes`) on disk or in
    the sizes its zip directory declares, or holding a member that inflates like a bomb.

    torch reads each member into memory at its declared size and never past it, so capping the
    declared sizes caps what a checkpoint can make us inflate. Raises `CheckpointError`.
    """
    path = Path(path)
    limit = config.max_checkpoint_bytes() if limit is None else limit
    raise_hint = f"raise EDGEPRUNE_MAX_CHECKPOINT_BYTES (now {limit}) if you trust the file"
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty", hint="re-create or re-download the checkpoint")
    if size > limit:
        raise CheckpointError(
            f"{path} is {size} bytes, more than the {limit}-byte checkpoint limit", hint=raise_hint
        )
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(
            f"{path} is truncated or not a PyTorch checkpoint (not a readable zip archive: {one_line(e, 80)})",
            hint="re-create or re-download it; a checkpoint from torch older than 1.6 must be re-saved with torch.save",
        ) from e
    if not any(i.filename == "data.pkl" or i.filename.endswith("/data.pkl") for i in infos):
        raise CheckpointError(
            f"{path} is a zip archive but not a PyTorch checkpoint (it has no data.pkl)",
            hint="pass a .pt file written by torch.save or edgeprune",
        )
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(
            f"{path} holds {len(infos)} files; a checkpoint holds a few per tensor"
        )
    declared = sum(i.file_size for i in infos)
    if declared > limit:
        raise CheckpointError(
            f"{path} declares {declared} bytes of content in {size} bytes, more than the {limit}-byte checkpoint limit",
            hint=raise_hint,
        )
    for i in infos:
        if i.compress_type == zipfile.ZIP_STORED and i.file_size != i.compress_size:
            raise CheckpointError(
                f"{path}: the zip entry {i.filename!r} declares {i.file_size} bytes but stores {i.compress_size}",
                hint="the file is corrupt; re-create or re-download it",
            )
        if i.file_size > BOMB_MIN_BYTES and i.file_size > MAX_INFLATE_RATIO * max(
            1, i.compress_size
        ):
            raise CheckpointError(
                f"{path}: the zip entry {i.filename!r} inflates {i.compress_size} bytes to {i.file_size} (a decompression bomb?); refusing to load it",
                hint="re-save the weights with torch.save, which stores tensors uncompressed",
            )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint dict (no model is built). Raises `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(
            f"checkpoint not found: {path}", hint="check the path, or pass a zoo model name"
        )
    check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data; refusing to load it",
            hint="only load checkpoints written by edgeprune or re-save the weights as a plain state_dict",
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"{path} is truncated or not a PyTorch checkpoint ({one_line(e, 120)})",
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
    version = payload["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path} has a malformed header: format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}; this edgeprune reads up to {FORMAT_VERSION}",
            hint="upgrade edgeprune",
        )
    return payload


def _header(payload: dict[str, Any], path: Path) -> tuple[ArchSpec, PrunePlan, tuple[int, ...]]:
    """The architecture, plan and input shape of a read checkpoint, each checked for type."""
    arch = payload.get("arch")
    shape = payload.get("input_shape")
    state = payload["state_dict"]
    problem = None
    if not isinstance(arch, dict):
        problem = "arch is not a mapping"
    elif not all(
        isinstance(arch.get(k), (str, type(None))) for k in ("name", "factory", "factory_sha256")
    ):
        problem = "arch name/factory/factory_sha256 are not strings"
    elif not isinstance(arch.get("kwargs") or {}, dict) or not all(
        isinstance(k, str) for k in arch.get("kwargs") or {}
    ):
        problem = "arch.kwargs is not a mapping of names"
    elif not (
        isinstance(shape, (list, tuple))
        and len(shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
        and shape[0] * shape[1] * shape[2] <= MAX_INPUT_ELEMENTS
    ):
        problem = f"input_shape {shape!r} is not [C, H, W] (at most {MAX_INPUT_ELEMENTS} values)"
    elif not isinstance(payload.get("plan"), (dict, type(None))):
        problem = "plan is not a mapping"
    elif not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        problem = "state_dict is not a mapping of names to tensors"
    if problem is not None:
        raise CheckpointError(f"{path} has a malformed header: {problem}")
    assert isinstance(arch, dict) and isinstance(shape, (list, tuple))
    try:
        spec = ArchSpec.from_dict(arch)
        plan = PrunePlan.from_dict(payload.get("plan"))
    except KeyError as e:
        raise CheckpointError(f"{path} has a malformed header: the plan lacks {e}") from e
    except (UsageError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} has a malformed header: {one_line(e)}") from e
    return spec, plan, tuple(shape)


def allowed_arch(arch: ArchSpec, model_code: str | None, source: str | Path) -> ArchSpec:
    """The architecture to build for a checkpoint at ``source``: a zoo spec as it is; a factory
    spec only through ``model_code``, the factory the user names (``--model-code``).

    ``model_code`` must name the recorded function; for ``FILE.py:fn`` the file's sha256 must equal
    the recorded ``factory_sha256`` and *that* file is imported (never the recorded path), for
    ``pkg.module:fn`` the reference must be the recorded one. Raises `UntrustedCodeError` (with the
    factory the checkpoint needs) when ``model_code`` is missing or names other code, `UsageError`
    when it is given for a zoo checkpoint.
    """
    if arch.factory is None:
        if model_code:
            raise UsageError(
                f"{source} uses the zoo model {arch.name}, which runs no user code",
                hint="drop --model-code",
            )
        return arch
    recorded = arch.factory
    sha = arch.factory_sha256
    needs = recorded + (f" (sha256 {sha[:12]}…)" if sha else "")
    if not model_code:
        raise UntrustedCodeError(
            f"{source} rebuilds its model by calling {needs}; edgeprune runs no code that a checkpoint names",
            hint=f"if you trust that code, name it: --model-code {recorded}, or model_code: {recorded} in a sweep file",
            factory=recorded,
            factory_sha256=sha,
        )
    if not is_factory_ref(model_code):
        raise UsageError(
            f"--model-code {model_code!r} is not FILE.py:function or package.module:function",
            hint=f"{source} needs {recorded}",
        )
    fn = model_code.rpartition(":")[2]
    if fn != recorded.rpartition(":")[2]:
        raise UntrustedCodeError(
            f"{source} needs the factory function {recorded}, not {fn!r} from --model-code {model_code}",
            hint=f"pass --model-code {recorded}",
            factory=recorded,
        )
    path = factory_file(model_code)
    if path is None:
        if model_code != recorded:
            raise UntrustedCodeError(
                f"{source} needs the factory {recorded}; --model-code names {model_code}",
                hint=f"pass --model-code {recorded}",
                factory=recorded,
            )
        return arch
    if factory_file(recorded) is None:
        raise UntrustedCodeError(
            f"{source} needs the module factory {recorded}; --model-code names the file {path}",
            hint=f"pass --model-code {recorded}",
            factory=recorded,
        )
    if not path.is_file():
        raise NotFoundError(f"--model-code file not found: {path}", hint=f"{source} needs {needs}")
    if sha is None:
        raise UntrustedCodeError(
            f"{source} records no sha256 of its factory file, so {path} cannot be checked against it",
            hint="re-create the checkpoint from the factory (edgeprune train FILE.py:function ...)",
            factory=recorded,
        )
    found = file_sha256(path)
    if found != sha:
        raise UntrustedCodeError(
            f"{path} (sha256 {found[:12]}…) is not the factory file {source} was written with (sha256 {sha[:12]}…)",
            hint=f"pass the file the checkpoint was created from ({recorded})",
            factory=recorded,
            factory_sha256=sha,
        )
    return ArchSpec(factory=f"{path.resolve()}:{fn}", kwargs=arch.kwargs, factory_sha256=sha)


def load_checkpoint(path: str | Path, model_code: str | None = None) -> ModelBundle:
    """Rebuild the (pruned) model stored at ``path`` and load its weights.

    A checkpoint whose architecture comes from a factory is built only through ``model_code``
    (see `allowed_arch`); loading never runs code the caller did not name.
    """
    path = Path(path)
    payload = read_checkpoint(path)
    recorded, plan, input_shape = _header(payload, path)
    arch = allowed_arch(recorded, model_code, path)
    model = build_model(arch)
    try:
        apply_plan(model, plan, torch.zeros((1, *input_shape)))
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    except (RuntimeError, IndexError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path}: the pruning plan or weights do not fit the rebuilt architecture ({one_line(e, 120)})",
            hint="the factory or plan changed since the checkpoint was written",
        ) from e
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
    model_code: str | None = None,
) -> ModelBundle:
    """Turn a MODEL argument into a `ModelBundle`.

    ``ref`` is a checkpoint path, a zoo name (random init) or ``FILE.py:factory``/``pkg.mod:fn``.
    For zoo names and factories, ``data_info`` supplies in_channels/num_classes/input size; without
    data the zoo defaults (3 channels, 10 classes, the model's input size) are used. A checkpoint
    must match ``data_info`` when both are given (`ShapeMismatchError` otherwise); one built by a
    factory loads only with ``model_code`` naming that factory (`allowed_arch`).
    """
    kwargs = dict(kwargs or {})
    if looks_like_checkpoint(ref) and not is_factory_ref(ref):
        if kwargs:
            raise UsageError(
                "--model-kwargs cannot change a checkpoint's architecture",
                hint="drop --model-kwargs",
            )
        bundle = load_checkpoint(ref, model_code)
        if data_info is not None:
            check_fits(bundle, data_info)
        return bundle
    if model_code:
        raise UsageError(
            f"--model-code names the factory of a checkpoint, and {ref} is not a checkpoint",
            hint="pass a factory as MODEL itself (FILE.py:function), or drop --model-code",
        )
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
            f"{bundle.arch.label} does not accept input of shape {list(bundle.input_shape)}: {one_line(e, 160)}",
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
