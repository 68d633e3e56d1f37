"""Device farms: sweeps over models × criteria × targets × devices × runtimes, resumable.

`load_sweep` reads and validates a SWEEP.yaml (`edgeprune.farm.sweep` documents the format),
`plan_sweep` lists its variants and benchmark jobs, `run_sweep` runs what the store does not have
yet on the threads engine (default) or on Ray, `sweep_status` tells how far it is.
"""

from edgeprune.farm.plan import BenchJob, Plan, PrepJob, plan_sweep
from edgeprune.farm.run import run_sweep
from edgeprune.farm.status import sweep_status
from edgeprune.farm.sweep import SweepError, SweepSpec, load_sweep

__all__ = [
    "BenchJob",
    "Plan",
    "PrepJob",
    "SweepError",
    "SweepSpec",
    "load_sweep",
    "plan_sweep",
    "run_sweep",
    "sweep_status",
]
