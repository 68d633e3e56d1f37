"""TensorRT: version detection, trtexec flags, and parsing real trtexec output (8.2 to 10.x).

Every fixture under tests/fixtures/trtexec is real trtexec output copied from public material;
its first line records the source. TensorRT itself cannot be installed here: the host-build test
runs only where ``tensorrt`` imports, and the device path is exercised through the real agent
with a stand-in ``trtexec`` that replays those recorded outputs (the hardware tests run the
real one on a board).
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edgeprune.bench import BenchConfig, Store, measure
from edgeprune.bench.trt import bench_from_trtexec, run_trtexec
from edgeprune.device import DeviceSession, agent_source, local_device
from edgeprune.errors import DependencyMissingError, DeviceError
from edgeprune.export.trt import (
    INT8_NO_CALIBRATION_WARNING,
    TrtexecOutputError,
    TrtVersion,
    cached_engine_from_onnx,
    detect_version,
    engine_cache_key,
    engine_from_onnx,
    engine_on_device,
    l4t_from_tegra_release,
    parse_export_times,
    parse_trtexec_log,
    trtexec_bench_argv,
    trtexec_build_argv,
    version_from_log,
)
from edgeprune.profiles import load_profile

FIXTURES = Path(__file__).parent.parent / "fixtures" / "trtexec"
PY36 = Path.home() / ".pyenv/versions/3.6.15/bin/python3.6"
NANO_LOG = "trt8.2.1_nano_culane_build_and_bench.log"
NANO_SUMMARY = "trt8.2.1_nano_yolov8_best_summary.log"
XAVIER_84 = "trt8.4.0_xavier_mnist16_summary.log"
T10_SUMMARY = "trt10.4.0_rtx3060_alexnet_fp16_summary.log"
T10_TIMES = "trt10.4.0_rtx3060_alexnet_fp16.times.json.gz"
T10_BUILD = "trt10.16.2_orin-nx_build_skipinference.log"


def fixture(name: str) -> str:
    """A fixture's content without its one-line source header."""
    path = FIXTURES / name
    if name.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            text = f.read()
    else:
        text = path.read_text()
    header, body = text.split("\n", 1)
    assert header.startswith("# source: "), name
    return body


def test_every_fixture_records_its_source() -> None:
    files = sorted(p for p in FIXTURES.iterdir() if p.name != "SOURCES.md")
    assert len(files) >= 7
    for p in files:
        fixture(p.name)


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("number", "version"),
    [(8201, "8.2.1"), (8400, "8.4.0"), (8601, "8.6.1"), (100300, "10.3.0"), (101602, "10.16.2")],
)
def test_banner_numbers(number, version) -> None:
    assert str(TrtVersion.from_number(number)) == version


@pytest.mark.parametrize(
    ("name", "version"),
    [(NANO_LOG, "8.2.1"), (NANO_SUMMARY, "8.2.1"), (XAVIER_84, "8.4.0"), (T10_BUILD, "10.16.2")],
)
def test_version_from_real_banners(name, version) -> None:
    assert str(version_from_log(fixture(name))) == version


def test_version_line_without_banner() -> None:
    # The Nano build log also prints "TensorRT version: 8.2.1"; drop the banners and read that.
    text = "\n".join(line for line in fixture(NANO_LOG).splitlines() if "&&&&" not in line)
    assert str(version_from_log(text)) == "8.2.1"
    assert version_from_log(fixture(T10_SUMMARY)) is None  # a summary alone has no version


def test_version_from_dpkg_and_tegra_release() -> None:
    nano = fixture("jetson-nano_r32.7.6_dpkg_and_tegra_release.txt")
    assert l4t_from_tegra_release(nano) == (32, 7, 6)
    version, source = detect_version(dpkg=nano, tegra_release=nano)
    assert (str(version), source) == ("8.2.1", "dpkg")
    version, source = detect_version(tegra_release=nano)  # the JetPack table: R32.7 → 8.2.1
    assert (str(version), source) == ("8.2.1", "/etc/nv_tegra_release")
    orin = fixture("jetson-orin_r36.4.3_tegra_release.txt")
    assert l4t_from_tegra_release(orin) == (36, 4, 3)
    assert str(detect_version(tegra_release=orin)[0]) == "10.3.0"
    banner = fixture(NANO_LOG).splitlines()[0]
    assert detect_version(banner=banner, tegra_release=orin)[1] == "trtexec banner"
    with pytest.raises(DeviceError, match="TensorRT version"):
        detect_version(tegra_release="# R99 (release), REVISION: 1.0")


