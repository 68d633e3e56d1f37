"""The loopback farm itself: a CPU-quota device is really slower, reports its quota, and
teardown leaves no process or cgroup behind."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sshfarm import FAST, FarmDeviceConfig, alive, needs_cgroups, needs_sshd

from edgeprune.bench import Store
from edgeprune.device import DeviceSession, Inventory
from edgeprune.pipeline.flows import lease_and_measure

pytestmark = [pytest.mark.integration, needs_sshd]


@needs_cgroups
def test_a_slowed_device_is_slower_and_says_so(farm_factory, small_onnx) -> None:
    farm = farm_factory(FarmDeviceConfig("fast"), FarmDeviceConfig("slow", cpu_quota=0.25))
    once = replace(FAST, max_repeats=1)
    fast_means, slow_means = [], []
    with Store() as store:
        # A 25% quota in 10 ms periods: runs stall while the group is throttled, every time.
        # Host stalls hit either device now and then (one run's fast device had 27 ms outliers,
        # mean 0.64 ms over a 0.14 ms median), so each side's best of up to three means counts.
        for _ in range(3):
            fast = lease_and_measure("fast", small_onnx, once, store)
            slow = lease_and_measure("slow", small_onnx, once, store)
            fast_means.append(fast.stats.mean)
            slow_means.append(slow.stats.mean)
            if min(slow_means) > 2 * min(fast_means):
                break
    # The agent reads the quota of its own cgroup (not the root group's file).
    assert slow.context["cpu_quota"] == 0.25 and fast.context["cpu_quota"] is None
    assert slow.key != fast.key
    assert min(slow_means) > 2 * min(fast_means), (slow_means, fast_means)
    assert farm.devices["slow"].cgroup is not None


def test_teardown_leaves_nothing_behind(farm_factory) -> None:
    farm = farm_factory(FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1"))
    with DeviceSession(Inventory.load().get("dev0")):
        pids = [p for d in farm.devices.values() for p in d.processes()]
        assert len(pids) >= 3  # two listeners + dev0's session processes
    groups = [d.cgroup for d in farm.devices.values() if d.cgroup is not None]
    farm.stop()
    assert not any(alive(p) for p in pids)
    assert not any(g.exists() for g in groups)
    assert not farm.root.exists()
