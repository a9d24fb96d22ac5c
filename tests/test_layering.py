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

# The layers, bottom to top; the folders are the layers (docs/architecture.md).
PURE = ("featgraph.core", "featgraph.families", "featgraph.analyse", "featgraph.errors")
LOAD = ("featgraph.load",)
RUNS = ("featgraph.runs",)
# runs/files.py (staged writes, the ownership marker, sha256) is what every writer and reader uses; the rest of
# runs/ is the run directory itself, which loaders, stores and views know nothing of.
RUN_DIRECTORY = ("featgraph.runs.manifest", "featgraph.runs.rundir", "featgraph.runs.atlasdir", "featgraph.runs.resume")
STORES = ("featgraph.graph",)
VIEWS = ("featgraph.render",)
API = ("featgraph.api",)
APPS = ("featgraph.cli", "featgraph.server")
# The one upward import, by name: Run.serve is the API twin of the `serve` app (lazy; serve.server never imports
# api.run, so no cycle — test_no_import_cycle checks it).
UPWARD = {("featgraph.api.run", "featgraph.server.server")}
# What each layer must never import (prefixes).
FORBIDDEN = {
    PURE: LOAD + RUNS + STORES + VIEWS + API + APPS,
    LOAD: RUN_DIRECTORY + STORES + VIEWS + API + APPS + ("featgraph.analyse",),
    RUNS: STORES + VIEWS + API + APPS,
    STORES: LOAD + RUN_DIRECTORY + VIEWS + API + APPS,
    VIEWS: LOAD + RUN_DIRECTORY + STORES + API + APPS,
    API: APPS,
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
    assert g.has_edge("featgraph.api.run", "featgraph.runs.rundir") and g.has_edge("featgraph.api.compute", "featgraph.core.select")
    assert g.number_of_edges() > 50


def test_no_import_cycle():
    g = import_graph()
    g.remove_node("featgraph")  # the package's lazy __getattr__ re-exports the API; nothing imports it back
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], cycles


def test_no_cycle_even_for_type_checking():
    """`run` and `validate` once imported each other (one side under TYPE_CHECKING); the API layer has no cycle at all."""
    src = (PKG / "api" / "validate.py").read_text()
    assert "featgraph.api.run" not in src


def test_every_module_lives_in_a_layer():
    """The top level holds only the package's entry points; everything else sits in its layer's folder."""
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py"], top
    layers = {m.split(".")[1] for group in FORBIDDEN for m in group} | {m.split(".")[1] for m in APPS}
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders - layers == set(), f"a folder outside the layers: {folders - layers}; add it to FORBIDDEN and docs/architecture.md"


def test_every_package_ships():
    """pyproject lists packages by hand (cypher/ is mapped in): every folder of the source must be in the list."""
    import tomllib

    cfg = tomllib.loads((PKG.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(PKG.parent).parts) for p in PKG.rglob("*.py")}
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.mark.parametrize("layer", list(FORBIDDEN), ids=lambda t: "+".join(x.split(".")[-1] for x in t))
def test_layers_import_only_downwards(layer):
    g = import_graph()
    bad = [(a, b) for a, b in g.edges
           if a.startswith(layer) and b.startswith(FORBIDDEN[layer]) and (a, b) not in UPWARD]
    assert bad == []
