"""How the commands present themselves in ``--help``: metavars, choices, panels, examples.

Kept in one table beside the command modules (which define the options and what they do) so
the presentation is uniform: an option's metavar is its choices (``uniform|global``) or what it
names (``DEVICE``, ``DATASET``), else its name in capitals as argparse writes it; flags show none.
`decorate` applies the tables to the built Click command tree before each run. Help text is never
read as Rich markup: ``[ray]`` in a help string prints as ``[ray]``.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from edgeprune.vocab import Percentile

# Choices, as the library validates them (tests/unit/test_cli_help.py checks they agree).
MODES = ("uniform", "global", "search")
CONVENTIONS = ("all", "internal")
STRATEGIES = ("latency", "uniform", "netadapt")
DEPLOY_RUNTIMES = ("ort", "trt")
PRECISIONS = ("fp32", "fp16", "int8")
EXPORTERS = ("auto", "dynamo", "torchscript")
TRAIN_DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("threads", "ray")
AGENT_MODES = ("session", "command")

# Option name -> metavar, for every command; (command path, option) overrides it for one.
METAVARS: dict[str, str] = {
    "--data": "DATASET",
    "--device": "DEVICE",
    "--criterion": "NAME",
    "--criterion-opt": "KEY=VALUE",
    "--model-kwargs": "JSON",
    "--latency-budget": "BUDGET",
    "--mode": "|".join(MODES),
    "--convention": "|".join(CONVENTIONS),
    "--strategy": "|".join(STRATEGIES),
    "--percentile": "|".join(Percentile.choices()),
    "--runtime": "ort",
    "--precision": "fp32",
    "--exporter": "|".join(EXPORTERS),
    "--train-device": "|".join(TRAIN_DEVICES),
    "--engine": "|".join(ENGINES),
    "--agent-mode": "|".join(AGENT_MODES),
    "--to": "onnx",
    "--profile": "PROFILE",
    "--out": "PATH",
    "--ratios-file": "FILE",
    "--ignore-layers": "LAYER,...",
    "--tag": "TAG",
    "--jump": "DEVICE",
    "--key": "FILE",
    "--known-hosts": "FILE",
    "--workdir": "DIR",
    "--python": "PATH",
    "--base-python": "PATH",
    "--package": "REQUIREMENT",
    "--pip-arg": "ARG",
    "--ray-address": "HOST:PORT",
    "--older-than": "DAYS",
    "--warmup": "RUNS",
    "--runs": "RUNS",
    "--duration": "SECONDS",
    "--timeout": "SECONDS",
    "--bench-seconds": "SECONDS",
    "--table-seconds": "SECONDS",
}
COMMAND_METAVARS: dict[tuple[str, str], str] = {
    ("deploy", "--runtime"): "|".join(DEPLOY_RUNTIMES),
    ("deploy", "--precision"): "|".join(PRECISIONS),
    ("prune", "--out"): "RUNDIR",
    ("demo", "--out"): "RUNDIR",
    ("train", "--out"): "CHECKPOINT",
    ("export", "--out"): "FILE.onnx",
    ("search", "--out"): "FILE.json|FILE.pt",
    ("report", "--out"): "DIR",
}

# Help for options that mean the same wherever they appear (an option's own help wins).
DEFAULT_HELP: dict[str, str] = {
    "--seed": "Random seed (data order, sampling, initialisation).",
    "--epochs": "Training epochs.",
    "--batch-size": "Training batch size.",
    "--weight-decay": "SGD weight decay.",
    "--label-smoothing": "Label smoothing of the cross-entropy loss (0: none).",
    "--warmup-epochs": "Epochs of linear learning-rate warm-up before the cosine schedule.",
    "--min-channels": "Never keep fewer channels than this in any group.",
    "--calib-batch-size": "Images per calibration batch.",
    "--finetune-epochs": "Epochs of fine-tuning after pruning (0: none; needs --data).",
    "--finetune-lr": "Peak learning rate of the fine-tune (cosine schedule).",
    "--finetune-batch-size": "Fine-tuning batch size.",
    "--flops-reduction": "Fraction of FLOPs (MACs) to remove.",
    "--criterion": "Pruning criterion (see `edgeprune criteria`).",
    "--device": "Device name or profile to measure on (see `edgeprune devices list`).",
    "--data": "Dataset (see `edgeprune datasets`).",
    "--out": "Where to write the result.",
    "--batch": "Batch size of the measured inferences.",
    "--opset": "ONNX opset of the export (default: the exporter's, or the profile's).",
    "--runtime": "Runtime the search measures (ONNX Runtime, ort).",
    "--precision": "Precision the search measures (the ort runtime runs fp32).",
    "--percentile": "Statistic the budget applies to.",
    "--threads": "Inference threads (intra-op; inter-op is 1).",
    "--convention": "all groups (DepGraph) or internal (block-internal only, HRank/CHIP).",
    "--port": "SSH port.",
}

# Rich help panels of the commands with many options. Options not listed stay under "Options".
TARGET, CRITERION, SEARCH, FINETUNE, DEVICE, OUTPUT, INPUT = (
    "Target",
    "Criterion",
    "Latency search (--latency-budget)",
    "Fine-tune and evaluation",
    "Device and measurement",
    "Output",
    "Model and data",
)
PANEL_ORDER = (INPUT, TARGET, CRITERION, SEARCH, FINETUNE, DEVICE, OUTPUT)
PANELS: dict[str, dict[str, str]] = {
    "prune": {
        "--data": INPUT,
        "--model-kwargs": INPUT,
        "--image-size": INPUT,
        "--input-size": INPUT,
        "--seed": INPUT,
        "--ratio": TARGET,
        "--flops-reduction": TARGET,
        "--params-reduction": TARGET,
        "--ratios-file": TARGET,
        "--mode": TARGET,
        "--convention": TARGET,
        "--round-to": TARGET,
        "--min-channels": TARGET,
        "--ignore-layers": TARGET,
        "--criterion": CRITERION,
        "--criterion-opt": CRITERION,
        "--calib-batches": CRITERION,
        "--calib-batch-size": CRITERION,
        "--bn-recalibration": CRITERION,
        "--latency-budget": SEARCH,
        "--runtime": SEARCH,
        "--precision": SEARCH,
        "--percentile": SEARCH,
        "--strategy": SEARCH,
        "--table-seconds": SEARCH,
        "--max-layer-ratio": SEARCH,
        "--judge-steps": SEARCH,
        "--gradual-steps": SEARCH,
        "--search-evals": TARGET,
        "--proxy-samples": TARGET,
        "--model-code": INPUT,
        "--max-cv": DEVICE,
        "--finetune-epochs": FINETUNE,
        "--finetune-lr": FINETUNE,
        "--finetune-batch-size": FINETUNE,
        "--max-train-samples": FINETUNE,
        "--eval-samples": FINETUNE,
        "--device": DEVICE,
        "--bench-seconds": DEVICE,
        "--threads": DEVICE,
        "--out": OUTPUT,
        "--opset": OUTPUT,
        "--list-groups": OUTPUT,
        "--force": OUTPUT,
        "--json": OUTPUT,
    },
}
PANELS["search"] = {
    **{k: v for k, v in PANELS["prune"].items() if v != TARGET},
    "--min-channels": CRITERION,
    "--convention": CRITERION,
    "--device": SEARCH,
    "--search-evals": SEARCH,
    "--proxy-samples": SEARCH,
}

# Examples shown under every command's help (checked by the tests: every command has some).
EXAMPLES: dict[str, list[str]] = {
    "models": ["edgeprune models", "edgeprune models --json"],
    "datasets": ["edgeprune datasets"],
    "criteria": ["edgeprune criteria", "edgeprune criteria --json | jq '.criteria[].name'"],
    "train": [
        "edgeprune train resnet56 --data fashion-mnist --epochs 30 --out r56.pt",
        "edgeprune train resnet20 --data digits --epochs 4 --out r20.pt   # rerun resumes",
    ],
    "eval": ["edgeprune eval r56.pt --data fashion-mnist"],
    "prune": [
        "edgeprune prune r56.pt --data fashion-mnist --flops-reduction 0.5 --finetune-epochs 5 "
        "--device local --out runs/r56-l1",
        "edgeprune prune r56.pt --data fashion-mnist --latency-budget 0.5x --device local "
        "--out runs/r56-half",
        "edgeprune prune resnet56 --input-size 32 --ratio 0.3 --out runs/r56-struct",
        "edgeprune prune r56.pt --list-groups",
    ],
    "search": [
        "edgeprune search r56.pt --latency-budget 3ms --device nano-1 --out plan.json",
        "edgeprune search resnet20 --input-size 32 --latency-budget 0.6x --device local",
    ],
    "export": [
        "edgeprune export runs/r56-l1/model.pt --out r56.onnx",
        "edgeprune export r56.pt --profile jetson-tx2 --simplify --out r56-tx2.onnx",
    ],
    "bench": [
        "edgeprune bench r56.onnx --device local --duration 5",
        "edgeprune bench resnet20 --input-size 32 --device jetson-nano --threads 2 --json",
    ],
    "deploy": [
        "edgeprune deploy runs/r56-l1/model.pt --device nano-1",
        "edgeprune deploy r56.onnx --device jetson-nano --runtime trt --precision fp16",
        "edgeprune deploy r56.onnx --device nano-1 --wait 300   # queue up to 5 min for a busy board",
    ],
    "demo": ["edgeprune demo", "edgeprune demo --latency-budget 0.6x --out runs/demo-lat"],
    "profiles": ["edgeprune profiles", "edgeprune profiles jetson-nano"],
    "lint": ["edgeprune lint model.onnx --profile jetson-nano"],
    "report": [
        "edgeprune report runs/r56-l1            # a run directory",
        "edgeprune report sweep.yaml --out rep   # a sweep",
        "edgeprune report --all                  # the whole store, search probes included",
    ],
    "devices add": [
        "edgeprune devices add nano-1 --host 192.168.1.20 --user edge --key ~/.ssh/id_ed25519 "
        "--profile jetson-nano",
        "edgeprune devices trust nano-1",
    ],
    "devices list": ["edgeprune devices list"],
    "devices remove": ["edgeprune devices remove nano-1"],
    "devices trust": [
        "edgeprune devices trust nano-1",
        "edgeprune devices trust nano-1 --yes",
        "edgeprune devices trust nano-1 --replace   # after reinstalling the board",
    ],
    "devices check": ["edgeprune devices check", "edgeprune devices check nano-1 --json"],
    "devices provision": [
        "edgeprune devices provision nano-1",
        "edgeprune devices provision nano-1 --system-site-packages",
    ],
    "devices clean": ["edgeprune devices clean nano-1"],
    "cache list": ["edgeprune cache list"],
    "cache prune": ["edgeprune cache prune --older-than 30", "edgeprune cache prune --all"],
    "farm run": [
        "edgeprune farm run sweep.yaml              # rerun to resume",
        "edgeprune farm run sweep.yaml --engine ray --ray-address 10.0.0.5:6379",
    ],
    "farm status": ["edgeprune farm status sweep.yaml --watch"],
}


def epilog(path: str) -> str | None:
    lines = EXAMPLES.get(path)
    if not lines:
        return None
    return "Examples:\n" + "\n".join(f"$ {line}" for line in lines)


def decorate(command: Any, path: str = "") -> Any:
    """Apply metavars, default help, panels and examples to ``command`` and its subcommands;
    escape every help text so Rich prints it literally. Returns ``command``."""
    if command.help:
        command.help = escape(command.help)
    text = epilog(path)
    if text is not None:
        command.epilog = text
    if command.epilog:
        command.epilog = escape(command.epilog)
    panels = PANELS.get(path, {})
    for param in command.params:
        _param(param, path, panels)
    if panels:  # Typer shows panels in the order their first option appears
        command.params.sort(
            key=lambda p: PANEL_ORDER.index(p.rich_help_panel) if p.rich_help_panel else -1
        )
    _plain_help_option(command)
    for name, sub in (getattr(command, "commands", None) or {}).items():
        decorate(sub, f"{path} {name}".strip())
    return command


def _plain_help_option(command: Any) -> None:
    """Typer builds ``-h/--help`` lazily and shows it as ``<bool>``; blank that."""
    build = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = build(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option


def _param(param: Any, path: str, panels: dict[str, str]) -> None:
    if param.param_type_name == "argument":
        if param.metavar is None:
            param.metavar = (param.name or "").upper() + ("..." if param.nargs != 1 else "")
        # The name column shows the metavar; Typer would add the Python type (<str>) beside it.
        param.display_type_rich = lambda ctx: None
        return
    long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    if param.help is None and long in DEFAULT_HELP:
        param.help = DEFAULT_HELP[long]
    if param.help:
        param.help = escape(param.help)
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif param.metavar is None:
        param.metavar = COMMAND_METAVARS.get(
            (path, long), METAVARS.get(long, long.lstrip("-").replace("-", "_").upper())
        )
    if long in panels:
        param.rich_help_panel = panels[long]
