"""The Typer application object and output helpers shared by the command modules."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="edgeprune",
    help="Prune CNNs against measured latency on real edge devices (Jetson, Raspberry Pi, any SSH host).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console(highlight=False, soft_wrap=True)
console_err = Console(stderr=True, highlight=False)

JSON_HELP = "Print one JSON object on stdout (for scripts)."


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_default))


def _default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


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
