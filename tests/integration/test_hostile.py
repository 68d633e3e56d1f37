"""Hostile and broken input through the real CLI: no code runs that the user did not name, no
traceback, one line naming the problem and the fix, exit 2, nothing half-written, nothing lost.

Payloads touch a canary file if they run (tests/hostile.py). Commands run in this process
(`edgeprune.cli.main`) except where a real process boundary is the point (peak memory).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hostile import (
    broken_onnx,
    code_payloads,
    deflate_bomb,
    onnx_outside,
    tiny_onnx_bytes,
    zoo_checkpoint,
)
from stderr_lines import message_lines

from edgeprune import config
from edgeprune.cli import main

pytestmark = pytest.mark.integration

FACTORY_PAYLOADS = (
    "os-system",
    "subprocess-getoutput",
    "runpy-run-path",
    "factory-file",
    "factory-file-no-sha",
    "factory-relative",
)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one non-empty stderr line, no traceback, containing every needle."""
    lines = message_lines(err)
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def assert_store_ok() -> None:
    db = config.store_path()
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("payloads")
    canary = root / "CANARY"
    return code_payloads(root, canary), canary


# --------------------------------------------------------------------------- code execution

COMMANDS = {
    "export": lambda m, t: ["export", m, "--out", t / "x.onnx"],
    "eval": lambda m, t: ["eval", m, "--data", "digits"],
    "prune-list-groups": lambda m, t: ["prune", m, "--list-groups"],
    "prune": lambda m, t: ["prune", m, "--ratio", "0.3", "--out", t / "run"],
    "bench": lambda m, t: ["bench", m, "--duration", "0.1"],
    "deploy": lambda m, t: ["deploy", m, "--device", "local", "--duration", "0.1"],
    "search": lambda m, t: ["search", m, "--latency-budget", "0.5x"],
    "train": lambda m, t: ["train", m, "--data", "digits", "--epochs", "1", "--out", t / "t.pt"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_checkpoint_payload_runs_in_any_command(
    command: str, payloads: tuple[dict[str, Path], Path], tmp_path: Path, capsys
) -> None:
    files, canary = payloads
    tried = 0
    for name, path in files.items():
        code, out, err = run_cli(capsys, *COMMANDS[command](str(path), tmp_path), "--json")
        tried += 1
        line = assert_one_line_error(code, err)
        payload = json.loads(out)
        assert payload["hint"], line  # names the fix
        if name in FACTORY_PAYLOADS:
            assert payload["error"] == "UntrustedCodeError"
            assert "--model-code" in payload["hint"] and payload["factory"] in line
        assert not canary.exists(), f"{name} ran in {command}"
        assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()
    assert tried == len(files) == 8
    assert not any(tmp_path.iterdir())  # nothing half-written for any payload
    assert_store_ok()


def test_farm_run_refuses_a_checkpoint_factory(
    payloads: tuple[dict[str, Path], Path], tmp_path: Path, capsys
) -> None:
    files, canary = payloads
    sweep = tmp_path / "sweep.yaml"
    models = [str(files[n]) for n in ("os-system", "factory-file", "runpy-run-path")]
    sweep.write_text(
        yaml.safe_dump(
            {"name": "evil", "models": models, "devices": ["local"], "bench": {"min_seconds": 0.1}}
        )
    )
    code, out, _ = run_cli(capsys, "farm", "run", sweep, "--json")
    res = json.loads(out)
    assert code == 1 and len(res["failed"]) == 3 and res["jobs_done"] == 0
    assert all("model_code" in f["hint"] for f in res["failed"])
    assert not canary.exists()
    assert_store_ok()


def test_model_code_allows_only_the_named_and_unchanged_factory(tmp_path: Path, capsys) -> None:
    net = tmp_path / "net.py"
    net.write_text(
        "from torch import nn\n"
        "def build(width=8, num_classes=10, in_channels=1):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),"
        " nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))\n"
    )
    code, _, err = run_cli(
        capsys, "prune", f"{net}:build", "--input-size", "8", "--ratio", "0.25", "--out", "run"
    )
    assert code == 0, err
    ckpt = Path("run/model.pt")
    line = assert_one_line_error(
        *run_cli(capsys, "export", ckpt, "--out", "a.onnx")[::2], f"{net.resolve()}:build"
    )
    assert "--model-code" in line and not Path("a.onnx").exists()
    code, _, err = run_cli(
        capsys, "export", ckpt, "--out", "a.onnx", "--model-code", f"{net}:build"
    )
    assert code == 0 and Path("a.onnx").is_file(), err
    # The same function from a changed copy, another function, a module: refused.
    changed = tmp_path / "changed.py"
    changed.write_text(net.read_text() + "# edited\n")
    for ref, needle in (
        (f"{changed}:build", "is not the factory file"),
        (f"{net}:other", "needs the factory function"),
        ("os:system", "needs the factory function"),
        ("json:build", "needs the factory"),
    ):
        assert_one_line_error(
            *run_cli(capsys, "eval", ckpt, "--data", "digits", "--model-code", ref)[::2], needle
        )
    # A zoo checkpoint needs no code, and MODEL that is not a checkpoint takes no --model-code.
    zoo = zoo_checkpoint(tmp_path / "zoo.pt")
    assert_one_line_error(
        *run_cli(capsys, "export", zoo, "--out", "z.onnx", "--model-code", f"{net}:build")[::2],
        "drop --model-code",
    )
    assert_one_line_error(
        *run_cli(capsys, "export", "resnet20", "--out", "z.onnx", "--model-code", "x.py:f")[::2],
        "not a checkpoint",
    )
    # A sweep names the code per model; the variant id does not depend on it.
    from edgeprune.farm import load_sweep, plan_sweep
    from edgeprune.farm.prepare import make_variant

    spec_file = tmp_path / "s.yaml"
    entry = {"model": str(ckpt.resolve()), "model_code": f"{net}:build"}
    spec_file.write_text(yaml.safe_dump({"name": "s", "models": [entry], "devices": ["local"]}))
    plan = plan_sweep(load_sweep(spec_file))
    (prep,) = plan.preps.values()
    assert make_variant(prep).facts["params_before"] > 0
    entry.pop("model_code")
    spec_file.write_text(yaml.safe_dump({"name": "s", "models": [entry], "devices": ["local"]}))
    assert list(plan_sweep(load_sweep(spec_file)).preps) == [prep.id]


def test_a_factory_file_that_fails_or_a_bad_kwarg_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("def build(:\n")
    assert_one_line_error(
        *run_cli(capsys, "export", f"{bad}:build", "--input-size", "8", "--out", "x.onnx")[::2],
        "SyntaxError",
        "line 1",
    )
    raises = tmp_path / "raises.py"
    raises.write_text("x = 1\nraise RuntimeError('no GPU here')\n")
    assert_one_line_error(
        *run_cli(capsys, "export", f"{raises}:b", "--input-size", "8", "--out", "x.onnx")[::2],
        "line 2",
        "no GPU here",
    )
    assert_one_line_error(
        *run_cli(
            capsys,
            "export",
            "resnet20",
            "--input-size",
            "8",
            "--out",
            "x.onnx",
            "--model-kwargs",
            '{"num_classes":"x"}',
        )[::2],
        "num_classes",
        "--model-kwargs",
    )
    assert not Path("x.onnx").exists()


# --------------------------------------------------------------------------- files to refuse


@pytest.mark.parametrize(
    "case", ["ext-dotdot", "ext-etc-passwd", "ext-absolute", "ext-backslash", "ext-symlink"]
)
def test_onnx_external_data_outside_its_folder_is_refused(
    case: str, tmp_path: Path, capsys
) -> None:
    model = broken_onnx(tmp_path / "files", random.Random(0))[case]
    code, out, _ = run_cli(capsys, "lint", model, "--profile", "x86-cpu", "--json")
    assert code == 1
    findings = json.loads(out)["findings"]
    assert [f["code"] for f in findings if f["level"] == "error"] == ["external-data-outside"]
    for args in (["bench", model, "--duration", "0.1"], ["deploy", model, "--device", "local"]):
        assert_one_line_error(*run_cli(capsys, *args)[::2], "refusing to read or ship it")
    artifacts = config.home_dir() / "devices" / "local" / "artifacts"
    assert not artifacts.exists() or not any(artifacts.iterdir())  # nothing was shipped
    assert_store_ok()


def test_onnx_with_a_side_file_beside_it_is_refused_before_upload(tmp_path: Path, capsys) -> None:
    model = onnx_outside(tmp_path / "m", "weights.bin", tmp_path / "m" / "weights.bin")
    code, out, _ = run_cli(capsys, "lint", model, "--profile", "x86-cpu", "--json")
    assert code == 0 and "external-data" in {f["code"] for f in json.loads(out)["findings"]}
    assert_one_line_error(
        *run_cli(capsys, "bench", model, "--duration", "0.2")[::2],
        "single-file models",
        "--external-data",
    )
    assert not (config.home_dir() / "devices" / "local" / "artifacts").exists()


def _cli_peak_rss(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """Run the CLI in a fresh interpreter; its exit code, stderr and peak RSS in KiB."""
    code = (
        "import resource, sys\n"
        "from edgeprune.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env
    )
    return p.returncode, p.stderr, int(p.stdout.strip().splitlines()[-1])


def test_a_deflate_bomb_is_refused_before_it_inflates(tmp_path: Path) -> None:
    bomb = deflate_bomb(tmp_path / "bomb.pt", 1536 << 20)  # 1.5 GiB of zeros in ~1.5 MB
    assert bomb.stat().st_size < 4 << 20
    code, err, peak_kib = _cli_peak_rss("eval", bomb, "--data", "digits")
    assert_one_line_error(code, err, "decompression bomb")
    # Inflating would take 1.5 GiB; refusing costs what importing torch costs.
    assert peak_kib < 1024 * 1024, peak_kib
    # The size cap is configurable, and a bad setting is one line too.
    stored = zoo_checkpoint(tmp_path / "ok.pt")
    env = {**os.environ, "EDGEPRUNE_MAX_CHECKPOINT_BYTES": "64K"}
    code, err, _ = _cli_peak_rss("eval", stored, "--data", "digits", env=env)
    assert_one_line_error(code, err, "checkpoint limit", "EDGEPRUNE_MAX_CHECKPOINT_BYTES")
    env["EDGEPRUNE_MAX_CHECKPOINT_BYTES"] = "lots"
    code, err, _ = _cli_peak_rss("eval", stored, "--data", "digits", env=env)
    assert_one_line_error(code, err, "is not a size")


def test_report_csv_escapes_formula_labels(tmp_path: Path, capsys) -> None:
    from edgeprune.bench import BenchConfig, Measurement, Store
    from edgeprune.pipeline.flows import bench_model

    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_onnx_bytes()[0])
    cfg = BenchConfig(min_seconds=0.05, min_runs=3, warmup_runs=1, warmup_seconds=0.0)
    measured = bench_model(str(model), "local", cfg, label="ok")
    labels = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    with Store() as store:  # the same measurement under labels a spreadsheet would run
        m = store.get(measured.measurement.id)
        assert m is not None
        for label in labels:
            store.add(Measurement.from_dict({**m.to_dict(raw=True), "label": label}))
    code, _, err = run_cli(capsys, "report", "--out", tmp_path / "rep")
    assert code == 0, err
    with (tmp_path / "rep" / "report.csv").open(newline="") as f:
        cells = {row["label"] for row in csv.DictReader(f)}
    assert cells == {"ok", *("'" + lb for lb in labels)}
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())["rows"]
    assert {r["label"] for r in rows} == {"ok", *labels}  # the JSON keeps the text as it is


# --------------------------------------------------------------------------- broken input


def test_broken_files_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    text = tmp_path / "text.pt"
    text.write_text("hello\n")
    empty = tmp_path / "empty.pt"
    empty.touch()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x0a\xff\xff\xffnot onnx" * 8)
    cases = [
        (["eval", text, "--data", "digits"], "not a PyTorch checkpoint"),
        (["export", text, "--out", "x.onnx"], "not a PyTorch checkpoint"),
        (["eval", empty, "--data", "digits"], "is empty"),
        (["prune", empty, "--ratio", "0.5", "--out", "r"], "is empty"),
        (["bench", garbage], "not a readable ONNX model"),
        (["deploy", garbage, "--device", "local"], "not a readable ONNX model"),
    ]
    for args, needle in cases:
        assert_one_line_error(*run_cli(capsys, *args)[::2], needle)
    assert sorted(p.name for p in Path.cwd().iterdir()) == []


def test_unwritable_out_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    bad = a_file / "sub"
    # The dataset does not exist: an --out error shows that --out was checked first.
    cases = [
        ["train", "resnet20", "--data", "cifar11", "--out", bad / "m.pt"],
        ["prune", "resnet20", "--data", "cifar11", "--ratio", "0.5", "--out", bad],
        ["export", "resnet20", "--data", "cifar11", "--out", bad / "m.onnx"],
        ["search", "resnet20", "--data", "cifar11", "--latency-budget", "0.5x", "--out", bad / "p.json"],
        ["report", "--out", bad],
        ["train", "resnet20", "--data", "cifar11", "--out", "/proc/edgeprune/m.pt"],
        ["prune", "resnet20", "--data", "cifar11", "--ratio", "0.5", "--out", a_file],
    ]  # fmt: skip
    for args in cases:
        line = assert_one_line_error(*run_cli(capsys, *args)[::2], "--out")
        assert "cifar11" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_usage_error_leaves_no_partial_run_directory(capsys) -> None:
    assert_one_line_error(
        *run_cli(
            capsys, "prune", "resnet20", "--input-size", "8", "--criterion", "hrank",
            "--ratio", "0.5", "--out", "run",
        )[::2],
        "needs --data",
    )  # fmt: skip
    assert sorted(p.name for p in Path.cwd().iterdir()) == []


def test_long_messages_are_whole() -> None:
    from edgeprune.errors import one_line

    text = (
        "Weights only load failed. This file can still be loaded, to do so you have two options, "
        "do those steps only if you trust the source of the checkpoint. If you want to ..."
    )
    assert one_line(text, 120) == "Weights only load failed."
    cut = one_line("word " * 50, 60)
    assert cut.endswith("word…") and len(cut) <= 61
    assert one_line(ValueError("")) == "ValueError"
    assert one_line("\n\n  second line first\nthird") == "second line first"


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """EDGEPRUNE_HOME on a real 4 MiB tmpfs (skipped where this user may not mount)."""
    mnt = tmp_path / "home"
    mnt.mkdir()
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True
    )
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode().strip()}")
    monkeypatch.setenv("EDGEPRUNE_HOME", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave_kib: int) -> Path:
    filler = mnt / "filler"
    free = shutil.disk_usage(mnt).free
    with filler.open("wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


def test_a_full_disk_keeps_the_measurement_and_says_how_to_retry(
    tiny_home: Path, tmp_path: Path, capsys
) -> None:
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_onnx_bytes()[0])
    code, _, err = run_cli(capsys, "bench", model, "--duration", "0.2")
    assert code == 0, err
    filler = _fill(tiny_home, leave_kib=40)
    code, out, err = run_cli(capsys, "bench", model, "--duration", "2", "--json")
    line = assert_one_line_error(code, err, "could not store the measurement", "free space")
    recovery = Path(json.loads(out)["recovery_file"])
    saved = json.loads(recovery.read_text())["measurement"]
    assert recovery.name in line and len(saved["raw_ms"]) == saved["stats"]["n"] > 0
    assert_store_ok()
    # A checkpoint written onto the full disk is one line too, and leaves no part file.
    code, _, err = run_cli(
        capsys, "export", "resnet20", "--input-size", "8", "--out", tiny_home / "x.onnx"
    )
    assert_one_line_error(code, err, "No space left on device", "free space")
    assert sorted(p.name for p in tiny_home.iterdir() if p.name.startswith(".")) == []
    # Retry as the message says: free space; the next command adds the saved measurement.
    filler.unlink()
    code, out, err = run_cli(capsys, "bench", model, "--duration", "2", "--reuse", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["stats"]["n"] == saved["stats"]["n"] and res["context"] == saved["context"]
    assert not recovery.exists()
    assert_store_ok()


def test_a_full_database_saves_the_measurement_to_a_recovery_file(tmp_path: Path) -> None:
    """SQLite's own full condition (max_page_count) on the store's connection: runs everywhere,
    where the tmpfs test above needs permission to mount."""
    from edgeprune.bench import BenchConfig, Measurement, Store
    from edgeprune.errors import StoreError
    from edgeprune.pipeline.flows import bench_model

    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_onnx_bytes()[0])
    first = bench_model(str(model), "local", BenchConfig(min_seconds=0.05, min_runs=3))
    with Store() as store:
        stored = store.get(first.measurement.id)
        assert stored is not None
        m = Measurement.from_dict({**stored.to_dict(raw=True), "job_id": "sweep/1"})
        # More than the capped database takes (a few free pages at most), small enough to write
        # the recovery file in well under a second.
        m.raw_ms = m.raw_ms * max(2, 200_000 // len(m.raw_ms))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match="could not store the measurement") as e:
            store.add(m)
        saved = Path(str(e.value.details["recovery_file"]))
        assert json.loads(saved.read_text())["measurement"]["job_id"] == "sweep/1"
        assert store.count() == 1
    with Store() as store:  # not capped: the saved measurement is added, once
        assert store.recovered == 1 and store.count() == 2
        again = store.by_job("sweep/1")
        assert again is not None and len(again.raw_ms) == len(m.raw_ms)
    assert not saved.exists()
    with Store() as store:
        assert store.recovered == 0 and store.count() == 2
    assert_store_ok()
