"""The device inventory and `devices add|list|remove`: validation, round trips, pinned keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from edgeprune.cli import main
from edgeprune.device import Inventory
from edgeprune.device.inventory import DeviceSpec
from edgeprune.device.known_hosts import known_hosts_path, pin_host_key, pinned_keys
from edgeprune.errors import UsageError


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "id_ed25519"
    path.write_text("not checked here\n")
    return path


def test_add_list_remove_round_trip(key, capsys) -> None:
    argv = ["devices", "add", "nano-1", "--host", "192.0.2.10", "--port", "2222", "--user", "edge",
            "--key", str(key), "--profile", "jetson-nano", "--tag", "lab", "--tag", "desk",
            "--workdir", "/data/edgeprune", "--python", "/usr/bin/python3.6", "--json"]  # fmt: skip
    assert main(argv) == 0
    added = json.loads(capsys.readouterr().out)
    path = os.path.join(os.environ["EDGEPRUNE_CONFIG"], "devices.yaml")
    assert added["inventory"] == path
    entry = yaml.safe_load(Path(path).read_text())["devices"]["nano-1"]
    assert entry == {
        "host": "192.0.2.10",
        "port": 2222,
        "user": "edge",
        "key": str(key.resolve()),
        "profile": "jetson-nano",
        "tags": ["lab", "desk"],
        "workdir": "/data/edgeprune",
        "python": "/usr/bin/python3.6",
    }
    spec = Inventory.load().get("nano-1")
    assert spec.address == "[192.0.2.10]:2222"

    assert main(["devices", "add", "nano-1", "--host", "h", "--profile", "p"]) == 2  # exists
    assert main(["devices", "list", "--json"]) == 0
    names = [d["name"] for d in json.loads(capsys.readouterr().out)["devices"]]
    assert names == ["local", "nano-1"]
    assert main(["devices", "remove", "nano-1"]) == 0
    assert "nano-1" not in Inventory.load().devices


@pytest.mark.parametrize(
    "flags, message",
    [
        (["x;touch /tmp/m", "--host", "h"], "invalid device name"),
        (["$(reboot)", "--host", "h"], "invalid device name"),
        (["ok", "--host", "h; touch /tmp/m"], "invalid host"),
        (["ok", "--host", "h", "--user", "root;id"], "invalid user"),
        (["ok", "--host", "h", "--python", "python3"], "absolute path"),
        (
            ["ok", "--host", "h", "--workdir=-cimport os"],
            "workdir '-cimport os' must be an absolute",
        ),
        (["ok", "--host", "h", "--workdir", "rel/dir"], "set `workdir:`"),
        (["ok", "--host", "h", "--python=-c"], "python '-c' must be an absolute"),
        (["ok", "--host", "h", "--known-hosts=-x"], "known_hosts '-x'"),
        (["ok", "--host", "h", "--agent-mode", "ssh"], "agent_mode 'ssh'"),
        (["..", "--host", "h"], "invalid device name '..'"),
        (["ok", "--host", "h", "--port", "70000"], "out of range"),
        (["ok", "--host", "h", "--jump", "nowhere"], "jump host 'nowhere'"),
        (["local", "--host", "h"], "built-in"),
    ],
)
def test_add_rejects_bad_values(flags, message, capsys, tmp_path) -> None:
    marker = tmp_path / "m"
    assert main(["devices", "add", *flags, "--profile", "x86-cpu"]) == 2
    assert message in capsys.readouterr().err
    assert not marker.exists()
    assert Inventory.load().devices == {}


def test_passwords_and_unknown_keys_are_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    inv = tmp_path / "devices.yaml"  # the working directory's file wins over the config dir
    inv.write_text(yaml.safe_dump({"devices": {"pi": {"host": "pi.lan", "password": "hunter2"}}}))
    with pytest.raises(UsageError, match="passwords are not allowed"):
        Inventory.load()
    inv.write_text(yaml.safe_dump({"devices": {"pi": {"host": "pi.lan", "hostname": "x"}}}))
    with pytest.raises(UsageError, match="unknown keys: hostname"):
        Inventory.load()


def test_a_jump_host_in_use_cannot_be_removed(capsys) -> None:
    inv = Inventory.load()
    inv.add(DeviceSpec(name="bastion", host="203.0.113.1"))
    inv.add(DeviceSpec(name="orin", host="10.0.0.5", jump="bastion"))
    inv.save()
    assert main(["devices", "remove", "bastion"]) == 2
    assert "jump host of orin" in capsys.readouterr().err


def test_pinning_replaces_only_that_address(tmp_path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("other.lan ssh-ed25519 AAAAother\n[pi.lan]:2222 ssh-rsa AAAAold\n")
    pin_host_key(kh, "[pi.lan]:2222", "ssh-ed25519", "AAAAnew")
    assert pinned_keys(kh, "[pi.lan]:2222") == [("ssh-ed25519", "AAAAnew")]
    assert pinned_keys(kh, "other.lan") == [("ssh-ed25519", "AAAAother")]
    assert pinned_keys(kh, "pi.lan") == []  # port 22 is another host entry
    assert oct(kh.stat().st_mode & 0o777) == "0o600"


def test_known_hosts_file_is_edgeprunes_own() -> None:
    default = known_hosts_path(DeviceSpec(name="a", host="h"))
    assert default == Path(os.environ["EDGEPRUNE_CONFIG"]) / "known_hosts"
    own = known_hosts_path(DeviceSpec(name="b", host="h", known_hosts="~/kh"))
    assert own == Path("~/kh").expanduser()
