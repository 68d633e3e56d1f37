import numpy as np
import pytest

from edgeprune.bench import Measurement, Store, compute_stats, context_key


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
