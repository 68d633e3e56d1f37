"""edgeprune agent bootstrap: the ``python -c`` program that opens a device session.

Run by the host as ``PYTHON -c <this file's text> WORKDIR AGENT_NAME SHA256 SIZE MODE`` (no shell
builds the line: every argument is quoted, and arguments after ``-c CODE`` are never options).
It resolves WORKDIR (``~`` is expanded here, by the device user's Python, never by a shell),
creates its sub-directories and checks the agent file's sha256. Then, by MODE:

* ``check``: print one JSON line {"workdir", "agent", "agent_ok"} and exit (the per-command path
  uploads the agent itself when it is missing).
* ``serve``: when the agent is missing or different, print {"need_agent": true}, read exactly SIZE
  bytes from stdin, verify them and move them into place atomically; then run the agent in this
  same process (imported, so its bytecode is cached), speaking JSON lines on this same channel.

Any failure prints {"error": MESSAGE} and exits 3. Keep it Python 3.6 compatible and stdlib-only.
"""

import hashlib
import json
import os
import sys

SUBDIRS = ("agent", "artifacts", "requests", "outputs")


def _digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _say(obj):
    os.write(1, (json.dumps(obj) + "\n").encode())


def _receive(path, sha, size):
    """Read ``size`` bytes from stdin into ``path`` through a unique part file; verify; rename."""
    part = "%s.%d.part" % (path, os.getpid())
    left = size
    h = hashlib.sha256()
    try:
        with open(part, "wb") as f:
            while left > 0:
                data = os.read(0, min(left, 1 << 16))
                if not data:
                    raise IOError("the connection closed during the agent upload")
                h.update(data)
                f.write(data)
                left -= len(data)
        if h.hexdigest() != sha:
            raise IOError("the uploaded agent is corrupt (sha256 %s != %s)" % (h.hexdigest()[:12], sha[:12]))
        os.rename(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)


def main(argv):
    workdir, name, sha, size, mode = argv[1], argv[2], argv[3], int(argv[4]), argv[5]
    workdir = os.path.abspath(os.path.expanduser(workdir))
    for sub in SUBDIRS:
        d = os.path.join(workdir, sub)
        if not os.path.isdir(d):
            os.makedirs(d)
    path = os.path.join(workdir, "agent", name)
    ok = os.path.isfile(path) and _digest(path) == sha
    if mode != "serve":
        _say({"workdir": workdir, "agent": path, "agent_ok": ok})
        return 0
    if not ok:
        _say({"need_agent": True})
        _receive(path, sha, size)
    # Imported as a module, not run as a script: its bytecode is cached beside it, so a session
    # does not compile the agent again.
    import importlib.util

    spec = importlib.util.spec_from_file_location("edgeprune_agent", path)
    agent = importlib.util.module_from_spec(spec)
    sys.modules["edgeprune_agent"] = agent
    spec.loader.exec_module(agent)
    sys.argv = [path, "--serve", workdir]
    return agent.main(sys.argv)


try:
    sys.exit(main(sys.argv))
except (IOError, OSError, ValueError, IndexError) as e:
    _say({"error": "%s: %s" % (type(e).__name__, e)})
    sys.exit(3)
