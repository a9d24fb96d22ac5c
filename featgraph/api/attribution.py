"""Attribution graphs (circuit-tracer / Neuronpedia graph JSON) imported beside a run's QK/OV edges.

`import_graph` reads a graph file by streaming (featgraph.load.attribution) into `RUN/attribution/<id>/`
(featgraph.runs.graphs); `featgraph load RUN` (Run.load) then puts every graph of the run into the store beside
its edges, each feature node tied to the `(:Feature {id})` node of the same Neuronpedia id (docs/graph.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featgraph.errors import BadInput


@dataclass(frozen=True)
class ImportedGraph:
    """An imported graph: its id in the stores, the run directory holding it, and its graph.json."""

    id: str
    run: Path
    info: dict[str, Any]

    @property
    def nodes(self) -> int:
        return int(self.info["nodes"])

    @property
    def links(self) -> int:
        return int(self.info["links"])


def import_graph(graph_file: str | Path, out: str | Path, *, model_id: str | None = None, source_set: str | None = None,
                 lorsa_source_set: str | None = None) -> ImportedGraph:
    """Import an attribution graph (.json or .json.gz) into run directory `out`.

    `out` an existing run (or atlas) gains the graph beside its edges and any graphs imported before (never
    touched); a missing `out` becomes a run holding no QK/OV edges. model_id (default: the file's
    metadata.scan), source_set and lorsa_source_set (default: the file's metadata.feature_details) name the
    features Neuronpedia's way, `{model_id}/{layer}-{source_set}/{index}`: circuit-tracer's files name no
    source set, so pass it (e.g. `gemmascope-transcoder-16k` for Gemma Scope's 16k transcoders on gemma-2-2b).
    Nothing is written if the file is bad.
    """
    from featgraph import __version__
    from featgraph.core.schema import EDGE_COLUMNS, FEATURE_COLUMNS
    from featgraph.load.attribution import read_graph
    from featgraph.runs import graphs, rundir
    from featgraph.runs.files import check_target, marker_kind
    from featgraph.runs.manifest import Manifest

    src, out = Path(graph_file), Path(out)
    if not src.is_file():
        raise BadInput(f"{src} is not a file: pass an attribution graph (.json or .json.gz)")
    made = marker_kind(out) if out.exists() else None
    if out.exists() and made not in ("run", "atlas"):
        what = f"a featgraph {made}" if made else "not something featgraph made"
        raise BadInput(f"{out} already exists and is {what}: pass a run directory to add the graph to, or a new folder")
    if made is None:
        check_target(out, force=False)
        parent = out.parent if str(out.parent) else Path(".")
    else:
        parent = out / graphs.GRAPHS_DIR
        parent.mkdir(exist_ok=True)

    with graphs.staged_graph(parent) as tmp:
        g = read_graph(src, tmp, model_id=model_id, source_set=source_set, lorsa_source_set=lorsa_source_set)
        info = g.to_dict() | {"file": src.name, "imported": rundir.now(), "featgraph_version": __version__}
        if made is None:
            import pandas as pd

            empty_edges = pd.DataFrame({c: pd.Series(dtype=t) for c, t in EDGE_COLUMNS.items()})
            empty_features = pd.DataFrame({c: pd.Series(dtype=t) for c, t in FEATURE_COLUMNS.items()})
            manifest = Manifest(command="import", created=rundir.now(),
                                source={"attribution_graph": src.name, "sha256": g.sha256})
            rundir.write_run(out, empty_edges, empty_features, manifest)
        stored = graphs.place_graph(out, tmp, info)
    return ImportedGraph(stored.id, out, stored.info)
