"""The main job on the embedded default: ResNet-20 on Fashion-MNIST, pruned and measured on `local`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgeprune import config
from edgeprune.bench import BenchConfig
from edgeprune.pipeline.flows import PruneRunConfig, prune_run, train_checkpoint
from edgeprune.pipeline.results import DemoSummary, PruneReport
from edgeprune.prune import PruneConfig, Target
from edgeprune.search import Budget, SearchConfig
from edgeprune.train import TrainConfig


@dataclass(frozen=True)
class DemoConfig:
    model: str = "resnet20"
    data: str = "fashion-mnist"
    epochs: int = 3
    finetune_epochs: int = 1
    flops_reduction: float = 0.5
    # Unrounded widths (11/23/46) made ResNet-20 *slower* than the base on ONNX Runtime CPU here;
    # multiples of 8 made it faster (see README, "FLOPs are not latency").
    round_to: int | None = 8
    criterion: str = "l1"
    device: str = "local"
    out: str = "runs/demo"
    bench_seconds: float = 2.0
    # "0.6x" or "2ms": choose widths against measured latency on `device` instead of FLOPs.
    latency_budget: str | None = None


def run_demo(cfg: DemoConfig = DemoConfig()) -> PruneReport:
    """Train (or reuse the cached) base model, prune, fine-tune, export, bench base and pruned.

    The base checkpoint is cached under ``$EDGEPRUNE_HOME/cache/demo`` and reused by later runs;
    the run directory ``cfg.out`` is replaced. Returns the run's report.
    """
    t0 = time.perf_counter()
    base_ckpt = config.cache_dir() / "demo" / f"{cfg.model}-{cfg.data}-e{cfg.epochs}.pt"
    base = train_checkpoint(
        cfg.model,
        cfg.data,
        TrainConfig(epochs=cfg.epochs, lr=0.1, warmup_epochs=0.2 if cfg.epochs > 1 else 0.0),
        base_ckpt,
    )
    search = None
    if cfg.latency_budget is not None:
        search = SearchConfig(
            budget=Budget.parse(cfg.latency_budget),
            device=cfg.device,
            bench=BenchConfig(min_seconds=cfg.bench_seconds),
        )
    run_cfg = PruneRunConfig(
        search=search,
        prune=PruneConfig(
            criterion=cfg.criterion,
            target=None if search else Target("flops", cfg.flops_reduction),
            round_to=None if search else cfg.round_to,
        ),
        finetune=TrainConfig(epochs=cfg.finetune_epochs, lr=0.02)
        if cfg.finetune_epochs > 0
        else None,
        devices=(cfg.device,),
        bench=BenchConfig(min_seconds=cfg.bench_seconds),
    )
    report = prune_run(str(base_ckpt), cfg.data, run_cfg, Path(cfg.out), force=True)
    report.demo = DemoSummary(
        base_checkpoint=str(base_ckpt),
        base_reused=base.reused,
        base_train_seconds=base.train_seconds,
        wall_seconds=time.perf_counter() - t0,
        report_html=str(Path(cfg.out) / "report.html"),
    )
    return report
