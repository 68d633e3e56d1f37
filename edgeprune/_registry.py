"""Name → factory registries with decorator registration and entry-point plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from edgeprune.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    summary: str
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A registry of named objects.

    Registering a name twice is an error (plugins must not silently replace built-ins). Third-party
    packages add entries through the entry-point group ``entry_point_group``; each entry point
    names a module (or callable) whose import registers its objects.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._group = entry_point_group
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, summary: str = "", **meta: Any) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj, summary, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, summary: str = "", **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        doc = summary or (getattr(obj, "__doc__", None) or "").strip().splitlines()[0:1]
        text = doc if isinstance(doc, str) else (doc[0] if doc else "")
        self._entries[name] = Entry(name, obj, text, dict(meta))

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        assert self._group is not None
        for ep in metadata.entry_points(group=self._group):
            if ep.name in self._entries:
                continue
            loaded = ep.load()
            # An entry point may point at a module (import side effect registers) or an object.
            if not hasattr(loaded, "__path__") and not hasattr(loaded, "__file__"):
                self.add(ep.name, loaded)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._entries)) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self._load_plugins()
        for name in sorted(self._entries):
            yield self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries
