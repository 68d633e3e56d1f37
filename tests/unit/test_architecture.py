"""The layer contract holds: import-linter's contracts in pyproject.toml (layers, private modules,
no cycles) and, which import-linter cannot check, no private name imported from another module."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "edgeprune"

# (importing module, imported module, name): known offenders, each to be made public or moved.
# Empty since issue 12: a name another module needs is public.
PRIVATE_NAME_IMPORTS: set[tuple[str, str, str]] = set()


def private_name_imports(package: Path = PACKAGE) -> set[tuple[str, str, str]]:
    """Every ``from M import _name`` in ``package`` where M is another module of the project."""
    found = set()
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != package.name or target == module:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.add((module, target, alias.name))
    return found


def test_no_private_name_is_imported_from_another_module() -> None:
    found = private_name_imports()
    new = sorted(found - PRIVATE_NAME_IMPORTS)
    assert not new, f"private names imported across modules (make them public): {new}"
    fixed = sorted(PRIVATE_NAME_IMPORTS - found)
    assert not fixed, f"fixed, remove from PRIVATE_NAME_IMPORTS: {fixed}"


def test_the_checker_sees_a_private_import(tmp_path) -> None:
    pkg = tmp_path / "edgeprune"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from . import b\n")
    (pkg / "a" / "b.py").write_text("from edgeprune.a.c import _x, y\nfrom .c import _z\n")
    assert private_name_imports(pkg) == {
        ("edgeprune.a.b", "edgeprune.a.c", "_x"),
        ("edgeprune.a.b", "edgeprune.a.c", "_z"),
    }


def test_import_linter_contracts_are_kept() -> None:
    """Layers, private modules and acyclicity, as `make lint` runs them (pyproject.toml)."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
