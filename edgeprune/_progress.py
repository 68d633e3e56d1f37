"""Progress reporting that the library emits and only the CLI renders.

Library code wraps long work in ``with track("what", total) as step: step(1, loss=...)``. Nothing
is printed unless a renderer is active (the CLI installs a Rich one with `rich_progress`), so
library users and tests stay quiet.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_active: contextvars.ContextVar[Any] = contextvars.ContextVar("edgeprune_progress", default=None)

Step = Callable[..., None]


@contextmanager
def track(description: str, total: float | None = None) -> Iterator[Step]:
    """A progress task; the yielded ``step(advance=1, **fields)`` moves it on."""
    progress = _active.get()
    if progress is None:
        yield lambda *a, **k: None
        return
    task_id = progress.add_task(description, total=total, info="")

    def step(advance: float = 1, **fields: Any) -> None:
        info = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
        progress.update(task_id, advance=advance, info=info)

    try:
        yield step
    finally:
        progress.update(task_id, visible=False)
        progress.remove_task(task_id)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@contextmanager
def rich_progress(enabled: bool = True) -> Iterator[None]:
    """Render `track` tasks as Rich progress bars on stderr while the block runs."""
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    )
    token = _active.set(progress)
    try:
        with progress:
            yield
    finally:
        _active.reset(token)
