"""The `edgeprune` command line. Each command parses flags, calls one library function, prints.

User-fixable errors (`EdgePruneError`) and command-line mistakes (an unknown flag, ``--ratio
abc``) print one message and exit with code 2; with ``--json`` the error is also printed as a
JSON object on stdout. Ctrl-C prints what was kept and how to resume, exit code 130. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.text import Text

from edgeprune.cli import commands as _commands  # noqa: F401  (registers commands)
from edgeprune.cli import device_cmds as _device_cmds  # noqa: F401  (registers commands)
from edgeprune.cli import export_cmds as _export_cmds  # noqa: F401  (registers commands)
from edgeprune.cli import farm_cmds as _farm_cmds  # noqa: F401  (registers commands)
from edgeprune.cli import search_cmds as _search_cmds  # noqa: F401  (registers commands)
from edgeprune.cli._app import Interrupted, app, console_err, interrupt_note, settings
from edgeprune.cli._help import decorate
from edgeprune.errors import EdgePruneError, filesystem_errors

INTERRUPTED = 130


def command() -> Any:
    """The Click command tree of the app, with the help presentation applied."""
    return decorate(typer.main.get_command(app))


# Options whose value is optional (``--wait`` alone = until free): click needs the value, so a bare
# one is given its default here.
OPTIONAL_VALUES = {"--wait": "inf"}


def _fill_optional_values(args: list[str]) -> list[str]:
    out = []
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if a in OPTIONAL_VALUES and (nxt is None or not _is_number(nxt)):
            a = f"{a}={OPTIONAL_VALUES[a]}"
        out.append(a)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    args = _fill_optional_values(given)
    json_out = "--json" in args
    settings.quiet = settings.verbose = False
    settings.argv, settings.interrupt_note = tuple(given), None
    try:
        with filesystem_errors():  # disk full, read-only, permissions: one line, exit 2
            code = command().main(args=args, prog_name="edgeprune", standalone_mode=False)
    except EdgePruneError as e:
        if json_out:
            print(json.dumps(e.to_dict()))
        _error(str(e))
        return 2
    except typer.TyperException as e:  # the command line itself: unknown flag, bad value
        if json_out:
            print(json.dumps(_usage_dict(e)))
        _show_usage_error(e)
        return int(getattr(e, "exit_code", 2))
    except (Interrupted, KeyboardInterrupt):
        console_err.print(
            Text.assemble(("interrupted: ", "bold red"), interrupt_note()), soft_wrap=True
        )
        return INTERRUPTED
    except typer.Abort:  # end of input at a prompt
        _error("aborted")
        return 1
    # Typer returns the command's value (None) or, for `raise typer.Exit(n)`, the code n.
    return code if isinstance(code, int) else 0


def _error(message: str) -> None:
    console_err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def _usage_dict(e: Exception) -> dict[str, Any]:
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", "edgeprune")
    return {
        "error": "CommandLineError",
        "message": _message(e),
        "hint": f"see `{path} --help`",
    }


def _message(e: Exception) -> str:
    fmt = getattr(e, "format_message", None)
    return str(fmt() if callable(fmt) else e)


def _show_usage_error(e: Exception) -> None:
    """Typer's own rendering (usage line, "Try --help", the message in a panel). For a group
    called without a command, the help it raises with has already been printed."""
    from typer import rich_utils

    rich_utils.rich_format_error(e)  # type: ignore[arg-type]
