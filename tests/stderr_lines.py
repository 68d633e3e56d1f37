"""Reading a command's stderr in tests: the message lines, with plain progress lines set apart.

stderr is not a terminal under pytest, so a phase that ran two seconds or more (on a loaded
machine: loading a checkpoint, connecting) writes a timestamped plain progress line such as
``[    2.0 s] connect to hung: stopped in 2.0 s``. A "one line" check is about the messages.
"""

from __future__ import annotations

import re

PROGRESS_LINE = re.compile(r"^\[\s*[0-9.]+ (s|min|h)[^\]]*\] ")


def message_lines(err: str) -> list[str]:
    """The non-empty stderr lines that are not plain progress lines."""
    return [ln for ln in err.splitlines() if ln.strip() and not PROGRESS_LINE.match(ln)]
