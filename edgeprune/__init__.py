"""edgeprune: filter pruning chosen against measured latency on real edge devices.

Start here (everything the CLI does is one of these calls)::

    import edgeprune
    from edgeprune.prune import PruneConfig, Target

    data = edgeprune.load_dataset("fashion-mnist")
    bundle = edgeprune.resolve_model("r56.pt", data_info=data.info)      # checkpoint, zoo name or FILE.py:fn
    result = edgeprune.prune.prune(bundle, PruneConfig(target=Target("flops", 0.5)), data)
    edgeprune.save_checkpoint(result.bundle, "r56-pruned.pt")
    edgeprune.deploy("r56-pruned.pt", "local")                           # export, push, parity, measure

Functions and records at the top level:

- `resolve_model`, `load_checkpoint`, `save_checkpoint`: models and checkpoints (`ModelBundle`).
- `load_dataset`: datasets (`edgeprune datasets` lists them).
- `prune_run`: prune, fine-tune, export and measure into a run directory (``edgeprune prune``).
- `deploy`, `DeployConfig`: put a model on a device and measure it (``edgeprune deploy``).
- `measure`, `BenchConfig`: the measurement protocol on an open `DeviceSession`.
- `onnx_from_torch`: checked, parity-tested ONNX export.
- `run_sweep`, `load_sweep`: device-farm sweeps; `write_report`: the HTML/CSV/JSON report.
- `EdgePruneError`: the root of every error you can fix.

Subpackages (imported on first use): `edgeprune.prune` (criteria, `prune()`, `PruneConfig`,
`Target`), `edgeprune.search` (latency-constrained `search()`, `SearchConfig`, `Budget`),
`edgeprune.train` (`train()`, `evaluate()`), `edgeprune.bench`, `edgeprune.export`,
`edgeprune.device`, `edgeprune.farm`, `edgeprune.models`, `edgeprune.data`. ``prune``,
``search`` and ``train`` are packages named after their main function (a package attribute cannot
also be a function), so the calls are ``edgeprune.prune.prune(...)``,
``edgeprune.search.search(...)`` and ``edgeprune.train.train(...)``.

``import edgeprune`` itself is cheap: PyTorch and the rest load when a name is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> "module:attribute" (or "module" for a subpackage), resolved on first access.
_EXPORTS: dict[str, str] = {
    "resolve_model": "edgeprune.checkpoint:resolve_model",
    "load_checkpoint": "edgeprune.checkpoint:load_checkpoint",
    "save_checkpoint": "edgeprune.checkpoint:save_checkpoint",
    "ModelBundle": "edgeprune.checkpoint:ModelBundle",
    "load_dataset": "edgeprune.data:load_dataset",
    "prune_run": "edgeprune.pipeline.flows:prune_run",
    "PruneRunConfig": "edgeprune.pipeline.flows:PruneRunConfig",
    "deploy": "edgeprune.pipeline.deploy:deploy",
    "DeployConfig": "edgeprune.pipeline.deploy:DeployConfig",
    "measure": "edgeprune.bench:measure",
    "BenchConfig": "edgeprune.bench:BenchConfig",
    "DeviceSession": "edgeprune.device:DeviceSession",
    "onnx_from_torch": "edgeprune.export:onnx_from_torch",
    "run_sweep": "edgeprune.farm:run_sweep",
    "load_sweep": "edgeprune.farm:load_sweep",
    "write_report": "edgeprune.farm.report:write_report",
    "EdgePruneError": "edgeprune.errors:EdgePruneError",
    "prune": "edgeprune.prune",
    "search": "edgeprune.search",
    "train": "edgeprune.train",
    "bench": "edgeprune.bench",
    "export": "edgeprune.export",
    "device": "edgeprune.device",
    "farm": "edgeprune.farm",
    "models": "edgeprune.models",
    "data": "edgeprune.data",
}

__all__ = [
    "BenchConfig",
    "DeployConfig",
    "DeviceSession",
    "EdgePruneError",
    "ModelBundle",
    "PruneRunConfig",
    "__version__",
    "bench",
    "data",
    "deploy",
    "device",
    "export",
    "farm",
    "load_checkpoint",
    "load_dataset",
    "load_sweep",
    "measure",
    "models",
    "onnx_from_torch",
    "prune",
    "prune_run",
    "resolve_model",
    "run_sweep",
    "save_checkpoint",
    "search",
    "train",
    "write_report",
]

if TYPE_CHECKING:
    from edgeprune import bench, data, device, export, farm, models, prune, search, train
    from edgeprune.bench import BenchConfig, measure
    from edgeprune.checkpoint import ModelBundle, load_checkpoint, resolve_model, save_checkpoint
    from edgeprune.data import load_dataset
    from edgeprune.device import DeviceSession
    from edgeprune.errors import EdgePruneError
    from edgeprune.export import onnx_from_torch
    from edgeprune.farm import load_sweep, run_sweep
    from edgeprune.farm.report import write_report
    from edgeprune.pipeline.deploy import DeployConfig, deploy
    from edgeprune.pipeline.flows import PruneRunConfig, prune_run


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
