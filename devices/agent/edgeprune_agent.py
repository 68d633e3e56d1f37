#!/usr/bin/env python3
"""edgeprune on-device agent: one stdlib-only file, Python >= 3.6, JSON in, one JSON document out.

Usage: python3 edgeprune_agent.py REQUEST.json

The request is a JSON object {"verb": "info" | "bench" | "state" | "trt_info" | "build_engine",
...}. The agent prints exactly
one JSON object on stdout: {"ok": true, "agent_version": V, "result": {...}} or
{"ok": false, "agent_version": V, "error": {"type": T, "message": M}}. Exit codes: 0 ok, 3 handled
error, 75 device busy (another benchmark holds the lock). It never unpickles anything; numeric
arrays travel as .npy files loaded with allow_pickle=False.

Runtimes (imported only when asked for): onnxruntime (+ numpy); TensorRT through the device's
trtexec, run from an argv the host sends (never a shell string). Keep this file compatible with
Python 3.6 (JetPack 4.x): no walrus, no dataclasses, no f-string '=' specifier, no
subprocess capture_output/text.
"""

import glob
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import time

AGENT_VERSION = "1.0"
EXIT_OK = 0
EXIT_ERROR = 3
EXIT_BUSY = 75


class AgentError(Exception):
    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


# --------------------------------------------------------------------------- system facts


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except (IOError, OSError):
        return default


