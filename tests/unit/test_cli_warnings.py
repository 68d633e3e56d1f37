"""The slowdown warning on stderr: one plain line, the user's text as it is."""

from __future__ import annotations

from edgeprune.cli._app import warn_slowdowns
from edgeprune.pipeline.flows import slowdown_warning


def test_slowdown_warning_is_one_plain_line_and_device_text_is_not_markup(capsys) -> None:
    text = slowdown_warning("[red]board[/]", 1.0, 1.2, 16)
    assert text is not None
    warn_slowdowns([text])
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"warning: {text}"]  # no "[bold red]" left in, no escapes
    assert "on [red]board[/]:" in err


def test_a_faster_pruned_model_gives_no_warning() -> None:
    assert slowdown_warning("local", 1.0, 0.8, None) is None
