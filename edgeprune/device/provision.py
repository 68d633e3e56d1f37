"""``edgeprune devices provision``: the agent's runtime needs in a venv on the device.

Steps (each skipped when already done, so a rerun is cheap and safe): the session resolves the
absolute work directory; ``python3 -m venv [--system-site-packages] -- WORKDIR/venv``; ``pip install`` the
packages into it; check that they import; record ``python: WORKDIR/venv/bin/python`` for the
device in devices.yaml. Nothing is installed system-wide and nothing needs root.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgeprune.device.inventory import Inventory
from edgeprune.device.session import DeviceSession
from edgeprune.errors import DeviceError, UsageError

PACKAGES = ("onnxruntime", "numpy")
VENV_TIMEOUT_S = 300.0
PIP_TIMEOUT_S = 1800.0
CHECK_CODE = (
    "import importlib, json, sys\n"
    "out = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        out[name] = getattr(importlib.import_module(name), '__version__', '?')\n"
    "    except Exception as e:\n"
    "        out[name] = None\n"
    "print(json.dumps(out))\n"
)


@dataclass
class ProvisionResult:
    device: str
    venv: str
    python: str
    created_venv: bool = False
    installed: list[str] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    inventory_updated: bool = False
    seconds: float = 0.0

    @property
    def already_provisioned(self) -> bool:
        return not self.created_venv and not self.installed and not self.inventory_updated

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "already_provisioned": self.already_provisioned}


def _import_names(packages: tuple[str, ...]) -> list[str]:
    """Module names to check for pip requirement strings (``onnxruntime==1.16`` → onnxruntime)."""
    names = []
    for p in packages:
        base = p
        for sep in ("[", "=", "<", ">", "!", "~", ";", " "):
            base = base.split(sep, 1)[0]
        names.append(base.strip().replace("-", "_"))
    return names


def provision_device(
    name: str,
    packages: tuple[str, ...] = PACKAGES,
    system_site_packages: bool = False,
    pip_args: tuple[str, ...] = (),
    base_python: str | None = None,
    pip_timeout: float = PIP_TIMEOUT_S,
) -> ProvisionResult:
    """Make ``name`` able to run the agent's ONNX Runtime benchmarks (see module docstring).

    ``base_python`` (absolute, on the device) creates the venv; default: the device's ``python:``
    unless that already is the venv. Raises `DeviceError` with the device's own message when a
    step fails (e.g. python3-venv missing, no network for pip).
    """
    if not packages:
        raise UsageError("nothing to install", hint="give at least one --package")
    if base_python is not None and not base_python.startswith("/"):
        raise UsageError("--base-python must be an absolute path on the device")
    inv = Inventory.load()
    spec = inv.get(name)
    if spec.kind == "local":
        raise UsageError(
            "the local device runs with this Python environment",
            hint="pip install onnxruntime numpy here",
        )
    t0 = time.perf_counter()
    # The session runs the agent with the base python: the device's own may be the broken venv.
    session_spec = replace(spec, python=base_python) if base_python else spec
    with DeviceSession(session_spec, inventory=inv) as dev:
        t = dev.transport
        base = base_python or str(dev.info.get("python_executable") or spec.python)
        venv = dev.remote_path("venv")  # the work directory as the device resolved it
        vpy = posixpath.join(venv, "bin", "python")
        res = ProvisionResult(device=name, venv=venv, python=vpy)
        modules = _import_names(packages)
        versions = _versions(t, vpy, modules)
        if versions is None:
            if base == vpy:
                raise DeviceError(
                    f"the venv python {vpy} on {name} is broken",
                    hint=f"pass --base-python /usr/bin/python3 to recreate it, or delete {venv}",
                    device=name,
                )
            argv = [
                base,
                "-m",
                "venv",
                *(["--system-site-packages"] if system_site_packages else []),
            ]
            r = t.run([*argv, "--", venv], timeout=VENV_TIMEOUT_S, check=False)
            if not r.ok:
                raise DeviceError(
                    f"creating the venv on {name} failed: {r.tail(3) or r.exit_code}",
                    hint="on Debian/Ubuntu install python3-venv (apt-get install python3-venv)"
                    if "ensurepip" in r.stderr + r.stdout
                    else None,
                    device=name,
                    command=r.command,
                    exit_code=r.exit_code,
                    stderr_tail=r.tail(),
                )
            res.created_venv = True
            versions = _versions(t, vpy, modules) or {}
        missing = [p for p, m in zip(packages, modules, strict=True) if not versions.get(m)]
        if missing:
            pip = [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
            r = t.run([*pip, *pip_args, *missing], timeout=pip_timeout, check=False)
            if not r.ok:
                raise DeviceError(
                    f"pip install {' '.join(missing)} on {name} failed: {r.tail(2)}",
                    hint="check the device's network, or pass --pip-arg --find-links=DIR / "
                    "--pip-arg --index-url=URL (Jetson: NVIDIA's wheels for its JetPack)",
                    device=name,
                    command=r.command,
                    exit_code=r.exit_code,
                    stderr_tail=r.tail(),
                )
            res.installed = missing
            versions = _versions(t, vpy, modules) or {}
        res.versions = versions
        still = [m for m in modules if not versions.get(m)]
        if still:
            raise DeviceError(
                f"{', '.join(still)} still do not import in {vpy} on {name}",
                hint="the wheels may not match the device (architecture, Python version)",
                device=name,
            )
    if spec.python != vpy:
        inv.add(replace(spec, python=vpy), replace_existing=True)
        inv.save()
        res.inventory_updated = True
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def _versions(t: Any, python: str, modules: list[str]) -> dict[str, str | None] | None:
    """Module versions importable by ``python`` (None when that python does not run)."""
    import json

    r = t.run([python, "-c", CHECK_CODE, *modules], timeout=120, check=False)
    if not r.ok:
        return None
    try:
        value = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return value if isinstance(value, dict) else None
