"""The `edgeprune` command line. Each command parses flags, calls one library function, prints.

User-fixable errors (`EdgePruneError`) print one line — what is wrong and how to fix it — and
exit with code 2 (with ``--json``, the same as a JSON object on stdout). Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import json
import sys

from edgeprune.cli import commands as _commands  # noqa: F401  (registers commands)
from edgeprune.cli import device_cmds as _device_cmds  # noqa: F401  (registers commands)
from edgeprune.cli import export_cmds as _export_cmds  # noqa: F401  (registers commands)
from edgeprune.cli import farm_cmds as _farm_cmds  # noqa: F401  (registers commands)
from edgeprune.cli import search_cmds as _search_cmds  # noqa: F401  (registers commands)
from edgeprune.cli._app import app, console_err
from edgeprune.errors import EdgePruneError

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
    args = _fill_optional_values(list(sys.argv[1:] if argv is None else argv))
    try:
        # Standalone mode: Typer prints its own usage errors and exits 2 through SystemExit.
        app(args=args, prog_name="edgeprune")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except EdgePruneError as e:
        if "--json" in args:
            print(json.dumps(e.to_dict()))
        console_err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console_err.print(
            "[bold red]interrupted[/]: finished work is kept; rerun the command to resume"
        )
        return 130
    return 0
