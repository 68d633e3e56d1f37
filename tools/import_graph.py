"""Print edgeprune's package-level import graph as a Mermaid diagram (for docs/ARCHITECTURE.md).

Run: ``python tools/import_graph.py``. Edges are direct imports between the top-level packages
and modules of ``edgeprune`` (run-time imports only: ``if TYPE_CHECKING:`` blocks are left out,
as in the import-linter contract); the base modules every layer uses (errors, config, vocab,
_files, _registry, _hooks, _progress) are listed once instead of drawn.
"""

from __future__ import annotations

import grimp

BASE = {"errors", "config", "vocab", "_files", "_registry", "_hooks", "_progress"}


def package_edges() -> set[tuple[str, str]]:
    graph = grimp.build_graph("edgeprune", exclude_type_checking_imports=True)

    def top(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else "edgeprune"

    edges = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            a, b = top(importer), top(imported)
            if a != b and "edgeprune" not in (a, b) and b not in BASE and a not in BASE:
                edges.add((a, b))
    return edges


def mermaid(edges: set[tuple[str, str]]) -> str:
    lines = ["graph TD"]
    lines += [f"    {a} --> {b}" for a, b in sorted(edges)]
    lines.append(f"    %% every layer may also import: {', '.join(sorted(BASE))}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(mermaid(package_edges()))
