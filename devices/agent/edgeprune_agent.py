#!/usr/bin/env python3
"""edgeprune on-device agent: one stdlib-only file, Python >= 3.6, JSON in, JSON out.

Two ways to run it (the host picks one per device, `agent_mode` in devices.yaml):

* **Session** (default): ``python3 edgeprune_agent.py --serve WORKDIR`` (started by the bootstrap
  over one SSH exec channel, see bootstrap.py) reads JSON-line requests on stdin and writes one
  JSON-line reply per request on stdout, for the whole device session. A request is
  {"id": N, "verb": V, "deadline_s": T, ...}; the reply {"id": N, "ok": true, "result": {...}} or
  {"id": N, "ok": false, "error": {"type": T, "message": M, ...}}. A request or reply line with
  "stream_bytes": N is followed by exactly N raw bytes (file uploads and downloads). The agent
  exits when stdin closes (the connection is gone: it stops everything it started, and the kernel
  drops its locks) and when a request passes its deadline (it answers "deadline" first).
* **Per command**: ``python3 edgeprune_agent.py REQUEST.json [SHA256]`` runs one request from an
  uploaded file and prints one reply. Exit codes: 0 ok, 3 handled error, 75 device busy.

Verbs: open (facts + board lock + stale-upload sweep + files, in one request), info, state,
lock, unlock, have, bench (ONNX Runtime, or TensorRT through trtexec), bench_batch, trt_info,
build_engine, exec, upload, download, cleanup. One benchmark at a time per *board*: an flock on
/tmp/edgeprune-board-<ID>.lock, ID from the board's EDGEPRUNE_BOARD_ID (default "default"), so two
device entries, users or hosts that reach one board exclude each other. It never unpickles
anything; arrays travel as .npy bytes loaded with allow_pickle=False. Keep this file compatible
with Python 3.6 (JetPack 4.x): no walrus, no dataclasses, no f-string '=' specifier, no subprocess
capture_output/text.
"""

import base64
import errno
import glob
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

AGENT_VERSION = "2.0"
EXIT_OK = 0
EXIT_ERROR = 3
EXIT_BUSY = 75
EXIT_HANGUP = 129
EXIT_DEADLINE = 124
KILL_GRACE_S = 5.0
SUBDIRS = ("agent", "artifacts", "requests", "outputs", "engines")
ARTIFACT_NAME = re.compile(r"^[0-9a-f]{64}(\.[A-Za-z0-9]{1,16})?$")
BOARD_ID_ENV = "EDGEPRUNE_BOARD_ID"
LOCK_DIR = "/tmp"
CHUNK = 1 << 16
# Uploads are read in big pieces: each piece needs the GIL, which a background import may hold.
STREAM_CHUNK = 1 << 20


class AgentError(Exception):
    def __init__(self, kind, message, **details):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message
        self.details = details


# --------------------------------------------------------------------------- child processes

_CHILDREN = set()


def _spawn(argv, **kw):
    """Start a child in its own process group, remembered so that a dying agent stops it too."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.Popen(argv, start_new_session=True, **kw)
    _CHILDREN.add(proc)
    return proc


def _kill_group(proc, grace=KILL_GRACE_S):
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds (like timeout -k)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        if wait is None:
            break
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.wait()


def _shutdown(code):
    """Stop every child's process group (each has its own: `_spawn`), then exit at once."""
    for proc in list(_CHILDREN):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    os._exit(code)


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
        proc = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    except (OSError, ValueError):
        return None, ""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return None, ""
    finally:
        _CHILDREN.discard(proc)
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


RUNTIME_MODULES = ("onnxruntime", "numpy")


