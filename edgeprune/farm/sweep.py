"""The sweep file (``SWEEP.yaml``): what a farm run prunes, exports and measures where.

A sweep is models × criteria × targets × devices (or device profiles) × runtimes, plus the
unpruned base model of each model (speed-ups need it). Format::

    name: r20-farm                 # letters, digits, . _ - (job ids are NAME/<hash>)
    models:                        # zoo name, checkpoint or FILE.py:factory; or a mapping
      - resnet20
      - {model: resnet56, kwargs: {in_channels: 1}, input_size: 16}
      - {model: mine.pt, model_code: my_net.py:build}   # a checkpoint built by your factory
    data: fashion-mnist            # optional: accuracy, data-driven criteria, fine-tuning
    criteria: [l1, {name: fpgm, options: {}}]
    targets:                       # one key each: ratio | flops | params (fractions removed)
      - {ratio: 0.3}               #   or latency (a budget: 5ms or 0.5x; one search per device)
      - {flops: 0.5}
      - {latency: 0.6x}
    base: true                     # also measure each unpruned model (default true)
    devices: [dev0, rpi4]          # device names or profile names (any free device of it)
    runtimes:                      # default [ort]; ort | {runtime: ort, threads: 2} | {runtime: trt, precision: fp16}
      - ort
    repeat: 1                      # measurements per (model variant, device entry, runtime)
    bench: {min_seconds: 2.0}      # BenchConfig fields (threads and precision come from runtimes)
    prune: {round_to: 8}           # round_to, convention, mode, min_channels, ignored_layers, calib_batches
    finetune: {epochs: 1}          # TrainConfig fields; needs data
    search: {strategy: latency, percentile: median, bench_seconds: 2.0, table_seconds: 0.15}
    export: {opset: 18}
    eval_samples: 2000             # evaluate on at most this many test images
    farm: {max_parallel: 8, retries: 3, backoff_s: 2.0}

Unknown keys and wrong types are errors (`SweepError`: one line naming the file and the key).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from edgeprune.bench import BenchConfig
from edgeprune.errors import EdgePruneError, UsageError
from edgeprune.models import is_factory_ref
from edgeprune.prune import PruneConfig, make_criterion
from edgeprune.search import Budget, SearchConfig
from edgeprune.train import TrainConfig
from edgeprune.vocab import Precision, Runtime, check_choice

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TARGET_KINDS = ("ratio", "flops", "params", "latency")
RUNTIMES = (Runtime.ORT, Runtime.TRT)
PRUNE_KEYS = ("round_to", "convention", "mode", "min_channels", "ignored_layers", "calib_batches")
SEARCH_KEYS = ("strategy", "percentile", "bench_seconds", "table_seconds", "tolerance")
# Threads and precision are per runtime entry, so a sweep cannot set them twice.
BENCH_KEYS = tuple(
    f.name for f in fields(BenchConfig) if f.name not in ("runtime", "precision", "threads")
)
TOP_KEYS = (
    "name",
    "models",
    "data",
    "criteria",
    "targets",
    "base",
    "devices",
    "runtimes",
    "repeat",
    "bench",
    "prune",
    "finetune",
    "search",
    "export",
    "eval_samples",
    "farm",
)


class SweepError(UsageError):
    """The sweep file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class ModelEntry:
    """A model to prune: a zoo name, a checkpoint or ``FILE.py:factory``, with its build options.

    ``model_code`` names the factory a checkpoint built by user code needs (``--model-code``).
    """

    model: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None
    model_code: str | None = None

    @property
    def label(self) -> str:
        return Path(self.model).name if self.model.endswith(".pt") else self.model


@dataclass(frozen=True)
class CriterionEntry:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetEntry:
    """How much to prune: a fraction removed (``ratio``/``flops``/``params``) or a latency budget."""

    kind: str
    value: str | float

    @property
    def device_specific(self) -> bool:
        return self.kind == "latency"

    @property
    def label(self) -> str:
        return f"{self.kind}={self.value}"


@dataclass(frozen=True)
class RuntimeEntry:
    runtime: Runtime = Runtime.ORT
    precision: Precision = Precision.FP32
    threads: int = 1

    @property
    def label(self) -> str:
        return f"{self.runtime}/{self.precision}/t{self.threads}"


