"""Hostile and broken inputs, as real files, for the tests that feed them to edgeprune.

Every payload that could run code touches a canary file when (and only when) it runs, so a test
proves "never executed" by the canary's absence. Builders take the folder to write into.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def zoo_checkpoint(path: Path) -> Path:
    """A small valid checkpoint of the zoo's resnet20 (1x8x8 input)."""
    from edgeprune.checkpoint import resolve_model, save_checkpoint

    return save_checkpoint(resolve_model("resnet20", {"in_channels": 1}, input_size=8), path)


def rewrite(src: Path, dst: Path, **changes: Any) -> Path:
    """``src``'s payload with top-level keys replaced (a value of ``...`` deletes the key)."""
    payload = torch.load(src, weights_only=True)
    for k, v in changes.items():
        if v is ...:
            payload.pop(k, None)
        else:
            payload[k] = v
    torch.save(payload, dst)
    return dst


class _Reduce:
    """Unpickling calls ``open(target, "w")``: the classic pickle payload."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.target, "w"))


def evil_factory_file(folder: Path, canary: Path) -> Path:
    """A Python file that touches ``canary`` when imported and when its ``build`` is called."""
    f = folder / "evil_factory.py"
    f.write_text(
        "import pathlib\n"
        f"pathlib.Path({str(canary)!r}).touch()\n"
        "def build(**kw):\n"
        f"    pathlib.Path({str(canary)!r}).touch()\n"
    )
    return f


def code_payloads(folder: Path, canary: Path) -> dict[str, Path]:
    """Checkpoints that run code (touching ``canary``) if a loader executes what they name."""
    folder.mkdir(parents=True, exist_ok=True)
    base = zoo_checkpoint(folder / "base.pt")
    evil = evil_factory_file(folder, canary)
    sha = hashlib.sha256(evil.read_bytes()).hexdigest()
    touch = f"touch {canary}"
    archs = {
        "os-system": {"factory": "os:system", "kwargs": {"command": touch}},
        "subprocess-getoutput": {"factory": "subprocess:getoutput", "kwargs": {"cmd": touch}},
        "runpy-run-path": {"factory": "runpy:run_path", "kwargs": {"path_name": str(evil)}},
        "factory-file": {"factory": f"{evil}:build", "kwargs": {}, "factory_sha256": sha},
        "factory-file-no-sha": {"factory": f"{evil}:build", "kwargs": {}},
        "factory-relative": {"factory": "evil_factory.py:build", "kwargs": {}},
    }
    out = {name: rewrite(base, folder / f"{name}.pt", arch=arch) for name, arch in archs.items()}
    reduce_pt = folder / "pickle-reduce.pt"
    torch.save({"format_version": 1, "state_dict": {}, "x": _Reduce(str(canary))}, reduce_pt)
    out["pickle-reduce"] = reduce_pt
    legacy = folder / "pickle-legacy.pt"
    legacy.write_bytes(pickle.dumps(_Reduce(str(canary))))
    out["pickle-legacy"] = legacy
    return out


def deflate_bomb(path: Path, declared: int, inner: str = "archive/data/0") -> Path:
    """A zip-format checkpoint whose one tensor record inflates from a few KB to ``declared``
    bytes of zeros (a real deflate stream, not a lying header)."""
    zoo = io.BytesIO()
    torch.save({"format_version": 1, "state_dict": {"w": torch.zeros(2)}}, zoo)
    with zipfile.ZipFile(io.BytesIO(zoo.getvalue())) as src, zipfile.ZipFile(path, "w") as dst:
        prefix = src.namelist()[0].split("/", 1)[0]
        for info in src.infolist():
            if info.filename.endswith("/data/0"):
                continue
            dst.writestr(info, src.read(info))
        zi = zipfile.ZipInfo(f"{prefix}/{inner.split('/', 1)[1]}")
        zi.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(zi, "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 20)
            left = declared
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
    return path


def broken_checkpoints(folder: Path, rng: random.Random) -> dict[str, Path]:
    """Files saved as ``.pt`` that are not usable checkpoints, one per way of being broken."""
    folder.mkdir(parents=True, exist_ok=True)
    base = zoo_checkpoint(folder / "valid.pt")
    raw = base.read_bytes()
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = folder / f"{name}.pt"
        files[name].write_bytes(data)

    write("empty", b"")
    write("text", b"this is a text file, not a checkpoint\n")
    write("random", rng.randbytes(4096))
    write("truncated-half", raw[: len(raw) // 2])
    write("truncated-head", raw[:64])
    write("zip-magic-only", b"PK\x03\x04" + rng.randbytes(200))
    flipped = bytearray(raw)
    for _ in range(32):
        flipped[rng.randrange(len(flipped))] ^= 0xFF
    write("bit-flips", bytes(flipped))
    empty_zip = io.BytesIO()
    zipfile.ZipFile(empty_zip, "w").close()
    write("empty-zip", empty_zip.getvalue())
    headers: dict[str, dict[str, Any]] = {
        "not-a-dict": {},
        "no-format": {"format_version": ...},
        "format-str": {"format_version": "1"},
        "format-future": {"format_version": 99},
        "arch-list": {"arch": [1, 2]},
        "arch-none": {"arch": None},
        "arch-both": {"arch": {"name": "resnet20", "factory": "os:system"}},
        "arch-neither": {"arch": {"kwargs": {}}},
        "arch-name-int": {"arch": {"name": 7}},
        "arch-unknown-zoo": {"arch": {"name": "resnet9000"}},
        "kwargs-str": {"arch": {"name": "resnet20", "kwargs": "x"}},
        "kwargs-bad-type": {"arch": {"name": "resnet20", "kwargs": {"num_classes": "x"}}},
        "kwargs-unknown": {"arch": {"name": "resnet20", "kwargs": {"nope": 1}}},
        "kwargs-negative": {"arch": {"name": "resnet20", "kwargs": {"num_classes": -3}}},
        "shape-short": {"input_shape": [1, 8]},
        "shape-zero": {"input_shape": [1, 0, 8]},
        "shape-huge": {"input_shape": [3, 1 << 20, 1 << 20]},
        "shape-str": {"input_shape": "1x8x8"},
        "plan-garbage": {"plan": {"groups": [{"root": "x"}]}},
        "plan-out-of-range": {"plan": {"groups": [{"root": "conv1", "width": 2, "keep": [5]}]}},
        "plan-future": {"plan": {"version": 9, "groups": []}},
        "plan-list": {"plan": [1, 2, 3]},
        "state-list": {"state_dict": [1, 2]},
        "state-wrong-shapes": {"state_dict": {"conv1.weight": torch.zeros(3)}},
        "state-empty": {"state_dict": {}},
    }
    for name, change in headers.items():
        if name == "not-a-dict":
            torch.save([1, 2, 3], folder / f"{name}.pt")
            files[name] = folder / f"{name}.pt"
            continue
        files[name] = rewrite(base, folder / f"{name}.pt", **change)
    files["deflate-bomb"] = deflate_bomb(folder / "deflate-bomb.pt", 24 << 20)
    return files


def tiny_onnx_bytes(location: str | None = None) -> tuple[bytes, bytes]:
    """A valid ONNX model ``Y = X @ W`` (X [1, 4]) and W's raw bytes; with ``location``, W is
    stored as external data at that location instead of inside the model."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    init = numpy_helper.from_array(w, "W")
    if location is not None:
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", str(w.nbytes))):
            init.external_data.add(key=k, value=v)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [init],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString(), w.tobytes()


