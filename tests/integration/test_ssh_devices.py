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
from stderr_lines import message_lines

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
def test_provision_installs_into_a_venv_and_is_idempotent(
    farm, pytestconfig, tmp_path_factory, capsys
) -> None:
    if _base_has_onnxruntime():
        pytest.skip("the base python already has onnxruntime")
    import numpy
    import onnxruntime

    # Wheels for this interpreter, downloaded once and kept in pytest's cache directory (in this
    # run's temporary directory when the cache plugin is off: `-p no:cacheprovider`).
    cache = getattr(pytestconfig, "cache", None)
    wheels = (
        cache.mkdir("edgeprune-wheelhouse")
        if cache is not None
        else tmp_path_factory.mktemp("edgeprune-wheelhouse")
    )
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


# --------------------------------------------------------------------------- hostile and broken input


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line on stderr (progress lines apart); no traceback, nothing of paramiko."""
    err = capsys.readouterr().err.strip()
    lines = message_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err and "paramiko" not in err
    return lines[0]


def _write_inventory(entries: dict) -> None:
    import os

    import yaml

    path = Path(os.environ["EDGEPRUNE_CONFIG"]) / "devices.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"devices": entries}))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workdir", "-cimport os;os.system('touch {canary}')#"),
        ("workdir", "relative/work"),
        ("workdir", "/tmp/a\nb; touch {canary}"),
        ("python", "-c"),
        ("python", "python3"),
        ("key", "-oProxyCommand=touch {canary}"),
        ("known_hosts", "/tmp/kh\0x"),
    ],
)
def test_option_like_or_relative_paths_in_devices_yaml_are_refused(
    farm, small_onnx, tmp_path, capsys, key: str, value: str
) -> None:
    canary = tmp_path / "CANARY"
    inv = Inventory.load()
    entry = inv.get("dev0").to_yaml_dict()
    entry[key] = value.format(canary=canary)
    _write_inventory({"dev0": entry})
    for argv in (
        ["devices", "check", "dev0"],
        ["devices", "list"],
        ["deploy", str(small_onnx), "--device", "dev0"],
    ):
        assert main(argv) == 2, argv
        err = _one_line_error(capsys)
        assert "devices.yaml" in err and f"{key} " in err and f"set `{key}:`" in err
    assert not canary.exists()


@pytest.mark.parametrize("name", ["-x", "..", ".", ".hidden"])
def test_device_names_that_read_as_options_or_paths_are_refused(farm, capsys, name: str) -> None:
    assert main(["devices", "add", "--host", "127.0.0.1", "--profile", "x86-cpu", "--", name]) == 2
    assert "invalid device name" in _one_line_error(capsys)
    entry = Inventory.load().get("dev0").to_yaml_dict()
    _write_inventory({name: entry})
    assert main(["devices", "list"]) == 2
    assert "invalid device name" in _one_line_error(capsys)


@pytest.mark.parametrize("mode", ["session", "command"])
def test_every_remote_argv_is_logged_and_paths_follow_a_double_dash(
    farm, small_onnx, caplog, mode: str
) -> None:
    import logging

    from sshfarm import FAST

    from edgeprune.pipeline.deploy import DeployConfig, deploy

    _set("dev0", agent_mode=mode)
    with caplog.at_level(logging.DEBUG, logger="edgeprune.device"):
        deploy(str(small_onnx), "dev0", DeployConfig(bench=replace(FAST, max_repeats=1)))
    lines = [r.getMessage() for r in caplog.records if r.name == "edgeprune.device"]
    agent_runs = [line for line in lines if "edgeprune_agent-" in line and " -c " not in line]
    if mode == "session":
        assert sum(" open channel " in line for line in lines) == 1
        assert any("agent bench" in line for line in lines)
    else:
        assert agent_runs and all(" -- " in line for line in agent_runs)
    # Paths given to tools come after `--` (or as data after `python -c CODE`).
    for line in lines:
        for tool in ("sha256sum", "mkdir", "rm", "cat"):
            if f" {tool} " in f" {line} ":
                assert " -- " in line or "sh -c" in line, line


def test_a_silent_tcp_server_is_one_line_without_a_traceback(small_onnx, capsys) -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(4)  # accepts TCP, never speaks SSH
    try:
        _write_inventory(
            {"hung": {"host": "127.0.0.1", "port": hung.getsockname()[1], "connect_timeout": 2}}
        )
        for argv in (
            ["devices", "trust", "hung", "--yes"],
            ["deploy", str(small_onnx), "--device", "hung"],
        ):
            assert main(argv) == 2
            err = _one_line_error(capsys)
            assert "accepted TCP but did not speak SSH" in err and "devices.yaml" in err
    finally:
        hung.close()


def test_a_device_without_onnxruntime_names_the_provision_command(farm, small_onnx, capsys) -> None:
    if _base_has_onnxruntime():
        pytest.skip("the base python already has onnxruntime")
    _set("dev0", python=BASE_PYTHON)
    assert main(["deploy", str(small_onnx), "--device", "dev0"]) == 2
    err = _one_line_error(capsys)
    assert "onnxruntime is missing on dev0" in err and "edgeprune devices provision dev0" in err


def test_stale_partial_uploads_are_reported_then_swept(farm, small_onnx, capsys) -> None:
    import os

    from sshfarm import FAST

    from edgeprune.pipeline.deploy import DeployConfig, deploy

    artifacts = farm.devices["dev0"].workdir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    stale = artifacts / ".0123.onnx.999-1.part"  # a host killed -9 mid-upload left it
    stale.write_bytes(b"x" * 300_000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = artifacts / ".4567.onnx.998-1.part"  # another session's upload in progress
    fresh.write_bytes(b"y" * 1000)
    assert main(["devices", "check", "dev0", "--json"]) == 0
    dev = json.loads(capsys.readouterr().out)["devices"][0]
    assert dev["stale_parts_bytes"] == 300_000 and dev["stale_parts_files"] == 1
    assert stale.exists()  # check only reports
    deploy(str(small_onnx), "dev0", DeployConfig(bench=replace(FAST, max_repeats=1)))
    assert not stale.exists() and fresh.exists()  # swept at session start; the fresh one stays


def _cli(args: list[str], home: Path) -> subprocess.Popen[str]:
    import os

    env = {**os.environ, "EDGEPRUNE_HOME": str(home)}
    code = "import sys; from edgeprune.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_hosts_deploying_to_one_board_never_break_each_other(
    farm, small_onnx, tmp_path
) -> None:
    args = ["deploy", str(small_onnx), "--device", "dev0", "--runs", "20", "--duration", "3",
            "--warmup", "2", "--repeats", "1", "--json"]  # fmt: skip
    homes = [tmp_path / "host-a", tmp_path / "host-b"]
    # At once, no --wait: whoever finds the board busy is told so in one line; the other is
    # unharmed (neither deletes the other's files).
    procs = [_cli(args, h) for h in homes]
    outs = [(p.wait(240), *p.communicate()) for p in procs]
    ok = [json.loads(o) for code, o, _ in outs if code == 0]
    assert ok, outs
    for code, _out, err in outs:
        if code != 0:
            assert code == 2 and len(message_lines(err)) == 1 and "busy" in err, err
            assert "held by" in err
    for r in ok:
        assert r["parity"]["ok"] and sha256_file(r["remote_path"]) == r["artifact"]["sha256"]
    # With --wait both finish, one after the other on the board.
    procs = [_cli([*args, "--wait", "120"], h) for h in homes]
    outs = [(p.wait(300), *p.communicate()) for p in procs]
    assert [code for code, _, _ in outs] == [0, 0], outs
    windows = sorted(json.loads(o)["measurement"]["context"]["device_window"] for _, o, _ in outs)
    assert windows[1][0] >= windows[0][1]
    work = farm.devices["dev0"].workdir
    assert not [p for p in work.rglob("*") if ".part" in p.name]
    assert sorted(p.name for p in (work / "requests").iterdir()) == []
