"""The model zoo registry and architecture specs (zoo name or user factory + kwargs)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from edgeprune._files import sha256_file
from edgeprune._registry import Registry
from edgeprune.errors import NotFoundError, UsageError

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


def load_factory(ref: str) -> Callable[..., nn.Module]:
    """Import the callable named by ``FILE.py:fn`` or ``pkg.module:fn``.

    Importing a file runs it: only references the user passed (or that a checkpoint they chose
    records) are imported.
    """
    target, _, fn_name = ref.rpartition(":")
    if target.endswith(".py") or "/" in target or Path(target).suffix == ".py":
        path = Path(target).expanduser()
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
            except Exception:
                del sys.modules[mod_name]
                raise
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise NotFoundError(f"cannot import module {target!r} for factory {ref!r}: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise NotFoundError(
            f"{target} has no callable {fn_name!r}",
            hint="the part after ':' must name a function returning an nn.Module",
        )
    return fn


def spec_from_ref(ref: str, kwargs: dict[str, Any] | None = None) -> ArchSpec:
    """An `ArchSpec` from a zoo name or a factory reference (checked to exist)."""
    kwargs = dict(kwargs or {})
    if is_factory_ref(ref):
        target = ref.rpartition(":")[0]
        sha = sha256_file(target) if Path(target).is_file() else None
        if target.endswith(".py") or "/" in target:
            ref = f"{Path(target).expanduser().resolve()}:{ref.rpartition(':')[2]}"
        load_factory(ref)  # fail early with a clear error
        return ArchSpec(factory=ref, kwargs=kwargs, factory_sha256=sha)
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
    model = fn(**spec.kwargs)
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
            hint="e.g. --model-kwargs '{\"width_mult\": 0.5}'",
        ) from e
    if not isinstance(value, dict):
        raise UsageError(
            "--model-kwargs must be a JSON object",
            hint="e.g. --model-kwargs '{\"width_mult\": 0.5}'",
        )
    return value
