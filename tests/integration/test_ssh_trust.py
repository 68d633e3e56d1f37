"""Host keys: never trusted silently, pinned only by `devices trust`, checked on every jump hop."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace

import pytest
from sshfarm import FarmDeviceConfig, needs_sshd, socket_owner
from stderr_lines import message_lines

from edgeprune.cli import main
from edgeprune.device import DeviceSession, Inventory
from edgeprune.device.known_hosts import known_hosts_path
from edgeprune.device.ssh import SSHTransport
from edgeprune.errors import HostKeyError

pytestmark = [pytest.mark.integration, needs_sshd]


def fingerprint(pubkey_file) -> str:
    """What OpenSSH itself prints for the key (``ssh-keygen -lf``)."""
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pubkey_file)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


def test_unknown_host_key_is_refused_with_fingerprint_and_trust_command(farm_factory) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0"), trust=False)
    expected = fingerprint(farm.devices["dev0"].root / "ssh_host_ed25519_key.pub")
    with pytest.raises(HostKeyError) as e, DeviceSession(Inventory.load().get("dev0")):
        pass
    assert expected in e.value.message and "not trusted" in e.value.message
    assert "edgeprune devices trust dev0" in (e.value.hint or "")
    assert not known_hosts_path(Inventory.load().get("dev0")).exists()  # nothing pinned silently


def test_trust_pins_the_key_only_when_confirmed(farm_factory, capsys) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0"), trust=False)
    dev = farm.devices["dev0"]
    expected = fingerprint(dev.root / "ssh_host_ed25519_key.pub")
    kh = known_hosts_path(Inventory.load().get("dev0"))

    assert main(["devices", "trust", "dev0"]) == 2  # no TTY, no --yes: refused
    assert not kh.exists()
    capsys.readouterr()

    assert main(["devices", "trust", "dev0", "--yes", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["fingerprint"] == expected and res["pinned"] is True
    assert kh.read_text().split() == [f"[{dev.host}]:{dev.port}", *dev.host_key_line.split()]

    with DeviceSession(Inventory.load().get("dev0")) as session:
        assert session.info["arch"]
    assert main(["devices", "trust", "dev0", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["already_trusted"] is True


def test_changed_host_key_is_refused_until_trusted_again(farm, capsys) -> None:
    old = fingerprint(farm.devices["dev0"].root / "ssh_host_ed25519_key.pub")
    farm.rekey("dev0")
    new = fingerprint(farm.devices["dev0"].root / "ssh_host_ed25519_key.pub")
    with pytest.raises(HostKeyError, match="CHANGED") as e:
        SSHTransport(Inventory.load().get("dev0"))
    assert new in e.value.message and old in e.value.message
    assert "edgeprune devices trust dev0 --replace" in (e.value.hint or "")

    kh = known_hosts_path(Inventory.load().get("dev0"))
    pinned = kh.read_text()
    capsys.readouterr()
    # --yes alone never replaces a changed key (OpenSSH never does either): both fingerprints shown.
    assert main(["devices", "trust", "dev0", "--yes"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(message_lines(err)) == 1 and "CHANGED" in err and old in err and new in err
    assert "--replace" in err and kh.read_text() == pinned
    assert main(["devices", "trust", "dev0", "--yes", "--replace", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["changed"] is True and res["previous"] == [old] and res["fingerprint"] == new
    with SSHTransport(Inventory.load().get("dev0")) as t:
        assert t.run(["echo", "ok"]).stdout == "ok\n"


def _jump_inventory() -> Inventory:
    inv = Inventory.load()
    inv.add(replace(inv.get("dev1"), jump="dev0"), replace_existing=True)
    inv.save()
    return Inventory.load()


def test_jump_host_carries_the_connection(farm_factory) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"))
    inv = _jump_inventory()
    with SSHTransport(inv.get("dev1"), inv) as t:
        client_port = int(t.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[1])
        # dev1's SSH client is dev0's sshd (the direct-tcpip hop), not this test process.
        owner = socket_owner(client_port)
        assert owner is not None and owner in farm.devices["dev0"].processes()
        assert owner != os.getpid()


def test_untrusted_jump_host_is_refused_even_if_the_target_is_trusted(farm_factory) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"))
    inv = _jump_inventory()
    kh = known_hosts_path(inv.get("dev0"))
    jump = farm.devices["dev0"]
    kh.write_text(
        "".join(
            line + "\n"
            for line in kh.read_text().splitlines()
            if not line.startswith(f"[{jump.host}]:{jump.port} ")
        )
    )
    with pytest.raises(HostKeyError) as e:
        SSHTransport(inv.get("dev1"), inv)
    assert e.value.device == "dev0" and "edgeprune devices trust dev0" in (e.value.hint or "")
    assert fingerprint(jump.root / "ssh_host_ed25519_key.pub") in e.value.message
