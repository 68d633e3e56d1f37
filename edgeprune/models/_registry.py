"""The model zoo registry and architecture specs (zoo name or user factory + kwargs)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from edgeprune._files import sha256_file
from edgeprune._registry import Registry
from edgeprune.errors import NotFoundError, UsageError, one_line

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", entry_point_group="edgeprune.models")


def register_model(
    name: str, **meta: Any
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model factory ``f(num_classes=..., in_channels=..., **kwargs) -> nn.Module``.

    ``meta['input_size']`` is the default square input size: an int or ``f(kwargs) -> int``.
    """
    return MODELS.register(name, **meta)


def list_models() -> list[str]:
    return MODELS.names()


@dataclass(frozen=True)
class ArchSpec:
    """How to rebuild an (unpruned) architecture: a zoo ``name`` or a user ``factory``.

    ``factory`` is ``"path/to/file.py:fn"`` or ``"package.module:fn"``. ``kwargs`` go to the
    factory. ``factory_sha256`` records the hash of a factory file so that a changed file is noticed.
    `build_model` runs the factory: a spec read from a file the user did not write goes through
    `edgeprune.checkpoint.load_checkpoint`, which builds a factory only through ``--model-code``.
    """

    name: str | None = None
    factory: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    factory_sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.factory is None):
            raise UsageError("an architecture spec needs exactly one of a zoo name or a factory")

    @property
    def label(self) -> str:
        return self.name or str(self.factory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "factory": self.factory,
            "kwargs": dict(self.kwargs),
            "factory_sha256": self.factory_sha256,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        return cls(
            name=d.get("name"),
            factory=d.get("factory"),
            kwargs=dict(d.get("kwargs") or {}),
            factory_sha256=d.get("factory_sha256"),
        )

    def with_kwargs(self, **kwargs: Any) -> ArchSpec:
        return ArchSpec(self.name, self.factory, {**self.kwargs, **kwargs}, self.factory_sha256)


def is_factory_ref(text: str) -> bool:
    """True for ``FILE.py:fn`` or ``pkg.mod:fn`` references."""
    if ":" not in text:
        return False
    left, _, right = text.rpartition(":")
    return bool(left) and right.isidentifier()


def factory_file(ref: str) -> Path | None:
    """The Python file a ``FILE.py:fn`` reference names; None for ``pkg.module:fn``."""
    target = ref.rpartition(":")[0]
    if target.endswith(".py") or "/" in target:
        return Path(target).expanduser()
    return None


def load_factory(ref: str) -> Callable[..., nn.Module]:
    """Import the callable named by ``FILE.py:fn`` or ``pkg.module:fn``.

    Importing a file runs it, so only references the user names are imported: a MODEL argument,
    or the ``--model-code`` that a checkpoint's factory was checked against (`edgeprune.checkpoint`).
    An import that fails in the user's code raises `UsageError` naming the file and line.
    """
    target, _, fn_name = ref.rpartition(":")
    path = factory_file(ref)
    if path is not None:
        if not path.is_file():
            raise NotFoundError(
                f"model factory file not found: {path}",
                hint="pass FILE.py:factory with a path to an existing Python file",
            )
        mod_name = "edgeprune_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module = sys.modules.get(mod_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise UsageError(f"cannot import {path} as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[mod_name]
                raise UsageError(
                    f"importing {path} failed{_where(e, path)}: {type(e).__name__}: {one_line(e)}",
                    hint="fix the model file (run it with python to see the full traceback)",
                ) from e
    else:
        try:
            module = importlib.import_module(target)
        except (ImportError, TypeError, ValueError) as e:
            raise NotFoundError(
                f"cannot import module {target!r} for factory {ref!r}: {one_line(e)}",
                hint="pass FILE.py:function or an installed package.module:function",
            ) from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise NotFoundError(
            f"{target} has no callable {fn_name!r}",
            hint="the part after ':' must name a function returning an nn.Module",
        )
    return fn


def _where(e: BaseException, path: Path) -> str:
    """`` at FILE:LINE`` for the innermost frame of ``e`` in ``path`` (or its syntax error)."""
    if isinstance(e, SyntaxError) and e.lineno:
        return f" at line {e.lineno}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    return f" at line {frames[-1].lineno}" if frames else ""


def file_sha256(path: str | Path) -> str:
    """sha256 of a factory file (the digest checkpoints record as ``factory_sha256``)."""
    return sha256_file(path)


def spec_from_ref(ref: str, kwargs: dict[str, Any] | None = None) -> ArchSpec:
    """An `ArchSpec` from a zoo name or a factory reference (checked to exist)."""
    kwargs = dict(kwargs or {})
    if is_factory_ref(ref):
        path = factory_file(ref)
        sha = sha256_file(path) if path is not None and path.is_file() else None
        if path is not None:
            ref = f"{path.resolve()}:{ref.rpartition(':')[2]}"
        load_factory(ref)  # fail early with a clear error
        return ArchSpec(factory=ref, kwargs=kwargs, factory_sha256=sha)
    if ref not in MODELS.names() and Path(ref).is_dir():
        inside = Path(ref) / "model.pt"
        raise NotFoundError(
            f"{ref} is a directory, not a model",
            hint=f"did you mean {inside}?"
            if inside.is_file()
            else "give a checkpoint file, FILE.py:factory or a zoo name; `edgeprune models` lists the zoo",
        )
    MODELS.entry(ref)  # raises UnknownNameError listing the zoo
    return ArchSpec(name=ref, kwargs=kwargs)


def build_model(spec: ArchSpec) -> nn.Module:
    """Instantiate the unpruned architecture described by ``spec``."""
    fn = load_factory(spec.factory) if spec.factory else MODELS.get(str(spec.name))
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        accepts_var = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        unknown = [k for k in spec.kwargs if k not in sig.parameters and not accepts_var]
        if unknown:
            raise UsageError(
                f"{spec.label} does not accept {', '.join(sorted(unknown))}",
                hint=f"accepted keyword arguments: {', '.join(sig.parameters) or 'none'}",
            )
    try:
        model = fn(**spec.kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        # Wrong keyword values (a string for num_classes, a negative width) surface here.
        shown = json.dumps(spec.kwargs, sort_keys=True, default=str)
        raise UsageError(
            f"{spec.label} could not be built with {one_line(shown, 120)}: {type(e).__name__}: {one_line(e)}",
            hint="check the values in --model-kwargs or in the checkpoint's arch.kwargs",
        ) from e
    if not isinstance(model, nn.Module):
        raise UsageError(f"{spec.label} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def default_input_size(spec: ArchSpec) -> int | None:
    """The zoo's default square input size for ``spec`` (None for user factories)."""
    if spec.name is None:
        return None
    size = MODELS.entry(spec.name).meta.get("input_size")
    return size(spec.kwargs) if callable(size) else size


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """Parse ``--model-kwargs`` JSON into a dict (one clear error if it is not an object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"--model-kwargs is not valid JSON: {e.msg}",
            hint="e.g. --model-kwargs '{\"num_classes\": 100}'",
        ) from e
    if not isinstance(value, dict):
        raise UsageError(
            "--model-kwargs must be a JSON object",
            hint="e.g. --model-kwargs '{\"num_classes\": 100}'",
        )
    return value
