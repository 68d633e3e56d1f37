"""The one gate for an ONNX file handed to edgeprune: readable, a model, weights kept in its folder.

An ONNX file may keep tensors in side files named by a ``location`` string; ONNX Runtime, the
agent and the device cache read those paths relative to the model. A location that is absolute,
walks up with ``..`` or resolves (through a symlink) outside the model's folder would make us
read — or ship to a device — a file the model's author chose (``../../etc/passwd``). Every
command that takes an ONNX file calls `check_onnx_file` before reading weights or uploading, and
`lint` reports the same problem as an error finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from edgeprune.errors import ExportError, NotFoundError, one_line


@dataclass(frozen=True)
class ExternalData:
    """The tensors one side file holds and, when its location escapes the model's folder, why."""

    location: str
    tensors: tuple[str, ...]
    escape: str | None = None


def load_onnx_header(path: str | Path) -> Any:
    """The ModelProto of ``path`` without its external data.

    Raises `NotFoundError` for a missing file and `ExportError` for one that is not an ONNX model
    (not a protobuf, or a protobuf with no graph or no input).
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"ONNX file not found: {path}", hint="check the path")
    hint = "pass an .onnx file written by `edgeprune export`"
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have many types
        raise ExportError(f"{path} is not a readable ONNX model: {one_line(e)}", hint=hint) from e
    if not model.HasField("graph") or not model.graph.node:
        raise ExportError(f"{path} is not an ONNX model (it holds no graph)", hint=hint)
    initializers = {i.name for i in model.graph.initializer}
    if not any(i.name not in initializers for i in model.graph.input):
        raise ExportError(f"{path} is an ONNX graph without an input", hint=hint)
    return model


def _tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("g"):
            yield from _tensors(attr.g)
        for g in attr.graphs:
            yield from _tensors(g)


def _escape(location: str, folder: Path) -> str | None:
    """Why ``location`` is not a file inside ``folder`` (None when it is)."""
    if not location or "\0" in location:
        return "an empty or NUL-containing location"
    for flavour in (PurePosixPath(location), PureWindowsPath(location)):
        if flavour.is_absolute() or flavour.drive or flavour.root:
            return "an absolute path"
        if ".." in flavour.parts:
            return "a path that walks up with '..'"
    # Lexically inside: resolving reads only link metadata within the folder.
    root = folder.resolve()
    target = (folder / location).resolve()
    if target == root or not target.is_relative_to(root):
        return "a link that resolves outside the model's folder"
    return None


def external_data(model: Any, path: str | Path) -> list[ExternalData]:
    """Every side file ``model`` (loaded from ``path``) names, with the tensors in it."""
    import onnx

    folder = Path(path).parent
    by_location: dict[str, list[str]] = {}
    tensors = [*_tensors(model.graph)]
    for fn in model.functions:
        for node in fn.node:
            tensors.extend(_node_tensors(node))
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            by_location.setdefault(location, []).append(t.name)
    return [
        ExternalData(loc, tuple(names), _escape(loc, folder))
        for loc, names in sorted(by_location.items())
    ]


def check_onnx_file(path: str | Path) -> Any:
    """Refuse an ONNX file before anything reads its weights or ships it; return its header.

    Raises `NotFoundError`/`ExportError` as `load_onnx_header` does, and `ExportError` when a
    tensor's data lives in a side file: outside the model's folder (refused as unsafe, before
    any path is touched) or beside it (devices receive one file).
    """
    model = load_onnx_header(path)
    for d in external_data(model, path):
        if d.escape is not None:
            raise ExportError(
                f"{path} keeps tensor {d.tensors[0]!r} in {d.location!r}, {d.escape}; "
                "refusing to read or ship it",
                hint="external data must be a file next to the model; better, re-export it "
                "as one self-contained file (`edgeprune export MODEL --out model.onnx`)",
            )
        # Inside the folder, but devices receive the one model file: say so now, not after
        # the upload when the device's runtime misses the side file.
        raise ExportError(
            f"{path} keeps tensor {d.tensors[0]!r} in the side file {d.location}; "
            "edgeprune ships single-file models",
            hint="re-export without --external-data (one self-contained file below 2 GB)",
        )
    return model
