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
    text = (out / "latency_search.md").read_text()
    assert "| local | 0.6x | latency |" in text
    assert len((out / "results.jsonl").read_text().splitlines()) == 3  # latency, flops, tp


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


def test_zoo_smoke(tmp_path: Path) -> None:
    # --smoke needs no kuangliu checkout: edgeprune's resnet20 and the in-house shuffle model.
    out = tmp_path / "zoo"
    _run([str(BENCH / "zoo.py"), "--smoke", "--out", str(out)], tmp_path)
    rows = [json.loads(line) for line in (out / "zoo.jsonl").read_text().splitlines()]
    assert {(r["model"], r["criterion"]) for r in rows} == {
        (m, c) for m in ("resnet20", "SplitShuffleNet") for c in ("l1", "fss")
    }
    for r in rows:
        assert r["prunes"] and r["exports"] and r["lint_tx2"]
        assert r["base_ms"] > 0 and r["pruned_ms"] > 0
        assert r["speedup"] == r["base_ms"] / r["pruned_ms"]
    shuffle = next(r for r in rows if r["model"] == "SplitShuffleNet")
    assert shuffle["refused_groups"] and all(g["reason"] for g in shuffle["refused_groups"])
    text = (out / "zoo.md").read_text()
    assert "| resnet20 | l1 | yes |" in text and "median speed-up" in text
