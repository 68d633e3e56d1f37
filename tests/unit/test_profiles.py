"""Device profiles: the shipped YAML files, validation, and the user search order."""

from pathlib import Path

import pytest
import yaml

from edgeprune.errors import UnknownNameError, UsageError
from edgeprune.profiles import DeviceProfile, builtin_dir, list_profiles, load_profile

BUILTINS = sorted(p.stem for p in builtin_dir().glob("*.yaml"))
EXPECTED = {"jetson-tx2", "jetson-nano", "jetson-orin-nano", "rpi4", "rpi5", "x86-cpu", "local"}


def test_every_required_profile_ships() -> None:
    assert set(BUILTINS) >= EXPECTED
    assert {p.name for p in list_profiles()} >= EXPECTED


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_profile_is_valid_and_round_trips(name: str) -> None:
    prof = load_profile(name)
    assert prof.name == name and Path(prof.source).parent == builtin_dir()
    again = DeviceProfile.from_dict(prof.to_dict(), source=prof.source)
    assert again == prof
    if prof.uses_tensorrt:
        assert prof.trtexec and prof.trtexec.startswith("/")
        assert prof.clocks.query_power_mode is not None and prof.clocks.telemetry is not None


@pytest.mark.parametrize(
    ("name", "trt", "opset", "python"),
    [
        # docs/DEVICES.md: JetPack 4.6 → TensorRT 8.2, parser opset ≤ 13, Python 3.6.
        ("jetson-tx2", (8, 2, 1), 13, "3.6"),
        ("jetson-nano", (8, 2, 1), 13, "3.6"),
        # JetPack 6.1/6.2 → TensorRT 10.3, opset ≤ 20, Python 3.10.
        ("jetson-orin-nano", (10, 3, 0), 20, "3.10"),
    ],
)
def test_jetson_profiles_follow_the_jetpack_table(name, trt, opset, python) -> None:
    prof = load_profile(name)
    assert prof.tensorrt_version == trt and prof.max_opset == opset and prof.python == python
    assert prof.arch == "aarch64"
    # TX2 (sm_62) and Nano (sm_53) have no fast INT8; Orin's Tensor Cores do.
    assert ("int8" in prof.fast_precisions) == (name == "jetson-orin-nano")


def test_pi_profiles_read_throttle_and_temperature() -> None:
    for name in ("rpi4", "rpi5"):
        prof = load_profile(name)
        assert prof.clocks.throttle == ("/usr/bin/vcgencmd", "get_throttled")
        assert prof.clocks.temperature == ("/usr/bin/vcgencmd", "measure_temp")
        assert not prof.uses_tensorrt and prof.tensorrt is None


def _write(directory: Path, name: str, **changes) -> Path:
    data = load_profile("rpi4").to_dict()
    data.pop("source")
    data.update(name=name, **changes)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_user_profiles_shadow_builtins_in_search_order(_isolated, monkeypatch, tmp_path) -> None:
    config_dir = tmp_path / "cfg"
    monkeypatch.setenv("EDGEPRUNE_CONFIG", str(config_dir))
    _write(config_dir / "profiles", "my-board", description="from config")
    _write(config_dir / "profiles", "rpi4", description="config rpi4")
    assert load_profile("my-board").description == "from config"
    assert load_profile("rpi4").description == "config rpi4"
    # ./profiles/ (the working directory) wins over the config dir.
    _write(_isolated / "profiles", "rpi4", description="cwd rpi4")
    assert load_profile("rpi4").description == "cwd rpi4"
    listed = {p.name: p.description for p in list_profiles()}
    assert listed["rpi4"] == "cwd rpi4" and listed["my-board"] == "from config"
    assert "jetson-tx2" in listed


def test_unknown_profile_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError) as e:
        load_profile("jetson-tx3")
    assert "jetson-tx2" in str(e.value) and e.value.hint and "profiles/NAME.yaml" in e.value.hint


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"max_opset": 99}, "max_opset"),
        ({"fast_precisions": ["fp16"]}, "fast_precisions"),
        ({"runtimes": ["tensorrt"]}, "tensorrt version"),
        ({"arch": "mips"}, "arch"),
        ({"trtexec": "trtexec"}, "absolute path"),
        ({"clocks": {"throttle": ["vcgencmd", "get_throttled"]}}, "absolute path"),
        ({"clocks": {"fan": ["/usr/bin/fan"]}}, "unknown clocks key"),
        ({"colour": "red"}, "unknown key"),
        ({"runtimes": "onnxruntime"}, "must be a list"),
    ],
)
def test_invalid_user_profile_is_refused_with_the_reason(_isolated, changes, match) -> None:
    _write(_isolated / "profiles", "bad", **changes)
    with pytest.raises(UsageError, match=match):
        load_profile("bad")


def test_missing_key_and_name_mismatch_are_refused(_isolated) -> None:
    path = _write(_isolated / "profiles", "short")
    data = yaml.safe_load(path.read_text())
    del data["max_opset"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UsageError, match="missing key"):
        load_profile("short")
    _write(_isolated / "profiles", "other", description="x")
    (_isolated / "profiles" / "other.yaml").rename(_isolated / "profiles" / "renamed.yaml")
    with pytest.raises(UsageError, match="differs from the file name"):
        load_profile("renamed")
