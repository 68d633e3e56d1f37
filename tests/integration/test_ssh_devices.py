"""`edgeprune devices check|provision|clean` and hostile inventory values on real sshd devices."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sshfarm import FarmDeviceConfig, needs_sshd

from edgeprune.cli import main
from edgeprune.device import DeviceSession, Inventory
from edgeprune.device.inventory import DeviceSpec
from edgeprune.errors import DeviceError
from edgeprune.export import sha256_file

pytestmark = [pytest.mark.integration, needs_sshd]

BASE_PYTHON = str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())


def _set(name: str, **changes: object) -> None:
    inv = Inventory.load()
    inv.add(replace(inv.get(name), **changes), replace_existing=True)  # type: ignore[arg-type]
    inv.save()


def _base_has_onnxruntime() -> bool:
    return (
        subprocess.run([BASE_PYTHON, "-c", "import onnxruntime"], capture_output=True).returncode
        == 0
    )


def test_shell_metacharacters_in_workdir_and_python_are_never_executed(farm, tmp_path) -> None:
    marker = tmp_path / "marker"
    evil = f"{tmp_path}/w $(touch {marker}); touch {marker} `touch {marker}`"
    _set("dev0", workdir=evil)
    with DeviceSession(Inventory.load().get("dev0")) as dev:
        assert dev.info["workdir"] == evil
    assert any(Path(evil, "agent").iterdir())  # the literal directory was used
    _set("dev0", python=f"{sys.executable}; touch {marker}")
    with pytest.raises(DeviceError), DeviceSession(Inventory.load().get("dev0")):
        pass
    assert not marker.exists()


def test_check_reports_facts_problems_and_fixes_in_parallel(farm_factory, capsys) -> None:
    if _base_has_onnxruntime():
        pytest.skip("the base python already has onnxruntime")
    farm_factory(FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"))
    _set("dev1", python=BASE_PYTHON)  # a board without onnxruntime
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)  # accepts TCP, never speaks SSH: only check's own deadline ends it
    inv = Inventory.load()
    inv.add(DeviceSpec(name="gone", host="127.0.0.1", port=closed_port, profile="loopback"))
    inv.add(
        DeviceSpec(name="hung", host="127.0.0.1", port=hung.getsockname()[1], connect_timeout=120)
    )
    inv.save()
    try:
        t0 = time.monotonic()
        code = main(
            ["devices", "check", "dev0", "dev1", "gone", "hung", "--timeout", "8", "--json"]
        )
        elapsed = time.monotonic() - t0
    finally:
        hung.close()
    res = {d["device"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    assert code == 1 and list(res) == ["dev0", "dev1", "gone", "hung"]
    assert res["dev0"]["ok"] and res["dev0"]["runtimes"]["onnxruntime"]
    assert res["dev0"]["arch"] and res["dev0"]["python"] and res["dev0"]["disk_free_bytes"] > 0
    assert res["dev1"]["reachable"] and not res["dev1"]["ok"]
    assert {"message": "onnxruntime missing", "fix": "run `edgeprune devices provision dev1`"} in (
        res["dev1"]["problems"]
    )
    assert (
        not res["gone"]["reachable"] and "cannot connect" in res["gone"]["problems"][0]["message"]
    )
    assert res["hung"]["problems"][0]["message"] == "no answer within 8s"
    assert elapsed < 8 + 4  # the hung device did not hold the others up


@pytest.mark.slow
def test_provision_installs_into_a_venv_and_is_idempotent(farm, pytestconfig, capsys) -> None:
    if _base_has_onnxruntime():
        pytest.skip("the base python already has onnxruntime")
    import numpy
    import onnxruntime

    # Wheels for this interpreter, downloaded once and kept in pytest's cache directory.
    wheels = pytestconfig.cache.mkdir("edgeprune-wheelhouse")
    if not list(wheels.glob("onnxruntime-*.whl")):
        got = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels),
             f"onnxruntime=={onnxruntime.__version__}", f"numpy=={numpy.__version__}"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if got.returncode != 0:
            pytest.skip(f"cannot download wheels: {got.stderr.strip()[-200:]}")
    _set("dev0", python=BASE_PYTHON)
    argv = ["devices", "provision", "dev0", "--pip-arg=--no-index",
            f"--pip-arg=--find-links={wheels}", "--json"]  # fmt: skip
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    venv_python = str(farm.devices["dev0"].workdir / "venv" / "bin" / "python")
    assert first["created_venv"] and first["installed"] == ["onnxruntime", "numpy"]
    assert first["versions"]["onnxruntime"] == onnxruntime.__version__
    assert Inventory.load().get("dev0").python == venv_python
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["already_provisioned"] is True
    assert main(["devices", "check", "dev0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["devices"][0]["ok"]


def test_clean_drops_the_artifact_cache(farm, small_onnx, capsys) -> None:
    work = farm.devices["dev0"].workdir
    with DeviceSession(Inventory.load().get("dev0")) as dev:
        dev.push_artifact(small_onnx, sha256_file(small_onnx))
    assert list((work / "artifacts").iterdir())
    assert main(["devices", "clean", "dev0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "dev0"
    assert list((work / "artifacts").iterdir()) == []
    assert list((work / "agent").iterdir())  # the agent stays
