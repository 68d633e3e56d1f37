"""The main job end to end on a tiny dataset: report.json and report.html with measured latency.

(The demo's --latency-budget path goes through the same prune_run as
tests/integration/test_search.py::test_cli_prune_with_latency_budget_records_base_and_pruned.)
"""

import json
from pathlib import Path

import pytest

from edgeprune import config
from edgeprune.pipeline.demo import DemoConfig, run_demo
from edgeprune.pipeline.flows import train_checkpoint
from edgeprune.train import TrainConfig

pytestmark = pytest.mark.integration


def test_demo_reports_accuracy_and_measured_latency(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cfg = DemoConfig(data="digits", epochs=2, finetune_epochs=1, out=str(out), bench_seconds=0.3)
    rep = run_demo(cfg)
    page = (out / "report.html").read_text()
    # Accuracy vs latency, channels per layer, FLOPs vs speed-up: plotly charts, no CDN.
    assert page.count('class="plotly-graph-div"') >= 3 and "<script src" not in page
    assert "What to deploy" in page and "edgeprune deploy" in page
    lat = rep.latency
    assert lat is not None and lat.device == "local" and lat.base_ms > 0 and lat.pruned_ms > 0
    assert lat.pruned.context["artifact_sha256"] == rep.artifacts["model.onnx"]
    assert rep.accuracy_before is not None and rep.accuracy_after is not None
    assert 0 <= rep.accuracy_before <= 1 and 0 <= rep.accuracy_after <= 1
    assert abs(rep.flops_reduction - 0.5) <= 0.06
    assert rep.demo is not None and rep.demo.base_reused is False
    # report.json is the report's JSON form (the demo's own summary is added after it is written)
    written = rep.to_dict(run_dir=False)
    assert written.pop("demo")["base_reused"] is False
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(written))
    # The base model is cached: a second demo would not train it again.
    cached = config.cache_dir() / "demo" / "resnet20-digits-e2.pt"
    again = train_checkpoint(
        "resnet20", "digits", TrainConfig(epochs=2, lr=0.1, warmup_epochs=0.2), cached
    )
    assert again.reused is True
