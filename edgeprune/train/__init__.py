"""Training, fine-tuning, evaluation and BatchNorm recalibration."""

from edgeprune.train._loop import (
    EvalResult,
    TrainConfig,
    TrainState,
    evaluate,
    recalibrate_bn,
    recalibrate_bn_on,
    select_device,
    set_threads,
    train,
)

__all__ = [
    "EvalResult",
    "TrainConfig",
    "TrainState",
    "evaluate",
    "recalibrate_bn",
    "recalibrate_bn_on",
    "select_device",
    "set_threads",
    "train",
]