# --------------------------------------------------------------------------- flags


def test_build_flags_follow_the_version() -> None:
    v82, v85, v86, v10 = (TrtVersion.parse(v) for v in ("8.2.1", "8.5.2", "8.6.2", "10.3.0"))
    a82 = trtexec_build_argv("/t/trtexec", v82, "m.onnx", "e.part", "fp16", 512)
    assert "--workspace=512" in a82 and "--buildOnly" in a82 and "--fp16" in a82
    a85 = trtexec_build_argv("/t/trtexec", v85, "m.onnx", "e.part", "fp32", 512)
    assert "--memPoolSize=workspace:512" in a85 and "--buildOnly" in a85 and "--fp16" not in a85
    a86 = trtexec_build_argv("/t/trtexec", v86, "m.onnx", "e.part", "int8")
    assert "--skipInference" in a86 and "--int8" in a86 and not any("--calib" in a for a in a86)
    a10 = trtexec_build_argv(
        "/t/trtexec",
        v10,
        "m.onnx",
        "e.part",
        "int8",
        calib_cache="c.cache",
        shapes={"x": [1, 3, 8, 8]},
    )
    assert "--calib=c.cache" in a10 and "--optShapes=x:1x3x8x8" in a10
    assert a10[:3] == ["/t/trtexec", "--onnx=m.onnx", "--saveEngine=e.part"]
    # The same flag spellings the real logs used: 8.2 --workspace=N, 10.x --skipInference.
    assert "--workspace=" in fixture(NANO_LOG).splitlines()[0]
    assert "--skipInference" in fixture(T10_BUILD)
    b82 = trtexec_bench_argv("/t/trtexec", v82, "e.engine", "t.json", warmup_ms=500, duration_s=2.5)
    assert "--percentile=99" in b82 and "--warmUp=500" in b82 and "--duration=3" in b82
    assert "--exportTimes=t.json" in b82 and "--useCudaGraph" not in b82
    b10 = trtexec_bench_argv("/t/trtexec", v10, "e.engine", "t.json", cuda_graph=True)
    assert "--percentile=90,95,99" in b10 and "--useCudaGraph" in b10


# --------------------------------------------------------------------------- parsing text


@pytest.mark.parametrize("name", [NANO_LOG, NANO_SUMMARY, XAVIER_84, T10_SUMMARY])
def test_summary_parses_and_is_self_consistent(name) -> None:
    rep = parse_trtexec_log(fixture(name))
    m = rep.metrics
    assert {"latency", "enqueue", "h2d", "gpu_compute", "d2h"} <= set(m)
    for s in m.values():
        assert s.min <= s.median <= s.max and s.min <= s.mean <= s.max
        assert all(s.min <= p <= s.max for p in s.percentiles.values())
    # trtexec's "Latency" is H2D + GPU compute + D2H per query, so the means add up.
    assert m["latency"].mean == pytest.approx(
        m["h2d"].mean + m["gpu_compute"].mean + m["d2h"].mean, rel=1e-4
    )
    assert rep.throughput_qps and rep.total_host_walltime_s and rep.total_gpu_compute_s


def test_trt82_nano_log_details() -> None:
    rep = parse_trtexec_log(fixture(NANO_LOG))
    assert rep.passed is True and str(rep.version) == "8.2.1"
    assert (
        rep.warmup_ms == 200
        and rep.duration_s == 3
        and rep.queries == 35
        and rep.warmup_queries == 2
    )
    assert rep.engine_build_s == pytest.approx(184.708)
    assert rep.metrics["gpu_compute"].median == 90.0183 and rep.metrics[
        "gpu_compute"
    ].percentiles == {99.0: 91.2045}
    assert rep.metrics["end_to_end"].mean == 90.4048
    assert rep.throughput_qps == pytest.approx(rep.queries / rep.total_host_walltime_s, rel=1e-4)
    assert any("INT64 weights" in w for w in rep.warnings)  # the cast the lint warns about
    assert rep.command and rep.command.startswith("trtexec --workspace=2048")


def test_trt10_summary_has_three_percentiles() -> None:
    rep = parse_trtexec_log(fixture(T10_SUMMARY))
    assert rep.metrics["gpu_compute"].percentiles == {
        90.0: 0.501465,
        95.0: 0.501953,
        99.0: 0.503418,
    }
    assert rep.passed is None  # the excerpt ends before the PASSED line


# --------------------------------------------------------------------------- parsing --exportTimes


