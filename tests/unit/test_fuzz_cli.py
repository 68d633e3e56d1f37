"""Fuzz the CLI with malformed paths, checkpoints, ONNX files and sweep files (seeded).

Every command that takes a model, a file or an output path gets a random broken input; the
property is the CLI's error contract: no traceback, exit code 0, 1 or 2, and no payload's canary.
The commands run in this process (`edgeprune.cli.main`), so the ~250 cases take seconds, not the
minutes 250 interpreter starts would.
"""

from __future__ import annotations

import contextlib
import io
import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hostile import broken_checkpoints, broken_onnx, code_payloads

from edgeprune import config
from edgeprune.cli import main

SEED = 1010
CASES = 250


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("fuzz")
    rng = random.Random(SEED)
    canary = root / "CANARY"
    a_file = root / "plain.txt"
    a_file.write_text("x")
    (root / "full-dir").mkdir()
    (root / "full-dir" / "f").write_text("x")
    sweeps = root / "sweeps"
    sweeps.mkdir()
    sweep_texts = {
        "empty": "",
        "not-yaml": "name: [unclosed\n",
        "list": "- a\n- b\n",
        "no-models": "name: s\ndevices: [local]\n",
        "bad-name": "name: '../../x'\nmodels: [resnet20]\ndevices: [local]\n",
        "bad-device": "name: s\nmodels: [resnet20]\ndevices: ['-x']\n",
        "bad-model-code": yaml.safe_dump(
            {"name": "s", "models": [{"model": "a.pt", "model_code": 5}], "devices": ["local"]}
        ),
        "unknown-key": "name: s\nmodels: [resnet20]\ndevices: [local]\nshell: rm -rf /\n",
        "binary": "\x00\x01\x02",
    }
    for name, text in sweep_texts.items():
        (sweeps / f"{name}.yaml").write_text(text)
    return {
        "root": root,
        "canary": canary,
        "code": list(code_payloads(root / "code", canary).values()),
        "pt": list(broken_checkpoints(root / "pt", rng).values()),
        "onnx": list(broken_onnx(root / "onnx", rng).values()),
        "sweeps": sorted(sweeps.iterdir()),
        "paths": [
            root / "missing.pt",
            root / "missing.onnx",
            root / "full-dir",
            a_file,
            a_file / "below-a-file.pt",
            Path("/dev/null"),
            root / ("n" * 300 + ".pt"),
            root / "space and [markup] name.pt",
            root / "new\nline.pt",
            root / "ünïcödé.onnx",
            Path("-leading-dash.pt"),
        ],
        "bad_out": [
            Path("/proc/edgeprune-fuzz/out"),
            a_file / "out",
            Path("/dev/null/out"),
            root / ("o" * 300),
        ],
        "bad_out_dir": [root / "full-dir"],
    }


