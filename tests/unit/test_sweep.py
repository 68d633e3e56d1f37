"""The sweep file: validation with one-line errors, planning, stable job ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeprune.farm import SweepError, load_sweep, plan_sweep
from edgeprune.farm.sweep import SweepSpec

BASE: dict[str, Any] = {
    "name": "s1",
    "models": ["resnet20", {"model": "resnet32", "kwargs": {"in_channels": 1}, "input_size": 16}],
    "criteria": ["l1", {"name": "fpgm"}],
    "targets": [{"ratio": 0.3}, {"flops": 0.5}, {"latency": "0.6x"}],
    "devices": ["dev0", "rpi4"],
    "runtimes": ["ort", {"runtime": "ort", "threads": 2}],
    "repeat": 2,
    "bench": {"min_seconds": 0.5},
}


def write(tmp: Path, data: Any) -> Path:
    p = tmp / "sweep.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_valid_sweep_round_trips(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, BASE))
    assert [m.model for m in spec.models] == ["resnet20", "resnet32"]
    assert spec.models[1].input_size == 16 and spec.models[1].kwargs == {"in_channels": 1}
    assert [t.kind for t in spec.targets] == ["ratio", "flops", "latency"]
    assert spec.runtimes[1].threads == 2
    again = SweepSpec.from_dict(spec.to_dict())
    assert again.to_dict() == spec.to_dict()
    assert spec.bench_config(spec.runtimes[1]).threads == 2
    assert spec.bench_config(spec.runtimes[0]).min_seconds == 0.5


def test_plan_counts_and_device_specific_budgets(tmp_path: Path) -> None:
    plan = plan_sweep(load_sweep(write(tmp_path, BASE)))
    # per model: base + 2 criteria x 2 fraction targets (shared by devices) + 2 criteria x 1 budget x 2 devices
    assert len(plan.preps) == 2 * (1 + 4 + 4)
    per_runtime_repeat = 2 * 2  # runtimes x repeat
    # per model: (base + 4 fraction variants) on both devices + 4 budget variants on their own device
    assert len(plan.jobs) == 2 * ((1 + 4) * 2 + 4) * per_runtime_repeat
    budget = [p for p in plan.preps.values() if p.on_device]
    assert {p.entry for p in budget} == {"dev0", "rpi4"}
    for p in budget:
        assert {j.entry for j in plan.jobs_of(p.id)} == {p.entry}
    ids = [j.job_id for j in plan.jobs]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("s1/") for i in ids)


def test_job_ids_are_stable_and_track_the_spec(tmp_path: Path) -> None:
    a = plan_sweep(load_sweep(write(tmp_path, BASE)))
    b = plan_sweep(load_sweep(write(tmp_path, BASE)))
    assert [j.job_id for j in a.jobs] == [j.job_id for j in b.jobs]
    changed = plan_sweep(load_sweep(write(tmp_path, {**BASE, "bench": {"min_seconds": 1.0}})))
    assert not {j.job_id for j in a.jobs} & {j.job_id for j in changed.jobs}
    # A variant's id ignores the sweep name: two sweeps share their artifacts.
    renamed = plan_sweep(load_sweep(write(tmp_path, {**BASE, "name": "other"})))
    assert set(renamed.preps) == set(a.preps)
    assert not {j.job_id for j in a.jobs} & {j.job_id for j in renamed.jobs}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "bad name!"}, "name: must match"),
        ({"models": []}, "models: must be a non-empty list"),
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"criteria": ["nope"]}, "criteria[0]: unknown criterion"),
        ({"targets": [{"ratio": 1.5}]}, "targets[0].ratio: must be a fraction"),
        ({"targets": [{"ratio": 0.3, "flops": 0.2}]}, "needs exactly one of"),
        ({"targets": [{"latency": "fast"}]}, "invalid latency budget"),
        ({"runtimes": [{"runtime": "ort", "precision": "fp16"}]}, "ONNX Runtime measures"),
        ({"runtimes": ["tflite"]}, "unknown runtime 'tflite'"),
        ({"repeat": 0}, "repeat: must be >= 1"),
        ({"bench": {"threads": 2}}, "bench: unknown key(s) threads"),
        ({"finetune": {"epochs": 1}}, "fine-tuning needs data"),
        ({"devices": ["dev0", "dev0"]}, "devices: has duplicate entries"),
        ({"targets": [], "base": False}, "nothing to measure"),
        ({"prune": {"round_to": 0}}, "prune: --round-to must be >= 1"),
        ({"farm": {"max_parallel": 0}}, "farm.max_parallel: must be >= 1"),
    ],
)
def test_invalid_sweeps_fail_with_one_line(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, {**BASE, **change})
    with pytest.raises(SweepError) as e:
        load_sweep(path)
    text = str(e.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith(str(path))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match=r"not valid YAML \(line \d+\)"):
        load_sweep(write(tmp_path, "name: x\nmodels: [a\n"))
    with pytest.raises(SweepError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.yaml")


def test_cli_reports_a_bad_sweep_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeprune.cli import main

    path = write(tmp_path, {**BASE, "repeat": "many"})
    assert main(["farm", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "repeat: must be an integer" in err
    assert main(["farm", "status", str(path), "--json"]) == 2
    assert '"error": "SweepError"' in capsys.readouterr().out


def test_ray_engine_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from edgeprune.errors import DependencyMissingError, UsageError
    from edgeprune.farm.run import make_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like
    with pytest.raises(DependencyMissingError) as e:
        make_engine("ray")
    assert e.value.hint == "pip install 'edgeprune[ray]'"
    with pytest.raises(UsageError, match="unknown engine"):
        make_engine("dask")
