"""The SSH transport: Fabric/paramiko with strict host keys on every hop. The only importer of both.

Rules this module enforces (checked on these machines, see DEVICES.md):

- Fabric accepts any host key by default, also on gateway hops. Every `Connection` here, and every
  jump hop built from a device's ``jump:`` entry, gets a rejecting policy plus the pinned
  ``known_hosts`` file only (``[host]:port`` entries; never ``~/.ssh/known_hosts``). An unknown or
  changed key raises `HostKeyError` with the SHA256 fingerprint and the ``trust`` command; keys are
  pinned only by ``edgeprune devices trust NAME``.
- Nothing from ``~/.ssh/config`` or Fabric config files applies: the inventory is the source of
  truth. Key file, agent use and the banner/auth/channel timeouts live in the config-level
  ``connect_kwargs`` so gateway hops use the same; keepalive every 15 s.
- Commands are argv lists, each element `shlex.quote`-d, run as ``timeout -k 5 T argv`` on the
  device (``run(timeout=)`` alone only closes the channel) with a local backstop a little longer.
  stdin stays open while a command runs, so the agent can exit when the connection drops.
- Files go over SFTP, or, when the server has no sftp subsystem (dropbear), over the exec channel
  (``cat > PATH`` fed from the channel). Verification and atomic renames are done by the generic
  `upload_verified`/`download_verified` on top of `put`/`get`.
- `open_channel` starts one long-lived process (the session agent) on its own exec channel with
  no ``timeout`` wrapper: its protocol carries the deadlines, and it exits when the channel closes.
- A server that accepts TCP but never sends an SSH banner (a hung board, another service on the
  port) is one line saying so. paramiko's own log records stay out of the terminal unless logging
  is configured (``-v``).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import math
import posixpath
import shlex
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut
from paramiko.config import SSHConfig

from edgeprune.device.inventory import DeviceSpec
from edgeprune.device.known_hosts import known_hosts_path
from edgeprune.device.transport import (
    DEFAULT_TIMEOUT_S,
    Channel,
    CommandResult,
    Transport,
    hint_for,
    log,
)
from edgeprune.errors import DeviceError, HostKeyError, RemoteTimeoutError, UsageError

# paramiko logs transport failures (with a traceback) on its own logger; without a handler Python's
# last-resort handler prints them to stderr under our one-line error. -v configures logging.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

KEEPALIVE_S = 15
KILL_GRACE_S = 5
# The local deadline fires this long after the remote `timeout` should have killed the command.
LOCAL_BACKSTOP_S = KILL_GRACE_S + 10
# A transfer that makes no progress for this long is abandoned.
IO_STALL_S = 120.0
CHUNK = 1 << 16


def host_key_fingerprint(key_type: str, key_b64: str) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key given as in known_hosts."""
    return paramiko.PKey.from_type_string(key_type, _b64decode(key_b64)).fingerprint


