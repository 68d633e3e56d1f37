"""Why depthwise and squeeze-excitation models lose most when pruned to odd widths (ONNX Runtime CPU).

Two measurements, both on this host, ONNX Runtime CPU provider, 1 thread:

1. single blocks at a full, an odd and a multiple-of-4 width (3×3 depthwise, 1×1 pointwise, a
   MobileNetV2 inverted residual, depthwise + squeeze-excitation, a 2-group 3×3 conv), 16×16
   input, timed side by side in one process, alternating;
2. ONNX Runtime's own profile (``SessionOptions.enable_profiling``) of MobileNetV2 unpruned and
   pruned to -40 % FLOPs with L1 at ``--round-to 1`` and ``--round-to 8``: kernel time per
   optimised node, grouped by whether the node runs in the blocked NCHWc layout, by kind
   (depthwise / pointwise / other) and by whether its output width is a multiple of 8.

    python benchmarks/odd_widths.py [--zoo /path/to/pytorch-cifar] [--out benchmarks/results/zoo]

With ``--zoo`` the MobileNetV2 is kuangliu's (3×32×32), else edgeprune's own ``mobilenet_v2``.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, markdown_table
from zoo import load_text, side_by_side

from edgeprune.checkpoint import resolve_model
from edgeprune.export import onnx_from_torch
from edgeprune.prune import PruneConfig, Target, prune

ROOT = Path(__file__).resolve().parents[1]


def dw(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU6()
    )


def pw(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6())


def inverted(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(24, c, 1, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU6(),
        *dw(c),
        nn.Conv2d(c, 24, 1, bias=False),
        nn.BatchNorm2d(24),
    )


def grouped(c: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(c), nn.ReLU()
    )


class DwSE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = dw(c)
        self.squeeze = nn.Conv2d(c, c // 4, 1)
        self.excite = nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(x)
        s = torch.relu(self.squeeze(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.excite(s))


BLOCKS: dict[str, tuple[Any, list[int], int | None]] = {
    "3×3 depthwise": (dw, [144, 143, 140], None),
    "1×1 pointwise": (pw, [144, 143, 140], None),
    "inverted residual 24→C→24": (inverted, [144, 143, 140], 24),
    "depthwise + SE": (DwSE, [144, 143, 140], None),
    "3×3 conv, 2 groups": (grouped, [128, 126, 120, 112], None),
}


def blocks(tmp: Path, rounds: int, seconds: float) -> list[list[Any]]:
    rows = []
    for name, (make, widths, cin) in BLOCKS.items():
        paths = {}
        for c in widths:
            torch.manual_seed(0)
            path = tmp / f"{name.split()[0]}-{c}.onnx"
            onnx_from_torch(make(c).eval(), (cin or c, 16, 16), path, opset=13)
            paths[str(c)] = path
        t = side_by_side(paths, rounds, seconds)
        med = {c: 1e3 * statistics.median(v) for c, v in t.items()}
        full = med[str(widths[0])]
        rows.append(
            [name]
            + [f"{c}: {med[str(c)]:.0f} µs ({med[str(c)] / full:.2f}×)" for c in widths]
            + [""] * (4 - len(widths))
        )
    return rows


def profile(path: Path, runs: int, tmp: Path) -> dict[tuple[str, str, str], list[float]]:
    """Kernel µs per run of each optimised node, grouped by (layout, kind, width % 8)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp / path.stem)
    so.optimized_model_filepath = str(tmp / f"{path.stem}.opt.onnx")
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    opt = onnx.load(str(tmp / f"{path.stem}.opt.onnx"))
    weights = {i.name: list(i.dims) for i in opt.graph.initializer}
    kinds: dict[str, tuple[str, str, str]] = {}
    for n in opt.graph.node:
        layout = "NCHWc" if n.domain == "com.microsoft.nchwc" else "NCHW"
        if n.op_type in ("Conv", "FusedConv") and len(n.input) > 1 and n.input[1] in weights:
            w = weights[n.input[1]]
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            kind = (
                "depthwise"
                if group > 1 and w[1] == 1
                else ("pointwise" if w[2] == 1 else "other conv")
            )
            kinds[n.name] = (layout, kind, "×8" if w[0] % 8 == 0 else "odd")
        else:
            kinds[n.name] = (layout, n.op_type, "")
    out: dict[tuple[str, str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = kinds.get(e["name"][: -len("_kernel_time")])
            if key is not None:
                out[key][0] += e["dur"] / runs
                out[key][1] += 1 / runs
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--zoo", type=Path, default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "zoo")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--seconds", type=float, default=0.4)
    p.add_argument("--runs", type=int, default=300, help="profiled runs per model")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="edgeprune-widths-") as t:
        tmp = Path(t)
        block_rows = blocks(tmp, args.rounds, args.seconds)
        if args.zoo is not None:
            ref, kwargs, size = f"{args.zoo / 'models' / 'mobilenetv2.py'}:MobileNetV2", {}, 32
        else:
            ref, kwargs, size = "mobilenet_v2", {"in_channels": 3}, 32
        torch.manual_seed(0)
        bundle = resolve_model(ref, kwargs, None, size)
        paths = {"base": tmp / "base.onnx"}
        onnx_from_torch(bundle.model, bundle.input_shape, paths["base"], opset=13)
        for rt in (1, 8):
            res = prune(bundle, PruneConfig(target=Target("flops", 0.4), round_to=rt))
            paths[f"round-to {rt}"] = tmp / f"rt{rt}.onnx"
            onnx_from_torch(res.bundle.model, bundle.input_shape, paths[f"round-to {rt}"], opset=13)
        timed = side_by_side(paths, args.rounds, args.seconds)
        profiles = {k: profile(v, args.runs, tmp) for k, v in paths.items()}
    keys = sorted(set().union(*profiles.values()))
    prof_rows = [
        [
            *k,
            *(
                f"{profiles[m][k][0] / 1e3:.2f} ms ×{profiles[m][k][1]:.0f}"
                if k in profiles[m]
                else ""
                for m in paths
            ),
        ]
        for k in keys
    ]
    prof_rows.append(
        ["all", "", "", *(f"{sum(v[0] for v in profiles[m].values()) / 1e3:.2f} ms" for m in paths)]
    )
    lat = [[m, f"{statistics.median(v):.3f}"] for m, v in timed.items()]
    text = [
        "# Odd widths on ONNX Runtime CPU: where the time goes",
        "",
        f"Command: `python benchmarks/odd_widths.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {machine_line()}; load: `{load_text()}`",
        "",
        f"## Single blocks (16×16 input; median of {args.rounds} alternating rounds; × = vs the first width)",
        "",
        markdown_table(["block", "widths", "", "", ""], block_rows),
        "",
        f"## MobileNetV2 ({ref.rsplit('/', 1)[-1]}) at -40% FLOPs, L1: whole model, side by side",
        "",
        markdown_table(["model", "median ms"], lat),
        "",
        f"## ONNX Runtime profile: kernel time per run ({args.runs} runs) and node count",
        "",
        markdown_table(["layout", "kind", "out width", *paths], prof_rows),
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "odd_widths.md").write_text("\n".join(text))
    print(args.out / "odd_widths.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
