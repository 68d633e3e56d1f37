"""`edgeprune deploy` to loopback sshd devices: the whole path, leasing, busy devices, crashes."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sshfarm import FAST, FarmDeviceConfig, agent_pids, needs_sshd

from edgeprune.bench import Store
from edgeprune.cli import main
from edgeprune.device import DeviceLock, DeviceSession, Inventory
from edgeprune.errors import DeviceBusyError, DeviceError
from edgeprune.export import sha256_file
from edgeprune.pipeline.deploy import DeployConfig, deploy

pytestmark = [pytest.mark.integration, needs_sshd]

CFG = DeployConfig(bench=replace(FAST, warmup_seconds=0.05, max_repeats=1))


@pytest.mark.parametrize("mode", ["session", "command"])
def test_deploy_zoo_model_end_to_end_through_the_cli(farm, capsys, mode: str) -> None:
    _set("dev0", agent_mode=mode)
    argv = [
        "deploy", "resnet20", "--device", "dev0", "--input-size", "16",
        "--model-kwargs", '{"in_channels": 1}', "--runs", "20", "--duration", "0.1",
        "--warmup", "2", "--repeats", "1", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["device"] == "dev0" and first["profile"] == "loopback"
    assert first["opset"] == 18 and first["sent"] is True
    assert first["parity"]["ok"] and first["parity"]["max_abs_diff"] <= 1e-4
    remote = first["remote_path"]
    assert sha256_file(remote) == first["artifact"]["sha256"]  # the file on the device
    m = first["measurement"]
    assert m["stats"]["n"] >= 20 and m["context"]["device"] == "dev0"
    assert m["context"]["parity"]["ok"] and m["context"]["state_before"] is not None
    assert set(first["phases"]) >= {"export", "lint", "connect", "push", "device_other", "bench"}
    assert first["agent_mode"] == mode and m["context"]["agent_mode"] == mode
    trips = first["device_round_trips"]
    if mode == "session":  # one exec channel (one shell start-up) for the whole session
        assert trips["channels"] == 1
    else:
        assert trips["channels"] >= 5

    assert main(argv) == 0  # rerun: the export is cached here, the artifact there
    second = json.loads(capsys.readouterr().out)
    assert second["sent"] is False and second["artifact"] == first["artifact"]
    with Store() as store:
        ids = [x.id for x in store.query(device="dev0")]
        stored = store.get(second["measurement"]["id"])
    assert ids == [m["id"], second["measurement"]["id"]]
    assert stored is not None and stored.context["artifact_sha256"] == first["artifact"]["sha256"]


def test_profile_name_leases_a_free_device(farm_factory, small_onnx) -> None:
    farm_factory(FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"))
    with DeviceLock("dev0"):  # another run on this host holds dev0
        res = deploy(str(small_onnx), "loopback", CFG)
    assert res.device == "dev1" and res.measurement.context["device"] == "dev1"


def _set(name: str, **changes: object) -> None:
    inv = Inventory.load()
    inv.add(replace(inv.get(name), **changes), replace_existing=True)  # type: ignore[arg-type]
    inv.save()


@pytest.mark.parametrize("mode", ["session", "command"])
def test_busy_device_is_reported_not_shared(farm, small_onnx, mode: str) -> None:
    # Another host benchmarks dev0: its own EDGEPRUNE_HOME (host lock) but the same board.
    _set("dev0", agent_mode=mode)
    spec = Inventory.load().get("dev0")
    work = farm.devices["dev0"].workdir
    errors: list[BaseException] = []
    running = threading.Event()

    def other_host() -> None:
        try:
            with DeviceSession(spec, lock=False) as dev:
                sha = sha256_file(small_onnx)
                running.set()
                dev.call_with_artifact(
                    "bench",
                    60,
                    small_onnx,
                    sha,
                    warmup_runs=1,
                    min_seconds=4,
                    holder={"host": "other-pc", "pid": 7},
                )
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=other_host)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while not (running.is_set() and len(agent_pids(work)) >= 1):
            assert time.monotonic() < deadline, (
                f"the other host's benchmark did not start: {errors}"
            )
            time.sleep(0.05)
        time.sleep(1.0)  # its benchmark holds the board lock now
        with pytest.raises(DeviceBusyError, match="busy") as e:
            deploy(str(small_onnx), "dev0", CFG)
        assert "other-pc" in e.value.message and "pid 7" in e.value.message  # who holds it
        with DeviceLock("dev0"), pytest.raises(DeviceBusyError, match="held by process"):
            deploy(str(small_onnx), "dev0", CFG)
    finally:
        th.join(30)
    assert not errors  # the other host's run was not disturbed
    with Store() as store:
        assert store.count() == 0


@pytest.mark.parametrize("mode", ["session", "command"])
def test_sshd_killed_mid_benchmark_then_rerun_finishes(farm, small_onnx, mode: str) -> None:
    _set("dev0", agent_mode=mode)
    work = farm.devices["dev0"].workdir
    long = replace(CFG, bench=replace(CFG.bench, min_seconds=20, max_seconds=30))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            deploy(str(small_onnx), "dev0", long)
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=run)
    th.start()
    started: dict[int, float] = {}
    deadline = time.monotonic() + 30
    while True:  # the benchmark's agent: the one alive for a while
        now = time.monotonic()
        for pid in agent_pids(work):
            started.setdefault(pid, now)
        if any(now - t > 1.5 and pid in agent_pids(work) for pid, t in started.items()):
            break
        assert now < deadline and th.is_alive(), f"benchmark did not start: {errors}"
        time.sleep(0.05)
    farm.kill("dev0")
    th.join(30)
    assert not th.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DeviceError)
    assert "lost the connection to dev0" in str(errors[0])
    with Store() as store:
        assert store.count() == 0  # nothing half-written
    # The orphaned agent saw its stdin close and stopped: the device is not left busy.
    deadline = time.monotonic() + 10
    while agent_pids(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert agent_pids(work) == []

    farm.restart("dev0")
    res = deploy(str(small_onnx), "dev0", CFG)
    assert res.sent is False  # the artifact pushed before the crash is reused
    with Store() as store:
        assert store.count() == 1 and store.get(res.measurement.id) is not None


def test_trt_without_trtexec_is_a_clear_error(farm, small_onnx, capsys) -> None:
    profile = {
        "name": "loopback-trt",
        "description": "loopback device claiming TensorRT (it has none)",
        "arch": "any",
        "os": "Linux",
        "python": "3.11",
        "runtimes": ["tensorrt", "onnxruntime"],
        "tensorrt": "10.3",
        "max_opset": 18,
        "precisions": ["fp32", "fp16"],
        "fast_precisions": ["fp16"],
        "channel_multiple": 1,
        "trtexec": "/usr/src/tensorrt/bin/trtexec",
    }
    config = os.environ["EDGEPRUNE_CONFIG"]
    Path(config, "profiles", "loopback-trt.yaml").write_text(yaml.safe_dump(profile))
    inv = Inventory.load()
    inv.add(replace(inv.get("dev0"), profile="loopback-trt"), replace_existing=True)
    inv.save()
    argv = [
        "deploy",
        str(small_onnx),
        "--device",
        "dev0",
        "--runtime",
        "trt",
        "--precision",
        "fp16",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "trtexec was not found" in err and "--runtime ort" in err
    assert main(["deploy", str(small_onnx), "--device", "dev0", "--precision", "fp16"]) == 2
    assert "needs --runtime trt" in capsys.readouterr().err
