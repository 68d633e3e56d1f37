"""Test isolation and options.

Every test gets its own ``EDGEPRUNE_HOME`` (store, caches, locks) and config dir, and runs in a
temporary working directory, so nothing leaks between tests or into the user's files. The
`local` device gets a board identity of its own (``EDGEPRUNE_BOARD_ID``), so test runs that share
this machine do not queue for one board lock.
``--device NAME`` enables the `hardware` tests against a real board from the inventory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device", action="append", default=[], help="run hardware tests on this inventory device"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--device"):
        return
    skip = pytest.mark.skip(reason="hardware test: pass --device NAME to run it on a real board")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    env = tmp_path_factory.mktemp("env")
    monkeypatch.setenv("EDGEPRUNE_HOME", str(env / "home"))
    monkeypatch.setenv("EDGEPRUNE_CONFIG", str(env / "config"))
    monkeypatch.delenv("EDGEPRUNE_DATA", raising=False)
    monkeypatch.setenv("EDGEPRUNE_BOARD_ID", f"test-{os.getpid()}-{env.name}")
    work = env / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="session")
def fmnist():
    from edgeprune.data import load_dataset

    return load_dataset("fashion-mnist")


@pytest.fixture(scope="session")
def digits():
    from edgeprune.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    """A real one-node ONNX model (Relu on 1×3×8×8), written without torch's exporter."""
    import onnx
    from onnx import TensorProto, helper

    shape = [1, 3, 8, 8]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path