def _run(argv, timeout=10):
    """Run a local tool; return (exit code, stdout) or (None, '') when it is missing."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    except (OSError, ValueError):
        return None, ""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None, ""
    return proc.returncode, out


def _which(name, extra_dirs=()):
    for d in extra_dirs:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return shutil.which(name)


def arch():
    """Architecture of this interpreter (a 32-bit userland on a 64-bit kernel reports 32-bit)."""
    machine = platform.machine().lower()
    bits = struct.calcsize("P") * 8
    if machine in ("aarch64", "arm64", "armv8l", "armv8b"):
        return "aarch64" if bits == 64 else "armv7l"
    if machine.startswith("armv7") or machine.startswith("armv6"):
        return machine
    if machine in ("x86_64", "amd64"):
        return "x86_64" if bits == 64 else "i686"
    return machine


def os_release():
    text = _read("/etc/os-release", "") or ""
    values = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            values[k] = v.strip().strip('"')
    return values.get("PRETTY_NAME") or platform.platform()


def cpu_facts():
    info = {"logical": os.cpu_count()}
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["affinity"] = os.cpu_count()
    model = None
    for line in (_read("/proc/cpuinfo", "") or "").splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("model name", "hardware", "model") and ":" in line:
            model = line.split(":", 1)[1].strip()
            if key == "model name":
                break
    info["model"] = model or platform.processor()
    info["cgroup_cpu_quota"] = cgroup_cpu_quota()
    return info


def _own_cgroups():
    """This process's cgroup paths from /proc/self/cgroup: {controller: path}; v2 is under ""."""
    paths = {}
    for line in (_read("/proc/self/cgroup", "") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                paths[controller] = parts[2]
    return paths


def cgroup_cpu_quota():
    """CPU quota of this process's own cgroup, in CPUs (None: unlimited).

    /sys/fs/cgroup/cpu/cpu.cfs_quota_us alone is the root group's unless the cgroup namespace
    hides the hierarchy (containers), so the process's group from /proc/self/cgroup comes first.
    """
    own = _own_cgroups()
    for rel in (own.get("cpu"), "/"):
        if rel is None:
            continue
        base = "/sys/fs/cgroup/cpu" + rel.rstrip("/")
        q = _read(base + "/cpu.cfs_quota_us")
        p = _read(base + "/cpu.cfs_period_us")
        if q and p and q.lstrip("-").isdigit():
            return round(int(q) / float(p), 3) if int(q) > 0 else None
    for rel in (own.get(""), "/"):
        if rel is None:
            continue
        v2 = _read("/sys/fs/cgroup" + rel.rstrip("/") + "/cpu.max")
        if v2:
            parts = v2.split()
            if len(parts) == 2 and parts[0] != "max":
                return round(int(parts[0]) / float(parts[1]), 3)
            return None
    return None


def memory():
    values = {}
    for line in (_read("/proc/meminfo", "") or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("MemTotal:", "MemAvailable:"):
            values[parts[0][:-1]] = int(parts[1]) * 1024
    return {"total_bytes": values.get("MemTotal"), "available_bytes": values.get("MemAvailable")}


def clocks():
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    out = {
        "governor": _read(base + "scaling_governor"),
        "cur_khz": _int(_read(base + "scaling_cur_freq")),
        "max_khz": _int(_read(base + "scaling_max_freq")),
        "min_khz": _int(_read(base + "scaling_min_freq")),
    }
    nv = _which("nvpmodel", ("/usr/sbin", "/usr/bin"))
    if nv:
        code, text = _run([nv, "-q"])
        if code == 0:
            out["nvpmodel"] = " ".join(text.split())[:200]
    return out


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def temperatures():
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        t = _int(_read(os.path.join(zone, "temp")))
        if t is not None:
            name = _read(os.path.join(zone, "type"), os.path.basename(zone))
            temps[name] = round(t / 1000.0, 1)
    return temps


def throttle():
    """Raspberry Pi throttle flags: bits 0-3 set now means the run is invalid."""
    vc = _which("vcgencmd", ("/usr/bin", "/opt/vc/bin"))
    if not vc:
        return {"source": None, "flags": None, "active": False}
    code, text = _run([vc, "get_throttled"])
    if code != 0 or "=" not in text:
        return {"source": "vcgencmd", "flags": None, "active": False}
    flags = int(text.strip().split("=", 1)[1], 16)
    return {"source": "vcgencmd", "flags": hex(flags), "active": bool(flags & 0xF)}


def state():
    """The fast-changing context read before and after every benchmark."""
    return {"time": time.time(), "clocks": clocks(), "temperatures": temperatures(), "throttle": throttle()}


def runtimes():
    found = {}
    try:
        import onnxruntime as ort

        found["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except Exception as e:  # ImportError or a broken install
        found["onnxruntime"] = {"missing": str(e)[:200]}
    try:
        import numpy

        found["numpy"] = {"version": numpy.__version__}
    except Exception as e:
        found["numpy"] = {"missing": str(e)[:200]}
    try:
        import tensorrt

        found["tensorrt"] = {"version": tensorrt.__version__}
    except Exception:
        pass
    trtexec = _which("trtexec", ("/usr/src/tensorrt/bin", "/usr/local/tensorrt/bin", "/opt/tensorrt/bin"))
    if trtexec:
        found["trtexec"] = {"path": trtexec}
    return found


def machine_id():
    raw = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id") or platform.node()
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def verb_info(req, workdir):
    usage = shutil.disk_usage(workdir)
    return {
        "arch": arch(),
        "os": os_release(),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "machine_id": machine_id(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "runtimes": runtimes(),
        "cpu": cpu_facts(),
        "memory": memory(),
        "l4t": _read("/etc/nv_tegra_release"),
        "disk_free_bytes": usage.free,
        "workdir": workdir,
        "state": state(),
    }


def verb_state(req, workdir):
    return state()


# --------------------------------------------------------------------------- benchmarking


class _Lock(object):
    """Non-blocking exclusive flock on WORKDIR/bench.lock: one benchmark per device."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, "bench.lock")
        self.fd = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            os.close(self.fd)
            self.fd = None
            raise AgentError("busy", "another benchmark is running on this device")
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


def _ort_session(path, threads, provider):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    providers = [provider] if provider else ["CPUExecutionProvider"]
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise AgentError("runtime", "onnxruntime provider not available: " + ", ".join(missing))
    return ort.InferenceSession(path, sess_options=so, providers=providers)


def _feeds(sess, batch, seed):
    import numpy as np

    rng = np.random.RandomState(seed)
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else batch for d in inp.shape]
        if shape and not isinstance(inp.shape[0], int):
            shape[0] = batch
        dtype = np.float16 if "float16" in inp.type else np.float32
        feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _timed_loop(step, warmup_runs, warmup_seconds, min_runs, min_seconds, max_runs, max_seconds):
    clock = time.perf_counter
    t_start = clock()
    n = 0
    while n < warmup_runs or clock() - t_start < warmup_seconds:
        step()
        n += 1
        if clock() - t_start > max_seconds:
            break
    times = []
    t0 = clock()
    while True:
        a = clock()
        step()
        b = clock()
        times.append((b - a) * 1000.0)
        elapsed = b - t0
        if (len(times) >= min_runs and elapsed >= min_seconds) or len(times) >= max_runs or elapsed >= max_seconds:
            break
    return n, times


def verb_bench(req, workdir):
    if req.get("runtime") == "trt":
        return _bench_trt(req, workdir)
    model = req.get("model")
    if not model or not os.path.isfile(model):
        raise AgentError("input", "model file not found: %s" % model)
    runtime = req.get("runtime", "ort")
    if runtime != "ort":
        raise AgentError("input", "runtime %r is not supported by this agent verb" % runtime)
    threads = int(req.get("threads", 1))
    batch = int(req.get("batch", 1))
    with _Lock(workdir):
        before = state()
        sess = _ort_session(model, threads, req.get("provider"))
        feeds = _feeds(sess, batch, int(req.get("seed", 0)))
        outputs = None
        if req.get("inputs_npy"):
            import numpy as np

            arr = np.load(req["inputs_npy"], allow_pickle=False)
            name = sess.get_inputs()[0].name
            result = sess.run(None, {name: arr})
            out_path = req.get("outputs_npy") or os.path.join(workdir, "outputs.npy")
            tmp = out_path + ".part"
            with open(tmp, "wb") as f:
                np.save(f, result[0], allow_pickle=False)
            os.rename(tmp, out_path)
            outputs = {"path": out_path, "shape": list(result[0].shape)}

        def step():
            sess.run(None, feeds)

        warm, times = _timed_loop(
            step,
            int(req.get("warmup_runs", 10)),
            float(req.get("warmup_seconds", 1.0)),
            int(req.get("min_runs", 50)),
            float(req.get("min_seconds", 2.0)),
            int(req.get("max_runs", 100000)),
            float(req.get("max_seconds", 60.0)),
        )
        after = state()
    import onnxruntime as ort

    return {
        "runtime": "ort",
        "runtime_version": ort.__version__,
        "provider": sess.get_providers()[0],
        "threads": threads,
        "batch": batch,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "warmup_runs": warm,
        "times_ms": times,
        "outputs": outputs,
        "state_before": before,
        "state_after": after,
        "pid": os.getpid(),
    }


def verb_bench_batch(req, workdir):
    """Benchmark many small ONNX models in one process (latency lookup tables).

    Each model gets its own session and the same warm-up/measure loop as ``bench``; the device
    lock is held for the whole batch. Returns per-model raw times; the host computes statistics.
    """
    models = req.get("models") or []
    if not isinstance(models, list) or not models:
        raise AgentError("input", "bench_batch needs a non-empty list of model paths")
    for m in models:
        if not isinstance(m, str) or not os.path.isfile(m):
            raise AgentError("input", "model file not found: %s" % m)
    threads = int(req.get("threads", 1))
    batch = int(req.get("batch", 1))
    results = []
    with _Lock(workdir):
        before = state()
        for model in models:
            sess = _ort_session(model, threads, req.get("provider"))
            feeds = _feeds(sess, batch, int(req.get("seed", 0)))

            def step(sess=sess, feeds=feeds):
                sess.run(None, feeds)

            warm, times = _timed_loop(
                step,
                int(req.get("warmup_runs", 5)),
                float(req.get("warmup_seconds", 0.1)),
                int(req.get("min_runs", 20)),
                float(req.get("min_seconds", 0.2)),
                int(req.get("max_runs", 100000)),
                float(req.get("max_seconds", 10.0)),
            )
            results.append({"model": model, "warmup_runs": warm, "times_ms": times})
        after = state()
    import onnxruntime as ort

    return {
        "runtime": "ort",
        "runtime_version": ort.__version__,
        "provider": req.get("provider") or "CPUExecutionProvider",
        "threads": threads,
        "batch": batch,
        "results": results,
        "state_before": before,
        "state_after": after,
    }


# --------------------------------------------------------------------------- TensorRT via trtexec

TRTEXEC_DIRS = ("/usr/src/tensorrt/bin", "/usr/local/tensorrt/bin", "/opt/tensorrt/bin")
TRT_LOG_TAIL = 32000


def verb_trt_info(req, workdir):
    """Raw facts the host reads the TensorRT version from: trtexec's banner, L4T, dpkg."""
    trtexec = req.get("trtexec")
    if not (trtexec and os.path.isfile(trtexec)):
        trtexec = _which("trtexec", TRTEXEC_DIRS)
    banner = None
    if trtexec and os.path.isfile(trtexec):
        code, out = _run([trtexec, "--help"], timeout=60)
        banner = "\n".join([line for line in out.splitlines() if "TensorRT" in line][:5]) or None
    dpkg = None
    query = _which("dpkg-query", ("/usr/bin", "/bin"))
    if query:
        code, out = _run([query, "-W", "-f", "${Package} ${Version}\n", "libnvinfer*", "tensorrt"], timeout=30)
        dpkg = out[:8000] if out else None
    return {
        "trtexec": trtexec if trtexec and os.path.isfile(trtexec) else None,
        "banner": banner,
        "nv_tegra_release": _read("/etc/nv_tegra_release"),
        "dpkg": dpkg,
    }


def _trt_argv(req):
    """The trtexec argv the host sent: a JSON list of strings naming an existing trtexec."""
    argv = req.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise AgentError("input", "argv must be a non-empty JSON list of strings")
    if any("\0" in a or "\n" in a for a in argv):
        raise AgentError("input", "argv elements must not contain NUL or newlines")
    exe = argv[0]
    if os.path.basename(exe) != "trtexec" or not os.path.isabs(exe):
        raise AgentError("input", "argv[0] must be the absolute path of trtexec, got %r" % exe)
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise AgentError("runtime", "trtexec not found or not executable: %s" % exe)
    return argv


def _under(path, directory):
    path = os.path.abspath(path)
    directory = os.path.abspath(directory)
    return os.path.dirname(path) == directory


def _trt_run(argv, timeout, log_path):
    """Run trtexec with its output in ``log_path`` (kept even when it is killed at the deadline).

    Returns (exit code or None when killed, timed out?, seconds, log tail)."""
    t0 = time.time()
    timed_out = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code, timed_out = None, True
    with open(log_path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - TRT_LOG_TAIL))
        tail = f.read().decode("utf-8", "replace")
    return code, timed_out, round(time.time() - t0, 3), tail


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verb_build_engine(req, workdir):
    """Build a TensorRT engine with trtexec into the device's engine cache, atomically.

    Request: argv (list; must contain --saveEngine=<part>), engine (final path), part (a
    ``.part`` path in the same directory), timeout_s, force. An engine already at ``engine`` is
    reused unless ``force``. The engine appears at ``engine`` only when trtexec exits 0.
    """
    argv = _trt_argv(req)
    engine, part = req.get("engine"), req.get("part")
    if not engine or not part or not part.endswith(".part") or not _under(part, os.path.dirname(engine)):
        raise AgentError("input", "engine and part must be paths in one directory, part ending in .part")
    if "--saveEngine=" + part not in argv:
        raise AgentError("input", "argv must write the engine to the part file (--saveEngine=%s)" % part)
    if os.path.isfile(engine) and not req.get("force"):
        return {"engine": engine, "built": True, "cached": True, "sha256": _sha256(engine), "exit_code": None,
                "seconds": 0.0, "log_tail": ""}
    directory = os.path.dirname(os.path.abspath(engine))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with _Lock(workdir):
        code, timed_out, seconds, tail = _trt_run(argv, float(req.get("timeout_s", 3600)), part + ".log")
        built = code == 0 and os.path.isfile(part) and os.path.getsize(part) > 0
        if built:
            os.rename(part, engine)
        elif os.path.exists(part):
            os.remove(part)
        os.remove(part + ".log")
    return {"engine": engine if built else None, "built": built, "cached": False, "exit_code": code,
            "timed_out": timed_out, "seconds": seconds, "log_tail": tail,
            "sha256": _sha256(engine) if built else None}


def _bench_trt(req, workdir):
    """Benchmark an engine with trtexec --loadEngine/--exportTimes; return the times and the log."""
    argv = _trt_argv(req)
    engine, times_path = req.get("engine"), req.get("times_json")
    if not engine or not times_path:
        raise AgentError("input", "a trt bench needs engine and times_json")
    if "--loadEngine=" + engine not in argv or "--exportTimes=" + times_path not in argv:
        raise AgentError("input", "argv must contain --loadEngine=<engine> and --exportTimes=<times_json>")
    if not os.path.isfile(engine):
        return {"runtime": "trt", "loaded": False, "exit_code": None, "times": None,
                "log": "engine file not found: %s" % engine}
    if os.path.exists(times_path):
        os.remove(times_path)
    with _Lock(workdir):
        before = state()
        code, timed_out, seconds, tail = _trt_run(argv, float(req.get("timeout_s", 600)), times_path + ".log")
        after = state()
    os.remove(times_path + ".log")
    times = None
    if code == 0 and os.path.isfile(times_path):
        with open(times_path) as f:
            times = json.load(f)
        os.remove(times_path)
    return {"runtime": "trt", "loaded": code == 0, "exit_code": code, "timed_out": timed_out,
            "seconds": seconds, "times": times, "log": tail, "engine": engine,
            "engine_sha256": _sha256(engine), "state_before": before, "state_after": after,
            "pid": os.getpid()}


# --------------------------------------------------------------------------- device layer: hangup watch, telemetry

EXIT_HANGUP = 129


def _exit_on_stdin_eof():
    """Stop this agent's whole process group when its stdin reaches EOF.

    Over SSH the client keeps the command's stdin open until the command ends; if the connection
    drops (client killed, sshd killed, network gone) sshd closes it. Nothing is ever sent on stdin,
    so EOF means "nobody is listening": stop the runtime rather than hold the device's lock.
    """
    import signal
    import threading

    def watch():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        except OSError:
            pass
        os._exit(EXIT_HANGUP)

    t = threading.Thread(target=watch, name="stdin-eof-watch")
    t.daemon = True
    t.start()


def _start_telemetry(argv, workdir):
    """Start a telemetry logger (e.g. tegrastats) writing to a file; None when not asked for."""
    if not argv:
        return None
    argv = [str(a) for a in argv]
    path = os.path.join(workdir, "telemetry-%d.log" % os.getpid())
    out = open(path, "w")
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    except (OSError, ValueError) as e:
        out.close()
        os.remove(path)
        return {"argv": argv, "error": str(e)[:200]}
    return {"argv": argv, "proc": proc, "file": out, "path": path, "started": time.time()}


def _stop_telemetry(handle, max_lines=400):
    """Stop the logger and return what it wrote (the last ``max_lines`` lines)."""
    if handle is None:
        return None
    if "proc" not in handle:
        return handle
    proc = handle["proc"]
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    handle["file"].close()
    with open(handle["path"]) as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    os.remove(handle["path"])
    return {
        "argv": handle["argv"],
        "seconds": round(time.time() - handle["started"], 3),
        "lines": len(lines),
        "log": lines[-max_lines:],
    }


def _with_telemetry(verb):
    """Run ``verb`` with the request's ``telemetry`` logger (argv) alongside; attach its log."""

    def run(req, workdir):
        handle = _start_telemetry(req.get("telemetry"), workdir)
        try:
            result = verb(req, workdir)
        finally:
            log = _stop_telemetry(handle)
        if log is not None:
            result["telemetry"] = log
        return result

    return run


VERBS = {"info": verb_info, "state": verb_state, "bench": _with_telemetry(verb_bench), "bench_batch": verb_bench_batch, "trt_info": verb_trt_info, "build_engine": verb_build_engine}


def _check_request(path, expected):
    """The host sends the request's sha256 with it: a corrupt upload is refused, never run."""
    with open(path, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    if got != expected:
        os.remove(path)
        raise AgentError("input", "request file is corrupt (sha256 %s != %s)" % (got[:12], expected[:12]))


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: edgeprune_agent.py REQUEST.json [SHA256]\n")
        return 2
    code = EXIT_OK
    try:
        if len(argv) == 3:
            _check_request(argv[1], argv[2])
        with open(argv[1]) as f:
            req = json.load(f)
        if not isinstance(req, dict):
            raise AgentError("input", "request must be a JSON object")
        if req.get("delete_request"):
            os.remove(argv[1])
        verb = req.get("verb")
        if verb not in VERBS:
            raise AgentError("input", "unknown verb %r; choose one of %s" % (verb, ", ".join(sorted(VERBS))))
        if req.get("exit_on_stdin_eof"):
            _exit_on_stdin_eof()
        workdir = req.get("workdir") or os.path.dirname(os.path.abspath(argv[1]))
        reply = {"ok": True, "agent_version": AGENT_VERSION, "result": VERBS[verb](req, workdir)}
    except AgentError as e:
        code = EXIT_BUSY if e.kind == "busy" else EXIT_ERROR
        reply = {"ok": False, "agent_version": AGENT_VERSION, "error": {"type": e.kind, "message": e.message}}
    except (IOError, OSError, ValueError) as e:
        code = EXIT_ERROR
        reply = {"ok": False, "agent_version": AGENT_VERSION, "error": {"type": type(e).__name__, "message": str(e)[:500]}}
    except Exception as e:  # a runtime failure (e.g. onnxruntime rejects the model)
        code = EXIT_ERROR
        reply = {"ok": False, "agent_version": AGENT_VERSION, "error": {"type": type(e).__name__, "message": str(e)[:500]}}
    sys.stdout.write(json.dumps(reply))
    sys.stdout.write("\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
