"""The built-in `local` device: the same agent and protocol through a subprocess transport."""

import os
import time

import pytest

from edgeprune.bench import BenchConfig, Store, measure
from edgeprune.checkpoint import resolve_model
from edgeprune.device import DeviceLock, DeviceSession, LocalTransport, local_device
from edgeprune.errors import DeviceBusyError, DeviceError, RemoteTimeoutError, UsageError
from edgeprune.export import onnx_from_torch

pytestmark = pytest.mark.integration

FAST = BenchConfig(warmup_runs=2, warmup_seconds=0.05, min_runs=20, min_seconds=0.1, max_repeats=2)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    b = resolve_model("resnet20", {"in_channels": 1}, input_size=16)
    onnx_from_torch(b.model, b.input_shape, d / "m.onnx")
    return d / "m.onnx"


def test_measure_stores_full_context(onnx_file) -> None:
    with Store() as store, DeviceSession(local_device()) as dev:
        m = measure(dev, onnx_file, FAST, store=store, label="t")
        assert m.id is not None and store.count() == 1
    ctx = m.context
    for key in (
        "device",
        "device_id",
        "arch",
        "runtime_version",
        "threads",
        "batch",
        "input_shape",
        "artifact_sha256",
        "agent_sha256",
        "command",
        "state_before",
        "state_after",
        "protocol",
    ):
        assert ctx.get(key) is not None, key
    assert ctx["input_shape"] == [1, 1, 16, 16] and ctx["threads"] == 1
    assert m.stats.n >= 20 and m.stats.min <= m.stats.median <= m.stats.p90 <= m.stats.p99
    assert 1 <= len(m.attempts) <= 2


def test_artifact_is_sent_once(onnx_file) -> None:
    from edgeprune.export import sha256_file

    with DeviceSession(local_device()) as dev:
        path1, sent1 = dev.push_artifact(onnx_file, sha256_file(onnx_file))
        path2, sent2 = dev.push_artifact(onnx_file, sha256_file(onnx_file))
    assert path1 == path2 and sent1 is True and sent2 is False
    assert os.path.isfile(path1)


def test_reuse_needs_the_same_context(onnx_file) -> None:
    with Store() as store, DeviceSession(local_device()) as dev:
        a = measure(dev, onnx_file, FAST, store=store)
        b = measure(dev, onnx_file, FAST, store=store, reuse=True)
        c = measure(
            dev, onnx_file, BenchConfig(**{**FAST.to_dict(), "threads": 2}), store=store, reuse=True
        )
    assert b.id == a.id
    assert c.id != a.id and c.context["threads"] == 2


def test_host_lock_makes_device_busy() -> None:
    with (
        DeviceLock("local"),
        pytest.raises(DeviceBusyError, match="busy"),
        DeviceSession(local_device()),
    ):
        pass


def test_deadline_kills_the_whole_process_group(tmp_path) -> None:
    t = LocalTransport()
    pidfile = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    t0 = time.monotonic()
    with pytest.raises(RemoteTimeoutError):
        t.run(["sh", "-c", script], timeout=1.0)
    assert time.monotonic() - t0 < 10
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not alive(child)


def alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (killed, not yet reaped by init) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_failing_command_carries_details() -> None:
    with pytest.raises(DeviceError) as e:
        LocalTransport().run(["sh", "-c", "echo oops >&2; exit 7"])
    assert e.value.exit_code == 7 and "oops" in (e.value.stderr_tail or "")


def test_session_methods_need_an_open_session() -> None:
    with pytest.raises(UsageError, match="not open"):
        DeviceSession(local_device()).call("info", timeout=5)