def test_export_times_reproduce_trtexecs_own_summary_trt10() -> None:
    """The 10.4 --exportTimes file and the summary trtexec printed for the same run agree."""
    summary = parse_trtexec_log(fixture(T10_SUMMARY))
    bench = bench_from_trtexec(fixture(T10_TIMES), warmup_ms=5000)  # that run used --warmUp=5000
    assert bench.dropped_warmup == 0  # TensorRT 10 starts the file after the warm-up
    assert bench.gpu_compute.n == 5988
    assert 5988 / summary.total_host_walltime_s == pytest.approx(summary.throughput_qps, rel=1e-5)
    for ours, printed in (
        (bench.gpu_compute, summary.metrics["gpu_compute"]),
        (bench.host_latency, summary.metrics["latency"]),
    ):
        assert ours.min == printed.min and ours.max == printed.max and ours.median == printed.median
        assert ours.mean == pytest.approx(printed.mean, rel=1e-5)
        assert ours.p90 == printed.percentiles[90.0] and ours.p99 == printed.percentiles[99.0]
    assert sum(bench.raw_gpu_compute_ms) / 1000 == pytest.approx(
        summary.total_gpu_compute_s, rel=1e-4
    )


def test_warmup_entries_are_dropped_by_start_compute_time() -> None:
    entries = json.loads(fixture(T10_TIMES))
    threshold = 5100.0  # the first ~100 ms of the timed run, standing in for an 8.2 warm-up
    expected = sum(e["startComputeMs"] < threshold for e in entries)
    assert 0 < expected < len(entries)
    times = parse_export_times(entries, warmup_ms=threshold)
    assert times.dropped_warmup == expected and len(times.gpu_compute_ms) == len(entries) - expected
    assert times.layout == "h2d/d2h" and times.end_to_end_ms is None
    assert times.enqueue_ms and min(times.enqueue_ms) >= 0
    kept = [e for e in entries if e["startComputeMs"] >= threshold]
    assert times.gpu_compute_ms == [e["computeMs"] for e in kept]
    bench = bench_from_trtexec(entries, warmup_ms=threshold)
    assert bench.gpu_compute.n == len(kept) and "dropped" in bench.notes[0]


def test_measurements_keep_gpu_and_host_latency_apart() -> None:
    bench = bench_from_trtexec(fixture(T10_TIMES), fixture(T10_SUMMARY), warmup_ms=5000)
    ms = bench.measurements({"device": "d", "precision": "fp16", "runtime_version": "10.4.0"})
    gpu, host = ms["gpu_compute"], ms["host_latency"]
    assert gpu.key != host.key and gpu.context["runtime"] == "trt"
    assert gpu.context["provider"] == "trtexec/gpu_compute" and gpu.stats == bench.gpu_compute
    assert len(host.raw_ms) == 5988 and host.context["runtime_version"] == "10.4.0"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("{not json", "not JSON"),
        ("{}", "JSON list"),
        ("[]", "no entries"),
        ('[{"computeMs": 1}]', "layout"),
    ],
)
def test_bad_export_times_are_refused(data, match) -> None:
    with pytest.raises(TrtexecOutputError, match=match):
        parse_export_times(data)


def test_a_warmup_longer_than_the_run_is_refused() -> None:
    with pytest.raises(TrtexecOutputError, match="warm-up"):
        parse_export_times(fixture(T10_TIMES), warmup_ms=1e9)


# --------------------------------------------------------------------------- engines


def test_engine_cache_key_covers_every_input() -> None:
    v = TrtVersion.parse("8.2.1")
    base = ("jetson-nano", (32, 7, 6), v, "fp16", {"input": [1, 3, 32, 32]}, "ab" * 32)
    key = engine_cache_key(*base)
    assert key == engine_cache_key(*base)
    for i, other in enumerate(
        [
            "jetson-tx2",
            (32, 7, 1),
            TrtVersion.parse("8.2.0"),
            "int8",
            {"input": [1, 3, 64, 64]},
            "cd" * 32,
        ]
    ):
        changed = list(base)
        changed[i] = other
        assert engine_cache_key(*changed) != key, i


def test_host_engine_without_tensorrt_names_the_extra(tmp_path) -> None:
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here; the host build test covers it")
    except ImportError:
        pass
    with pytest.raises(DependencyMissingError) as e:
        engine_from_onnx(tmp_path / "m.onnx", tmp_path / "m.engine")
    assert "edgeprune[trt]" in (e.value.hint or "")


