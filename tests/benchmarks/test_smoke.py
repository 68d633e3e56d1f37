"""CI runs a tiny smoke run of every benchmark script: each must finish and write its table.

The full runs (and their numbers) are the scripts' own business; see benchmarks/results/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_criteria_compare_smoke(tmp_path: Path) -> None:
    out = tmp_path / "criteria"
    _run([str(BENCH / "criteria_compare.py"), "--smoke", "--out", str(out)], tmp_path)
    text = (out / "criteria.md").read_text()
    assert "| 50% | qsfm |" in text and "Baseline accuracy" in text
    assert len((out / "results.jsonl").read_text().splitlines()) == 4  # base + 3 criteria


def test_criteria_cost_smoke(tmp_path: Path) -> None:
    out = tmp_path / "cost"
    _run([str(BENCH / "criteria_cost.py"), "--smoke", "--out", str(out)], tmp_path)
    rows = (out / "cost.jsonl").read_text().splitlines()
    assert len(rows) == 3 and "peak RSS" in (out / "cost.md").read_text()


def test_latency_search_smoke(tmp_path: Path) -> None:
    out = tmp_path / "latency"
    _run(
        [
            str(BENCH / "latency_search.py"),
            "--smoke",
            "--out",
            str(out),
            "--ckpt-dir",
            str(tmp_path / "ckpt"),
        ],
        tmp_path,
    )
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["flops", "netadapt", "search", "tp"]
    for r in rows:
        # Each method's pick was measured within the budget it was given, or it says it found none.
        assert r.get("infeasible") or r["measured_ms"] <= r["budget_ms"], r
    search = next(r for r in rows if r["method"] == "search")
    if not search.get("infeasible"):
        assert search["allocation"]["ranked_by"] == "proxy accuracy"
        assert 0.0 <= search["acc_ft"] <= 1.0
    text = (out / "latency_search.md").read_text()
    assert "## resnet20" in text and "| local | 0.6x | search |" in text


def test_device_overhead_smoke(tmp_path: Path) -> None:
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs openssh-server (make sysdeps installs it)")
    out = tmp_path / "overhead.md"
    _run([str(BENCH / "device_overhead.py"), "--smoke", "--out", str(out)], tmp_path)
    assert "deploy" in out.read_text().lower()


def test_farm_sweep_smoke(tmp_path: Path) -> None:
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs openssh-server (make sysdeps installs it)")
    # The Ray engine has its own test against a real head (tests/integration/test_ray_farm.py).
    out = tmp_path / "farm.md"
    _run(
        [str(BENCH / "farm_sweep.py"), "--smoke", "--engines", "threads", "--out", str(out)],
        tmp_path,
    )
    assert out.read_text().count("|") > 10
