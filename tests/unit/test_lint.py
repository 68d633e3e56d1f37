"""Per-target export and the compatibility lint, on real exported ONNX files."""

import json
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgeprune.checkpoint import resolve_model
from edgeprune.cli import main
from edgeprune.errors import ExportError, NotFoundError, UsageError
from edgeprune.export import TensorSpec, file_opset, onnx_from_torch
from edgeprune.export.lint import has_errors, lint_onnx, opset_for, trt_supported_ops
from edgeprune.pipeline.flows import export_onnx
from edgeprune.profiles import load_profile


@pytest.fixture(scope="module")
def r20():
    torch.manual_seed(0)
    return resolve_model("resnet20", {"in_channels": 1}, input_size=16)


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory, r20) -> Path:
    """The exporter's default opset (dynamo, ≥ 18)."""
    path = tmp_path_factory.mktemp("def") / "m.onnx"
    onnx_from_torch(r20.model, r20.input_shape, path)
    return path


def _codes(findings, level=None):
    return {f.code for f in findings if level is None or f.level == level}


def _tiny(tmp_path: Path, op: str, opset: int = 13, domain: str = "") -> Path:
    """A checked one-node model using ``op`` (a real file ONNX Runtime can load)."""
    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    out_type = TensorProto.INT64 if op == "NonZero" else TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", out_type, None)],
    )
    imports = [helper.make_opsetid("", opset)] + (
        [helper.make_opsetid(domain, 1)] if domain else []
    )
    model = helper.make_model(graph, opset_imports=imports)
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, str(path))
    return path


def test_default_opset_export_fails_lint_for_tx2_with_the_opset_13_fix(default_onnx) -> None:
    findings = lint_onnx(default_onnx, "jetson-tx2")
    assert has_errors(findings)
    opset = next(f for f in findings if f.code == "opset-too-new")
    assert opset.level == "error" and f"opset {file_opset(default_onnx)}" in opset.message
    assert "--opset 13" in opset.fix and "--profile jetson-tx2" in opset.fix
    # TensorRT 10 (Orin) and ONNX Runtime targets accept the same file.
    for target in ("jetson-orin-nano", "rpi4", "local"):
        assert not has_errors(lint_onnx(default_onnx, target)), target


def test_profile_export_for_tx2_is_opset_13_single_file_and_passes_lint(tmp_path) -> None:
    out = tmp_path / "tx2" / "m.onnx"
    res = export_onnx("resnet20", out, input_size=16, profile="jetson-tx2")
    e = res.export
    assert e.opset == 13 == file_opset(out) and e.exporter == "torchscript"
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.onnx"] and not e.external_data
    assert e.inputs[0] == TensorSpec("input", [1, 3, 16, 16], "float32")
    assert res.profile == "jetson-tx2"
    assert not [f for f in res.lint if f.level == "error"]
    assert not has_errors(lint_onnx(out, "jetson-tx2"))


