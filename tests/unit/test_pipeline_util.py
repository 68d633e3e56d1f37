"""Run directories and output checks: nothing is created before the work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeprune._files import check_writable
from edgeprune.errors import UsageError
from edgeprune.pipeline._util import RunDir
from edgeprune.pipeline.report import csv_cell


def test_check_writable_accepts_new_paths_and_creates_nothing(tmp_path: Path) -> None:
    check_writable(tmp_path / "a" / "b" / "m.pt")
    check_writable(tmp_path / "run", directory=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "directory", "needle"),
    [
        (lambda t: t / "file" / "m.pt", False, "is not a directory"),
        (lambda t: t / "file", True, "exists and is not a directory"),
        (lambda t: t / "dir", False, "is a directory"),
        (lambda t: Path("/proc/edgeprune-test/m.pt"), False, "is not writable"),
    ],
)
def test_check_writable_refuses(tmp_path: Path, make, directory: bool, needle: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match=needle):
        check_writable(make(tmp_path), directory=directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


def test_a_run_directory_appears_with_its_first_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run", "fp")
    assert not run.partial.exists()
    run.mark("step", 1)
    assert run.partial.is_dir() and RunDir(tmp_path / "run", "fp").done("step") == 1


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+x", "'+x"),
        ("-x", "'-x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("resnet20 l1", "resnet20 l1"),
        (-0.5, -0.5),
        (None, None),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_escaped(value, cell) -> None:
    assert csv_cell(value) == cell
