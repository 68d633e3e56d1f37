"""Measurement context on an SSH device: clocks stored/set/restored (also after errors and
crashes), telemetry logged during a benchmark, state before and after.

The loopback device has no nvpmodel, jetson_clocks or tegrastats, so the profile points at small
stand-ins that log how they were called; tegrastats' stand-in prints a line in the real format
(Jetson Nano, JetPack 4.6).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sshfarm import FAST, needs_root, needs_sshd

from edgeprune.bench import Store
from edgeprune.device import DeviceSession, Inventory
from edgeprune.pipeline.flows import lease_and_measure

pytestmark = [pytest.mark.integration, needs_sshd, needs_root]

TEGRASTATS_LINE = (
    "RAM 1578/3964MB (lfb 227x4MB) SWAP 0/1982MB (cached 0MB) CPU [9%@1479,6%@1479,5%@1479,"
    "4%@1479] EMC_FREQ 0% GR3D_FREQ 0% PLL@25.5C CPU@28C PMIC@100C GPU@27.5C AO@35.5C "
    "thermal@27.75C POM_5V_IN 2056/2056 POM_5V_GPU 0/0 POM_5V_CPU 370/370"
)


@pytest.fixture
def tools(farm, tmp_path) -> Path:
    """Stand-in board tools + a profile `clocky` using them; dev0 uses that profile."""
    d = tmp_path / "tools"
    d.mkdir()
    log = d / "calls.log"
    script = '#!/bin/sh\necho "$(basename "$0") $*" >> {log}\n{body}'
    bodies = {
        "nvpmodel": 'if [ "$1" = -q ]; then printf "NV Fan Mode:quiet\\nNV Power Mode: 5W\\n1\\n"; fi',
        "jetson_clocks": "",
        "tegrastats": f'while true; do echo "{TEGRASTATS_LINE}"; sleep 0.1; done',
    }
    for name, body in bodies.items():
        (d / name).write_text(script.format(log=log, body=body) + "\n")
        (d / name).chmod(0o755)
    profile = {
        "name": "clocky",
        "description": "loopback device with Jetson-style clock tools (stand-ins)",
        "arch": "any",
        "os": "Linux",
        "python": "3",
        "runtimes": ["onnxruntime"],
        "max_opset": 18,
        "precisions": ["fp32"],
        "fast_precisions": ["fp32"],
        "channel_multiple": 1,
        "clocks": {
            "power_mode": 0,
            "set_power_mode": [str(d / "nvpmodel"), "-m"],
            "query_power_mode": [str(d / "nvpmodel"), "-q"],
            "store_clocks": [str(d / "jetson_clocks"), "--store"],
            "max_clocks": [str(d / "jetson_clocks")],
            "restore_clocks": [str(d / "jetson_clocks"), "--restore"],
            "telemetry": [str(d / "tegrastats"), "--interval", "100"],
            "governor": "performance",
        },
    }
    Path(os.environ["EDGEPRUNE_CONFIG"], "profiles", "clocky.yaml").write_text(
        yaml.safe_dump(profile)
    )
    inv = Inventory.load()
    inv.add(replace(inv.get("dev0"), profile="clocky"), replace_existing=True)
    inv.save()
    return log


def calls(log: Path) -> list[str]:
    return [c.strip() for c in log.read_text().splitlines() if not c.startswith("tegrastats")]


def test_clocks_are_set_and_restored_even_after_an_error(farm, tools) -> None:
    work = farm.devices["dev0"].workdir
    with (
        pytest.raises(RuntimeError, match="boom"),
        DeviceSession(Inventory.load().get("dev0"), stable_clocks=True) as dev,
    ):
        record = dev.clocks_record
        assert calls(tools) == [
            "nvpmodel -q",
            "jetson_clocks --store",
            "nvpmodel -m 0",
            "jetson_clocks",
        ]
        assert (work / "clocks-restore.json").is_file()  # written before anything changed
        raise RuntimeError("boom")
    assert calls(tools)[4:] == ["jetson_clocks --restore", "nvpmodel -m 1"]
    assert record is not None
    assert record["applied"] == ["store clocks", "power mode 0", "max clocks"]
    assert record["restored"] == ["clocks", "power mode 1"]
    assert "governor: the device exposes no cpufreq governors" in record["skipped"]
    assert not (work / "clocks-restore.json").exists()


def test_a_crashed_session_is_restored_by_the_next_one(farm, tools) -> None:
    work = farm.devices["dev0"].workdir
    dev = DeviceSession(Inventory.load().get("dev0"), stable_clocks=True).__enter__()
    farm.kill("dev0")  # the board's sshd dies: the session cannot restore
    dev.close()
    assert (work / "clocks-restore.json").is_file()
    assert "jetson_clocks --restore" not in calls(tools)
    farm.restart("dev0")
    with DeviceSession(Inventory.load().get("dev0"), stable_clocks=True) as again:
        assert again.clocks_record is not None and again.clocks_record["recovered"]
    assert calls(tools)[4:6] == ["jetson_clocks --restore", "nvpmodel -m 1"]


def test_benchmark_records_telemetry_clocks_and_state(farm, tools, small_onnx) -> None:
    with Store() as store:
        m = lease_and_measure("dev0", small_onnx, FAST, store)
    ctx = m.context
    tele = ctx["telemetry"]
    assert tele["argv"][0].endswith("tegrastats") and tele["lines"] >= 1
    assert tele["log"][0] == TEGRASTATS_LINE
    assert ctx["clocks_control"]["applied"] == ["store clocks", "power mode 0", "max clocks"]
    assert ctx["state_before"]["throttle"] is not None and ctx["state_after"]["time"] > 0
    assert m.valid
    assert calls(tools)[-2:] == ["jetson_clocks --restore", "nvpmodel -m 1"]
