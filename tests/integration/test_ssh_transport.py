"""The SSH transport against real sshd processes: quoting, deadlines, transfers and their faults."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshfarm import FarmDeviceConfig, alive, needs_root, needs_sshd

from edgeprune.device import DeviceSession, Inventory, upload_verified
from edgeprune.device.inventory import DeviceSpec
from edgeprune.device.ssh import SSHTransport
from edgeprune.device.transport import download_verified, sha256_file
from edgeprune.errors import DeviceError, RemoteTimeoutError

pytestmark = [pytest.mark.integration, needs_sshd]


def transport(name: str = "dev0") -> SSHTransport:
    inv = Inventory.load()
    return SSHTransport(inv.get(name), inv)


def test_arguments_are_quoted_never_executed(farm, tmp_path) -> None:
    marker = tmp_path / "marker"
    nasty = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        f"| touch {marker}",
        f"&& touch {marker} #",
        "a b\n'\"\\",
    ]
    with transport() as t:
        r = t.run(["printf", "%s\\n", *nasty])
    assert r.stdout.split("\n")[:-1][:5] == nasty[:5]
    assert "a b" in r.stdout
    assert not marker.exists()


def test_failure_carries_exit_code_and_stderr(farm) -> None:
    with transport() as t, pytest.raises(DeviceError) as e:
        t.run(["sh", "-c", "echo oops >&2; exit 7"])
    assert e.value.exit_code == 7 and "oops" in (e.value.stderr_tail or "")
    assert e.value.device == "dev0" and e.value.command == "sh -c 'echo oops >&2; exit 7'"


def test_remote_deadline_kills_the_process_on_the_device(farm, tmp_path) -> None:
    pidfile = tmp_path / "pid"
    t0 = time.monotonic()
    with transport() as t, pytest.raises(RemoteTimeoutError, match="deadline"):
        t.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1.0)
    assert time.monotonic() - t0 < 8
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


@pytest.mark.parametrize("sftp", [True, False], ids=["sftp", "exec-channel"])
def test_verified_transfer_and_cache(farm_factory, tmp_path, sftp: bool) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0", sftp=sftp))
    work = farm.devices["dev0"].workdir
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(700_000) + b"\0\n\r\xff" * 1000)
    with transport() as t:
        assert t.sftp_available() is sftp
        remote, sent = upload_verified(t, blob, str(work), "blob.bin")
        again, sent_again = upload_verified(t, blob, str(work), "blob.bin")
        back = tmp_path / "back.bin"
        digest = download_verified(t, remote, back)
    assert (sent, sent_again, again) == (True, False, remote)
    assert Path(remote).read_bytes() == blob.read_bytes() == back.read_bytes()
    assert digest == sha256_file(blob)
    assert not list(work.glob(".*.part"))


class CorruptingTransport(SSHTransport):
    """Flips the copy on the device after the transfer, before the checksum (a bad link or disk)."""

    def put(self, local: Path, remote: str) -> None:
        super().put(local, remote)
        self.run(["sh", "-c", 'printf x >> "$1"', "sh", remote])


def test_corrupted_upload_is_detected(farm, tmp_path) -> None:
    work = farm.devices["dev0"].workdir
    blob = tmp_path / "model.onnx"
    blob.write_bytes(os.urandom(50_000))
    inv = Inventory.load()
    with (
        CorruptingTransport(inv.get("dev0"), inv) as t,
        pytest.raises(DeviceError, match="corrupt"),
    ):
        upload_verified(t, blob, str(work), "model.onnx")
    assert not (work / "model.onnx").exists()
    assert not list(work.glob(".*"))  # no partial file left behind


def test_refused_port_fails_fast(farm) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    spec = DeviceSpec(name="gone", host="127.0.0.1", port=port, connect_timeout=3)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="cannot connect to gone"):
        SSHTransport(spec)
    assert time.monotonic() - t0 < 3


def test_silent_host_errors_within_the_connect_timeout(farm) -> None:
    # A host that accepts TCP but never speaks SSH (a hung board, a wrong service).
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        spec = DeviceSpec(
            name="hung", host="127.0.0.1", port=srv.getsockname()[1], connect_timeout=2
        )
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match="hung"):
            SSHTransport(spec)
        assert time.monotonic() - t0 < 2 + 1.5


def test_lost_connection_is_a_clear_error(farm) -> None:
    errors: list[BaseException] = []
    t = transport()

    def long_command() -> None:
        try:
            t.run(["sleep", "30"], timeout=60)
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=long_command)
    th.start()
    time.sleep(0.8)
    farm.kill("dev0")
    th.join(20)
    t.close()
    assert not th.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DeviceError)
    assert "lost the connection to dev0" in str(errors[0])


@contextlib.contextmanager
def mounted(*args: str) -> Iterator[None]:
    target = args[-1]
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount is not allowed here: {proc.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", target], check=False)


@needs_root
def test_read_only_workdir_is_a_clear_error(farm, tmp_path) -> None:
    work = farm.devices["dev0"].workdir
    with (
        mounted("--bind", "-o", "ro", str(tmp_path), str(work)),
        pytest.raises(DeviceError, match=r"(?i)read-only") as e,
        DeviceSession(Inventory.load().get("dev0")),
    ):
        pass
    assert "writable workdir" in (e.value.hint or "")


@needs_root
@pytest.mark.parametrize("sftp", [True, False], ids=["sftp", "exec-channel"])
def test_full_workdir_is_a_clear_error(farm_factory, small_onnx, sftp: bool) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0", sftp=sftp))
    work = farm.devices["dev0"].workdir
    # Room for the agent (~25 KB) but not for the model (~1 MB).
    with (
        mounted("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(work)),
        DeviceSession(Inventory.load().get("dev0")) as dev,
    ):
        with pytest.raises(DeviceError, match="No space left") as e:
            dev.push_artifact(small_onnx, sha256_file(small_onnx))
        leftovers = [p.name for p in (work / "artifacts").iterdir()]
    assert "disk is full" in (e.value.hint or "")
    assert "edgeprune devices clean dev0" in (e.value.hint or "")
    assert leftovers == []
