"""`farm run --engine ray` against a real Ray head started on loopback by the test.

The head declares one custom resource per device (``ray start --resources``); the sweep's driver
runs as a subprocess (`edgeprune farm run --engine ray --ray-address ...`). Everything the head
starts shares its process group, which the fixture kills at the end, also when the test fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sshfarm import FarmDeviceConfig, needs_sshd

from edgeprune import config
from edgeprune.farm import load_sweep, plan_sweep

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    needs_sshd,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="needs Ray: pip install 'edgeprune[ray]'"
    ),
]

BIN = Path(sys.executable).parent
# Keep every Ray process on 127.0.0.1 (Ray otherwise advertises the host's outward address).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_head(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A Ray head on 127.0.0.1 declaring devices dev0 and dev1, with token authentication from a
    throwaway token (never the user's ~/.ray/auth_token); yields (address, devices)."""
    from edgeprune.farm.ray_engine import resources_json

    devices = ["dev0", "dev1"]
    tmp = tempfile.mkdtemp(
        prefix="ray-", dir="/tmp"
    )  # short: Ray's socket paths must fit 107 bytes
    token = Path(tmp) / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    for k, v in {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    port = _free_port()
    argv = [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--num-cpus=1", f"--resources={resources_json(devices)}", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={tmp}"]  # fmt: skip
    proc = subprocess.Popen(
        argv, env={**os.environ, **RAY_ENV}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"ray start failed here: {out.decode()[-300:]}")
        yield f"127.0.0.1:{port}", devices
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the head's daemons kept `ray start`'s group
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: list[str], drop_env: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in {**os.environ, **RAY_ENV}.items() if k not in drop_env}
    return subprocess.run(
        [str(BIN / "edgeprune"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sweep_runs_on_a_ray_head_with_devices_as_resources(
    farm_factory, ray_head, _isolated: Path
) -> None:
    address, _ = ray_head
    farm_factory(
        FarmDeviceConfig("dev0"),
        FarmDeviceConfig("dev1"),
        FarmDeviceConfig("dev2", profile="other"),
    )
    bench = {
        "warmup_runs": 2,
        "warmup_seconds": 0.02,
        "min_runs": 10,
        "min_seconds": 0.05,
        "max_repeats": 1,
    }
    base = {"name": "r", "models": [{"model": "resnet20", "kwargs": {"in_channels": 1}, "input_size": 16}],
            "criteria": ["l1"], "bench": bench}  # fmt: skip
    # dev2 is no resource of the cluster: refused before anything runs, with the fix.
    (_isolated / "bad.yaml").write_text(
        yaml.safe_dump({**base, "name": "bad", "targets": [], "devices": ["dev2"]})
    )
    bad = _run(["farm", "run", "bad.yaml", "--engine", "ray", "--ray-address", address])
    assert bad.returncode == 2, bad.stderr
    assert "no resource for device(s) dev2" in bad.stderr and "ray start --resources" in bad.stderr
    # A driver that does not send the cluster's token: one line naming the fix, no traceback.
    noauth = _run(["farm", "run", "bad.yaml", "--engine", "ray", "--ray-address", address],
                  drop_env=("RAY_AUTH_MODE",))  # fmt: skip
    assert noauth.returncode == 2, noauth.stderr[-2000:]
    assert "asks for an authentication token" in noauth.stderr, noauth.stderr[-2000:]
    assert "RAY_AUTH_MODE=token" in noauth.stderr and "Traceback" not in noauth.stderr

    sweep = _isolated / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump({**base, "targets": [{"ratio": 0.5}], "devices": ["loopback"], "repeat": 4})
    )
    r = _run(["farm", "run", str(sweep), "--engine", "ray", "--ray-address", address, "--json"])
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    plan = plan_sweep(load_sweep(sweep))
    assert result["engine"] == "ray" and result["failed"] == []
    assert result["jobs_done"] == len(plan.jobs) == 2 * 4 and result["preps"]["made_now"] == 2

    con = sqlite3.connect(config.store_path())
    stored = [
        (job_id, device, json.loads(ctx)["farm"], created)
        for job_id, device, ctx, created in con.execute(
            "SELECT job_id, device, context_json, created_at FROM measurements"
        )
    ]
    con.close()
    assert sorted(s[0] for s in stored) == sorted(j.job_id for j in plan.jobs)
    assert {s[2]["engine"] for s in stored} == {"ray"}
    assert {s[1] for s in stored} == {"dev0", "dev1"}
    # Each device's jobs ran in its own actor process, one after another.
    for dev in ("dev0", "dev1"):
        mine = sorted(
            (s[2]["job_started_at"], s[3], s[2]["worker_pid"]) for s in stored if s[1] == dev
        )
        assert len({m[2] for m in mine}) == 1
        for a, b in itertools.pairwise(mine):
            assert b[0] >= a[1]
