"""The target commands: `profiles` and `cache list|prune` (lint and export are in test_lint)."""

import json
import os
import time

from edgeprune.cli import main
from edgeprune.export.artifacts import ArtifactCache
from edgeprune.pipeline.flows import model_artifact


def test_profiles_listing_and_one_profile(capsys) -> None:
    assert main(["profiles", "--json"]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)["profiles"]]
    assert {
        "jetson-tx2",
        "jetson-nano",
        "jetson-orin-nano",
        "rpi4",
        "rpi5",
        "x86-cpu",
        "local",
    } <= set(names)
    assert main(["profiles", "jetson-tx2", "--json"]) == 0
    tx2 = json.loads(capsys.readouterr().out)
    assert tx2["max_opset"] == 13 and tx2["clocks"]["max_clocks"] == ["/usr/bin/jetson_clocks"]
    assert main(["profiles", "jetson-tx2"]) == 0
    assert "/usr/src/tensorrt/bin/trtexec" in capsys.readouterr().out
    assert main(["profiles", "nope"]) == 2


def test_cache_list_and_prune(capsys, monkeypatch) -> None:
    two_days_ago = time.time() - 2 * 86400
    with monkeypatch.context() as m:  # the first artifact is added "two days ago"
        m.setattr("edgeprune.export.artifacts.time.time", lambda: two_days_ago)
        first = model_artifact("resnet20", input_size=16, opset=13)
    model_artifact("resnet20", input_size=16)  # another opset: another artifact
    assert model_artifact("resnet20", input_size=16, opset=13) == first  # reused, not re-exported
    assert main(["cache", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed["artifacts"]) == 2 and {a["kind"] for a in listed["artifacts"]} == {"onnx"}
    assert listed["total_bytes"] == sum(os.path.getsize(a["path"]) for a in listed["artifacts"])
    assert main(["cache", "prune"]) == 2  # says what to remove, removes nothing
    assert "--older-than" in capsys.readouterr().err
    assert main(["cache", "prune", "--older-than", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == []
    assert main(["cache", "prune", "--older-than", "1", "--json"]) == 0  # only the old one goes
    removed = json.loads(capsys.readouterr().out)["removed"]
    assert [r["path"] for r in removed] == [str(first)] and not first.exists()
    assert [a.path for a in ArtifactCache().list()] != [first]
    assert main(["cache", "prune", "--all", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["removed"]) == 1
    assert main(["cache", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["artifacts"] == []