@dataclass(frozen=True)
class FarmOptions:
    """How the farm runs: at most ``max_parallel`` devices at once (None: all of them), device
    faults retried ``retries`` times with exponential backoff from ``backoff_s``."""

    max_parallel: int | None = None
    retries: int = 3
    backoff_s: float = 2.0
    prep_workers: int = 1


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep (see module docstring). Round-trips through `to_dict`/`from_dict`."""

    name: str
    models: tuple[ModelEntry, ...]
    criteria: tuple[CriterionEntry, ...]
    targets: tuple[TargetEntry, ...]
    devices: tuple[str, ...]
    runtimes: tuple[RuntimeEntry, ...] = (RuntimeEntry(),)
    data: str | None = None
    base: bool = True
    repeat: int = 1
    bench: dict[str, Any] = field(default_factory=dict)
    prune: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] | None = None
    search: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    eval_samples: int | None = None
    farm: FarmOptions = field(default_factory=FarmOptions)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sweep in the file format (``load_sweep`` of its YAML gives the same spec)."""
        d = asdict(self)
        d.pop("source")
        d["targets"] = [{t.kind: t.value} for t in self.targets]
        return d

    @classmethod
    def from_dict(cls, data: Any, source: str = "<sweep>") -> SweepSpec:
        return _parse(data, source)

    def bench_config(self, rt: RuntimeEntry) -> BenchConfig:
        """The protocol for one runtime entry: the sweep's timing fields with the entry's
        runtime, precision and threads."""
        return BenchConfig(
            runtime=rt.runtime, precision=rt.precision, threads=rt.threads, **self.bench
        )


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate ``path``. Raises `SweepError` (one line) for any problem."""
    p = Path(path)
    if not p.is_file():
        raise SweepError(f"sweep file not found: {p}", hint="pass the path of a SWEEP.yaml")
    try:
        data = yaml.safe_load(p.read_text())
    except UnicodeDecodeError as e:
        raise SweepError(f"{p}: not a text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SweepError(f"{p}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    spec = _parse(data, str(p))
    return SweepSpec(
        **{**{f.name: getattr(spec, f.name) for f in fields(spec)}, "source": str(p.resolve())}
    )


# --------------------------------------------------------------------------- parsing


def _fail(src: str, key: str, msg: str, hint: str | None = None) -> SweepError:
    return SweepError(f"{src}: {key}: {msg}", hint=hint)


def _mapping(src: str, key: str, v: Any, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _fail(src, key, f"must be a mapping, got {type(v).__name__}")
    if allowed is not None:
        unknown = sorted(str(k) for k in v if k not in allowed)
        if unknown:
            raise _fail(
                src,
                key,
                f"unknown key(s) {', '.join(unknown)}",
                hint=f"allowed: {', '.join(allowed)}",
            )
    return {str(k): val for k, val in v.items()}


def _list(src: str, key: str, v: Any, required: bool = True) -> list[Any]:
    if v is None:
        if required:
            raise _fail(src, key, "is required and must be a non-empty list")
        return []
    if isinstance(v, (str, dict)):
        v = [v]
    if not isinstance(v, (list, tuple)) or (required and not v):
        raise _fail(src, key, "must be a non-empty list")
    return list(v)


def _number(src: str, key: str, v: Any, kind: type = float, minimum: float | None = None) -> Any:
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or (kind is int and not isinstance(v, int))
    ):
        raise _fail(src, key, f"must be {'an integer' if kind is int else 'a number'}, got {v!r}")
    if minimum is not None and v < minimum:
        raise _fail(src, key, f"must be >= {minimum:g}, got {v!r}")
    return kind(v)


def _parse(data: Any, src: str) -> SweepSpec:
    top = _mapping(src, "top level", data, TOP_KEYS)
    name = top.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(
            src, "name", f"must match {NAME_RE.pattern}, got {name!r}", hint="e.g. name: r20-farm"
        )
    models = tuple(
        _model(src, f"models[{i}]", m)
        for i, m in enumerate(_list(src, "models", top.get("models")))
    )
    crit_raw = top.get("criteria", ["l1"])
    criteria = tuple(
        _criterion(src, f"criteria[{i}]", c) for i, c in enumerate(_list(src, "criteria", crit_raw))
    )
    targets = tuple(
        _target(src, f"targets[{i}]", t)
        for i, t in enumerate(_list(src, "targets", top.get("targets"), required=False))
    )
    devices = tuple(
        _device(src, f"devices[{i}]", d)
        for i, d in enumerate(_list(src, "devices", top.get("devices")))
    )
    runtimes = tuple(
        _runtime(src, f"runtimes[{i}]", r)
        for i, r in enumerate(_list(src, "runtimes", top.get("runtimes", ["ort"])))
    )
    base = top.get("base", True)
    if not isinstance(base, bool):
        raise _fail(src, "base", f"must be true or false, got {base!r}")
    if not targets and not base:
        raise _fail(src, "targets", "nothing to measure: no targets and base: false")
    for label, seq in (
        ("models", models),
        ("criteria", criteria),
        ("targets", targets),
        ("devices", devices),
        ("runtimes", runtimes),
    ):
        keys = [
            json.dumps(asdict(x) if not isinstance(x, str) else x, sort_keys=True, default=str)
            for x in seq
        ]
        if len(set(keys)) != len(keys):
            raise _fail(src, label, "has duplicate entries")
    data_spec = top.get("data")
    if data_spec is not None and not isinstance(data_spec, str):
        raise _fail(src, "data", f"must be a dataset name, got {data_spec!r}")
    repeat = _number(src, "repeat", top.get("repeat", 1), int, 1)
    bench = _mapping(src, "bench", top.get("bench"), BENCH_KEYS)
    try:
        BenchConfig(**bench)
    except (TypeError, EdgePruneError) as e:
        raise _fail(src, "bench", str(e)) from None
    prune = _mapping(src, "prune", top.get("prune"), PRUNE_KEYS)
    finetune = top.get("finetune")
    if finetune is not None:
        finetune = _mapping(src, "finetune", finetune, tuple(f.name for f in fields(TrainConfig)))
        if data_spec is None:
            raise _fail(
                src,
                "finetune",
                "fine-tuning needs data",
                hint="add data: DATASET or remove finetune",
            )
        try:
            TrainConfig(**finetune)
        except (TypeError, EdgePruneError) as e:
            raise _fail(src, "finetune", str(e)) from None
    search = _mapping(src, "search", top.get("search"), SEARCH_KEYS)
    export = _mapping(src, "export", top.get("export"), ("opset",))
    if "opset" in export and export["opset"] is not None:
        _number(src, "export.opset", export["opset"], int, 7)
    eval_samples = top.get("eval_samples")
    if eval_samples is not None:
        eval_samples = _number(src, "eval_samples", eval_samples, int, 1)
    farm_raw = _mapping(src, "farm", top.get("farm"), tuple(f.name for f in fields(FarmOptions)))
    farm = FarmOptions(
        max_parallel=None
        if farm_raw.get("max_parallel") is None
        else _number(src, "farm.max_parallel", farm_raw["max_parallel"], int, 1),
        retries=_number(src, "farm.retries", farm_raw.get("retries", 3), int, 0),
        backoff_s=_number(src, "farm.backoff_s", farm_raw.get("backoff_s", 2.0), float, 0),
        prep_workers=_number(src, "farm.prep_workers", farm_raw.get("prep_workers", 1), int, 1),
    )
    spec = SweepSpec(
        name=name,
        models=models,
        criteria=criteria,
        targets=targets,
        devices=devices,
        runtimes=runtimes,
        data=data_spec,
        base=base,
        repeat=repeat,
        bench=bench,
        prune=prune,
        finetune=finetune,
        search=search,
        export=export,
        eval_samples=eval_samples,
        farm=farm,
    )
    _check_prune(src, spec)
    return spec


def _model(src: str, key: str, v: Any) -> ModelEntry:
    if isinstance(v, str):
        v = {"model": v}
    m = _mapping(src, key, v, ("model", "kwargs", "input_size", "model_code"))
    model = m.get("model")
    if not isinstance(model, str) or not model:
        raise _fail(src, f"{key}.model", "must be a zoo name, a checkpoint path or FILE.py:factory")
    kwargs = _mapping(src, f"{key}.kwargs", m.get("kwargs"))
    size = m.get("input_size")
    if size is not None:
        size = _number(src, f"{key}.input_size", size, int, 1)
    code = m.get("model_code")
    if code is not None and not (isinstance(code, str) and is_factory_ref(code)):
        raise _fail(
            src,
            f"{key}.model_code",
            f"must be FILE.py:function or package.module:function, got {code!r}",
            hint="name the factory the checkpoint was built with",
        )
    return ModelEntry(model, kwargs, size, code)


def _criterion(src: str, key: str, v: Any) -> CriterionEntry:
    if isinstance(v, str):
        v = {"name": v}
    c = _mapping(src, key, v, ("name", "options"))
    name = c.get("name")
    if not isinstance(name, str):
        raise _fail(
            src,
            f"{key}.name",
            "must be a criterion name",
            hint="list them with `edgeprune criteria`",
        )
    options = _mapping(src, f"{key}.options", c.get("options"))
    try:
        make_criterion(name, options)
    except EdgePruneError as e:
        raise _fail(src, key, e.message, e.hint) from None
    return CriterionEntry(name, options)


def _target(src: str, key: str, v: Any) -> TargetEntry:
    t = _mapping(src, key, v, TARGET_KINDS)
    if len(t) != 1:
        raise _fail(
            src,
            key,
            "needs exactly one of ratio, flops, params, latency",
            hint="e.g. {ratio: 0.5} or {latency: 5ms}",
        )
    kind, value = next(iter(t.items()))
    if kind == "latency":
        try:
            Budget.parse(str(value))
        except EdgePruneError as e:
            raise _fail(src, key, e.message, e.hint) from None
        return TargetEntry(kind, str(value))
    value = _number(src, f"{key}.{kind}", value)
    if not 0.0 < value < 1.0:
        raise _fail(src, f"{key}.{kind}", f"must be a fraction removed in (0, 1), got {value}")
    return TargetEntry(kind, value)


def _device(src: str, key: str, v: Any) -> str:
    if not isinstance(v, str) or not NAME_RE.match(v):
        raise _fail(src, key, f"must be a device or profile name, got {v!r}")
    return v


def _runtime(src: str, key: str, v: Any) -> RuntimeEntry:
    if isinstance(v, str):
        v = {"runtime": v}
    r = _mapping(src, key, v, ("runtime", "precision", "threads"))
    try:
        runtime = check_choice(Runtime.parse(str(r.get("runtime", "ort"))), RUNTIMES, "runtime")
    except EdgePruneError as e:
        raise _fail(src, f"{key}.runtime", e.message, e.hint) from None
    try:
        precision = Precision.parse(str(r.get("precision", "fp32")))
    except EdgePruneError as e:
        raise _fail(src, f"{key}.precision", e.message, e.hint) from None
    if runtime is Runtime.ORT and precision is not Precision.FP32:
        raise _fail(
            src,
            key,
            f"ONNX Runtime measures the exported fp32 model, not {precision}",
            hint="use runtime: trt for fp16/int8",
        )
    threads = _number(src, f"{key}.threads", r.get("threads", 1), int, 1)
    return RuntimeEntry(runtime, precision, threads)


def _check_prune(src: str, spec: SweepSpec) -> None:
    opts = dict(spec.prune)
    if "ignored_layers" in opts:
        opts["ignored_layers"] = tuple(opts["ignored_layers"] or ())
    try:
        PruneConfig(**opts)
    except (TypeError, EdgePruneError) as e:
        raise _fail(src, "prune", str(e)) from None
    if spec.search:
        try:
            SearchConfig(
                budget=_any_budget(),
                **{
                    k: v
                    for k, v in spec.search.items()
                    if k in ("strategy", "percentile", "tolerance")
                },
            )
        except EdgePruneError as e:
            raise _fail(src, "search", e.message, e.hint) from None


def _any_budget() -> Any:
    return Budget(1.0, False)
