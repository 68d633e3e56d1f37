"""The on-device agent as a real subprocess: Python 3.6 compatibility, verbs, errors, the board
lock, and the session mode (bootstrap, JSON lines, streamed uploads, deadlines, hangup)."""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from edgeprune.device.agent import agent_source, bootstrap_source


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
        [
            vermin,
            "-q",
            "--no-tips",
            "--violations",
            "-t=3.6-",
            str(agent_source()),
            str(bootstrap_source()),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_agent_uses_only_the_stdlib_at_import() -> None:
    for path in (agent_source(), bootstrap_source()):
        top_imports = [
            line.split()[1]
            for line in path.read_text().splitlines()
            if line.startswith(("import ", "from "))
        ]
        assert set(top_imports) <= set(sys.stdlib_module_names), path


def test_info(tmp_path) -> None:
    code, reply = _call(tmp_path, {"verb": "info"})
    assert code == 0 and reply["ok"]
    info = reply["result"]
    assert info["arch"] == "x86_64" or info["arch"] == "aarch64"
    assert info["runtimes"]["onnxruntime"]["version"]
    assert info["cpu"]["logical"] >= 1 and info["disk_free_bytes"] > 0
    assert set(info["state"]) == {"time", "clocks", "temperatures", "throttle"}


def _onnx(tmp_path):
    from edgeprune.checkpoint import resolve_model
    from edgeprune.export import onnx_from_torch

    b = resolve_model("resnet20", {"in_channels": 1}, input_size=16)
    onnx_from_torch(b.model, b.input_shape, tmp_path / "m.onnx", opset=13)
    return b.model, tmp_path / "m.onnx"


def test_bench_with_parity_in_one_request(tmp_path) -> None:
    import numpy as np
    import torch

    from edgeprune.device.agent import npy_b64, npy_from_b64

    model, onnx = _onnx(tmp_path)
    x = np.random.RandomState(0).standard_normal((1, 1, 16, 16)).astype(np.float32)
    code, reply = _call(
        tmp_path,
        {
            "verb": "bench",
            "model": str(onnx),
            "threads": 1,
            "warmup_runs": 2,
            "warmup_seconds": 0,
            "min_runs": 20,
            "min_seconds": 0.1,
            "parity_inputs_b64": npy_b64(x),
        },
    )
    assert code == 0, reply
    r = reply["result"]
    assert len(r["times_ms"]) >= 20 and all(t > 0 for t in r["times_ms"])
    assert r["warmup_runs"] >= 2 and r["threads"] == 1
    assert r["bench_seconds"] >= 0.1 and r["load_seconds"] > 0
    out = npy_from_b64(r["parity"]["outputs_b64"])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    assert list(tmp_path.glob("*.npy")) == []  # arrays travel inside the request and the reply


def test_errors_are_json(tmp_path) -> None:
    code, reply = _call(tmp_path, {"verb": "explode"})
    assert code == 3 and not reply["ok"] and "unknown verb" in reply["error"]["message"]
    code, reply = _call(tmp_path, {"verb": "bench", "model": str(tmp_path / "missing.onnx")})
    assert code == 3 and "not found" in reply["error"]["message"]


def _hold_board_lock(board: str, holder: dict) -> int:
    fd = os.open(f"/tmp/edgeprune-board-{board}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    return fd


def test_busy_board_is_reported_with_its_holder(tmp_path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    board = os.environ["EDGEPRUNE_BOARD_ID"]
    fd = _hold_board_lock(board, {"host": "lab-pc", "pid": 4242, "command": "edgeprune search x"})
    try:
        code, reply = _call(
            tmp_path, {"verb": "bench", "model": str(tmp_path / "m.onnx"), "workdir": str(tmp_path)}
        )
    finally:
        os.close(fd)
    assert code == 75 and reply["error"]["type"] == "busy"
    assert reply["error"]["holder"]["host"] == "lab-pc" and reply["error"]["board"] == board
    assert not list(tmp_path.glob("*.lock"))  # the lock belongs to the board, not the workdir


def test_agent_deadline_stops_the_request(tmp_path) -> None:
    t0 = time.monotonic()
    code, reply = _call(
        tmp_path, {"verb": "exec", "argv": ["sleep", "30"], "limit_s": 60, "deadline_s": 1}
    )
    assert time.monotonic() - t0 < 10
    assert code == 124 and reply["error"]["type"] == "deadline"


# --------------------------------------------------------------------------- session mode


class Session:
    """The agent as the host runs it: the bootstrap over one pipe pair, JSON lines both ways."""

    def __init__(self, workdir, python: str = sys.executable, env: dict | None = None) -> None:
        from edgeprune.device.agent import _bootstrap_argv

        self.proc = subprocess.Popen(
            _bootstrap_argv(python, str(workdir), "serve"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
        self.ids = 0
        first = self.read()
        self.sent_agent = bool(first.get("need_agent"))
        if self.sent_agent:
            self.proc.stdin.write(agent_source().read_bytes())
            self.proc.stdin.flush()
            first = self.read()
        self.hello = first["hello"]

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read().decode()
        return json.loads(line)

    def call(self, verb: str, body: bytes | None = None, **req) -> dict:
        self.ids += 1
        req = {"id": self.ids, "verb": verb, **req}
        if body is not None:
            req["stream_bytes"] = len(body)
        self.proc.stdin.write(json.dumps(req).encode() + b"\n" + (body or b""))
        self.proc.stdin.flush()
        reply = self.read()
        assert reply["id"] == self.ids
        if reply.get("stream_bytes"):
            reply["_body"] = self.proc.stdout.read(reply["stream_bytes"])
        return reply

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path / "work")
    yield s
    if s.proc.poll() is None:
        s.close()


def test_session_bootstraps_once_then_reuses_the_agent(tmp_path, session) -> None:
    assert session.sent_agent and session.hello["workdir"] == str(tmp_path / "work")
    agent = tmp_path / "work" / "agent"
    assert [p.read_bytes() for p in agent.iterdir()] == [agent_source().read_bytes()]
    session.close()
    again = Session(tmp_path / "work")
    try:
        assert not again.sent_agent and again.hello["pid"] != session.hello["pid"]
    finally:
        again.close()


def test_session_workdir_tilde_is_expanded_by_the_device(tmp_path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    s = Session("~/dot-edgeprune", env=env)
    try:
        assert s.hello["workdir"] == str(tmp_path / "dot-edgeprune")
    finally:
        s.close()


def test_session_uploads_are_verified_and_atomic(tmp_path, session) -> None:
    import hashlib

    work = tmp_path / "work"
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    target = str(work / "artifacts" / f"{sha}.onnx")
    ok = session.call("upload", body=data, target=target, sha256=sha)
    assert ok["ok"] and ok["result"]["sha256"] == sha
    assert (work / "artifacts" / f"{sha}.onnx").read_bytes() == data
    bad = session.call(
        "upload", body=data, target=str(work / "artifacts" / "x.onnx"), sha256="0" * 64
    )
    assert bad["error"]["type"] == "corrupt" and not (work / "artifacts" / "x.onnx").exists()
    outside = session.call("upload", body=b"x", target=str(tmp_path / "evil"), sha256=None)
    assert outside["error"]["type"] == "write" and not (tmp_path / "evil").exists()
    assert [p.name for p in (work / "artifacts").iterdir()] == [f"{sha}.onnx"]  # no .part left
    have = session.call("have", names=[f"{sha}.onnx", f"{'1' * 64}.onnx"])["result"]
    assert have == {"present": [f"{sha}.onnx"], "missing": [f"{'1' * 64}.onnx"]}
    back = session.call("download", path=target)
    assert back["_body"] == data and back["result"]["sha256"] == sha
    missing = session.call("bench", artifact=f"{'1' * 64}.onnx")
    assert missing["error"]["type"] == "missing_artifact"


def test_session_holds_the_board_lock_until_it_ends(tmp_path, session) -> None:
    opened = session.call("open", lock=True, holder={"host": "h1", "pid": 1, "device": "dev-a"})
    assert opened["ok"] and opened["result"]["locked"] and opened["result"]["info"]["arch"]
    other = Session(tmp_path / "elsewhere")  # another entry (another workdir), the same board
    try:
        busy = other.call("open", lock=True, holder={"host": "h2"})
        assert busy["error"]["type"] == "busy" and busy["error"]["holder"]["device"] == "dev-a"
        assert other.call("info")["ok"]  # facts need no lock
        session.close()  # the connection ends: the kernel drops the lock
        assert other.call("open", lock=True)["result"]["locked"]
    finally:
        other.close()


def test_session_exec_deadline_and_hangup(tmp_path, session) -> None:
    r = session.call("exec", argv=["sh", "-c", "echo out; echo err >&2; exit 3"], limit_s=10)
    assert r["result"]["exit_code"] == 3 and r["result"]["stdout"] == "out\n"
    assert r["result"]["stderr"] == "err\n"
    r = session.call("exec", argv=["sleep", "30"], limit_s=0.5)
    assert r["result"]["timed_out"] and r["result"]["exit_code"] == 124
    pidfile = tmp_path / "child.pid"
    session.ids += 1
    session.proc.stdin.write(
        json.dumps(
            {"id": session.ids, "verb": "exec", "argv": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"],
             "limit_s": 120}
        ).encode() + b"\n"
    )  # fmt: skip
    session.proc.stdin.flush()
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    session.proc.stdin.close()  # the link drops mid-request
    assert session.proc.wait(10) == 129
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)  # what the agent started died with it


def test_session_request_deadline_is_enforced_by_the_agent(tmp_path, session) -> None:
    t0 = time.monotonic()
    r = session.call("exec", argv=["sleep", "30"], limit_s=60, deadline_s=1)
    assert r["error"]["type"] == "deadline" and time.monotonic() - t0 < 10
    assert session.proc.wait(10) == 124  # the agent stopped itself (the lock goes with it)


def test_stale_partial_uploads_are_swept_only_when_old(tmp_path, session) -> None:
    work = tmp_path / "work"
    old = work / "artifacts" / ".abc.onnx.1-2.part"
    new = work / "artifacts" / ".def.onnx.3-4.part"
    old.write_bytes(b"x" * 1000)
    new.write_bytes(b"y" * 10)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    info = session.call("info", stale_after_s=600)["result"]
    assert info["stale_parts"]["files"] == 1 and info["stale_parts"]["bytes"] == 1000
    assert old.exists()  # info only reports
    opened = session.call("open", lock=True, stale_after_s=600)["result"]
    assert opened["swept"]["removed"] == 1 and not old.exists() and new.exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


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
    s = Session(tmp_path / "work36", python=PY36)
    try:
        assert s.sent_agent and s.hello["python"].startswith("3.6")
        assert s.call("open", lock=True)["result"]["locked"]
        r = s.call("exec", argv=["sleep", "10"], limit_s=0.3)
        assert r["result"]["timed_out"]
        data = b"3.6 streams bytes too"
        up = s.call("upload", body=data, target=str(tmp_path / "work36" / "outputs" / "f"))
        assert up["ok"] and (tmp_path / "work36" / "outputs" / "f").read_bytes() == data
    finally:
        s.close()
