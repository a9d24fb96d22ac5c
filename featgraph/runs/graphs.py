"""Attribution graphs kept inside a run directory (docs/run-directory.md, "Attribution graphs").

`RUN/attribution/<graph id>/` holds one imported graph: `nodes.parquet`, `links.parquet` (columns
`featgraph.core.schema.ATTRIBUTION_NODE_COLUMNS` / `ATTRIBUTION_LINK_COLUMNS`) and `graph.json` (its metadata,
counts, the source file's sha256, and what featgraph made of it). Each folder appears whole or not at all and is
never rewritten: a second import adds a folder beside the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featgraph.errors import BadInput
from featgraph.runs.files import _normal_mode, write_marker

GRAPHS_DIR = "attribution"
KIND = "attribution-graph"
INFO = "graph.json"
NODES = "nodes.parquet"
LINKS = "links.parquet"


@dataclass(frozen=True)
class StoredGraph:
    """One imported graph: its id (unique per import), folder and graph.json."""

    id: str
    path: Path
    info: dict[str, Any]

    @property
    def nodes_path(self) -> Path:
        return self.path / NODES

    @property
    def links_path(self) -> Path:
        return self.path / LINKS


def new_graph_id(slug: str) -> str:
    """The graph's identity in every store: its slug (made folder-safe) plus a random suffix."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", slug).strip("-.")[:60] or "graph"
    return f"{safe}-{uuid.uuid4().hex[:12]}"


def list_graphs(run_dir: Path | None) -> list[StoredGraph]:
    """The run's imported graphs, by id (folders without a readable graph.json are skipped: unfinished imports
    never have one, as the folder is renamed into place whole)."""
    if run_dir is None:
        return []
    root = Path(run_dir) / GRAPHS_DIR
    found = []
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        if d.name.startswith(".") or not (d / INFO).is_file():
            continue
        try:
            info = json.loads((d / INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise BadInput(f"{d / INFO} is unreadable: remove the folder {d} and import the graph again") from None
        found.append(StoredGraph(str(info.get("id", d.name)), d, info))
    return found


@contextlib.contextmanager
def staged_graph(parent: Path) -> Iterator[Path]:
    """A temporary folder in `parent` for a graph being read; removed unless `place_graph` moved it."""
    tmp = Path(tempfile.mkdtemp(prefix=".graph-import-", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def place_graph(run_dir: Path, staged: Path, info: dict[str, Any]) -> StoredGraph:
    """Move a staged graph (its nodes.parquet and links.parquet) into `RUN/attribution/<new id>/` with graph.json;
    the id is new_graph_id(info["slug"]), so nothing already there is touched."""
    root = Path(run_dir) / GRAPHS_DIR
    root.mkdir(exist_ok=True)
    graph_id = new_graph_id(str(info.get("slug", "graph")))
    info = {"id": graph_id, **info}
    (staged / INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    write_marker(staged, KIND)
    _normal_mode(staged)
    os.replace(staged, root / graph_id)
    return StoredGraph(graph_id, root / graph_id, info)