def _dist_version(module):
    """The installed version of ``module``'s distribution, read from its metadata without
    importing it (importing onnxruntime costs ~0.3 s on a fast board, seconds on a Nano).
    None when it is not installed; "" when installed but the metadata is not found."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or []) or [spec.origin or ""]
    site = os.path.dirname(os.path.abspath(locations[0]))
    prefix = module.replace("-", "_").lower()
    for pattern, key in (("*.dist-info", "METADATA"), ("*.egg-info", "PKG-INFO")):
        for d in sorted(glob.glob(os.path.join(site, pattern))):
            name = os.path.basename(d).split("-", 1)[0].lower()
            if name != prefix and not name.startswith(prefix + "_"):
                continue
            for line in (_read(os.path.join(d, key), "") or "").splitlines():
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
    return ""


def _imported_runtime(name):
    try:
        module = __import__(name)
    except Exception as e:  # ImportError or a broken install
        return {"missing": str(e)[:200]}
    out = {"version": getattr(module, "__version__", "?")}
    if name == "onnxruntime":
        out["providers"] = module.get_available_providers()
    return out


def runtimes(import_modules=False):
    """Runtimes and versions. Without ``import_modules`` (and unless already imported) versions come
    from package metadata; `devices check` imports them to catch broken installs."""
    found = {}
    for name in RUNTIME_MODULES:
        version = None if import_modules or name in sys.modules else _dist_version(name)
        if version:
            found[name] = {"version": version}
        elif version is None and not import_modules and name not in sys.modules:
            found[name] = {"missing": "No module named %r" % name}
        else:
            found[name] = _imported_runtime(name)
    trt = _dist_version("tensorrt")
    if trt is not None:
        found["tensorrt"] = {"version": trt} if trt else _imported_runtime("tensorrt")
    trtexec = _which("trtexec", ("/usr/src/tensorrt/bin", "/usr/local/tensorrt/bin", "/opt/tensorrt/bin"))
    if trtexec:
        found["trtexec"] = {"path": trtexec}
    return found


def _preload(modules):
    """Import runtimes in the background while the host is busy elsewhere (uploading, comparing):
    the benchmark that follows finds them loaded. Failures are left for that request to report."""

    def load():
        for name in modules:
            if name in RUNTIME_MODULES:
                try:
                    __import__(name)
                except Exception:
                    pass

    t = threading.Thread(target=load, name="preload")
    t.daemon = True
    t.start()


def machine_id():
    raw = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id") or platform.node()
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the board lock


def board_id():
    """This board's identity: EDGEPRUNE_BOARD_ID as the board's sshd/profile sets it, else 'default'."""
    raw = os.environ.get(BOARD_ID_ENV) or "default"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)[:64] or "default"


def board_lock_path():
    return os.path.join(LOCK_DIR, "edgeprune-board-%s.lock" % board_id())


def _open_lock_file(path):
    """Open (or create, world-readable and writable) the lock file without following links."""
    flags = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(5):
        try:
            return os.open(path, os.O_RDWR | flags), True
        except OSError as e:
            if e.errno == errno.EACCES:
                return os.open(path, os.O_RDONLY | flags), False
            if e.errno != errno.ENOENT:
                raise
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666)
        except OSError as e:
            if e.errno == errno.EEXIST:
                continue  # another user created it between the two opens
            raise
        os.fchmod(fd, 0o666)  # every user of the board must be able to lock it
        return fd, True
    raise AgentError("lock", "cannot open the board lock %s" % path)


def read_holder(path):
    try:
        with open(path) as f:
            text = f.read(4096).strip()
    except (IOError, OSError):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text[:200]} if text else None
    return value if isinstance(value, dict) else None


class BoardLock(object):
    """Exclusive, non-blocking flock on the board's lock file; the holder is written into it."""

    def __init__(self):
        self.path = board_lock_path()
        self.fd = None
        self.writable = False

    def acquire(self, holder):
        import fcntl

        fd, writable = _open_lock_file(self.path)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise AgentError("lock", "the board lock %s is not a regular file" % self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (IOError, OSError):
                raise AgentError(
                    "busy",
                    "another session is benchmarking this board",
                    holder=read_holder(self.path),
                    board=board_id(),
                )
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.writable = fd, writable
        if writable:
            info = dict(holder or {})
            info.update({"agent_pid": os.getpid(), "device_user": _user(), "since": time.time()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        return self

    def release(self):
        if self.fd is not None:
            if self.writable:
                try:
                    os.ftruncate(self.fd, 0)
                except OSError:
                    pass
            os.close(self.fd)
            self.fd = None


def _user():
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


class Context(object):
    """What a request runs with: the work directory, and the lock this session holds (if any)."""

    def __init__(self, workdir, session=False):
        self.workdir = workdir
        self.session = session
        self.lock = None  # the BoardLock this session holds for its whole life
        self.parent_holds_lock = False

    def bench_lock(self, req):
        """The board lock for one benchmark: a no-op when this session (or its parent) holds it."""
        ctx = self

        class _Hold(object):
            def __enter__(self):
                self.lock = None
                if ctx.lock is None and not ctx.parent_holds_lock:
                    self.lock = BoardLock().acquire(req.get("holder"))
                return self

            def __exit__(self, *exc):
                if self.lock is not None:
                    self.lock.release()

        return _Hold()


# --------------------------------------------------------------------------- work directory files


def _inside(path, workdir):
    """The absolute path if it lies inside ``workdir`` (after resolving links), else an error."""
    real = os.path.realpath(path)
    root = os.path.realpath(workdir)
    if not real.startswith(root + os.sep):
        raise AgentError("input", "path %s is outside the work directory %s" % (path, workdir))
    return real


def _artifact_path(name, ctx):
    """WORKDIR/artifacts/<sha256><suffix> for a content-addressed name (error when malformed)."""
    if not isinstance(name, str) or not ARTIFACT_NAME.match(name):
        raise AgentError("input", "invalid artifact name %r" % (name,))
    return os.path.join(ctx.workdir, "artifacts", name)


def _model_path(req, ctx, key="model", ref="artifact"):
    """The model a request names: an artifact of the cache (reported missing) or a path."""
    if req.get(ref):
        path = _artifact_path(req[ref], ctx)
        if not os.path.isfile(path):
            raise AgentError("missing_artifact", "artifact %s is not on this device" % req[ref], name=req[ref])
        return path
    model = req.get(key)
    if not model or not os.path.isfile(model):
        raise AgentError("input", "model file not found: %s" % model)
    return model


def scan_stale(workdir, older_than_s, remove):
    """Partial uploads and abandoned request files older than ``older_than_s`` (seconds).

    Uploads, engine builds and requests write ``.part`` files under unique names and rename them
    when complete; a killed host leaves them behind. Anything older than the host's upload deadline
    belongs to no live session, so ``remove`` deletes it. Returns counts and bytes.
    """
    now = time.time()
    found, size, removed = 0, 0, 0
    for sub in SUBDIRS:
        d = os.path.join(workdir, sub)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            stale = ".part" in name or (sub == "requests" and name.endswith(".json"))
            if not stale:
                continue
            path = os.path.join(d, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < older_than_s:
                continue
            found += 1
            size += st.st_size
            if remove:
                try:
                    os.remove(path)
                    removed += 1
                except OSError:
                    pass
    return {"files": found, "bytes": size, "removed": removed, "older_than_s": older_than_s}


def _receive_stream(inp, req, workdir):
    """Read the ``stream_bytes`` that follow an upload request into a unique part file.

    Runs in the reader thread, before the request is queued, so the channel stays in step even
    when the write fails (the bytes are read and dropped; the request then reports the error).
    """
    n = int(req.get("stream_bytes") or 0)
    h = hashlib.sha256()
    out = None
    try:
        target = _inside(req.get("target") or "", workdir)
        d = os.path.dirname(target)
        if not os.path.isdir(d):
            os.makedirs(d)
        part = os.path.join(d, ".%s.%d-%s.part" % (os.path.basename(target), os.getpid(), req.get("id")))
        out = open(part, "wb")
        req["_part"] = part
    except (AgentError, IOError, OSError) as e:
        req["_stream_error"] = getattr(e, "message", None) or str(e)
    left = n
    t0 = time.time()
    while left > 0:
        data = inp.read(min(left, STREAM_CHUNK))
        if not data:
            break
        left -= len(data)
        h.update(data)
        if out is not None:
            try:
                out.write(data)
            except (IOError, OSError) as e:
                req["_stream_error"] = str(e)
                out.close()
                out = None
    if out is not None:
        try:
            out.close()
        except (IOError, OSError) as e:
            req["_stream_error"] = str(e)
    if left > 0:
        req["_stream_error"] = "the connection closed during the upload"
    req["_received_sha256"] = h.hexdigest()
    req["_receive_seconds"] = round(time.time() - t0, 4)


def verb_upload(req, ctx):
    """Move a streamed upload into place: verified against ``sha256`` (when given), atomic."""
    part = req.get("_part")
    try:
        if "stream_bytes" not in req:
            raise AgentError("input", "upload needs the file's bytes on the session channel")
        if req.get("_stream_error"):
            raise AgentError("write", "cannot write %s: %s" % (req.get("target"), req["_stream_error"]))
        got = req["_received_sha256"]
        if req.get("sha256") and got != req["sha256"]:
            raise AgentError("corrupt", "upload is corrupt (sha256 %s != %s)" % (got[:12], req["sha256"][:12]), got=got)
        target = _inside(req["target"], ctx.workdir)
        os.rename(part, target)
        part = None
        return {"path": target, "sha256": got, "bytes": int(req["stream_bytes"]),
                "receive_seconds": req.get("_receive_seconds")}
    finally:
        if part and os.path.exists(part):
            os.remove(part)


def verb_download(req, ctx):
    """Send a file of the work directory back as raw bytes after the reply line (session only)."""
    path = _inside(req.get("path") or "", ctx.workdir)
    if not os.path.isfile(path):
        raise AgentError("input", "%s does not exist" % path)
    return {"path": path, "sha256": _sha256(path), "_stream_file": path}


def verb_have(req, ctx):
    """Which of the named artifacts the device's cache holds."""
    names = req.get("names") or []
    present = [n for n in names if os.path.isfile(_artifact_path(n, ctx))]
    return {"present": present, "missing": [n for n in names if n not in present]}


def verb_cleanup(req, ctx):
    """Empty the named cache directories (artifacts, requests, outputs, engines) under the lock."""
    dirs = req.get("dirs") or []
    freed = 0
    with ctx.bench_lock(req):
        for sub in dirs:
            if sub not in SUBDIRS or sub == "agent":
                raise AgentError("input", "cannot clean %r" % (sub,))
            d = os.path.join(ctx.workdir, sub)
            for name in os.listdir(d) if os.path.isdir(d) else []:
                path = os.path.join(d, name)
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        freed += _du(path)
                        shutil.rmtree(path)
                    else:
                        freed += os.lstat(path).st_size
                        os.remove(path)
                except OSError:
                    pass
    return {"cleaned": dirs, "freed_bytes": freed, "disk_free_bytes": shutil.disk_usage(ctx.workdir).free}


def _du(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def verb_exec(req, ctx):
    """Run an argv (no shell) with a deadline: the session's replacement for an SSH command.

    Past ``limit_s`` seconds the process group gets SIGTERM, then SIGKILL 5 s later (``timeout -k 5``);
    the exit code is then 124, as with timeout(1).
    """
    argv = req.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise AgentError("input", "argv must be a non-empty JSON list of strings")
    if any("\0" in a for a in argv):
        raise AgentError("input", "argv elements must not contain NUL")
    timeout = float(req.get("limit_s") or 60)
    t0 = time.time()
    try:
        proc = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=req.get("cwd") or None)
    except OSError as e:
        return {"exit_code": 127, "stdout": "", "stderr": "%s: %s\n" % (argv[0], e.strerror), "seconds": 0.0,
                "timed_out": False}
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, err = proc.communicate()
    finally:
        _CHILDREN.discard(proc)
    return {
        "exit_code": 124 if timed_out else (proc.returncode if proc.returncode >= 0 else 128 - proc.returncode),
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"),
        "seconds": round(time.time() - t0, 4),
        "timed_out": timed_out,
    }


def verb_info(req, ctx):
    usage = shutil.disk_usage(ctx.workdir)
    return {
        "arch": arch(),
        "os": os_release(),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "machine_id": machine_id(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "runtimes": runtimes(bool(req.get("import_runtimes"))),
        "cpu": cpu_facts(),
        "memory": memory(),
        "l4t": _read("/etc/nv_tegra_release"),
        "disk_free_bytes": usage.free,
        "workdir": ctx.workdir,
        "board": {"id": board_id(), "lock": board_lock_path(), "holder": read_holder(board_lock_path())},
        "stale_parts": scan_stale(ctx.workdir, float(req.get("stale_after_s") or 600), False),
        "agent_pid": os.getpid(),
        "session": ctx.session,
        "state": state(),
    }


def verb_state(req, ctx):
    return state()


def verb_open(req, ctx):
    """A session's first request: take the board lock (when asked; session mode keeps it until the
    connection ends), sweep stale partial uploads (when locked), read small work-directory files
    (e.g. a clock-restore record), and report the facts of ``info`` — one round trip. Then start
    importing the ``preload`` runtimes in the background (after ``info``, which must not wait)."""
    locked = False
    if req.get("lock") and ctx.session:
        verb_lock(req, ctx)
        locked = True
    elif req.get("lock"):
        BoardLock().acquire(req.get("holder")).release()  # per command: busy fails here, at once
    swept = None
    if req.get("lock"):
        swept = scan_stale(ctx.workdir, float(req.get("stale_after_s") or 600), True)
    files = {}
    for name in req.get("read") or []:
        path = _inside(os.path.join(ctx.workdir, name), ctx.workdir)
        files[name] = _read(path)
    info = verb_info(req, ctx)
    if req.get("preload") and ctx.session:
        _preload(req["preload"])
    return {"info": info, "locked": locked, "swept": swept, "files": files}


def verb_lock(req, ctx):
    """Hold the board lock for the rest of this session (session mode only)."""
    if not ctx.session:
        raise AgentError("input", "lock needs a session agent (a per-command agent exits at once)")
    if ctx.lock is None:
        ctx.lock = BoardLock().acquire(req.get("holder"))
    return {"locked": True, "lock": ctx.lock.path, "board": board_id()}


def verb_unlock(req, ctx):
    if ctx.lock is not None:
        ctx.lock.release()
        ctx.lock = None
    return {"locked": False}


# --------------------------------------------------------------------------- benchmarking


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


def _npy_load_b64(text):
    import numpy as np

    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


def _npy_b64(array):
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def verb_bench(req, ctx):
    """Benchmark one model by the protocol's loop. With ``parity_inputs_b64`` (an .npy), first run
    the model once on those inputs and return its first output (``parity_outputs_b64``): parity
    and benchmark in one request. ``fresh_process`` runs it in a new agent process (repeats)."""
    if req.get("runtime") == "trt":
        return _bench_trt(req, ctx)
    model = _model_path(req, ctx)
    runtime = req.get("runtime", "ort")
    if runtime != "ort":
        raise AgentError("input", "runtime %r is not supported by this agent verb" % runtime)
    if req.get("fresh_process") and ctx.session:
        return _in_fresh_process(req, ctx)
    threads = int(req.get("threads", 1))
    batch = int(req.get("batch", 1))
    with ctx.bench_lock(req):
        before = state()
        t_load = time.time()
        sess = _ort_session(model, threads, req.get("provider"))
        feeds = _feeds(sess, batch, int(req.get("seed", 0)))
        parity = None
        if req.get("parity_inputs_b64"):
            arr = _npy_load_b64(req["parity_inputs_b64"])
            out = sess.run(None, {sess.get_inputs()[0].name: arr})[0]
            parity = {"outputs_b64": _npy_b64(out), "shape": list(out.shape)}

        def step():
            sess.run(None, feeds)

        t0 = time.time()
        warm, times = _timed_loop(
            step,
            int(req.get("warmup_runs", 10)),
            float(req.get("warmup_seconds", 1.0)),
            int(req.get("min_runs", 50)),
            float(req.get("min_seconds", 2.0)),
            int(req.get("max_runs", 100000)),
            float(req.get("max_seconds", 60.0)),
        )
        t1 = time.time()
        after = state()
    import onnxruntime as ort

    return {
        "runtime": "ort",
        "runtime_version": ort.__version__,
        "provider": sess.get_providers()[0],
        "threads": threads,
        "batch": batch,
        "model": model,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "warmup_runs": warm,
        "times_ms": times,
        "parity": parity,
        "load_seconds": round(t0 - t_load, 4),
        "bench_seconds": round(t1 - t0, 4),
        "window": [t0, t1],  # the device's clock: when the board was busy measuring
        "state_before": before,
        "state_after": after,
        "pid": os.getpid(),
    }


_FRESH = [0]


def _in_fresh_process(req, ctx):
    """Run ``req`` in a new per-command agent process (the protocol repeats in fresh processes);
    this session keeps the board lock meanwhile, so the child does not take it."""
    _FRESH[0] += 1
    child = dict(req)
    for k in ("fresh_process", "exit_on_stdin_eof", "id"):
        child.pop(k, None)
    child.update({"workdir": ctx.workdir, "delete_request": True, "parent_holds_lock": True})
    path = os.path.join(ctx.workdir, "requests", "fresh-%d-%d.json" % (os.getpid(), _FRESH[0]))
    with open(path, "w") as f:
        json.dump(child, f)
    timeout = float(req.get("deadline_s") or 3600)
    proc = _spawn([sys.executable, "--", os.path.abspath(__file__), path], stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise AgentError("deadline", "the fresh benchmark process passed its deadline")
    finally:
        _CHILDREN.discard(proc)
        if os.path.exists(path):
            os.remove(path)
    try:
        reply = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AgentError("runtime", "the fresh benchmark process gave no reply: %s" % err.decode("utf-8", "replace")[-300:])
    if not reply.get("ok"):
        e = reply.get("error") or {}
        raise AgentError(e.get("type") or "runtime", e.get("message") or "fresh benchmark failed")
    result = reply["result"]
    result["fresh_process"] = True
    return result


def verb_bench_batch(req, ctx):
    """Benchmark many small ONNX models in one process (latency lookup tables).

    Each model gets its own session and the same warm-up/measure loop as ``bench``; the device
    lock is held for the whole batch. Models are ``artifacts`` (cache names) or ``models`` (paths).
    Returns per-model raw times; the host computes statistics.
    """
    names = req.get("artifacts")
    if names:
        models = [_model_path({"artifact": n}, ctx) for n in names]
    else:
        models = req.get("models") or []
        if not isinstance(models, list) or not models:
            raise AgentError("input", "bench_batch needs a non-empty list of models")
        models = [_model_path({"model": m}, ctx) for m in models]
    threads = int(req.get("threads", 1))
    batch = int(req.get("batch", 1))
    results = []
    with ctx.bench_lock(req):
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


def verb_trt_info(req, ctx):
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
        proc = _spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code, timed_out = None, True
        finally:
            _CHILDREN.discard(proc)
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


def verb_build_engine(req, ctx):
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
    with ctx.bench_lock(req):
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


def _bench_trt(req, ctx):
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
    with ctx.bench_lock(req):
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


# --------------------------------------------------------------------------- telemetry


def _start_telemetry(argv, workdir):
    """Start a telemetry logger (e.g. tegrastats) writing to a file; None when not asked for."""
    if not argv:
        return None
    argv = [str(a) for a in argv]
    path = os.path.join(workdir, "outputs", "telemetry-%d-%d.log" % (os.getpid(), int(time.time() * 1e6)))
    out = open(path, "w")
    try:
        proc = _spawn(argv, stdout=out, stderr=subprocess.STDOUT)
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
    _kill_group(proc)
    _CHILDREN.discard(proc)
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

    def run(req, ctx):
        handle = _start_telemetry(req.get("telemetry"), ctx.workdir)
        try:
            result = verb(req, ctx)
        finally:
            log = _stop_telemetry(handle)
        if log is not None:
            result["telemetry"] = log
        return result

    return run


VERBS = {
    "open": verb_open,
    "info": verb_info,
    "state": verb_state,
    "lock": verb_lock,
    "unlock": verb_unlock,
    "have": verb_have,
    "bench": _with_telemetry(verb_bench),
    "bench_batch": verb_bench_batch,
    "trt_info": verb_trt_info,
    "build_engine": verb_build_engine,
    "exec": verb_exec,
    "upload": verb_upload,
    "download": verb_download,
    "cleanup": verb_cleanup,
}
SESSION_ONLY = ("upload", "download")


def _dispatch(req, ctx):
    """Run one request; return (reply, exit code). Never raises for a request's own failure."""
    code = EXIT_OK
    try:
        if not isinstance(req, dict):
            raise AgentError("input", "request must be a JSON object")
        verb = req.get("verb")
        if verb not in VERBS:
            raise AgentError("input", "unknown verb %r; choose one of %s" % (verb, ", ".join(sorted(VERBS))))
        if verb in SESSION_ONLY and not ctx.session:
            raise AgentError("input", "%s needs a session agent" % verb)
        reply = {"ok": True, "agent_version": AGENT_VERSION, "result": VERBS[verb](req, ctx)}
    except AgentError as e:
        code = EXIT_BUSY if e.kind == "busy" else EXIT_ERROR
        error = {"type": e.kind, "message": e.message}
        error.update(e.details)
        reply = {"ok": False, "agent_version": AGENT_VERSION, "error": error}
    except Exception as e:  # an OS or runtime failure (e.g. onnxruntime rejects the model)
        code = EXIT_ERROR
        reply = {"ok": False, "agent_version": AGENT_VERSION, "error": {"type": type(e).__name__, "message": str(e)[:500]}}
    if isinstance(req, dict) and "id" in req:
        reply["id"] = req["id"]
    return reply, code


# --------------------------------------------------------------------------- per-command mode


def _exit_on_stdin_eof():
    """Stop this agent (and what it started) when its stdin reaches EOF.

    Over SSH the client keeps the command's stdin open until the command ends; if the connection
    drops (client killed, sshd killed, network gone) sshd closes it. Nothing is ever sent on stdin,
    so EOF means "nobody is listening": stop the runtime rather than hold the board's lock.
    """

    def watch():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        _shutdown(EXIT_HANGUP)

    t = threading.Thread(target=watch, name="stdin-eof-watch")
    t.daemon = True
    t.start()


def _check_request(path, expected):
    """The host sends the request's sha256 with it: a corrupt upload is refused, never run."""
    with open(path, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    if got != expected:
        os.remove(path)
        raise AgentError("input", "request file is corrupt (sha256 %s != %s)" % (got[:12], expected[:12]))


def _watchdog(seconds, on_expiry):
    """Call ``on_expiry`` after ``seconds`` unless cancelled (the agent's own deadline)."""
    if not seconds:
        return None
    timer = threading.Timer(float(seconds), on_expiry)
    timer.daemon = True
    timer.start()
    return timer


def run_once(path, sha):
    """Per-command mode: one request file in, one JSON reply on stdout; returns the exit code."""
    try:
        if sha is not None:
            _check_request(path, sha)
        with open(path) as f:
            req = json.load(f)
        if isinstance(req, dict) and req.get("delete_request"):
            os.remove(path)
    except (AgentError, IOError, OSError, ValueError) as e:
        reply = {"ok": False, "agent_version": AGENT_VERSION,
                 "error": {"type": getattr(e, "kind", type(e).__name__), "message": getattr(e, "message", str(e))[:500]}}
        _write_line(sys.stdout, reply)
        return EXIT_ERROR
    workdir = (req.get("workdir") if isinstance(req, dict) else None) or os.path.dirname(os.path.abspath(path))
    ctx = Context(workdir)
    if isinstance(req, dict):
        ctx.parent_holds_lock = bool(req.get("parent_holds_lock"))
        if req.get("exit_on_stdin_eof"):
            _exit_on_stdin_eof()

    def expired():
        _write_line(sys.stdout, _deadline_reply(req))
        _shutdown(EXIT_DEADLINE)

    timer = _watchdog(req.get("deadline_s") if isinstance(req, dict) else None, expired)
    reply, code = _dispatch(req, ctx)
    if timer is not None:
        timer.cancel()
    _write_line(sys.stdout, reply)
    return code


def _deadline_reply(req):
    seconds = req.get("deadline_s") if isinstance(req, dict) else None
    reply = {"ok": False, "agent_version": AGENT_VERSION,
             "error": {"type": "deadline", "message": "%s passed its %ss deadline on the device and was stopped"
                       % (req.get("verb") if isinstance(req, dict) else "request", seconds)}}
    if isinstance(req, dict) and "id" in req:
        reply["id"] = req["id"]
    return reply


_OUT_LOCK = threading.Lock()


def _write_line(out, obj, stream_file=None):
    """One JSON line (plus, for a download, the file's bytes), written whole under a lock."""
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
    with _OUT_LOCK:
        raw = getattr(out, "buffer", out)
        raw.write(data)
        if stream_file is not None:
            with open(stream_file, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    raw.write(chunk)
        raw.flush()


# --------------------------------------------------------------------------- session mode


def serve(workdir):
    """Session mode: JSON-line requests on stdin, replies on stdout, until stdin closes.

    The protocol keeps the real stdout for itself; anything else that writes to fd 1 (a print,
    a native library) goes to stderr instead. A reader thread owns stdin: it queues requests
    (reading the raw bytes of uploads) and ends the agent when the channel closes.
    """
    import queue

    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = Context(os.path.abspath(workdir), session=True)
    requests = queue.Queue()
    inp = sys.stdin.buffer

    def reader():
        try:
            while True:
                line = inp.readline()
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    req = json.loads(line.decode("utf-8"))
                except ValueError:
                    req = None
                if not isinstance(req, dict):
                    req = {"verb": None}
                # Keys with a leading underscore are the reader's own notes (e.g. "_part").
                req = dict((k, v) for k, v in req.items() if not k.startswith("_"))
                if req.get("stream_bytes"):
                    _receive_stream(inp, req, ctx.workdir)
                requests.put(req)
        except (IOError, OSError):
            pass
        _shutdown(EXIT_HANGUP)

    t = threading.Thread(target=reader, name="stdin-reader")
    t.daemon = True
    t.start()
    _write_line(proto, {"hello": {"agent_version": AGENT_VERSION, "pid": os.getpid(), "workdir": ctx.workdir,
                                  "python": platform.python_version(), "board": board_id()}})
    while True:
        req = requests.get()
        if req.get("verb") == "close":
            verb_unlock(req, ctx)
            _write_line(proto, {"id": req.get("id"), "ok": True, "agent_version": AGENT_VERSION, "result": {}})
            _shutdown(EXIT_OK)
        answered = [False]
        guard = threading.Lock()

        def expired(req=req):
            with guard:
                if answered[0]:
                    return
                answered[0] = True
            _write_line(proto, _deadline_reply(req))
            _shutdown(EXIT_DEADLINE)

        timer = _watchdog(req.get("deadline_s"), expired)
        reply, _code = _dispatch(req, ctx)
        if timer is not None:
            timer.cancel()
        with guard:
            if answered[0]:
                continue  # the watchdog answered and is stopping the agent
            answered[0] = True
        stream = None
        result = reply.get("result")
        if isinstance(result, dict) and "_stream_file" in result:
            stream = result.pop("_stream_file")
            reply["stream_bytes"] = os.path.getsize(stream)
        _write_line(proto, reply, stream)


def main(argv):
    if len(argv) == 3 and argv[1] == "--serve":
        serve(argv[2])
        return EXIT_OK
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: edgeprune_agent.py REQUEST.json [SHA256] | --serve WORKDIR\n")
        return 2
    return run_once(argv[1], argv[2] if len(argv) == 3 else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
