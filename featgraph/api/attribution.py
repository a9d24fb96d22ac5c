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


@dataclass(frozen=True)
class QKAttribution:
    """One head's attention logit on a prompt, split over (query feature, key feature) pairs (docs/maths.md,
    "QK attribution"): `pairs` (query_feature, key_feature, contribution, share of the logit), `queries` and
    `keys` (each feature against the whole other side), and the logit, its bias and error parts, the attention
    weight at (t, s)."""

    layer: int
    head: int
    query_position: int
    key_position: int
    logit: float
    bias: float
    error: float
    attention: float
    pairs: Any
    queries: Any
    keys: Any


def qk_attribution(run: Any, prompt: str | list[int], head: int, query_position: int, key_position: int | None = None,
                   top: int = 20, device: str = "auto") -> QKAttribution:
    """Why head `head` of the run's layer attends from `query_position` to `key_position` (default: the key it
    weights most) on `prompt` (text, or token ids): the exact split of its logit over the input SAE's features
    active at the two positions, strongest |contribution| first (`top` rows each), from validate's decomposition
    (featgraph.analyse.decompose.qk_pairs). Needs a run made by `extract` (its model and input SAE)."""
    import pandas as pd

    from featgraph.api import validate as val
    from featgraph.core.schema import feature_id
    from featgraph.errors import BadValue

    if top < 1:
        raise BadValue("top", top, "must be 1 or more")
    session = val.Session(run, heads=[head], device=device)
    texts, token_ids = ([prompt], None) if isinstance(prompt, str) else ([], [list(prompt)])
    ids = val.prompt_ids(session, texts, token_ids, None)[0]
    t = int(query_position)
    if not 0 <= t < len(ids):
        raise BadValue("query_position", query_position, f"must be a position of the prompt's {len(ids)} tokens (0 to {len(ids) - 1})")
    cap, st = session.prompt(ids)
    weights = cap.weights[head][t].double()
    s = int(weights.argmax()) if key_position is None else int(key_position)
    if not (0 <= s <= t and float(weights[s]) > 0):
        raise BadValue("key_position", key_position, f"must be a position the query at {t} attends (0 to {t}, within the layer's window)")
    p = session.qk_pairs(cap, st, head, t, s)
    m = run.manifest
    model, source = (m.model or {}).get("neuronpedia_id"), (m.sae_in or {}).get("neuronpedia_id")
    desc = run.features.set_index("id")["description"] if len(run.features) else pd.Series(dtype=object)

    def fid(i: int) -> str:
        return feature_id(model, source, i)

    def frame(cols: dict[str, Any], value: str) -> pd.DataFrame:
        df = pd.DataFrame(cols)
        df["share"] = df[value] / p.target if p.target else float("nan")
        for c in [c for c in df.columns if c.endswith("_feature")]:
            df[f"{c}_description"] = df[c].map(desc)
        return df.reindex(df[value].abs().sort_values(ascending=False, kind="stable").index).head(top).reset_index(drop=True)

    qi, kj = p.q_index.tolist(), p.k_index.tolist()
    grid_q = [fid(i) for i in qi for _ in kj]
    grid_k = [fid(j) for _ in qi for j in kj]
    pairs = frame({"query_feature": grid_q, "key_feature": grid_k, "contribution": p.pair.reshape(-1).cpu().numpy()}, "contribution")
    queries = frame({"query_feature": [fid(i) for i in qi], "contribution": p.q_marginal.cpu().numpy()}, "contribution")
    keys = frame({"key_feature": [fid(j) for j in kj], "contribution": p.k_marginal.cpu().numpy()}, "contribution")
    return QKAttribution(session.layer, head, t, s, p.target, p.bias, p.error, float(weights[s]), pairs, queries, keys)
