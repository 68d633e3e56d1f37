"""Progress rendering: plain timestamped lines off a terminal, Rich bars on one, nothing when off."""

from __future__ import annotations

import io
import re
import time

import pytest

import edgeprune._progress as progress_mod
from edgeprune._progress import _active, progress_output, track


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fast_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Announce after 0.2 s and beat every 0.5 s, so the tests need not wait seconds."""
    monkeypatch.setattr(progress_mod, "PLAIN_ANNOUNCE_S", 0.2)
    monkeypatch.setattr(progress_mod, "PLAIN_HEARTBEAT_S", 0.5)


def test_plain_lines_for_a_long_phase_with_elapsed_time_and_none_for_a_short_one(
    fast_plain: None,
) -> None:
    out = io.StringIO()  # not a terminal: `auto` picks plain lines
    with progress_output("auto", out):
        with track("short phase"):
            pass
        with track("measure model.onnx on local"):
            time.sleep(0.6)
    lines = out.getvalue().splitlines()
    assert not any("short phase" in line for line in lines)
    assert re.fullmatch(r"\[\s*[\d.]+ s\] measure model\.onnx on local: started", lines[0])
    assert re.fullmatch(r"\[\s*[\d.]+ s\] measure model\.onnx on local: done in 0\.\d s", lines[1])
    assert len(lines) == 2


def test_plain_heartbeat_carries_count_eta_and_fields_at_a_bounded_rate(fast_plain: None) -> None:
    out = io.StringIO()
    with progress_output("plain", out), track("fine-tune epoch 1/1", total=100) as step:
        for _ in range(100):
            time.sleep(0.012)
            step(1, loss=0.25)
    lines = out.getvalue().splitlines()
    beats = [line for line in lines if "ETA" in line]
    assert beats and all(
        re.search(r"\d+/100, [\d.]+ s elapsed, ETA [\d.]+ s, loss 0\.25", b) for b in beats
    )
    # 1.2 s of work: one announce, at most a beat per 0.5 s, one final line.
    assert len(lines) <= 5 and lines[-1].endswith("(loss 0.25)") and "done in 1." in lines[-1]


def test_a_failing_phase_says_stopped(fast_plain: None) -> None:
    out = io.StringIO()
    with (
        pytest.raises(KeyboardInterrupt),
        progress_output("plain", out),
        track("search (latency) on local"),
    ):
        time.sleep(0.3)
        raise KeyboardInterrupt
    assert "search (latency) on local: stopped in" in out.getvalue()


def test_rich_bars_on_a_terminal_show_no_count_for_a_phase_of_unknown_length() -> None:
    out = _Tty()
    with progress_output("auto", out):
        renderer = _active.get()
        assert isinstance(renderer, progress_mod.RichRenderer)
        bars = renderer.progress
        with track("connect to nano-1"), track("export blocks", total=4) as step:
            step(1)
            table = bars.make_tasks_table(bars.tasks)
            lines = ["".join(s.text for s in line) for line in bars.console.render_lines(table)]
    phase = next(line for line in lines if "connect to nano-1" in line)
    bar = next(line for line in lines if "export blocks" in line)
    # No "0/?" count for a phase of unknown length; a count for a task with a total.
    assert not re.search(r"\d+/", phase) and "1/4" in bar


def test_off_renders_nothing_and_rich_markup_in_descriptions_is_printed_as_is(
    fast_plain: None,
) -> None:
    with progress_output("off"):
        assert _active.get() is None
    out = io.StringIO()
    with progress_output("plain", out), track("measure [/x] on local"):
        time.sleep(0.3)
    assert "measure [/x] on local: done" in out.getvalue()


def test_a_phase_without_steps_still_gets_heartbeats(fast_plain: None) -> None:
    out = io.StringIO()
    with progress_output("plain", out), track("build the TensorRT engine on nano-1"):
        time.sleep(1.3)
    lines = out.getvalue().splitlines()
    beats = [line for line in lines if line.endswith("s elapsed")]
    assert lines[0].endswith("started") and lines[-1].split(": ")[-1].startswith("done in 1.")
    assert 1 <= len(beats) <= 3