def _b64decode(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


class _RejectUnknownHost(paramiko.RejectPolicy):
    """Reject a host that has no pinned key, saying which key it offered and how to pin it."""

    def __init__(self, spec: DeviceSpec, known_hosts: Path) -> None:
        self.spec = spec
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyError(
            f"the host key of {self.spec.name} ({hostname}) is not trusted: "
            f"{key.get_name()} {key.fingerprint}",
            hint=f"check the fingerprint on the device, then run `edgeprune devices trust {self.spec.name}`",
            device=self.spec.name,
            fingerprint=key.fingerprint,
            known_hosts=str(self.known_hosts),
        )


def _fabric_config(spec: DeviceSpec) -> Config:
    timeout = float(spec.connect_timeout)
    return Config(
        # An explicit empty ssh_config: ~/.ssh/config and /etc/ssh/ssh_config never apply.
        ssh_config=SSHConfig(),
        lazy=True,
        overrides={
            "user": spec.user or getpass.getuser(),
            "connect_kwargs": {
                "key_filename": [str(Path(spec.key).expanduser())] if spec.key else [],
                "allow_agent": bool(spec.agent),
                "look_for_keys": False,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
                "channel_timeout": timeout,
            },
            "timeouts": {"connect": max(1, math.ceil(timeout))},
            "run": {"in_stream": False, "hide": True, "warn": True, "pty": False},
            "forward_agent": False,
        },
    )


def _hops(spec: DeviceSpec, inventory: Any) -> list[DeviceSpec]:
    """The jump chain, outermost first, ending with ``spec`` itself. Cycles are an error."""
    chain = [spec]
    seen = {spec.name}
    while chain[0].jump is not None:
        if inventory is None:
            from edgeprune.device.inventory import Inventory

            inventory = Inventory.load()
        jump = inventory.get(chain[0].jump)
        if jump.name in seen:
            raise UsageError(
                f"device {spec.name}: the jump chain loops through {jump.name}",
                hint="fix the `jump:` entries in devices.yaml",
            )
        if jump.kind != "ssh":
            raise UsageError(f"device {chain[0].name} cannot jump through the local device")
        seen.add(jump.name)
        chain.insert(0, jump)
    return chain


def hardened_connection(spec: DeviceSpec, gateway: Connection | None = None) -> Connection:
    """A not yet opened Fabric `Connection` that only accepts the pinned host key of ``spec``."""
    conn = Connection(
        str(spec.host),
        user=spec.user or getpass.getuser(),
        port=int(spec.port),
        config=_fabric_config(spec),
        gateway=gateway if gateway is not None else False,
        connect_timeout=max(1, math.ceil(float(spec.connect_timeout))),
        forward_agent=False,
    )
    kh = known_hosts_path(spec)
    conn.client.set_missing_host_key_policy(_RejectUnknownHost(spec, kh))
    if kh.is_file():
        conn.client.load_host_keys(str(kh))
    return conn


def open_chain(chain: list[DeviceSpec]) -> list[Connection]:
    """Open hardened connections hop by hop (each through the previous); all or nothing."""
    conns: list[Connection] = []
    gateway: Connection | None = None
    try:
        for hop in chain:
            conn = hardened_connection(hop, gateway)
            conns.append(conn)
            try:
                conn.open()
            except Exception as e:
                if isinstance(e, paramiko.SSHException) and _no_banner(conn):
                    # paramiko gives up waiting for the banner, then fails the login with
                    # "No existing session": say what really happened.
                    e = paramiko.SSHException("Error reading SSH protocol banner")
                raise _connect_error(hop, e) from None
            conn.transport.set_keepalive(KEEPALIVE_S)
            gateway = conn
    except BaseException:
        close_chain(conns)
        raise
    return conns


def _no_banner(conn: Connection) -> bool:
    """True when the server accepted the TCP connection but never sent an SSH version banner."""
    t = conn.client.get_transport()
    return t is not None and not getattr(t, "remote_version", "")


def close_chain(conns: list[Connection]) -> None:
    for conn in reversed(conns):
        with contextlib.suppress(Exception):
            conn.close()
        # A failed connect leaves paramiko's transport thread running: close the client too.
        with contextlib.suppress(Exception):
            conn.client.close()


def _connect_error(spec: DeviceSpec, e: BaseException) -> DeviceError:
    where = f"{spec.host}:{spec.port}"
    if isinstance(e, HostKeyError):
        return e
    if isinstance(e, paramiko.BadHostKeyException):
        return HostKeyError(
            f"the host key of {spec.name} ({where}) CHANGED: it offers {e.key.get_name()} "
            f"{e.key.fingerprint}, the pinned key is {e.expected_key.fingerprint}",
            hint="if the device was reinstalled, verify the new fingerprint on it and run "
            f"`edgeprune devices trust {spec.name} --replace`; otherwise someone may be intercepting the connection",
            device=spec.name,
            fingerprint=e.key.fingerprint,
            pinned_fingerprint=e.expected_key.fingerprint,
            known_hosts=str(known_hosts_path(spec)),
        )
    if isinstance(e, paramiko.AuthenticationException):
        return DeviceError(
            f"authentication to {spec.name} as {spec.user or getpass.getuser()} failed: {e}",
            hint="set `key:` (a key file) or `agent: true` in devices.yaml and install the public key on the device",
            device=spec.name,
        )
    if isinstance(e, (TimeoutError, socket.timeout)):
        return DeviceError(
            f"cannot connect to {spec.name} ({where}): no answer within {spec.connect_timeout:g}s",
            hint="check that the device is on and reachable (host, port, network)",
            device=spec.name,
        )
    if isinstance(e, paramiko.SSHException) and "protocol banner" in str(e):
        return DeviceError(
            f"cannot connect to {spec.name} ({where}): the host accepted TCP but did not speak SSH "
            f"(no SSH banner within {spec.connect_timeout:g}s)",
            hint="check host and port in devices.yaml (another service, or a hung board, answers there)",
            device=spec.name,
        )
    if isinstance(e, (OSError, paramiko.SSHException, EOFError)):
        return DeviceError(
            f"cannot connect to {spec.name} ({where}): {str(e) or type(e).__name__}",
            hint="check that the device is on, sshd runs and host/port in devices.yaml are right",
            device=spec.name,
        )
    raise e


class SSHTransport(Transport):
    """Commands and files on one device over SSH (see the module docstring for the rules)."""

    holds_stdin = True

    def __init__(self, spec: DeviceSpec, inventory: Any = None) -> None:
        if spec.kind != "ssh":
            raise UsageError(f"device {spec.name} is not an SSH device")
        self.spec = spec
        self.device = spec.name
        self._chain = _hops(spec, inventory)
        self._conns: list[Connection] = []
        self._sftp_ok: bool | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()
        # Commands and exec-channel transfers sent so far: each costs a round trip and a login
        # shell on the device, so this is what the layer's overhead is made of.
        self.command_count = 0
        self.open()

    # ------------------------------------------------------------------ connection

    @property
    def connection(self) -> Connection:
        if not self._conns:
            raise DeviceError(f"the connection to {self.device} is closed", device=self.device)
        return self._conns[-1]

    def open(self) -> None:
        """Connect through every hop, each checked against its own pinned key. Idempotent."""
        if self._conns and self._conns[-1].is_connected:
            return
        self.close()
        self._conns = open_chain(self._chain)

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        self._sftp = None
        close_chain(self._conns)
        self._conns = []
        self._sftp_ok = None

    def _lost(self, what: str, command: str | None = None) -> DeviceError:
        return DeviceError(
            f"lost the connection to {self.device} during {what}",
            hint="check that the device is up; rerun the command (finished results are kept)",
            device=self.device,
            command=command,
        )

    # ------------------------------------------------------------------ commands

    def remote_command(self, argv: list[str], timeout: float) -> str:
        """The exact shell line sent: ``timeout -k 5 T`` + each argv element quoted."""
        if not argv:
            raise UsageError("empty command")
        seconds = max(1, math.ceil(timeout))
        return f"timeout -k {KILL_GRACE_S} {seconds} " + " ".join(shlex.quote(a) for a in argv)

    def run(
        self, argv: list[str], timeout: float = DEFAULT_TIMEOUT_S, check: bool = True
    ) -> CommandResult:
        line = self.remote_command(argv, timeout)
        conn = self.connection
        self.command_count += 1
        log.debug("%s: run %s", self.device, line)
        t0 = time.perf_counter()
        try:
            res = conn.run(
                line,
                hide=True,
                warn=True,
                in_stream=False,
                pty=False,
                timeout=math.ceil(timeout) + LOCAL_BACKSTOP_S,
            )
        except CommandTimedOut:
            raise RemoteTimeoutError(
                f"command on {self.device} passed its {timeout:g}s deadline and got no answer",
                hint="the device or the link may be stuck; `edgeprune devices check` it",
                device=self.device,
                command=line,
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise self._lost(f"`{argv[0]}` ({e})", line) from None
        seconds = time.perf_counter() - t0
        result = CommandResult(list(argv), int(res.exited), res.stdout, res.stderr, seconds)
        if result.exit_code == -1 and not conn.is_connected:
            raise self._lost(f"`{argv[0]}`", line)
        if result.exit_code in (124, 137) and seconds >= max(1, math.ceil(timeout)) - 0.5:
            raise RemoteTimeoutError(
                f"command on {self.device} passed its {timeout:g}s deadline and was killed there",
                hint="raise the timeout or check the device",
                device=self.device,
                command=line,
                exit_code=result.exit_code,
                stderr_tail=result.tail(),
            )
        if check:
            self.check_failed(result, argv[0])
        return result

    # ------------------------------------------------------------------ files

    def open_channel(self, argv: list[str]) -> Channel:
        """Start ``argv`` (quoted, no ``timeout`` wrapper) on its own exec channel; see `Channel`."""
        line = " ".join(shlex.quote(a) for a in argv)
        self.command_count += 1
        log.debug("%s: open channel %s", self.device, line)
        try:
            chan = self.connection.transport.open_session(timeout=self.spec.connect_timeout)
            chan.exec_command(line)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise self._lost(f"opening the agent channel ({e})", line) from None

        def write(data: bytes) -> None:
            if chan.closed or chan.exit_status_ready():
                raise EOFError("the channel is closed")
            chan.sendall(data)

        def exit_status() -> int | None:
            return chan.exit_status if chan.exit_status_ready() else None

        return Channel(
            self.device,
            chan.makefile("rb"),
            _StderrReader(chan),
            write,
            chan.close,
            exit_status,
        )

    def sftp_available(self) -> bool:
        """Whether the server has an sftp subsystem (asked once per connection)."""
        with self._lock:
            if self._sftp_ok is None:
                self.command_count += 1  # the subsystem starts through the user's shell too
                chan = self.connection.transport.open_session(timeout=self.spec.connect_timeout)
                try:
                    chan.invoke_subsystem("sftp")
                    self._sftp = paramiko.SFTPClient(chan)
                    chan.settimeout(IO_STALL_S)
                    self._sftp_ok = True
                except (paramiko.SSHException, EOFError, OSError):
                    # e.g. dropbear without sftp-server: use the exec channel. Close this one
                    # first, or the server refuses the next channel while it tears this down.
                    chan.close()
                    self._sftp_ok = False
            return self._sftp_ok

    def _sftp_client(self) -> paramiko.SFTPClient:
        assert self._sftp is not None
        return self._sftp

    def put(self, local: Path, remote: str) -> None:
        if self.sftp_available():
            try:
                self._sftp_client().put(str(local), remote)
            except OSError as e:
                raise self._write_error(remote, local.stat().st_size, str(e)) from None
            except (paramiko.SSHException, EOFError) as e:
                raise self._lost(f"the upload of {local.name} ({e})") from None
            return
        self._put_exec(local, remote)

    def get(self, remote: str, local: Path) -> None:
        if self.sftp_available():
            try:
                self._sftp_client().get(remote, str(local))
            except OSError as e:
                raise DeviceError(
                    f"cannot download {remote} from {self.device}: {e}", device=self.device
                ) from None
            except (paramiko.SSHException, EOFError) as e:
                raise self._lost(f"the download of {remote} ({e})") from None
            return
        self._get_exec(remote, local)

    def _exec_channel(self, argv: list[str], timeout: float) -> paramiko.Channel:
        self.command_count += 1
        log.debug("%s: exec %s", self.device, self.remote_command(argv, timeout))
        try:
            chan = self.connection.transport.open_session(timeout=self.spec.connect_timeout)
            chan.settimeout(IO_STALL_S)
            chan.exec_command(self.remote_command(argv, timeout))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise self._lost(f"opening a channel ({e})") from None
        return chan

    def _finish(self, chan: paramiko.Channel, what: str, deadline: float) -> tuple[int, str]:
        if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
            chan.close()
            raise RemoteTimeoutError(
                f"{what} on {self.device} passed its deadline", device=self.device
            )
        err = b""
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(CHUNK)
        code = chan.recv_exit_status()
        chan.close()
        if code == -1 and not self.connection.is_connected:
            raise self._lost(what)
        return code, err.decode(errors="replace")

    def _put_exec(self, local: Path, remote: str, timeout: float = 600.0) -> None:
        """Stream ``local`` into ``remote`` over the exec channel (no sftp needed)."""
        deadline = time.monotonic() + timeout
        chan = self._exec_channel(["sh", "-c", 'cat > "$1"', "sh", remote], timeout)
        try:
            with open(local, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    if chan.exit_status_ready():
                        break  # cat died (disk full, read-only): its stderr says why
                    chan.sendall(chunk)
            chan.shutdown_write()
        except (OSError, paramiko.SSHException, EOFError) as e:
            if not chan.exit_status_ready():
                chan.close()
                raise self._lost(f"the upload of {local.name} ({e})") from None
        code, err = self._finish(chan, f"the upload of {local.name}", deadline)
        if code != 0:
            raise self._write_error(remote, local.stat().st_size, err.strip() or f"exit {code}")

    def _get_exec(self, remote: str, local: Path, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        chan = self._exec_channel(["cat", "--", remote], timeout)
        try:
            with open(local, "wb") as f:
                while True:
                    data = chan.recv(CHUNK)
                    if not data:
                        break
                    f.write(data)
        except (OSError, paramiko.SSHException, EOFError) as e:
            chan.close()
            raise self._lost(f"the download of {remote} ({e})") from None
        code, err = self._finish(chan, f"the download of {remote}", deadline)
        if code != 0:
            raise DeviceError(
                f"cannot download {remote} from {self.device}: {err.strip() or f'exit {code}'}",
                device=self.device,
                exit_code=code,
                stderr_tail=err,
            )

    def _write_error(self, remote: str, size: int, reason: str) -> DeviceError:
        """Say *why* a write failed: SFTP servers report a full or read-only disk as "Failure"."""
        folder = posixpath.dirname(remote) or "."
        probe = posixpath.join(folder, f".edgeprune-probe-{uuid.uuid4().hex[:8]}")
        detail = reason
        touch: CommandResult | None
        df: CommandResult | None
        try:
            touch = self.run(["touch", "--", probe], timeout=30, check=False)
            self.run(["rm", "-f", "--", probe], timeout=30, check=False)
            df = self.run(["df", "-Pk", "--", folder], timeout=30, check=False)
        except DeviceError:
            touch = df = None
        free_kib: int | None = None
        if df is not None and df.ok:
            with contextlib.suppress(IndexError, ValueError):
                free_kib = int(df.stdout.strip().splitlines()[-1].split()[3])
        if touch is not None and not touch.ok:
            detail = touch.stderr.strip().splitlines()[-1] if touch.stderr.strip() else reason
        elif free_kib is not None and free_kib * 1024 < size + 4096:
            detail = f"No space left on device ({free_kib} KiB free, the file needs {math.ceil(size / 1024)} KiB)"
        result = CommandResult(["write", remote], 1, "", detail, 0.0)
        return DeviceError(
            f"cannot write {remote} on {self.device}: {detail}",
            hint=hint_for(result, self.device),
            device=self.device,
            stderr_tail=detail,
        )


class _StderrReader:
    """``read1`` over a paramiko channel's stderr: returns what has arrived (b"" at the end)."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan

    def read1(self, n: int) -> bytes:
        return bytes(self.chan.recv_stderr(n))


def fetch_host_key(spec: DeviceSpec, inventory: Any = None) -> tuple[str, str, str]:
    """The host key ``spec``'s server offers, without authenticating: (type, base64, fingerprint).

    Jump hops on the way must already be trusted (their keys are checked as for any connection).
    """
    chain = _hops(spec, inventory)
    gateways = open_chain(chain[:-1])
    sock: Any = None
    try:
        try:
            if gateways:
                sock = gateways[-1].transport.open_channel(
                    "direct-tcpip",
                    (str(spec.host), int(spec.port)),
                    ("", 0),
                    timeout=spec.connect_timeout,
                )
            else:
                sock = socket.create_connection(
                    (str(spec.host), int(spec.port)), timeout=spec.connect_timeout
                )
        except (paramiko.SSHException, OSError) as e:
            raise _connect_error(spec, e) from None
        t = paramiko.Transport(sock)
        t.banner_timeout = spec.connect_timeout
        try:
            t.start_client(timeout=spec.connect_timeout)
            if not t.remote_version:  # start_client gave up waiting for a banner
                raise paramiko.SSHException("Error reading SSH protocol banner")
            key = t.get_remote_server_key()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise _connect_error(spec, e) from None
        finally:
            t.close()
        return key.get_name(), key.get_base64(), key.fingerprint
    finally:
        if sock is not None:
            with contextlib.suppress(Exception):
                sock.close()
        close_chain(gateways)
