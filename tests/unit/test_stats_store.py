import contextlib
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edgeprune.bench import (
    Measurement,
    Store,
    StoreError,
    bench_from_trtexec,
    compute_stats,
    context_key,
)
from edgeprune.bench.store import SCHEMA_VERSION
from edgeprune.vocab import Precision, Runtime


def test_stats_match_numpy() -> None:
    rng = np.random.default_rng(0)
    t = rng.gamma(4.0, 0.5, size=997)
    s = compute_stats(t.tolist())
    assert s.n == 997
    assert s.median == pytest.approx(np.percentile(t, 50))
    assert s.p90 == pytest.approx(np.percentile(t, 90))
    assert s.p99 == pytest.approx(np.percentile(t, 99))
    assert s.std == pytest.approx(np.std(t, ddof=1))
    assert s.cv == pytest.approx(np.std(t, ddof=1) / np.mean(t))
    assert s.min == t.min()
    with pytest.raises(ValueError):
        compute_stats([])


def _m(
    device: str = "a", sha: str = "x" * 64, job: str | None = None, threads: int = 1
) -> Measurement:
    ctx = {
        "device": device,
        "runtime": "ort",
        "precision": "fp32",
        "artifact_sha256": sha,
        "threads": threads,
        "temperature": 40,
    }
    return Measurement(compute_stats([1.0, 1.1, 1.2]), ctx, [1.0, 1.1, 1.2], job_id=job)


def test_context_key_ignores_non_key_fields() -> None:
    a, b = _m(), _m()
    b.context["temperature"] = 70
    assert context_key(a.context) == context_key(b.context)
    assert context_key(_m(threads=2).context) != context_key(a.context)


def test_store_is_append_only_and_keyed(tmp_path) -> None:
    with Store(tmp_path / "s.db") as st:
        first = st.add(_m())
        second = st.add(_m())
        assert second.id > first.id and st.count() == 2
        assert st.latest(first.key).id == second.id
        assert st.latest(_m(threads=4).key) is None
        got = st.get(first.id)
        assert got.raw_ms == [1.0, 1.1, 1.2] and got.stats == first.stats


def test_job_ids_are_stored_once(tmp_path) -> None:
    with Store(tmp_path / "s.db") as st:
        a = st.add(_m(job="sweep1/job7"))
        b = st.add(_m(job="sweep1/job7"))
        assert a.id == b.id and st.count() == 1
        assert st.job_ids("sweep1/") == {"sweep1/job7"}


def test_store_survives_two_processes(tmp_path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from edgeprune.bench import Store, Measurement, compute_stats\n"
        "with Store(sys.argv[1]) as st:\n"
        "    for i in range(25): st.add(Measurement(compute_stats([1.0]), {'device': 'd', 'runtime': 'ort', 'precision': 'fp32', 'artifact_sha256': 's'}, [1.0]))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s.db")]) for _ in range(3)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    with Store(tmp_path / "s.db") as st:
        assert st.count() == 75


def test_job_ids_match_the_prefix_exactly(tmp_path) -> None:
    """``_`` and ``%`` in a sweep name are characters, not LIKE wildcards."""
    names = ["a_b/1", "axb/1", "50%/1", "50x/1", r"back\slash/1", "backslash/1", "a_b2/1"]
    with Store(tmp_path / "s.db") as st:
        for n in names:
            st.add(_m(job=n))
        assert st.job_ids("a_b/") == {"a_b/1"}
        assert st.job_ids("50%/") == {"50%/1"}
        assert st.job_ids("back\\slash/") == {r"back\slash/1"}
        assert st.job_ids("") == set(names)
        assert [m.job_id for m in st.query(job_prefix="a_b/")] == ["a_b/1"]


# --------------------------------------------------------------------------- schema versions

