"""The command line's conventions: global flags, help (examples, panels, metavars, choices), JSON
errors for command-line mistakes, messages that name the fix, and the public Python API."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from edgeprune.cli import _help as help_tables
from edgeprune.cli import command, main
from edgeprune.vocab import Precision


def _commands(cmd: Any = None, path: str = "") -> list[tuple[str, Any]]:
    cmd = cmd or command()
    subs = getattr(cmd, "commands", None)
    if subs is None:
        return [(path, cmd)]
    out = [(path, cmd)] if path else []
    for name, sub in subs.items():
        out += _commands(sub, f"{path} {name}".strip())
    return out


LEAVES = [p for p, c in _commands() if getattr(c, "commands", None) is None]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_command_has_examples_and_every_option_help() -> None:
    assert len(LEAVES) >= 25
    for path, cmd in _commands():
        if getattr(cmd, "commands", None) is not None:
            continue
        assert cmd.epilog and "Examples:" in cmd.epilog, path
        examples = cmd.epilog.splitlines()[1:]
        assert examples and all(line.startswith("$ edgeprune ") for line in examples), path
        assert any(line.startswith(f"$ edgeprune {path}") for line in examples), path
        for p in cmd.params:
            assert p.help, f"{path} {p.opts or p.name} has no help"


@pytest.mark.parametrize("path", LEAVES)
def test_help_shows_readable_metavars_and_no_python_types(
    path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    code, out, _ = run(capsys, *path.split(), "-h")
    assert code == 0 and "Examples:" in out
    assert not re.search(r"<(str|int|float|bool|path|list\[[a-z]+\])>", out), out


def test_prune_options_are_grouped_in_panels_and_choices_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    _, out, _ = run(capsys, "prune", "--help")
    for panel in ("Target", "Criterion", "Latency search", "Fine-tune", "Device", "Output"):
        assert f"─ {panel}" in out, panel
    for choices in ("uniform|global|search", "all|internal", "latency|uniform|netadapt"):
        assert choices in out
    prune = dict(_commands())["prune"]
    unpanelled = [
        p.opts[0] for p in prune.params if p.param_type_name == "option" and not p.rich_help_panel
    ]
    assert unpanelled == [], "every prune option belongs to a panel"


def test_choices_in_help_are_the_ones_the_library_accepts() -> None:
    from edgeprune.device.inventory import AGENT_MODES
    from edgeprune.pipeline.deploy import DEPLOY_RUNTIMES
    from edgeprune.prune._prune import MODES
    from edgeprune.search import STRATEGIES

    assert help_tables.STRATEGIES == STRATEGIES
    assert help_tables.DEPLOY_RUNTIMES == DEPLOY_RUNTIMES
    assert set(help_tables.PRECISIONS) == set(Precision.choices())
    assert help_tables.MODES == MODES
    assert help_tables.AGENT_MODES == AGENT_MODES


def test_warmup_help_says_it_counts_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("bench", "deploy"):
        opt = next(p for p in dict(_commands())[cmd].params if "--warmup" in p.opts)
        assert opt.metavar == "RUNS" and "count" in opt.help and "not milliseconds" in opt.help


def test_model_kwargs_help_example_works() -> None:
    from edgeprune.checkpoint import resolve_model
    from edgeprune.models import parse_kwargs

    for cmd in ("prune", "deploy", "bench"):
        opt = next(p for p in dict(_commands())[cmd].params if "--model-kwargs" in p.opts)
        example = re.search(r"'(\{.*?\})'", opt.help)
        assert example, opt.help
        bundle = resolve_model("resnet20", parse_kwargs(example.group(1)), input_size=8)
        assert bundle.arch.kwargs == json.loads(example.group(1))


def test_version_short_and_long(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeprune import __version__

    for flag in ("--version", "-V"):
        code, out, _ = run(capsys, flag)
        assert code == 0 and out.strip() == f"edgeprune {__version__}"


def test_h_is_help_for_the_app_and_for_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-h")
    assert code == 0 and "Usage: edgeprune" in out and "--verbose" in out and "--quiet" in out
    code, out, _ = run(capsys, "devices", "add", "-h")
    assert code == 0 and "Usage: edgeprune devices add" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "resnet20", "--ratio", "abc", "--json"],
        ["bench", "resnet20", "--no-such-flag", "--json"],
        ["no-such-command", "--json"],
    ],
)
def test_command_line_mistakes_under_json_print_the_error_object(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    data = json.loads(out)
    assert data["error"] == "CommandLineError" and data["message"] and "--help" in data["hint"]
    assert "Error" in err  # the human message still goes to stderr


def test_verbose_turns_on_debug_logging_of_every_edgeprune_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "-v", "models", "--json")
    assert code == 0 and "debug: edgeprune.cli: argv: edgeprune -v models --json (edgeprune " in err
    logging.getLogger("edgeprune.device").debug("remote argv: %s", "python3 -- agent.py")
    assert "debug: edgeprune.device: remote argv: python3 -- agent.py" in capsys.readouterr().err
    run(capsys, "models", "--json")  # without -v: back to warnings only
    logging.getLogger("edgeprune.device").debug("hidden")
    assert "hidden" not in capsys.readouterr().err


def test_quiet_turns_progress_off(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeprune._progress import _active
    from edgeprune.cli._app import progress, settings

    run(capsys, "-q", "models", "--json")
    assert settings.quiet
    with progress(json_out=False):
        assert _active.get() is None
    run(capsys, "models", "--json")
    with progress(json_out=True):
        assert _active.get() is None
    with progress(json_out=False):
        assert _active.get() is not None


def test_rich_markup_in_user_text_is_printed_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "devices", "add", "dev1", "--host", "10.0.0.9", "--profile", "x86-cpu",
        "--tag", "[/x]", "--tag", "[bold]lab",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "devices", "list")
    assert code == 0 and "[/x]" in out and "[bold]lab" in out
    code, out, err = run(capsys, "eval", "/nowhere/[/x]/m.pt", "--data", "digits")
    assert code == 2 and "[/x]" in err and len(err.strip().splitlines()) == 1


def test_invalid_devices_yaml_errors_give_line_and_column(
    capsys: pytest.CaptureFixture[str],
) -> None:
    inv = Path("devices.yaml")
    inv.write_text("devices:\n  a:\n    host: h\n  b:\n    host: h\n    bogus: 1\n")
    code, _, err = run(capsys, "devices", "list")
    assert code == 2 and f"{inv.resolve()}:4:3: device 'b' has unknown keys: bogus" in err
    inv.write_text("devices:\n  a:\n    host: h\n   profile: [x\n")
    code, _, err = run(capsys, "devices", "list")
    assert code == 2 and f"{inv.resolve()}:4:4: not valid YAML" in err


def test_devices_add_refuses_an_unknown_profile_listing_the_profiles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "devices", "add", "pi", "--host", "10.0.0.2", "--profile", "rpi4-64")
    assert code == 2 and "unknown profile 'rpi4-64'" in err and "rpi4, rpi5" in err
    assert not Path("devices.yaml").exists()


def test_unknown_device_lists_devices_and_profiles_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(capsys, "devices", "add", "nano-1", "--host", "10.0.0.3", "--profile", "jetson-nano")
    run(capsys, "devices", "add", "nano-3", "--host", "10.0.0.4", "--profile", "jetson-nano")
    code, _, err = run(capsys, "bench", "resnet20", "--device", "nano-2")
    assert code == 2
    devices = re.search(r"devices: ([^;]+);", err).group(1).split(", ")
    profiles = re.search(r"profiles of these devices: ([^(]+) \(", err).group(1).split(", ")
    assert devices == ["local", "nano-1", "nano-3"] and profiles == ["jetson-nano", "local"]


def test_a_directory_given_as_model_says_it_is_a_directory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Path("adir").mkdir()
    code, _, err = run(capsys, "export", "adir", "--out", "x.onnx")
    assert code == 2 and "adir is a directory, not a model" in err
    Path("run").mkdir()
    Path("run/model.pt").write_bytes(b"")
    code, _, err = run(capsys, "export", "run", "--out", "x.onnx")
    assert code == 2 and "did you mean run/model.pt?" in err


def test_a_data_driven_criterion_without_data_fails_before_the_model_is_loaded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The checkpoint does not exist: loading it first would report that instead.
    for argv in (
        ["prune", "missing.pt", "--criterion", "hrank", "--ratio", "0.3", "--out", "r"],
        ["search", "missing.pt", "--criterion", "hrank", "--latency-budget", "0.5x"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "criterion hrank is data-driven and needs --data" in err, argv
    assert not Path("r").exists() and not Path(".r.partial").exists()


def test_ray_address_environment_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    from edgeprune.farm.run import make_engine

    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert make_engine("ray").address == "10.1.2.3:6379"  # type: ignore[attr-defined]
    assert make_engine("ray", ray_address="h:1").address == "h:1"  # type: ignore[attr-defined]
    make_engine("threads")  # the variable is for Ray only: no "--ray-address needs --engine ray"
