"""Progress reporting that the library emits and only the CLI renders.

Library code wraps long work in ``with track("what", total) as step: step(1, loss=...)``; a
``total`` of None is a phase of unknown length (a spinner, no count). Nothing is printed unless a
renderer is active, so library users and tests stay quiet. The CLI installs one with
`progress_output`: Rich bars on a terminal, plain timestamped lines elsewhere (CI logs, ``nohup``,
``make demo > log``), nothing under ``--json`` or ``-q``. Every task is also logged at DEBUG on
the ``edgeprune.progress`` logger.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Protocol

log = logging.getLogger("edgeprune.progress")

Step = Callable[..., None]
Mode = Literal["auto", "rich", "plain", "off"]

# Plain lines: a task is announced once it has run this long, then a heartbeat at most this often.
PLAIN_ANNOUNCE_S = 2.0
PLAIN_HEARTBEAT_S = 60.0


@dataclass
class Task:
    """One unit of tracked work, as renderers see it."""

    description: str
    total: float | None
    completed: float = 0.0
    info: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self) -> float | None:
        """Seconds left at the average rate so far (None when the total or the rate is unknown)."""
        if not self.total or self.completed <= 0:
            return None
        return self.elapsed / self.completed * max(0.0, self.total - self.completed)


class _Renderer(Protocol):
    def start(self, task: Task) -> None: ...
    def update(self, task: Task) -> None: ...
    def finish(self, task: Task, ok: bool) -> None: ...


_active: contextvars.ContextVar[_Renderer | None] = contextvars.ContextVar(
    "edgeprune_progress", default=None
)


@contextmanager
def track(description: str, total: float | None = None) -> Iterator[Step]:
    """A progress task; the yielded ``step(advance=1, **fields)`` moves it on.

    ``fields`` are shown beside the bar (``loss=0.31``); ``step(0, what="...")`` only updates them.
    """
    renderer = _active.get()
    task = Task(description, total)
    log.debug("start: %s", description)

    def step(advance: float = 1, **fields: Any) -> None:
        task.completed += advance
        if fields:
            task.info = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
        if renderer is not None:
            renderer.update(task)

    if renderer is not None:
        renderer.start(task)
    ok = False
    try:
        yield step
        ok = True
    finally:
        log.debug("%s: %s after %.1f s", "done" if ok else "stopped", description, task.elapsed)
        if renderer is not None:
            renderer.finish(task, ok)


@contextmanager
def track_until(description: str) -> Iterator[Callable[[], None]]:
    """A phase that ends when the yielded ``done()`` is called, or at the latest with the block:
    for a phase whose end lies inside a callback (a device session that opens, then calls work)."""
    with ExitStack() as stack:
        stack.enter_context(track(description))
        yield stack.close


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class PlainRenderer:
    """Timestamped lines for logs: a task is announced once it has run ``PLAIN_ANNOUNCE_S``, gets
    a heartbeat (count, ETA) at most every ``PLAIN_HEARTBEAT_S`` and one line when it ends; a task
    shorter than the announce delay prints nothing."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._tasks: dict[int, tuple[Task, list[float]]] = {}  # id -> (task, [last line time])
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="edgeprune-progress", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=2.0)

    def _line(self, task: Task, text: str) -> None:
        stamp = _duration(time.monotonic() - self.t0)
        self.stream.write(f"[{stamp:>9}] {task.description}: {text}\n")
        self.stream.flush()

    def _state(self, task: Task) -> str:
        parts = []
        if task.total:
            parts.append(f"{task.completed:g}/{task.total:g}")
        parts.append(f"{_duration(task.elapsed)} elapsed")
        eta = task.eta()
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        if task.info:
            parts.append(task.info)
        return ", ".join(parts)

    def start(self, task: Task) -> None:
        with self._lock:
            self._tasks[id(task)] = (task, [0.0])

    def update(self, task: Task) -> None:
        """Nothing: the ticker reads the task's state when a line is due."""

    def finish(self, task: Task, ok: bool) -> None:
        with self._lock:
            entry = self._tasks.pop(id(task), None)
            announced = bool(entry and entry[1][0])
            if not announced and task.elapsed < PLAIN_ANNOUNCE_S:
                return
            verdict = "done" if ok else "stopped"
            info = f" ({task.info})" if task.info else ""
            self._line(task, f"{verdict} in {_duration(task.elapsed)}{info}")

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                now = time.monotonic()
                for task, last in self._tasks.values():
                    if not last[0] and task.elapsed >= PLAIN_ANNOUNCE_S:
                        last[0] = now
                        self._line(task, "started" if not task.total else self._state(task))
                    elif last[0] and now - last[0] >= PLAIN_HEARTBEAT_S:
                        last[0] = now
                        self._line(task, self._state(task))


class RichRenderer:
    """Rich progress bars (a spinner and elapsed time for phases of unknown length)."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.text import Text

        class _Count(ProgressColumn):
            def render(self, task: Any) -> Text:
                if task.total is None:
                    return Text("")
                return Text(f"{task.completed:g}/{task.total:g}", style="progress.download")

        class _Eta(ProgressColumn):
            def render(self, task: Any) -> Text:
                if task.total is None or not task.completed:
                    return Text("")
                left = task.time_remaining
                return Text("" if left is None else f"ETA {_duration(left)}", style="cyan")

        self.progress = Progress(
            SpinnerColumn(),
            # markup=False: descriptions hold user text (paths, labels) that must print as is.
            TextColumn("{task.description}", markup=False, style="bold"),
            BarColumn(),
            _Count(),
            TimeElapsedColumn(),
            _Eta(),
            TextColumn("{task.fields[info]}", markup=False),
            console=Console(file=stream, highlight=False),
            transient=True,
        )
        self._ids: dict[int, Any] = {}
        self.progress.start()

    def close(self) -> None:
        self.progress.stop()

    def start(self, task: Task) -> None:
        self._ids[id(task)] = self.progress.add_task(task.description, total=task.total, info="")

    def update(self, task: Task) -> None:
        tid = self._ids.get(id(task))
        if tid is not None:
            self.progress.update(tid, completed=task.completed, info=task.info)

    def finish(self, task: Task, ok: bool) -> None:
        tid = self._ids.pop(id(task), None)
        if tid is not None:
            self.progress.remove_task(tid)


@contextmanager
def progress_output(mode: Mode = "auto", stream: IO[str] | None = None) -> Iterator[None]:
    """Render `track` tasks on ``stream`` (stderr) while the block runs.

    ``auto``: Rich bars when the stream is a terminal, else plain lines; ``off``: nothing.
    """
    if mode == "off":
        token = _active.set(None)
        try:
            yield
        finally:
            _active.reset(token)
        return
    out = stream or sys.stderr
    if mode == "auto":
        mode = "rich" if out.isatty() else "plain"
    renderer: RichRenderer | PlainRenderer = (
        RichRenderer(out) if mode == "rich" else PlainRenderer(out)
    )
    token = _active.set(renderer)
    try:
        yield
    finally:
        _active.reset(token)
        renderer.close()


@contextmanager
def rich_progress(enabled: bool = True) -> Iterator[None]:
    """`progress_output` in ``auto`` mode, or nothing when not ``enabled``."""
    with progress_output("auto" if enabled else "off"):
        yield
