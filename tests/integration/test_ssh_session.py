"""The session agent on real sshd and dropbear servers: one exec channel per session, faults
(sshd killed mid-request, a passed deadline, a busy board, no SFTP), and the per-command path
kept beside it."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sshfarm import FAST, FarmDeviceConfig, agent_pids, alive, needs_root, needs_sshd

from edgeprune.bench import Store, measure
from edgeprune.device import DeviceSession, Inventory
from edgeprune.errors import DeviceBusyError, DeviceError, RemoteTimeoutError
from edgeprune.export import sha256_file
from edgeprune.pipeline.deploy import DeployConfig, deploy
from edgeprune.pipeline.results import DeployResult

pytestmark = [pytest.mark.integration, needs_sshd]

MODES = ["session", "command"]
CFG = DeployConfig(bench=replace(FAST, warmup_seconds=0.05, max_repeats=1))


def _set(name: str, **changes: object) -> None:
    inv = Inventory.load()
    inv.add(replace(inv.get(name), **changes), replace_existing=True)  # type: ignore[arg-type]
    inv.save()


def _session(name: str = "dev0", **kw: object) -> DeviceSession:
    inv = Inventory.load()
    return DeviceSession(inv.get(name), inventory=inv, **kw)  # type: ignore[arg-type]


def test_a_session_pays_one_shell_start_up_for_many_requests(farm_factory, small_onnx) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0", shell_startup_s=0.25))
    with _session() as dev:
        sha = sha256_file(small_onnx)
        first = measure(dev, small_onnx, FAST)
        second = measure(dev, small_onnx, FAST)
        for _ in range(5):
            dev.transport.run(["true"])
        trips = dev.round_trips()
    assert trips["channels"] == 1 and trips["requests"] >= 9
    # The same agent process answered every request of the session.
    assert first.context["command"] == second.context["command"]
    assert "session" in first.context["command"]
    assert first.context["artifact_sent"] and not second.context["artifact_sent"]
    assert (farm.devices["dev0"].workdir / "artifacts" / f"{sha}.onnx").is_file()
    # The per-command path pays a shell start-up (here 250 ms) on every command instead.
    _set("dev0", agent_mode="command")
    with _session() as dev:
        measure(dev, small_onnx, FAST)
        assert dev.round_trips()["channels"] >= 4


@pytest.mark.parametrize("mode", MODES)
def test_a_passed_deadline_stops_the_request_and_frees_the_board(farm, mode: str) -> None:
    _set("dev0", agent_mode=mode)
    work = farm.devices["dev0"].workdir
    t0 = time.monotonic()
    with _session() as dev, pytest.raises(RemoteTimeoutError, match="deadline"):
        dev.call("exec", 2, argv=["sleep", "60"], limit_s=120)
    assert time.monotonic() - t0 < 20
    deadline = time.monotonic() + 10
    while agent_pids(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert agent_pids(work) == []  # the agent (and its sleep) stopped on the device
    with _session() as dev:  # the board lock went with it
        assert dev.info["arch"]


@pytest.mark.parametrize("mode", MODES)
def test_sshd_killed_mid_request_frees_the_board(farm, mode: str, tmp_path: Path) -> None:
    _set("dev0", agent_mode=mode)
    work = farm.devices["dev0"].workdir
    pidfile = tmp_path / "pid"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with _session() as dev:
                argv = ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"]
                dev.call("exec", 90, argv=argv, limit_s=90)
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and th.is_alive(), errors
        time.sleep(0.05)
    child = int(pidfile.read_text())
    farm.kill("dev0")
    th.join(30)
    assert not th.is_alive() and len(errors) == 1 and isinstance(errors[0], DeviceError)
    assert "lost the connection to dev0" in str(errors[0])
    deadline = time.monotonic() + 10
    while (alive(child) or agent_pids(work)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child) and agent_pids(work) == []  # everything it ran stopped with the link
    farm.restart("dev0")
    with _session() as dev:  # and the board is free again
        assert dev.info["arch"]


@pytest.mark.parametrize("mode", MODES)
def test_one_board_under_two_names_is_never_measured_twice_at_once(
    farm, small_onnx, mode: str, tmp_path: Path
) -> None:
    # dev0b reaches dev0's board with another workdir (another devices.yaml entry).
    inv = Inventory.load()
    inv.add(replace(inv.get("dev0"), name="dev0b", workdir=str(tmp_path / "b"), agent_mode=mode))
    inv.add(replace(inv.get("dev0"), agent_mode=mode), replace_existing=True)
    inv.save()
    long = replace(CFG, bench=replace(CFG.bench, min_seconds=3, min_runs=10))
    results: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            results[name] = deploy(str(small_onnx), name, long, wait_s=120)
        except BaseException as e:
            results[name] = e

    threads = [threading.Thread(target=run, args=(n,)) for n in ("dev0", "dev0b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    done = [r for r in results.values() if isinstance(r, DeployResult)]
    assert len(done) == 2, results
    # When each measured, on the board's clock (loopback: this host's).
    windows = sorted(r.measurement.context["device_window"] for r in done)
    assert windows[1][0] >= windows[0][1]  # the second waited for the first: no overlap
    with Store() as store:
        assert store.count() == 2


def test_two_boards_of_the_farm_run_in_parallel(farm_factory, small_onnx) -> None:
    farm_factory(FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"))
    opened = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def hold(name: str) -> None:
        try:
            with _session(name):
                opened.wait()  # both hold their board's lock at the same time
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hold, args=(n,)) for n in ("dev0", "dev1")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(90)
    assert errors == []


@pytest.mark.parametrize("mode", MODES)
def test_busy_board_fails_at_once_or_waits_when_asked(
    farm, mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _set("dev0", agent_mode="session")  # the holder keeps its lock for its whole session
    home = os.environ["EDGEPRUNE_HOME"]
    monkeypatch.setenv("EDGEPRUNE_HOME", str(tmp_path / "other-host"))  # its own host lock
    holder = _session(lock=True)
    holder.__enter__()
    monkeypatch.setenv("EDGEPRUNE_HOME", home)
    _set("dev0", agent_mode=mode)
    waits: list[str] = []
    try:
        t0 = time.monotonic()
        # Another host's session (no shared host lock): the board's own lock refuses it at once.
        with pytest.raises(DeviceBusyError) as e, _session(lock=True) as _:
            pass
        assert time.monotonic() - t0 < 15
        assert "pid" in e.value.message and "entry dev0" in e.value.message
        threading.Timer(3.0, holder.close).start()
        t0 = time.monotonic()
        spec = Inventory.load().get("dev0")
        with DeviceSession(spec, lock=True, wait_s=60, on_wait=waits.append) as dev:
            waited = time.monotonic() - t0
            assert dev.info["arch"]
    finally:
        holder.close()
    assert waited >= 2.0 and waits and "entry dev0" in waits[0]


@needs_root
@pytest.mark.parametrize("mode", MODES)
def test_deploy_to_dropbear_without_sftp(farm_factory, small_onnx, mode: str) -> None:
    farm = farm_factory(FarmDeviceConfig("db0", server="dropbear", sftp=False))
    _set("db0", agent_mode=mode)
    res = deploy(str(small_onnx), "db0", CFG)
    assert res.sent and res.parity["ok"] and res.measurement.stats.n >= 20
    assert sha256_file(res.remote_path) == res.artifact.sha256
    work = farm.devices["db0"].workdir
    assert not [p for p in work.rglob("*") if ".part" in p.name]
    with _session("db0") as dev:
        assert dev.transport.run(["echo", "ok"]).stdout == "ok\n"
        assert "sftp" not in " ".join(dev.info.get("runtimes", {}))
        if mode == "command":  # no sftp subsystem: files went over the exec channel
            assert dev.transport.sftp_available() is False  # type: ignore[attr-defined]
