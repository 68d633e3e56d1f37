"""What `farm run` shows while it works: variants being made, jobs done, elapsed time."""

from __future__ import annotations

import io
import time

from rich.console import Console

from edgeprune.cli import farm_cmds


def snapshot(done_now: int = 0, pending: int = 3) -> dict:
    """The shape `_Scheduler.snapshot` writes to status.json."""
    return {
        "sweep": "r20", "state": "running", "started_at": time.time() - 55, "jobs_total": 10,
        "done_before": 0, "done_now": done_now, "failed": [], "queued": 10,
        "preps": {"total": 5, "pending": pending, "made_now": 5 - pending},
        "devices": {"dev0": {"profile": "x86-cpu", "state": "idle", "jobs": 0, "problems": [],
                             "current": None}},
    }  # fmt: skip


def test_status_says_variants_are_being_made_instead_of_idle() -> None:
    out = io.StringIO()
    Console(file=out, width=200).print(farm_cmds.status_table(snapshot()))
    text = out.getvalue()
    assert "0/10 jobs" in text and "making variants 2/5" in text and "55 s" in text
    assert "waiting for variants" in text
    out = io.StringIO()
    Console(file=out, width=200).print(farm_cmds.status_table(snapshot(pending=0)))
    assert "making variants" not in out.getvalue() and "waiting" not in out.getvalue()


def test_plain_sweep_lines_print_on_change_at_a_bounded_rate(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(farm_cmds, "console_err", Console(file=out, width=200))
    lines = farm_cmds._PlainSweepLines(every=0.2, heartbeat=60)
    lines(snapshot())
    lines(snapshot())  # nothing changed: no line
    lines(snapshot(pending=2))  # changed, but within `every` of the last line: no line
    time.sleep(0.25)
    lines(snapshot(done_now=1, pending=2))
    printed = out.getvalue().splitlines()
    assert len(printed) == 2
    assert printed[0].startswith("sweep r20: 0/10 jobs, 0 failed, making variants 2/5")
    assert printed[1].startswith("sweep r20: 1/10 jobs, 0 failed, making variants 3/5")
