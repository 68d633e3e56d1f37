"""The CLI end to end on real data (digits: small enough for CI), plus every documented bad input."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from stderr_lines import message_lines

from edgeprune.cli import main

pytestmark = pytest.mark.integration


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed console script in a real process."""
    exe = Path(sys.executable).with_name("edgeprune")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("trained")
    ckpt = d / "r20.pt"
    p = cli(
        "train",
        "resnet20",
        "--data",
        "digits",
        "--epochs",
        "4",
        "--lr",
        "0.05",
        "--out",
        str(ckpt),
        "--json",
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["epochs"] == 4 and res["accuracy"] > 0.5
    return ckpt


def test_train_is_resumable_and_idempotent(trained: Path) -> None:
    p = cli(
        "train",
        "resnet20",
        "--data",
        "digits",
        "--epochs",
        "4",
        "--lr",
        "0.05",
        "--out",
        str(trained),
        "--json",
    )
    assert p.returncode == 0 and json.loads(p.stdout)["reused"] is True
    p = cli("train", "resnet32", "--data", "digits", "--epochs", "1", "--out", str(trained))
    assert p.returncode == 2 and "--force" in p.stderr


def test_resume_after_interruption(tmp_path: Path) -> None:
    from edgeprune.checkpoint import read_checkpoint
    from edgeprune.pipeline.flows import train_checkpoint
    from edgeprune.train import TrainConfig

    out = tmp_path / "r.pt"
    full = train_checkpoint(
        "resnet20", "digits", TrainConfig(epochs=2, lr=0.05), tmp_path / "full.pt"
    )
    # Simulate a crash after epoch 1: keep the epoch-1 checkpoint only.
    calls = []

    class Crash(Exception):
        pass

    import edgeprune.pipeline.flows as flows

    real = flows.save_checkpoint

    def crash_after_first(bundle, path, train_state=None):
        real(bundle, path, train_state)
        calls.append(1)
        if train_state and train_state.get("epoch") == 1 and "final_accuracy" not in train_state:
            raise Crash

    flows.save_checkpoint = crash_after_first
    try:
        with pytest.raises(Crash):
            train_checkpoint("resnet20", "digits", TrainConfig(epochs=2, lr=0.05), out)
    finally:
        flows.save_checkpoint = real
    assert read_checkpoint(out)["train"]["epoch"] == 1
    resumed = train_checkpoint("resnet20", "digits", TrainConfig(epochs=2, lr=0.05), out)
    assert resumed.epochs == 2 and not resumed.reused
    # Same data order and state: the resumed run ends where the uninterrupted one did.
    assert resumed.accuracy == pytest.approx(full.accuracy, abs=0.02)


def test_eval(trained: Path, capsys) -> None:
    code, out, _ = run_main(capsys, "eval", str(trained), "--data", "digits", "--json")
    assert code == 0 and json.loads(out)["samples"] == 360


def test_prune_run_directory(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = cli(
        "prune",
        str(trained),
        "--data",
        "digits",
        "--criterion",
        "l1",
        "--flops-reduction",
        "0.5",
        "--finetune-epochs",
        "1",
        "--out",
        str(out),
        "--json",
    )
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert sorted(x.name for x in out.iterdir()) == [
        "model.onnx",
        "model.pt",
        "report.html",
        "report.json",
    ]
    on_disk = json.loads((out / "report.json").read_text())
    for key in (
        "criterion",
        "flops_before",
        "flops_after",
        "flops_reduction",
        "params_before",
        "params_after",
        "accuracy_before",
        "accuracy_after",
    ):
        assert key in on_disk, key
    assert abs(rep["flops_reduction"] - 0.5) <= 0.05
    assert rep["export"]["parity_max_abs_diff"] < 1e-4
    assert 0.0 <= rep["accuracy_after"] <= 1.0 and rep["finetune"]["epochs"] == 1
    # The pruned checkpoint rebuilds and evaluates to the reported accuracy.
    p = cli("eval", str(out / "model.pt"), "--data", "digits", "--json")
    assert json.loads(p.stdout)["accuracy"] == pytest.approx(rep["accuracy_after"])
    # A second run into the same directory needs --force.
    p = cli("prune", str(trained), "--flops-reduction", "0.3", "--out", str(out))
    assert p.returncode == 2 and "--force" in p.stderr


def test_prune_zoo_model_without_data_and_export_and_bench(tmp_path: Path, capsys) -> None:
    code, out, err = run_main(
        capsys,
        "prune",
        "resnet20",
        "--input-size",
        "16",
        "--ratio",
        "0.5",
        "--round-to",
        "8",  # the host's default (16 with AVX-512) cannot cut ResNet-20's 16-wide groups
        "--out",
        str(tmp_path / "z"),
        "--json",
    )
    assert code == 0, err
    rep = json.loads(out)
    assert "accuracy_before" not in rep and rep["flops_reduction"] > 0.5
    code, out, _ = run_main(
        capsys,
        "export",
        str(tmp_path / "z" / "model.pt"),
        "--opset",
        "13",
        "--out",
        str(tmp_path / "z13.onnx"),
        "--json",
    )
    assert code == 0 and json.loads(out)["opset"] == 13
    bench = [
        "bench",
        str(tmp_path / "z13.onnx"),
        "--device",
        "local",
        "--duration",
        "0.2",
        "--runs",
        "20",
        "--repeats",
        "1",
        "--json",
    ]
    code, out, err = run_main(capsys, *bench)
    assert code == 0, err
    res = json.loads(out)
    assert res["stats"]["n"] >= 20 and res["context"]["device"] == "local" and res["id"] == 1
    assert "raw_ms" not in res  # per-run times only when asked for
    code, out, err = run_main(capsys, *bench, "--reuse", "--raw")
    assert code == 0, err
    again = json.loads(out)
    assert again["id"] == 1 and len(again["raw_ms"]) == res["stats"]["n"]


def test_listings(capsys) -> None:
    for cmd, key, must in (
        ("models", "models", "resnet56"),
        ("datasets", "datasets", "fashion-mnist"),
        ("criteria", "criteria", "l1"),
    ):
        code, out, _ = run_main(capsys, cmd, "--json")
        assert code == 0 and must in {r["name"] for r in json.loads(out)[key]}


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "truncated",
        "malicious",
        "unknown_model",
        "unknown_dataset",
        "ratio_range",
        "shape_mismatch",
        "two_targets",
        "bad_kwargs",
    ],
)
def test_bad_inputs_fail_with_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys, trained: Path
) -> None:
    out_dir = tmp_path / "out"
    marker = tmp_path / "executed"
    if case == "missing":
        args = ["prune", str(tmp_path / "nope.pt"), "--ratio", "0.5", "--out", str(out_dir)]
        expect = "not found"
    elif case == "truncated":
        bad = tmp_path / "t.pt"
        bad.write_bytes(trained.read_bytes()[:5000])
        args = ["eval", str(bad), "--data", "digits"]
        expect = "truncated"
    elif case == "malicious":
        bad = tmp_path / "evil.pt"
        torch.save({"format_version": 1, "state_dict": {}, "boom": _Evil(str(marker))}, bad)
        args = ["prune", str(bad), "--ratio", "0.5", "--out", str(out_dir)]
        expect = "refusing"
    elif case == "unknown_model":
        args = ["prune", "resnet57", "--ratio", "0.5", "--out", str(out_dir)]
        expect = "resnet56"
    elif case == "unknown_dataset":
        args = ["train", "resnet20", "--data", "cifar11", "--out", str(tmp_path / "m.pt")]
        expect = "fashion-mnist"
    elif case == "ratio_range":
        args = ["prune", "resnet20", "--ratio", "1.5", "--out", str(out_dir)]
        expect = "[0, 1)"
    elif case == "shape_mismatch":
        args = [
            "prune",
            str(trained),
            "--data",
            "fashion-mnist",
            "--ratio",
            "0.5",
            "--out",
            str(out_dir),
        ]
        expect = "expects input [1, 8, 8]"
    elif case == "two_targets":
        args = [
            "prune",
            "resnet20",
            "--ratio",
            "0.5",
            "--flops-reduction",
            "0.5",
            "--out",
            str(out_dir),
        ]
        expect = "only one"
    else:
        args = [
            "prune",
            "resnet20",
            "--model-kwargs",
            "{bad",
            "--ratio",
            "0.5",
            "--out",
            str(out_dir),
        ]
        expect = "not valid JSON"
    code, _out, err = run_main(capsys, *args)
    assert code == 2
    lines = message_lines(err)
    assert len(lines) == 1 and expect in err.replace("\n", " "), err
    assert not out_dir.exists() and not (tmp_path / ".out.partial").exists()
    assert not marker.exists()


def test_json_errors_are_machine_readable(capsys) -> None:
    code, out, _ = run_main(capsys, "prune", "resnet57", "--ratio", "0.5", "--out", "x", "--json")
    assert code == 2
    err = json.loads(out)
    assert err["error"] == "UnknownNameError" and "resnet56" in err["choices"]


def test_usage_error_from_click_exits_2(capsys) -> None:
    code, _, err = run_main(capsys, "prune", "resnet20", "--no-such-flag")
    assert code == 2 and "No such option" in err


def test_pickle_of_plain_object_is_refused(tmp_path: Path, capsys) -> None:
    p = tmp_path / "p.pt"
    p.write_bytes(pickle.dumps({"a": 1}))
    code, _, err = run_main(capsys, "eval", str(p), "--data", "digits")
    assert code == 2 and "error" in err
