"""Fixtures for integration tests: a loopback farm of real sshd devices and a small ONNX model.

`farm_factory` starts real OpenSSH servers (see ``devices/testfarm.py``) and writes their
``devices.yaml`` + pinned ``known_hosts`` into this test's ``$EDGEPRUNE_CONFIG``; every farm is torn
down by a finalizer, also when the test fails. Starting a farm takes about 0.1 s, so each test gets
its own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from edgeprune._devices.testfarm import Farm, FarmDeviceConfig, FarmError

FarmFactory = Callable[..., Farm]


@pytest.fixture
def farm_factory(_isolated: Path) -> Iterator[FarmFactory]:
    """``farm_factory(FarmDeviceConfig(...), ..., inventory=True)`` → a started `Farm`."""
    farms: list[Farm] = []

    def make(*configs: FarmDeviceConfig, inventory: bool = True, trust: bool = True) -> Farm:
        root = tempfile.mkdtemp(prefix="farm-", dir=_isolated.parent)
        farm = Farm(root, list(configs or (FarmDeviceConfig("dev0"),)))
        farms.append(farm)
        try:
            farm.start()
        except FarmError as e:
            pytest.skip(f"cannot start the sshd farm here: {e}")
        if inventory:
            farm.write_inventory(os.environ["EDGEPRUNE_CONFIG"], trust=trust)
        return farm

    yield make
    for farm in farms:
        farm.stop()


@pytest.fixture
def farm(farm_factory: FarmFactory) -> Farm:
    """One full-speed loopback device called ``dev0``, trusted and in the inventory."""
    return farm_factory(FarmDeviceConfig("dev0"))


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-20 (1×16×16 input) ONNX file at opset 18 (the farm profile's limit), exported once
    per session."""
    from edgeprune.checkpoint import resolve_model
    from edgeprune.export import onnx_from_torch

    d = tmp_path_factory.mktemp("model")
    b = resolve_model("resnet20", {"in_channels": 1}, input_size=16)
    onnx_from_torch(b.model, b.input_shape, d / "r20.onnx", opset=18)
    return d / "r20.onnx"