def test_host_engine_build_with_tensorrt(tmp_path) -> None:
    pytest.importorskip("tensorrt")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from edgeprune.checkpoint import resolve_model
    from edgeprune.export import onnx_from_torch

    b = resolve_model("resnet20", {"in_channels": 1}, input_size=16)
    onnx_from_torch(b.model, b.input_shape, tmp_path / "m.onnx", opset=17)
    res = engine_from_onnx(tmp_path / "m.onnx", tmp_path / "m.engine", precision="int8")
    assert Path(res.path).stat().st_size > 0 and INT8_NO_CALIBRATION_WARNING in res.warnings
    fp16 = engine_from_onnx(tmp_path / "m.onnx", tmp_path / "f.engine", precision="fp16")
    assert fp16.calibrated is False and INT8_NO_CALIBRATION_WARNING not in fp16.warnings
    first = cached_engine_from_onnx(tmp_path / "m.onnx", precision="fp16")
    second = cached_engine_from_onnx(tmp_path / "m.onnx", precision="fp16")
    assert first.path == second.path and second.seconds == 0.0
    from edgeprune.export.artifacts import ArtifactCache

    assert [a.meta["kind"] for a in ArtifactCache().list()] == ["engine"]


# --------------------------------------------------------------------------- agent verbs (real agent, stand-in trtexec)

STAND_IN = """#!{python}
# Stand-in for trtexec: replays real recorded trtexec output (tests/fixtures/trtexec).
import gzip, sys
args = sys.argv[1:]
def body(path):
    text = gzip.open(path, "rt").read() if path.endswith(".gz") else open(path).read()
    return text.split("\\n", 1)[1]
opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
if "--help" in args:
    print(body({build!r}).splitlines()[0])
elif "saveEngine" in opts:
    sys.stdout.write(body({build!r}))
    open(opts["saveEngine"], "w").write("ENGINE for " + opts["onnx"])
elif "loadEngine" in opts:
    if not open(opts["loadEngine"]).read().startswith("ENGINE"):
        print("stand-in: cannot load this engine")
        sys.exit(1)
    open(opts["exportTimes"], "w").write(body({times!r}))
    sys.stdout.write(body({summary!r}))
"""


@pytest.fixture
def trtexec(tmp_path) -> str:
    path = tmp_path / "bin" / "trtexec"
    path.parent.mkdir()
    path.write_text(
        STAND_IN.format(
            python=sys.executable,
            build=str(FIXTURES / NANO_LOG),
            times=str(FIXTURES / T10_TIMES),
            summary=str(FIXTURES / T10_SUMMARY),
        )
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _agent(tmp_path: Path, request: dict, python: str = sys.executable) -> tuple[int, dict]:
    req = tmp_path / f"req-{os.getpid()}.json"
    req.write_text(json.dumps({"workdir": str(tmp_path), **request}))
    proc = subprocess.run(
        [python, str(agent_source()), str(req)], capture_output=True, text=True, timeout=120
    )
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.integration
@pytest.mark.parametrize("python", [sys.executable, str(PY36)])
def test_agent_build_engine_is_atomic_and_cached(tmp_path, trtexec, python) -> None:
    if not Path(python).exists():
        pytest.skip(f"{python} is not installed")
    engines = tmp_path / "engines"
    engine, part = str(engines / "k.engine"), str(engines / "k.engine.abc.part")
    argv = trtexec_build_argv(trtexec, TrtVersion.parse("8.2.1"), "/data/m.onnx", part)
    code, reply = _agent(
        tmp_path, {"verb": "build_engine", "argv": argv, "engine": engine, "part": part}
    )
    assert code == 0 and reply["ok"], reply
    r = reply["result"]
    assert r["built"] and not r["cached"] and r["exit_code"] == 0 and r["engine"] == engine
    assert Path(engine).read_text() == "ENGINE for /data/m.onnx" and not Path(part).exists()
    assert "PASSED TensorRT.trtexec [TensorRT v8201]" in r["log_tail"]
    code, again = _agent(
        tmp_path, {"verb": "build_engine", "argv": argv, "engine": engine, "part": part}
    )
    assert again["result"]["cached"] and again["result"]["sha256"] == r["sha256"]
    code, info = _agent(tmp_path, {"verb": "trt_info", "trtexec": trtexec})
    assert code == 0 and str(version_from_log(info["result"]["banner"])) == "8.2.1"


@pytest.mark.integration
def test_agent_refuses_unsafe_requests(tmp_path, trtexec) -> None:
    engine, part = str(tmp_path / "e.engine"), str(tmp_path / "e.engine.x.part")
    good = trtexec_build_argv(trtexec, TrtVersion.parse("10.3.0"), "m.onnx", part)
    for argv, match in (
        ("trtexec --onnx=m.onnx", "JSON list"),
        (["/bin/sh", "-c", "true"], "trtexec"),
        (["trtexec", *good[1:]], "absolute"),
        ([good[0], "--onnx=m.onnx", "--saveEngine=/tmp/elsewhere"], "part file"),
    ):
        code, reply = _agent(
            tmp_path, {"verb": "build_engine", "argv": argv, "engine": engine, "part": part}
        )
        assert code == 3 and not reply["ok"] and match in reply["error"]["message"], (argv, reply)
    bench = trtexec_bench_argv(trtexec, TrtVersion.parse("10.3.0"), engine, "t.json")
    code, reply = _agent(
        tmp_path,
        {
            "verb": "bench",
            "runtime": "trt",
            "argv": bench,
            "engine": engine,
            "times_json": "other.json",
        },
    )
    assert code == 3 and "--exportTimes" in reply["error"]["message"]


@pytest.mark.integration
def test_measure_on_local_device_builds_caches_and_rebuilds(tmp_path, trtexec) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"an ONNX file's bytes travel once per hash")
    profile = replace(load_profile("jetson-nano"), trtexec=trtexec)
    with DeviceSession(local_device()) as dev:
        bench, engine = run_trtexec(dev, onnx, profile, precision="fp16", warmup_ms=5000)
        assert not engine.cached and str(bench.version) == "8.2.1"  # the device's banner
        assert bench.gpu_compute.n == 5988 and bench.gpu_compute.median == 0.499023
        assert (
            bench.report and bench.report.metrics["gpu_compute"].median == bench.gpu_compute.median
        )
        again = engine_on_device(dev, onnx, profile, precision="fp16")
        assert again.cached and again.path == engine.path
        Path(engine.path).write_text("an engine from another TensorRT version")
        bench2, engine2 = run_trtexec(dev, onnx, profile, precision="fp16", warmup_ms=5000)
        assert not engine2.cached and "rebuilt" in bench2.notes[-1]
        assert Path(engine.path).read_text().startswith("ENGINE")
        int8 = engine_on_device(dev, onnx, profile, precision="int8")
        assert int8.path != engine.path and INT8_NO_CALIBRATION_WARNING in int8.warnings