def _case(rng: random.Random, c: dict[str, object], work: Path, i: int) -> list[str]:
    def pick(key: str) -> str:
        return str(rng.choice(c[key]))  # type: ignore[call-overload]

    model = pick(rng.choice(["code", "pt", "pt", "paths"]))
    onnx = pick(rng.choice(["onnx", "onnx", "paths"]))
    out_file = str(work / f"o{i}.onnx")
    a_file = c["root"] / "plain.txt"  # type: ignore[operator]
    out_dir = str(work / f"run{i}")
    templates = [
        ["eval", model, "--data", "digits"],
        ["prune", model, "--ratio", "0.3", "--out", out_dir],
        ["prune", model, "--list-groups"],
        ["export", model, "--out", out_file],
        ["bench", model, "--duration", "0.1"],
        ["bench", onnx, "--duration", "0.1"],
        ["deploy", onnx, "--device", "local", "--duration", "0.1"],
        ["deploy", model, "--device", "local", "--duration", "0.1"],
        ["search", model, "--latency-budget", "0.5x"],
        ["train", model, "--data", "digits", "--epochs", "1", "--out", str(work / f"t{i}.pt")],
        ["lint", onnx, "--profile", "x86-cpu"],
        ["train", "resnet20", "--data", "digits", "--out", pick("bad_out")],
        ["export", "resnet20", "--input-size", "8", "--out", pick("bad_out")],
        ["export", "resnet20", "--input-size", "8", "--out", pick("bad_out_dir")],
        ["prune", "resnet20", "--input-size", "8", "--ratio", "0.3", "--out", pick("bad_out")],
        ["prune", "resnet20", "--input-size", "8", "--ratio", "0.3", "--out", str(a_file)],
        ["search", "resnet20", "--latency-budget", "0.5x", "--out", pick("bad_out") + ".json"],
        ["report", pick("paths"), "--out", out_dir],
        ["report", "--out", pick("bad_out")],
        ["farm", "run", pick(rng.choice(["sweeps", "paths"]))],
        ["farm", "status", pick(rng.choice(["sweeps", "paths"]))],
        ["prune", "resnet20", "--ratio", "0.3", "--ratios-file", pick("paths"), "--out", out_dir],
        ["eval", model, "--data", "digits", "--model-code", rng.choice(_CODE_REFS)],
        ["export", model, "--out", out_file, "--model-kwargs", rng.choice(_KWARGS)],
        ["export", "resnet20", "--input-size", "8", "--out", out_file, "--model-kwargs",
         rng.choice(_BAD_KWARGS)],
        ["profiles", rng.choice(["../../etc/passwd", "-x", "[/x]", "", "nope", "\x1b[31m"])],
    ]  # fmt: skip
    argv = list(rng.choice(templates))
    if rng.random() < 0.3:
        argv.append("--json")
    return argv


_CODE_REFS = ["x", "os:system", "::", "a.py:", "missing.py:build", "..x:y", "pkg.mod:fn", ":f"]
_KWARGS = ["{", "[]", "null", '{"num_classes": 3}', '"str"']
_BAD_KWARGS = [
    '{"num_classes": "x"}',
    '{"num_classes": -1}',
    '{"in_channels": 0}',
    '{"nope": 1}',
    '{"num_classes": 1e999}',
    '{"num_classes": null}',
    "[1]",
]


def _run(argv: list[str]) -> tuple[int | None, str, BaseException | None]:
    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    exc: BaseException | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as e:  # anything escaping main would be a traceback
            exc = e
    return code, out.getvalue() + err.getvalue(), exc


@pytest.mark.timeout(900)
def test_cli_fuzz_no_traceback_exit_0_1_2_no_payload_runs(
    corpus: dict[str, object], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    canary = corpus["canary"]
    assert isinstance(canary, Path)
    failures: list[str] = []
    commands: Counter[str] = Counter()
    for i in range(CASES):
        argv = _case(rng, corpus, tmp_path, i)
        commands[" ".join(argv[:2]) if argv[0] == "farm" else argv[0]] += 1
        code, text, exc = _run(argv)
        if exc is not None:
            failures.append(f"{argv}: raised {type(exc).__name__}: {exc}")
        elif code not in (0, 1, 2):
            failures.append(f"{argv}: exit {code}: {text[-300:]}")
        elif "Traceback" in text:
            failures.append(f"{argv}: traceback in output: {text[-300:]}")
        if canary.exists():
            failures.append(f"{argv}: a payload ran (canary written)")
            canary.unlink()
    assert not failures, "\n".join(failures[:20])
    # Every command family was exercised; the store survived every case.
    assert {"eval", "prune", "export", "bench", "deploy", "search", "train", "lint"} <= set(
        commands
    )
    assert {"report", "farm run", "farm status"} <= set(commands)
    # No broken input got as far as a device: nothing was uploaded, nothing measured.
    assert not (config.home_dir() / "devices").exists()
    db = config.store_path()
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
