"""A loopback device farm: N real SSH servers (OpenSSH ``sshd`` or ``dropbear``) standing in for
edge boards.

Each device gets its own 127.0.0.x address and port, a throwaway host key, a work directory and an
entry in a ``devices.yaml`` + strict ``known_hosts`` written for edgeprune. All devices accept one
throwaway client key. Each is a board of its own: its sessions see ``EDGEPRUNE_BOARD_ID`` (the
agent's board lock), unique per device unless two configs name the same ``board``. Each has its
own login ``HOME`` with a ``.bashrc``: empty, or sleeping ``shell_startup_s`` seconds to reproduce
a slow shell start-up (a pyenv/conda ``.bashrc`` costs ~250 ms on every SSH command). A device can
be slowed with a cgroup v1 CPU quota (``/sys/fs/cgroup/cpu/<group>/cpu.cfs_quota_us``): its server
runs in the group, so everything it spawns (the agent, ONNX Runtime) is slowed too. A ``dropbear``
device serves SFTP only when ``/usr/lib/sftp-server`` exists (Debian's openssh package provides
it; ``sftp=False`` hides it); it reads the login user's ``~/.ssh/authorized_keys``, so it runs in a
private mount namespace with the farm's files bind-mounted over ``~/.ssh`` (and ``~/.bashrc``,
``/usr/lib/sftp-server``): needs root. Teardown kills every process
the device started (the whole cgroup when there is one) and removes its files.

Library use (the pytest fixture in ``tests/integration/conftest.py``)::

    with Farm(tmp, [FarmDeviceConfig("dev0"), FarmDeviceConfig("dev1", cpu_quota=0.25)]) as farm:
        farm.write_inventory(config_dir)          # devices.yaml + known_hosts
        farm.kill("dev0"); farm.restart("dev0")   # crash and recover a device

Command line (keeps the farm up until Ctrl-C)::

    python -m edgeprune._devices.testfarm --count 2 --slow dev1=0.25 --shell-startup 0.25 --config DIR

Needs ``/usr/sbin/sshd`` and ``ssh-keygen`` (Debian: ``apt-get install openssh-server``), and for
dropbear devices ``dropbear``/``dropbearkey`` (``apt-get install dropbear-bin``) and root.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
DROPBEAR = "/usr/sbin/dropbear"
DROPBEAR_KEY = "/usr/bin/dropbearkey"
DROPBEAR_SFTP = "/usr/lib/sftp-server"  # where Debian's dropbear looks for an SFTP server
SERVERS = ("openssh", "dropbear")
BOARD_ID_ENV = "EDGEPRUNE_BOARD_ID"
SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
# A short CFS period spreads the quota over each inference. With the kernel's default 100 ms a 25%
# device runs ~25 ms at full speed, then stalls: measured here, ResNet-56 (3x32x32, ORT, 1 thread)
# kept its median (2.77 vs 2.71 ms) and only its p90 grew (43 ms); with 10 ms periods the median
# itself was slower (17.8 vs 2.6 ms). Inferences much shorter than a period stay bimodal.
CFS_PERIOD_US = 10_000
START_TIMEOUT_S = 15.0


class FarmError(RuntimeError):
    """The farm cannot start here (no sshd, no ssh-keygen, ...); the message says what is missing."""


@dataclass(frozen=True)
class FarmDeviceConfig:
    """How to start one loopback device.

    ``cpu_quota``: a fraction of one CPU (None: full speed). ``server``: openssh or dropbear (no
    SFTP). ``shell_startup_s``: the login shell's ``.bashrc`` sleeps this long (None: empty).
    ``board``: the board identity its sessions see (None: one of its own; two devices with the
    same value are one board reached two ways).
    """

    name: str
    cpu_quota: float | None = None
    sftp: bool = True
    profile: str = "loopback"
    server: str = "openssh"
    shell_startup_s: float | None = None
    board: str | None = None

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise FarmError(f"unknown SSH server {self.server!r}: use one of {', '.join(SERVERS)}")


@dataclass
class FarmDevice:
    """A running (or stopped) loopback device."""

    config: FarmDeviceConfig
    host: str
    port: int
    root: Path
    workdir: Path
    host_key_line: str
    cgroup: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)
    board: str = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def home(self) -> Path:
        """The login HOME its sessions get (holds the ``.bashrc``)."""
        return self.root / "home"

    @property
    def known_hosts_line(self) -> str:
        """The pinned entry edgeprune reads: ``[host]:port keytype base64``."""
        return f"[{self.host}]:{self.port} {self.host_key_line}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def processes(self) -> list[int]:
        """Every process this device started: its cgroup's members, else sshd's descendants."""
        if self.cgroup is not None and self.cgroup.is_dir():
            text = (self.cgroup / "cgroup.procs").read_text()
            return [int(p) for p in text.split()]
        if self.proc is None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid`` (from /proc; processes already reparented are not found)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cgroups_available() -> bool:
    """True when this process may create cgroup v1 CPU groups (root with a writable cpu hierarchy)."""
    return (CGROUP_CPU / "cpu.cfs_quota_us").is_file() and os.access(CGROUP_CPU, os.W_OK)


def _tool(name: str, candidates: tuple[str, ...] = ()) -> str:
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise FarmError(f"{name} not found: install openssh-server (e.g. `make sysdeps`)")
    return found


def keygen(path: Path) -> str:
    """Write a fresh ed25519 key pair at ``path`` (+ ``.pub``); return the public line's first two fields."""
    subprocess.run(
        [
            _tool("ssh-keygen"),
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "edgeprune-farm",
            "-f",
            str(path),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def dropbear_keygen(path: Path) -> str:
    """A dropbear ed25519 host key at ``path``; returns the public key's first two fields."""
    subprocess.run(
        [_tool("dropbearkey", (DROPBEAR_KEY,)), "-t", "ed25519", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = subprocess.run(
        [_tool("dropbearkey", (DROPBEAR_KEY,)), "-y", "-f", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("ssh-"))
    return " ".join(line.split()[:2])


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_banner(host: str, port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FarmError(f"sshd on {host}:{port} exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise FarmError(f"sshd on {host}:{port} did not answer within {START_TIMEOUT_S:g}s")


class Farm:
    """Start, stop, crash and restart loopback sshd devices under ``root`` (see module docstring)."""

    def __init__(
        self,
        root: str | Path,
        devices: list[FarmDeviceConfig],
        python: str | None = None,
        user: str | None = None,
    ) -> None:
        if len({d.name for d in devices}) != len(devices):
            raise FarmError("farm device names must be unique")
        self.root = Path(root)
        self.configs = devices
        self.python = python or sys.executable
        self.user = user or getpass.getuser()
        self.devices: dict[str, FarmDevice] = {}
        self.client_key = self.root / "client_ed25519"
        self._tag = f"edgeprune-farm-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Farm:
        """Generate keys and start every device; on any failure everything started is torn down."""
        if any(c.server == "openssh" for c in self.configs):
            _tool("sshd", (SSHD,))
        if any(c.server == "dropbear" for c in self.configs):
            _tool("dropbear", (DROPBEAR,))
            if os.geteuid() != 0 or shutil.which("unshare") is None:
                raise FarmError(
                    "dropbear devices need root and unshare(1): dropbear reads ~/.ssh/authorized_keys, "
                    "bind-mounted in a private mount namespace"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            keygen(self.client_key)
            if os.geteuid() == 0:
                # sshd refuses to start as root without its privilege-separation directory.
                Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            # Spread concurrent farms (several developers, one machine) over the loopback /8.
            base = random.randint(2, 200)
            for i, cfg in enumerate(self.configs):
                self.devices[cfg.name] = self._create(cfg, f"127.0.{base}.{i + 2}")
                self._launch(self.devices[cfg.name])
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> Farm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill every device's processes, remove cgroups and files. Safe to call twice."""
        for dev in self.devices.values():
            self._kill_all(dev)
            if dev.cgroup is not None:
                with contextlib.suppress(OSError):
                    dev.cgroup.rmdir()
        shutil.rmtree(self.root, ignore_errors=True)

    def kill(self, name: str) -> None:
        """Crash a device's SSH server: SIGKILL sshd and its per-connection children.

        Programs the sessions started (e.g. a running agent) are not killed here; they lose their
        connection like on a real board whose sshd died.
        """
        dev = self.devices[name]
        if dev.proc is None:
            return
        procs = [dev.proc.pid, *descendants(dev.proc.pid)]
        for pid in procs:
            if _comm(pid) in ("sshd", "dropbear"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        dev.proc.wait()
        dev.proc = None

    def restart(self, name: str) -> FarmDevice:
        """Start a killed device again: same address, port, host key and work directory."""
        dev = self.devices[name]
        if dev.alive():
            raise FarmError(f"{name} is still running")
        self._launch(dev)
        return dev

    def rekey(self, name: str) -> FarmDevice:
        """Give a device a new host key (a reinstalled board, or an impostor) and restart it."""
        dev = self.devices[name]
        self.kill(name)
        for f in dev.root.glob("ssh_host_ed25519_key*"):
            f.unlink()
        dev.host_key_line = self._host_key(dev.config, dev.root / "ssh_host_ed25519_key")
        return self.restart(name)

    # ------------------------------------------------------------------ inventory

    def specs(self, known_hosts: Path | None = None) -> list[Any]:
        """`DeviceSpec` entries for the devices (python = this farm's python, absolute)."""
        from edgeprune.device.inventory import DeviceSpec

        return [
            DeviceSpec(
                name=d.name,
                host=d.host,
                port=d.port,
                user=self.user,
                key=str(self.client_key),
                profile=d.config.profile,
                tags=("farm",),
                workdir=str(d.workdir),
                python=self.python,
                known_hosts=str(known_hosts) if known_hosts else None,
                connect_timeout=5.0,
            )
            for d in self.devices.values()
        ]

    def write_inventory(self, config_dir: str | Path, trust: bool = True) -> Path:
        """Write ``config_dir/devices.yaml`` and (with ``trust``) pin the host keys in
        ``config_dir/known_hosts``; existing entries for the same devices are replaced."""
        from edgeprune.device.inventory import Inventory

        config_dir = Path(config_dir)
        config_dir.mkdir(parents=True, exist_ok=True)
        inv = Inventory.load(config_dir / "devices.yaml")
        for spec in self.specs():
            inv.add(spec, replace_existing=True)
        path = inv.save()
        for profile in {d.config.profile for d in self.devices.values()}:
            self.write_profile(config_dir, profile)
        if trust:
            kh = config_dir / "known_hosts"
            keep = [
                line
                for line in (kh.read_text().splitlines() if kh.is_file() else [])
                if not any(line.startswith(f"[{d.host}]:{d.port} ") for d in self.devices.values())
            ]
            kh.write_text(
                "\n".join([*keep, *(d.known_hosts_line for d in self.devices.values())]) + "\n"
            )
        return path

    def write_profile(self, config_dir: str | Path, name: str) -> Path:
        """A device profile describing this machine as a loopback board (ONNX Runtime, CPU, fp32)
        at ``config_dir/profiles/NAME.yaml``, unless that file exists."""
        import platform

        import yaml

        path = Path(config_dir) / "profiles" / f"{name}.yaml"
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        machine = platform.machine().lower()
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
        profile = {
            "name": name,
            "description": "loopback sshd test device on this machine (edgeprune test farm)",
            "arch": arch if arch in ("x86_64", "aarch64", "armv7l") else "any",
            "os": platform.platform(terse=True),
            "python": platform.python_version(),
            "runtimes": ["onnxruntime"],
            "max_opset": 18,
            "precisions": ["fp32"],
            "fast_precisions": ["fp32"],
            "channel_multiple": 1,
        }
        path.write_text(yaml.safe_dump(profile, sort_keys=False))
        return path

    # ------------------------------------------------------------------ internals

    def _host_key(self, cfg: FarmDeviceConfig, path: Path) -> str:
        return dropbear_keygen(path) if cfg.server == "dropbear" else keygen(path)

    def _create(self, cfg: FarmDeviceConfig, host: str) -> FarmDevice:
        root = self.root / cfg.name
        (root / "work").mkdir(parents=True)
        host_key = self._host_key(cfg, root / "ssh_host_ed25519_key")
        (root / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        ssh_dir = root / "dot-ssh"  # what a dropbear device sees as ~/.ssh
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        home = root / "home"
        home.mkdir()
        rc = f"sleep {cfg.shell_startup_s:g}\n" if cfg.shell_startup_s else ""
        (home / ".bashrc").write_text(rc)
        dev = FarmDevice(
            config=cfg,
            host=host,
            port=_free_port(host),
            root=root,
            workdir=root / "work",
            host_key_line=host_key,
            log=root / "sshd.log",
            board=f"{self._tag}-{cfg.board or cfg.name}",
        )
        if cfg.cpu_quota is not None or cgroups_available():
            dev.cgroup = self._cgroup(cfg)
        return dev

    def _cgroup(self, cfg: FarmDeviceConfig) -> Path | None:
        if not cgroups_available():
            if cfg.cpu_quota is not None:
                raise FarmError(
                    f"cannot slow {cfg.name}: {CGROUP_CPU} is not a writable cgroup v1 cpu hierarchy (run as root)"
                )
            return None
        group = CGROUP_CPU / f"{self._tag}-{cfg.name}"
        group.mkdir()
        if cfg.cpu_quota is not None:
            (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(
                str(max(1000, int(cfg.cpu_quota * CFS_PERIOD_US)))  # the kernel's minimum: 1 ms
            )
        return group

    def _config_text(self, dev: FarmDevice) -> str:
        lines = [
            f"ListenAddress {dev.host}:{dev.port}",
            f"HostKey {dev.root / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {dev.root / 'authorized_keys'}",
            "PidFile none",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            # The throwaway key files live in a temp dir whose parents sshd would otherwise check.
            "StrictModes no",
            "UsePAM no",
            "PrintMotd no",
            "MaxStartups 50:30:100",
            "MaxSessions 50",
            "LogLevel INFO",
            # The device's own login HOME (its .bashrc) and board identity, whoever runs the farm.
            f"SetEnv HOME={dev.home} {BOARD_ID_ENV}={dev.board}",
        ]
        if dev.config.sftp:
            lines.append(f"Subsystem sftp {_tool('sftp-server', SFTP_SERVER_CANDIDATES)}")
        return "\n".join(lines) + "\n"

    def _server_argv(self, dev: FarmDevice) -> tuple[list[str], dict[str, str] | None]:
        """The server's command line and environment (None: inherit)."""
        if dev.config.server == "openssh":
            conf = dev.root / "sshd_config"
            conf.write_text(self._config_text(dev))
            return [SSHD, "-D", "-f", str(conf), "-E", str(dev.log)], None
        # dropbear: -F foreground, -E log to stderr, -s no passwords, -e pass this environment on.
        home = Path(pwd.getpwnam(self.user).pw_dir)
        binds = [(dev.root / "dot-ssh", home / ".ssh")]
        if (home / ".bashrc").is_file():
            binds.append((dev.home / ".bashrc", home / ".bashrc"))
        if not dev.config.sftp and Path(DROPBEAR_SFTP).exists():
            binds.append((Path("/dev/null"), Path(DROPBEAR_SFTP)))  # not executable: no subsystem
        (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
        script = "".join(f'mount --bind "{a}" "{b}" && ' for a, b in binds)
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                script + 'exec "$0" "$@"', DROPBEAR, "-F", "-E", "-s", "-e",
                "-p", f"{dev.host}:{dev.port}", "-r", str(dev.root / "ssh_host_ed25519_key"),
                "-P", str(dev.root / "dropbear.pid")]  # fmt: skip
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               BOARD_ID_ENV: dev.board, "LANG": "C.UTF-8"}  # fmt: skip
        return argv, env

    def _launch(self, dev: FarmDevice) -> None:
        for attempt in range(5):
            argv, env = self._server_argv(dev)
            with open(dev.log, "ab") as log:  # sshd writes it itself (-E); dropbear to stderr
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log if dev.config.server == "dropbear" else subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                )
            dev.proc = proc
            if dev.cgroup is not None:
                # Before the first connection: every session sshd forks inherits the group.
                (dev.cgroup / "cgroup.procs").write_text(str(proc.pid))
            try:
                _wait_banner(dev.host, dev.port, proc, time.monotonic() + START_TIMEOUT_S)
                return
            except FarmError:
                self._kill_all(dev)
                text = dev.log.read_text(errors="replace") if dev.log.is_file() else ""
                if "Address already in use" in text and attempt < 4:
                    dev.port = _free_port(dev.host)  # another farm took the port: pick a new one
                    continue
                raise FarmError(
                    f"{dev.config.server} for {dev.name} failed to start: {text.strip()[-500:]}"
                ) from None

    def _kill_all(self, dev: FarmDevice) -> None:
        for _ in range(50):
            pids = dev.processes()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if dev.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    dev.proc.wait(timeout=1)
            if dev.cgroup is None:
                break
            time.sleep(0.02)
        if dev.proc is not None and dev.proc.poll() is None:
            dev.proc.kill()
            dev.proc.wait()
        dev.proc = None


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m edgeprune._devices.testfarm", description=__doc__.split("\n")[0]
    )
    p.add_argument("--count", type=int, default=2, help="number of devices (dev0, dev1, ...)")
    p.add_argument(
        "--slow",
        action="append",
        default=[],
        metavar="NAME=FRACTION",
        help="CPU quota, e.g. dev1=0.25",
    )
    p.add_argument(
        "--no-sftp",
        action="append",
        default=[],
        metavar="NAME",
        help="start NAME without an sftp subsystem",
    )
    p.add_argument(
        "--dropbear",
        action="append",
        default=[],
        metavar="NAME",
        help="run NAME on dropbear (no SFTP; needs root)",
    )
    p.add_argument(
        "--shell-startup",
        type=float,
        default=None,
        metavar="SECONDS",
        help="every device's .bashrc sleeps this long (a slow login shell)",
    )
    p.add_argument(
        "--config", help="write devices.yaml + known_hosts here (default: $EDGEPRUNE_CONFIG)"
    )
    p.add_argument("--profile", default="loopback")
    args = p.parse_args(argv)
    slow = {k: float(v) for k, v in (s.split("=", 1) for s in args.slow)}
    cfgs = [
        FarmDeviceConfig(
            f"dev{i}",
            cpu_quota=slow.get(f"dev{i}"),
            sftp=f"dev{i}" not in args.no_sftp,
            profile=args.profile,
            server="dropbear" if f"dev{i}" in args.dropbear else "openssh",
            shell_startup_s=args.shell_startup,
        )
        for i in range(args.count)
    ]
    config_dir = args.config or os.environ.get("EDGEPRUNE_CONFIG")
    if not config_dir:
        p.error("pass --config DIR or set EDGEPRUNE_CONFIG")
    root = tempfile.mkdtemp(prefix="edgeprune-farm-")
    try:
        with Farm(root, cfgs) as farm:
            farm.write_inventory(config_dir)
            for d in farm.devices.values():
                quota = f"cpu quota {d.config.cpu_quota:g}" if d.config.cpu_quota else "full speed"
                print(f"{d.name}: {d.host}:{d.port} sshd pid {d.pid}, {quota}, workdir {d.workdir}")
            print(
                f"inventory: {Path(config_dir) / 'devices.yaml'}; Ctrl-C stops the farm", flush=True
            )
            signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` tears down like Ctrl-C
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except FarmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
