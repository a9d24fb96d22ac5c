"""The package's layering, read from the source with `ast`: pure core at the bottom, I/O at the edges.

Every import counts, also those inside functions (lazy imports are still dependencies);
only `if TYPE_CHECKING:` blocks are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "featgraph"

PURE = ("featgraph.circuits", "featgraph.select", "featgraph.analyse", "featgraph.schema", "featgraph.errors",
        "featgraph.weights", "featgraph.progress", "featgraph.annotate")
# What each layer must never import (prefixes).
FORBIDDEN = {
    PURE: ("featgraph.load", "featgraph.render", "featgraph.graph", "featgraph.run", "featgraph.rundir", "featgraph.files",
           "featgraph.manifest", "featgraph.compute", "featgraph.reload", "featgraph.cli", "featgraph.demo"),
    ("featgraph.load",): ("featgraph.render", "featgraph.graph", "featgraph.analyse", "featgraph.run", "featgraph.rundir",
                          "featgraph.compute", "featgraph.reload", "featgraph.cli", "featgraph.demo"),
    ("featgraph.graph", "featgraph.render"): ("featgraph.load", "featgraph.run", "featgraph.rundir", "featgraph.compute",
                                              "featgraph.reload", "featgraph.cli", "featgraph.demo"),
    ("featgraph.graph",): ("featgraph.render",),
    ("featgraph.render",): ("featgraph.graph",),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in ast.walk(node):
                if hasattr(sub, "lineno"):
                    lines.add(sub.lineno)
    return lines


def import_graph() -> nx.DiGraph:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("featgraph"):
                    g.add_edge(name, t)
    return g


def test_the_graph_is_read():
    g = import_graph()
    assert g.has_edge("featgraph.run", "featgraph.rundir") and g.has_edge("featgraph.compute", "featgraph.select")
    assert g.number_of_edges() > 50


def test_no_import_cycle():
    g = import_graph()
    g.remove_node("featgraph")  # the package's lazy __getattr__ re-exports the API; nothing imports it back
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], cycles


@pytest.mark.parametrize("layer", list(FORBIDDEN), ids=lambda t: "+".join(x.split(".")[-1] for x in t))
def test_layers_import_only_downwards(layer):
    g = import_graph()
    bad = [(a, b) for a, b in g.edges
           if a.startswith(layer) and b.startswith(FORBIDDEN[layer])]
    assert bad == []