@pytest.mark.integration
def test_bench_measure_dispatches_trt_and_stores_both_quantities(
    tmp_path, trtexec, monkeypatch, tiny_onnx
) -> None:
    """The one entry point: ``measure`` with runtime trt builds the engine on the device, runs
    trtexec, and returns host latency with GPU compute time beside it, both stored."""
    monkeypatch.setenv("PATH", f"{Path(trtexec).parent}{os.pathsep}{os.environ['PATH']}")
    onnx = tiny_onnx
    profile = replace(load_profile("jetson-nano"), trtexec=trtexec)
    cfg = BenchConfig(runtime="trt", precision="fp16", warmup_seconds=5.0, min_seconds=1.0)
    with DeviceSession(local_device()) as dev, Store() as store:
        host = measure(
            dev,
            onnx,
            cfg,
            store=store,
            label="m",
            job_id="s/1",
            profile=profile,
            extra_context={"why": "test"},
        )
        assert host.context["input_shape"] == [1, 3, 8, 8]
        (gpu,) = host.related
        assert [m.id for m in store.query()] == [host.id, gpu.id]
    assert host.context["provider"] == "trtexec/host_latency" and host.job_id == "s/1"
    assert gpu.context["provider"] == "trtexec/gpu_compute" and gpu.label == "m (gpu compute)"
    for m in (host, gpu):
        assert m.context["runtime"] == "trt" and m.context["precision"] == "fp16"
        assert m.context["runtime_version"] == "8.2.1" and m.context["why"] == "test"
        assert m.context["engine"]["precision"] == "fp16" and m.stats.n == 5988
    assert gpu.stats.median == 0.499023 and gpu.stats.median <= host.stats.median
    assert host.key != gpu.key


@pytest.mark.integration
def test_bench_measure_trt_without_trtexec_says_so(tmp_path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"bytes")
    with DeviceSession(local_device()) as dev:
        if "trtexec" in (dev.info.get("runtimes") or {}):
            pytest.skip("this host has a real trtexec")
        with pytest.raises(DeviceError, match="trtexec was not found"):
            measure(dev, onnx, BenchConfig(runtime="trt", precision="fp16"))
