"""Option groups shared by the commands: each option declared once, each group's config object
built in one place (as Polygraphy's argument groups do).

- model: ``--model-kwargs``, ``--model-code``, ``--image-size``, ``--input-size``
  (`model_kwargs_of`);
- benchmark protocol (``bench`` and ``deploy``): ``--threads``, ``--runs``, ``--duration``,
  ``--warmup``, ``--repeats`` (`protocol_config`);
- latency search (``prune --latency-budget`` and ``search``): ``--table-seconds``,
  ``--max-layer-ratio``, ``--judge-steps``, ``--gradual-steps``, ``--search-evals``,
  ``--proxy-samples``, ``--max-cv`` (`search_config`);
- prune target and fine-tune (``prune``): ``--ratio`` / ``--flops-reduction`` /
  ``--params-reduction`` / ``--ratios-file`` against ``--latency-budget`` (`prune_target`),
  ``--finetune-*`` (`finetune_config`);
- output: ``--json``.

Importing this module stays cheap (no torch): the builders import what they build lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edgeprune.cli._app import JSON_HELP
from edgeprune.errors import UsageError, one_line

if TYPE_CHECKING:
    from edgeprune.bench import BenchConfig
    from edgeprune.prune import Target
    from edgeprune.search import SearchConfig
    from edgeprune.train import TrainConfig

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
INCOMPLETE_MEASUREMENT = (
    "nothing was stored (a measurement is stored only when complete); rerun the command"
)
ModelKwargsOpt = Annotated[
    str | None,
    typer.Option(
        "--model-kwargs",
        help="""JSON object of keyword arguments for a zoo model or factory, e.g. '{"num_classes": 100, "in_channels": 1}'.""",
    ),
]
ModelCodeOpt = Annotated[
    str | None,
    typer.Option(
        "--model-code",
        help="The factory (FILE.py:function or pkg.module:function) a checkpoint needs: a checkpoint "
        "built by user code loads only when you name that code (a file must match its recorded sha256).",
    ),
]
ImageSizeOpt = Annotated[
    int | None,
    typer.Option("--image-size", help="Resize the dataset's images to this square size."),
]
InputSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--input-size", help="Input size for zoo models/factories when no --data is given."
    ),
]
# Latency-search knobs shared by `prune --latency-budget` and `search`.
TableSecondsOpt = Annotated[
    float,
    typer.Option("--table-seconds", help="Minimum measured seconds per latency-table block."),
]
MaxLayerRatioOpt = Annotated[
    float,
    typer.Option(
        "--max-layer-ratio",
        help="Width search: no layer loses more than this share of its channels.",
    ),
]
JudgeStepsOpt = Annotated[
    int,
    typer.Option(
        "--judge-steps",
        min=0,
        help="Latency search: the plans measured within the budget are judged after this many "
        "fine-tune steps on held-out training images (0: by the BN-recalibrated proxy alone).",
    ),
]
GradualStepsOpt = Annotated[
    int,
    typer.Option(
        "--gradual-steps",
        min=0,
        help="Latency search: reach the chosen widths from the base in this many steps, each "
        "followed by a short fine-tune (1 epoch on 2048 training images) and a re-score, as "
        "NetAdapt does (0: one cut). Needs --data.",
    ),
]
SearchEvalsOpt = Annotated[
    int,
    typer.Option(
        "--search-evals",
        help="Width search: candidate plans judged by the accuracy proxy (BN recalibration + held-out training images).",
    ),
]
ProxySamplesOpt = Annotated[
    int,
    typer.Option(
        "--proxy-samples",
        help="Width search: held-out training images the accuracy proxy evaluates per plan.",
    ),
]
MaxCvOpt = Annotated[
    float,
    typer.Option(
        "--max-cv",
        help="Latency search: a measurement whose coefficient of variation stays above this is repeated, then refused (0.025 = 2.5%).",
    ),
]


def model_kwargs_of(text: str | None) -> dict[str, Any]:
    """``--model-kwargs`` as a dict (`UsageError` for text that is not a JSON object)."""
    from edgeprune.models import parse_kwargs  # loads torch: only when a command runs

    return parse_kwargs(text)


# Benchmark protocol, shared by `bench` and `deploy`.
ThreadsOpt = Annotated[int, typer.Option("--threads", help="intra-op threads (inter-op is 1).")]
RunsOpt = Annotated[int, typer.Option("--runs", help="Minimum measured runs.")]
DurationOpt = Annotated[float, typer.Option("--duration", help="Minimum measured seconds.")]
WarmupOpt = Annotated[
    int,
    typer.Option(
        "--warmup",
        help="Warm-up runs before timing: a count of inferences, not milliseconds as in "
        "trtexec (and at least 1 s of them).",
    ),
]
RepeatsOpt = Annotated[
    int, typer.Option("--repeats", help="Fresh-process attempts while CV > 2.5%.")
]


def protocol_config(
    threads: int, runs: int, duration: float, warmup: int, repeats: int, batch: int = 1
) -> BenchConfig:
    """The measurement protocol the protocol options describe (`BenchConfig` checks them)."""
    from edgeprune.bench import BenchConfig

    return BenchConfig(
        threads=threads,
        batch=batch,
        min_runs=runs,
        min_seconds=duration,
        warmup_runs=warmup,
        max_repeats=repeats,
    )


def search_config(
    budget: str,
    device: str,
    runtime: str,
    precision: str,
    percentile: str,
    strategy: str,
    bench_seconds: float,
    threads: int,
    opset: int | None,
    table_seconds: float = 0.15,
    max_layer_ratio: float = 0.8,
    max_cv: float = 0.025,
    search_evals: int = 24,
    judge_steps: int = 16,
    gradual_steps: int = 0,
) -> SearchConfig:
    """A `SearchConfig` from CLI values (one place for `prune --latency-budget` and `search`)."""
    from edgeprune.bench import BenchConfig
    from edgeprune.search import Budget, SearchConfig, table_protocol

    if runtime != "ort" or precision != "fp32":
        raise UsageError(
            f"the latency search measures --runtime ort --precision fp32; got {runtime}/{precision}",
            hint="TensorRT lookup tables would need one engine build per block (minutes each on a Jetson); "
            "search with ort, then `edgeprune deploy --runtime trt` to measure the result",
        )
    return SearchConfig(
        budget=Budget.parse(budget),
        device=device,
        bench=BenchConfig(min_seconds=bench_seconds, threads=threads, cv_threshold=max_cv),
        block_bench=table_protocol(table_seconds, threads),
        percentile=percentile,
        strategy=strategy,
        opset=opset,
        max_layer_ratio=max_layer_ratio,
        proxy_evals=search_evals,
        judge_steps=judge_steps,
        gradual_steps=gradual_steps,
    )


# Prune target and fine-tune (`prune`).


def prune_target(
    ratio: float | None,
    flops: float | None,
    params: float | None,
    ratios_file: Path | None,
    latency_budget: str | None,
) -> tuple[Target | None, dict[str, Any] | None]:
    """The one target given (None: `PruneConfig` then says what is missing) and the per-layer
    ratios of ``--ratios-file``; `UsageError` for two targets, an unreadable ratios file, or a
    target beside ``--latency-budget`` (which chooses the widths itself)."""
    from edgeprune.prune import Target

    given = [
        (k, v) for k, v in (("ratio", ratio), ("flops", flops), ("params", params)) if v is not None
    ]
    if len(given) > 1:
        raise UsageError("give only one of --ratio, --flops-reduction, --params-reduction")
    target = Target(*given[0]) if given else None
    ratios = None
    if ratios_file is not None:
        try:
            ratios = json.loads(ratios_file.read_text())
        except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8 text
            raise UsageError(f"cannot read --ratios-file {ratios_file}: {one_line(e)}") from e
        if not isinstance(ratios, dict):
            raise UsageError("--ratios-file must hold a JSON object {layer: ratio}")
    if latency_budget is not None and (target is not None or ratios is not None):
        raise UsageError(
            "--latency-budget chooses the widths itself; it cannot be combined with --ratio, "
            "--flops-reduction, --params-reduction or --ratios-file",
            hint="drop one of them",
        )
    return target, ratios


def finetune_config(
    epochs: int, lr: float, batch_size: int, max_train_samples: int | None, seed: int
) -> TrainConfig | None:
    """The fine-tune after pruning (None for 0 epochs)."""
    from edgeprune.train import TrainConfig

    if epochs <= 0:
        return None
    return TrainConfig(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_train_samples=max_train_samples,
        seed=seed,
    )