V1_STORE = Path(__file__).parent.parent / "fixtures" / "store" / "edgeprune-v1.db"
# The ORT context the schema-1 fixture's rows were recorded with (tests/fixtures/store/SOURCES.md).
V1_CONTEXT = {
    "device": "nano0",
    "device_id": "0123456789abcdef",
    "profile": "jetson-nano",
    "arch": "aarch64",
    "os": "Ubuntu 18.04.6 LTS",
    "python": "3.6.9",
    "runtime": "ort",
    "runtime_version": "1.10.0",
    "provider": "CPUExecutionProvider",
    "precision": "fp32",
    "threads": 4,
    "batch": 1,
    "input_shape": [1, 1, 28, 28],
    "artifact_sha256": "ab" * 32,
    "power_mode": "0",
    "governor": "performance",
    "max_khz": 1479000,
    "cpu_quota": None,
    "agent_sha256": "cd" * 32,
    "agent_version": "1",
    "protocol": "w10/1s n50/2s b1",
}


def _old_store(tmp_path: Path) -> Path:
    path = tmp_path / "edgeprune.db"
    shutil.copyfile(V1_STORE, path)
    return path


def _schema(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]


def test_a_schema_1_store_is_migrated_and_keeps_matching_its_contexts(tmp_path) -> None:
    path = _old_store(tmp_path)
    assert _schema(path) == "1"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        old_keys = dict(conn.execute("SELECT label, context_key FROM measurements").fetchall())
    with Store(path) as st:
        rows = {m.label: m for m in st.query()}
        assert st.count() == 3 and set(rows) == {"ort-row", "trt-host_latency", "trt-gpu_compute"}
        # The same contexts as this version records them: the runtime enum, TensorRT's pair
        # built by the same code path that writes them today.
        ort_key = context_key({**V1_CONTEXT, "runtime": Runtime.ORT})
        trt_ctx = {**V1_CONTEXT, "precision": Precision.FP16, "provider": None}
        trt_ctx["runtime_version"] = "8.2.1"
        times = json.dumps(
            [
                {"startComputeMs": 2.0 * i, "computeMs": 0.5, "latencyMs": 0.6, "startH2dMs": 0}
                for i in range(3)
            ]
        )
        new_trt = bench_from_trtexec(times, None, 0.0).measurements(trt_ctx)
        # Reuse works on the migrated rows: new keys find them.
        assert st.latest(ort_key).id == rows["ort-row"].id
        assert old_keys["ort-row"] == ort_key  # ONNX Runtime keys did not change at all
        for name in ("host_latency", "gpu_compute"):
            stored = st.latest(new_trt[name].key)
            assert stored is not None and stored.id == rows[f"trt-{name}"].id
            assert stored.context["runtime"] == "trt" and stored.key == new_trt[name].key
            assert old_keys[f"trt-{name}"] != stored.key  # re-keyed from "tensorrt"
            assert "runtime 'tensorrt' is spelled 'trt'" in stored.notes[-1]
        assert st.lut_count("ef" * 32) == 1
        assert st.lut_get("ef" * 32, "conv3x3", 16, 16)["n"] == 3
    assert _schema(path) == str(SCHEMA_VERSION)
    with Store(path) as st:  # opening again changes nothing
        assert [m.notes for m in st.query()] == [m.notes for m in rows.values()]


def test_a_store_from_a_newer_edgeprune_is_refused_in_one_line(tmp_path) -> None:
    path = _old_store(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=r"newer edgeprune \(store schema 99") as e:
        Store(path)
    assert "\n" not in str(e.value) and e.value.hint
    assert _schema(path) == "99"  # left as it was


def test_a_file_that_is_no_store_is_refused(tmp_path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database, it is a text file" * 100)
    with pytest.raises(StoreError, match="not a readable edgeprune store"):
        Store(garbage)
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn, conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not an edgeprune store"):
        Store(other)


def test_the_cli_prints_the_refusal_in_one_line(tmp_path, monkeypatch, capsys, tiny_onnx) -> None:
    from edgeprune.cli import main

    home = tmp_path / "home"
    home.mkdir()
    path = _old_store(home)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    monkeypatch.setenv("EDGEPRUNE_HOME", str(home))
    assert main(["bench", str(tiny_onnx), "--device", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert "newer edgeprune" in err and len(err.splitlines()) == 1