def onnx_outside(folder: Path, location: str, target: Path | None = None) -> Path:
    """A model in ``folder`` whose weights name ``location``; ``target`` (outside the folder)
    gets the real weight bytes, so a loader that follows the location would succeed."""
    folder.mkdir(parents=True, exist_ok=True)
    model, weights = tiny_onnx_bytes(location)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(weights)
    path = folder / "model.onnx"
    path.write_bytes(model)
    return path


def broken_onnx(folder: Path, rng: random.Random) -> dict[str, Path]:
    """Files saved as ``.onnx`` that must be refused: not protobuf, no graph, weights outside."""
    folder.mkdir(parents=True, exist_ok=True)
    good, _ = tiny_onnx_bytes()
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = folder / f"{name}.onnx"
        files[name].write_bytes(data)

    write("empty", b"")
    write("text", b"not an onnx model\n")
    write("garbage", b"\x0a\xff\xff\xff" + rng.randbytes(512))
    write("truncated", good[: len(good) // 2])
    write("pt-renamed", zoo_checkpoint(folder / "renamed-src.pt").read_bytes())
    import onnx
    from onnx import helper

    no_input = helper.make_model(
        helper.make_graph([helper.make_node("Constant", [], ["Y"], value_float=1.0)], "g", [], [])
    )
    write("no-input", no_input.SerializeToString())
    write("no-graph", onnx.ModelProto(ir_version=8).SerializeToString())
    outside = folder / "outside"
    for name, location in (
        ("ext-dotdot", "../outside/weights.bin"),
        ("ext-etc-passwd", "../../../../../../etc/passwd"),
        ("ext-absolute", str(outside / "weights.bin")),
        ("ext-backslash", "..\\outside\\weights.bin"),
    ):
        d = folder / name
        files[name] = onnx_outside(d, location, outside / "weights.bin")
    link_dir = folder / "ext-symlink"
    link_dir.mkdir()
    (link_dir / "weights.bin").symlink_to(outside / "weights.bin")
    files["ext-symlink"] = onnx_outside(link_dir, "weights.bin")
    files["ext-missing"] = onnx_outside(folder / "ext-missing", "absent.bin")
    return files
