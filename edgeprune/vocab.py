"""The words every layer shares, defined once: runtimes, precisions, latency statistics.

Each is a ``str``-valued enum: a member *is* its string (``Runtime.TRT == "trt"``), so JSON,
SQLite rows, report files, YAML (``yaml.safe_dump`` writes the plain string) and stored
measurement contexts keep the plain spelling. Parse input
with ``Runtime.parse(text)`` (or ``Runtime(text)``): it accepts the canonical spelling and the
older one device profiles and stores written before schema 2 use (``onnxruntime``,
``tensorrt``), so both name the same runtime everywhere, and it raises `UsageError` listing the
choices for anything else. `check_choice` is the one check for any other closed set of words.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, TypeVar

import yaml

from edgeprune.errors import UsageError

W = TypeVar("W", bound="Word")
T = TypeVar("T")


class Word(str, Enum):
    """A closed set of words (base class; the members' values are the spellings)."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def aliases(cls) -> dict[str, str]:
        """Other spellings accepted on input → the canonical value."""
        return {}

    @classmethod
    def _missing_(cls, value: object) -> Any:
        canonical = cls.aliases().get(str(value).lower()) if isinstance(value, str) else None
        return cls(canonical) if canonical is not None else None

    @classmethod
    def choices(cls) -> tuple[str, ...]:
        return tuple(str(m.value) for m in cls)

    @classmethod
    def parse(cls: type[W], value: str | W, what: str | None = None) -> W:
        """``value`` as a member; raises `UsageError` naming the choices when it is none."""
        try:
            return cls(value)
        except ValueError:
            label = what or cls.__name__.lower()
            raise UsageError(
                f"unknown {label} {value!r}", hint=f"use one of {', '.join(cls.choices())}"
            ) from None


class Runtime(Word):
    """What runs the model: ONNX Runtime, TensorRT (trtexec on the device), PyTorch on a GPU."""

    ORT = "ort"
    TRT = "trt"
    TORCH_CUDA = "torch-cuda"

    @classmethod
    def aliases(cls) -> dict[str, str]:
        # Device profiles list runtimes by package name, and stores before schema 2 recorded
        # TensorRT runs as "tensorrt".
        return {"onnxruntime": "ort", "tensorrt": "trt", "torch_cuda": "torch-cuda"}


class Precision(Word):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Percentile(Word):
    """The statistic of a latency distribution that a budget or a comparison uses."""

    MEDIAN = "median"
    P90 = "p90"
    P99 = "p99"
    MEAN = "mean"
    MIN = "min"


def _represent_word(dumper: Any, word: Word) -> yaml.Node:
    return dumper.represent_str(str(word.value))


yaml.SafeDumper.add_multi_representer(Word, _represent_word)
yaml.Dumper.add_multi_representer(Word, _represent_word)


def check_choice(value: T, choices: Iterable[T], what: str, hint: str | None = None) -> T:
    """Return ``value`` if it is one of ``choices``; else raise `UsageError` listing them."""
    allowed = list(choices)
    if value not in allowed:
        shown = repr(str(value)) if isinstance(value, Word) else repr(value)
        raise UsageError(
            f"unknown {what} {shown}",
            hint=hint or f"use one of {', '.join(str(c) for c in allowed)}",
        )
    return value


def check_subset(
    values: Iterable[T], choices: Iterable[T], what: str, where: str = ""
) -> tuple[T, ...]:
    """``values`` as a non-empty tuple of members of ``choices``; else `UsageError`."""
    got, allowed = tuple(values), list(choices)
    if not got or any(v not in allowed for v in got):
        prefix = f"{where}: " if where else ""
        raise UsageError(
            f"{prefix}{what} must be a non-empty subset of {', '.join(str(c) for c in allowed)}"
        )
    return got
