"""The Typer application object, global flags and output helpers shared by the command modules.

Both consoles have Rich markup off: paths, labels, tags and error messages are user text and are
printed as is. Styling is passed as `rich.text.Text` or ``style=`` instead.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from edgeprune import __version__
from edgeprune._progress import progress_output


class Interrupted(Exception):
    """Ctrl-C during a command (Typer would turn it into a silent exit code 130)."""


class _Group(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise Interrupted() from e


app = typer.Typer(
    cls=_Group,
    name="edgeprune",
    help="Prune CNNs against measured latency on real edge devices (Jetson, Raspberry Pi, any SSH host).",
    epilog="Examples:\n"
    "$ edgeprune demo\n"
    "$ edgeprune prune r56.pt --data fashion-mnist --flops-reduction 0.5 --device local --out runs/r56\n"
    "$ edgeprune report runs/r56\n\n"
    "`edgeprune COMMAND -h` shows a command's options and examples.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(highlight=False, soft_wrap=True, markup=False)
console_err = Console(stderr=True, highlight=False, markup=False)

JSON_HELP = "Print one JSON object on stdout (for scripts)."


@dataclass
class Settings:
    """What the global flags chose for this invocation."""

    quiet: bool = False
    verbose: bool = False
    argv: tuple[str, ...] = ()
    interrupt_note: str | None = None


settings = Settings()


def _show_version(value: bool) -> None:
    if value:
        print(f"edgeprune {__version__}")
        raise typer.Exit()


@app.callback()
def _global_flags(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Debug logging on stderr (each phase, each remote command)."
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress or notes on stderr; results and errors only."
        ),
    ] = False,
) -> None:
    """Prune CNNs against measured latency on real edge devices (Jetson, Raspberry Pi, any SSH host)."""
    settings.quiet, settings.verbose = quiet, verbose
    configure_logging(verbose=verbose, quiet=quiet)
    logging.getLogger("edgeprune.cli").debug(
        "argv: %s (edgeprune %s)", shlex.join(["edgeprune", *settings.argv]), __version__
    )


class _LogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.name}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_handler = _StderrHandler()
_handler.setFormatter(_LogFormatter())


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Send the ``edgeprune`` loggers to stderr: DEBUG with ``verbose``, ERROR with ``quiet``,
    else WARNING. Records still propagate to the root logger (pytest's caplog sees them)."""
    root = logging.getLogger("edgeprune")
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)


def progress(json_out: bool = False) -> AbstractContextManager[None]:
    """Progress on stderr for a command: off under ``--json`` and ``-q``."""
    return progress_output("off" if json_out or settings.quiet else "auto", sys.stderr)


@contextmanager
def on_interrupt(note: str | Callable[[], str]) -> Iterator[None]:
    """If Ctrl-C stops the block, the CLI prints ``interrupted: NOTE`` (what was kept, how to
    resume) instead of a generic line."""
    try:
        yield
    except KeyboardInterrupt:
        settings.interrupt_note = note() if callable(note) else note
        raise


def interrupt_note() -> str:
    """What the interrupted command kept, or a generic line."""
    return settings.interrupt_note or "stopped before it finished; rerun the command"


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_default))


def _default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def styled(text: str, style: str) -> Text:
    """``text`` in ``style``, never parsed as markup."""
    return Text(text, style=style)


def warn_slowdowns(warnings: list[str]) -> None:
    """Say loudly, on stderr, where the pruned model measured no faster than its base (the
    text as it is: the consoles render no markup, so a device name cannot restyle the line)."""
    for w in warnings:
        console_err.print(styled("warning: ", "bold red") + w, soft_wrap=True)


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in rows:
        t.add_row(k, fmt(v))
    return t


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"