def test_lint_cli_exit_codes_and_json(capsys, tmp_path, default_onnx) -> None:
    assert main(["lint", str(default_onnx), "--profile", "jetson-tx2"]) == 1
    assert "--opset 13" in capsys.readouterr().out
    assert main(["lint", str(default_onnx), "--profile", "local", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["counts"]["error"] == 0
    assert main(["lint", str(tmp_path / "missing.onnx"), "--profile", "local"]) == 2
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \x00\xff")
    assert main(["lint", str(tmp_path / "junk.onnx"), "--profile", "local"]) == 2
    assert main(["lint", str(default_onnx), "--profile", "no-such-board"]) == 2


def test_export_cli_with_profile_and_simplify(capsys, tmp_path) -> None:
    out = tmp_path / "s.onnx"
    args = ["export", "resnet20", "--input-size", "16", "--out", str(out)]
    assert main([*args, "--profile", "jetson-nano", "--simplify", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["opset"] == 13 and res["profile"] == "jetson-nano"
    # The TorchScript exporter's Identity nodes are folded away; parity was checked again.
    assert res["simplify"]["nodes_after"] < res["simplify"]["nodes_before"]
    assert res["simplify"]["removed"].get("Identity", 0) > 0
    assert res["parity_max_abs_diff"] <= res["parity_tolerance"] * max(
        1, res["parity_output_scale"]
    )
    assert file_opset(out) == 13
    assert main([*args, "--profile", "jetson-nano", "--opset", "17"]) == 2
    assert "limit of 13" in capsys.readouterr().err


def test_opset_for_profiles() -> None:
    assert opset_for(load_profile("jetson-tx2")) == 13
    assert opset_for(load_profile("jetson-orin-nano")) == 20
    assert opset_for(load_profile("local")) <= load_profile("local").max_opset
    assert opset_for(load_profile("rpi4"), 11) == 11
    with pytest.raises(UsageError, match="limit of 13"):
        opset_for(load_profile("jetson-nano"), 14)


def test_ops_missing_from_trt_82_are_errors_with_the_version_that_adds_them(tmp_path) -> None:
    path = _tiny(tmp_path, "NonZero")  # opset 9 op; onnx-tensorrt parses it from 8.5
    tx2 = [f for f in lint_onnx(path, "jetson-tx2") if f.code == "unsupported-op"]
    assert len(tx2) == 1 and tx2[0].level == "error" and "NonZero" in tx2[0].message
    assert "TensorRT 8.5" in tx2[0].fix
    assert "unsupported-op" not in _codes(lint_onnx(path, "jetson-orin-nano"))
    assert "unsupported-op" not in _codes(lint_onnx(path, "rpi4"))
    assert "NonZero" not in trt_supported_ops((8, 2, 1)) and "NonZero" in trt_supported_ops((8, 5))


def test_custom_domain_ops_fail_on_tensorrt(tmp_path) -> None:
    path = _tiny(tmp_path, "Gelu", domain="com.microsoft")
    findings = lint_onnx(path, "jetson-orin-nano")
    custom = [f for f in findings if f.code == "custom-op"]
    assert custom and custom[0].level == "error" and "com.microsoft" in custom[0].message
    assert "custom-op" not in _codes(lint_onnx(path, "local"))  # ONNX Runtime runs contrib ops


def test_dynamic_batch_is_a_warning_for_tensorrt_and_info_for_ort(tmp_path, r20) -> None:
    path = tmp_path / "dyn.onnx"
    onnx_from_torch(r20.model, r20.input_shape, path, opset=13, dynamic_batch=True)
    tx2 = [f for f in lint_onnx(path, "jetson-tx2") if f.code == "dynamic-shape"]
    assert tx2 and tx2[0].level == "warning" and tx2[0].nodes == ("input",)
    local = [f for f in lint_onnx(path, "local") if f.code == "dynamic-shape"]
    assert local and local[0].level == "info"


def test_external_data_warns_and_a_missing_side_file_is_an_error(tmp_path, r20) -> None:
    path = tmp_path / "ext.onnx"
    res = onnx_from_torch(r20.model, r20.input_shape, path, external_data=True)
    assert res.external_data
    found = [f for f in lint_onnx(path, "local") if f.code == "external-data"]
    assert found and found[0].level == "warning"
    for side in tmp_path.glob("ext.onnx.*"):
        side.unlink()
    missing = [f for f in lint_onnx(path, "local") if f.code == "external-data-missing"]
    assert missing and missing[0].level == "error"


def test_int64_constants_warn_on_trt8_only(default_onnx) -> None:
    tx2 = [f for f in lint_onnx(default_onnx, "jetson-tx2") if f.code == "int64-weights"]
    assert tx2 and tx2[0].level == "warning" and "INT32" in tx2[0].message
    assert "int64-weights" not in _codes(lint_onnx(default_onnx, "jetson-orin-nano"))


def test_channels_off_the_preferred_multiple(tmp_path) -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 16, 3, padding=1)
    ).eval()
    path = tmp_path / "c12.onnx"
    onnx_from_torch(net, (3, 8, 8), path, opset=13)
    tx2 = [f for f in lint_onnx(path, "jetson-tx2") if f.code == "channel-multiple"]
    assert len(tx2) == 1 and tx2[0].level == "warning" and "(12)" in tx2[0].message
    assert "--round-to 8" in tx2[0].fix and len(tx2[0].nodes) == 1
    assert "channel-multiple" not in _codes(lint_onnx(path, "rpi4"))  # 12 % 4 == 0


def test_lint_refuses_non_onnx_and_missing_files(tmp_path) -> None:
    with pytest.raises(NotFoundError):
        lint_onnx(tmp_path / "nope.onnx", "local")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ExportError):
        lint_onnx(bad, "local")


@pytest.mark.parametrize(
    "location",
    ["../weights.bin", "../../../../etc/passwd", "/etc/passwd", "..\\weights.bin", "C:/w.bin"],
)
def test_external_data_outside_the_folder_is_an_error_and_is_refused(tmp_path, location) -> None:
    from hostile import onnx_outside

    from edgeprune.export import check_onnx_file

    model = onnx_outside(tmp_path / "m", location)
    findings = lint_onnx(model, "x86-cpu")
    assert [f.code for f in findings if f.level == "error"] == ["external-data-outside"]
    with pytest.raises(ExportError, match="refusing to read or ship it"):
        check_onnx_file(model)


def test_a_symlinked_side_file_that_leaves_the_folder_is_outside(tmp_path) -> None:
    from hostile import onnx_outside

    model = onnx_outside(tmp_path / "m", "w.bin", tmp_path / "secret.bin")
    (tmp_path / "m" / "w.bin").symlink_to(tmp_path / "secret.bin")
    codes = [f.code for f in lint_onnx(model, "x86-cpu") if f.level == "error"]
    assert codes == ["external-data-outside"]
    (tmp_path / "m" / "w.bin").unlink()
    (tmp_path / "m" / "w.bin").write_bytes((tmp_path / "secret.bin").read_bytes())
    assert {f.code for f in lint_onnx(model, "x86-cpu")} >= {"external-data"}
    assert not has_errors(lint_onnx(model, "x86-cpu"))
