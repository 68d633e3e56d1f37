"""The on-device agent as a real subprocess: Python 3.6 compatibility, verbs, errors, the lock."""

import fcntl
import json
import os
import shutil
import subprocess
import sys

import pytest

from edgeprune.device import agent_source


def _call(tmp_path, request: dict, python: str = sys.executable) -> tuple[int, dict]:
    req = tmp_path / "req.json"
    req.write_text(json.dumps(request))
    proc = subprocess.run(
        [python, str(agent_source()), str(req)], capture_output=True, text=True, timeout=120
    )
    return proc.returncode, json.loads(proc.stdout)


def test_agent_is_python36_compatible() -> None:
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    proc = subprocess.run(
        [vermin, "-q", "--no-tips", "--violations", "-t=3.6-", str(agent_source())],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_agent_uses_only_the_stdlib_at_import() -> None:
    src = agent_source().read_text()
    top_imports = [
        line.split()[1] for line in src.splitlines() if line.startswith(("import ", "from "))
    ]
    assert set(top_imports) <= set(sys.stdlib_module_names)


def test_info(tmp_path) -> None:
    code, reply = _call(tmp_path, {"verb": "info"})
    assert code == 0 and reply["ok"]
    info = reply["result"]
    assert info["arch"] == "x86_64" or info["arch"] == "aarch64"
    assert info["runtimes"]["onnxruntime"]["version"]
    assert info["cpu"]["logical"] >= 1 and info["disk_free_bytes"] > 0
    assert set(info["state"]) == {"time", "clocks", "temperatures", "throttle"}


def test_bench_and_outputs(tmp_path) -> None:
    import numpy as np
    import torch

    from edgeprune.checkpoint import resolve_model
    from edgeprune.export import onnx_from_torch

    b = resolve_model("resnet20", {"in_channels": 1}, input_size=16)
    onnx_from_torch(b.model, b.input_shape, tmp_path / "m.onnx", opset=13)
    x = np.random.RandomState(0).standard_normal((1, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    code, reply = _call(
        tmp_path,
        {
            "verb": "bench",
            "model": str(tmp_path / "m.onnx"),
            "threads": 1,
            "warmup_runs": 2,
            "warmup_seconds": 0,
            "min_runs": 20,
            "min_seconds": 0.1,
            "inputs_npy": str(tmp_path / "in.npy"),
            "outputs_npy": str(tmp_path / "out.npy"),
        },
    )
    assert code == 0, reply
    r = reply["result"]
    assert len(r["times_ms"]) >= 20 and all(t > 0 for t in r["times_ms"])
    assert r["warmup_runs"] >= 2 and r["threads"] == 1
    out = np.load(tmp_path / "out.npy", allow_pickle=False)
    with torch.no_grad():
        ref = b.model(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_errors_are_json(tmp_path) -> None:
    code, reply = _call(tmp_path, {"verb": "explode"})
    assert code == 3 and not reply["ok"] and "unknown verb" in reply["error"]["message"]
    code, reply = _call(tmp_path, {"verb": "bench", "model": str(tmp_path / "missing.onnx")})
    assert code == 3 and "not found" in reply["error"]["message"]


def test_busy_device_is_reported(tmp_path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    fd = os.open(tmp_path / "bench.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        code, reply = _call(
            tmp_path, {"verb": "bench", "model": str(tmp_path / "m.onnx"), "workdir": str(tmp_path)}
        )
    finally:
        os.close(fd)
    assert code == 75 and reply["error"]["type"] == "busy"


def _python36() -> str | None:
    import glob

    candidates = [
        shutil.which("python3.6"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6"))),
    ]
    for c in candidates:
        if c and subprocess.run([c, "--version"], capture_output=True).returncode == 0:
            return c
    return None


PY36 = _python36()


@pytest.mark.skipif(
    PY36 is None, reason="no working Python 3.6 here; vermin still checks the syntax"
)
def test_runs_under_python36(tmp_path) -> None:
    code, reply = _call(tmp_path, {"verb": "info"}, python=PY36)
    assert code == 0 and reply["ok"]
    assert reply["result"]["python"].startswith("3.6")
    code, reply = _call(
        tmp_path, {"verb": "bench", "model": str(tmp_path / "missing.onnx")}, python=PY36
    )
    assert code == 3 and "not found" in reply["error"]["message"]
