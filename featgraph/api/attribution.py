"""Attribution graphs (circuit-tracer / Neuronpedia graph JSON) imported beside a run's QK/OV edges.

`import_graph` reads a graph file by streaming (featgraph.load.attribution) into `RUN/attribution/<id>/`
(featgraph.runs.graphs); `featgraph load RUN` (Run.load) then puts every graph of the run into the store beside
its edges, each feature node tied to the `(:Feature {id})` node of the same Neuronpedia id (docs/graph.md).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    from featgraph.api import validate as val
    from featgraph.errors import BadValue

    if top < 1:
        raise BadValue("top", top, "must be 1 or more")
    session = val.Session(run, heads=[head], device=device)
    texts, token_ids = ([prompt], None) if isinstance(prompt, str) else ([], [list(prompt)])
    ids = val.prompt_ids(session, texts, token_ids, None)[0]
    return _qk_attribution(run, session, ids, head, query_position, key_position, top)


def _qk_attribution(run: Any, session: Any, ids: list[int], head: int, query_position: int, key_position: int | None,
                    top: int | None) -> QKAttribution:
    """qk_attribution on a Session already made; `top` None keeps every row."""
    import pandas as pd

    from featgraph.core.schema import feature_id
    from featgraph.errors import BadValue

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
        df = df.reindex(df[value].abs().sort_values(ascending=False, kind="stable").index)
        return (df if top is None else df.head(top)).reset_index(drop=True)

    qi, kj = p.q_index.tolist(), p.k_index.tolist()
    grid_q = [fid(i) for i in qi for _ in kj]
    grid_k = [fid(j) for _ in qi for j in kj]
    pairs = frame({"query_feature": grid_q, "key_feature": grid_k, "contribution": p.pair.reshape(-1).cpu().numpy()}, "contribution")
    queries = frame({"query_feature": [fid(i) for i in qi], "contribution": p.q_marginal.cpu().numpy()}, "contribution")
    keys = frame({"key_feature": [fid(j) for j in kj], "contribution": p.k_marginal.cpu().numpy()}, "contribution")
    return QKAttribution(session.layer, head, t, s, p.target, p.bias, p.error, float(weights[s]), pairs, queries, keys)


@dataclass(frozen=True)
class QKTrace:
    """What `qk_trace` wrote: the enriched file, the node given the head's QK tracing results, the head and the
    two positions, how many contributors each list holds, how many are the graph's own nodes (the rest are in
    `qk_only_nodes`), and the nodes and links carried over unchanged."""

    out: Path
    node_id: str
    layer: int
    head: int
    query_position: int
    key_position: int
    logit: float
    pairs: int
    queries: int
    keys: int
    graph_nodes: int
    qk_only_nodes: int
    nodes: int
    links: int


def qk_trace(run: Any, graph_file: str | Path, node_id: str, head: int, out: str | Path, *, key_position: int | None = None,
             top: int = 10, token_ids: Sequence[int] | None = None, model_id: str | None = None, source_set: str | None = None,
             layer: int | None = None, device: str = "auto", force: bool = False) -> QKTrace:
    """Write `graph_file` (circuit-tracer / Neuronpedia graph JSON) to `out` with head `head`'s QK attribution on
    the graph's own prompt as the node `node_id`'s `qk_tracing_results` (Neuronpedia's schema 1.0.0:
    `pair_wise_contributors` [[q_node_id, k_node_id, attribution]], `top_q_marginal_contributors` and
    `top_k_marginal_contributors` [[node_id, attribution]], the `top` strongest |attribution| each), so the
    graph opens in Neuronpedia's viewer with the head's reasons on that node (docs/graph.md, "QK tracing").

    The query position is the node's `ctx_idx`; the key position `key_position` (default: the key the head
    weights most there). A contributor is an input-SAE feature of the run active at one of the two positions:
    the graph's own node where the graph has that feature (same Neuronpedia id, `model_id` / `source_set` as for
    `import`) at that position, else an entry of the top-level `qk_only_nodes` (`{layer}_sae_{index}_{pos}`).
    Everything else of the file is carried over as it is (the links streamed, never held in memory); the node
    also gets `qk_tracing_results.featgraph` (the head, positions, the logit and its bias and error parts, the
    attention weight). `token_ids`: the prompt's tokens when the run's tokenizer does not give the graph's
    (checked against the count of `metadata.prompt_tokens` and the token ids in embedding node ids `E_{id}_{pos}`).
    `layer`: the head's layer in an atlas (a one-layer run's own layer otherwise). Nothing is written if anything is
    wrong.
    """
    import os
    import re
    import tempfile

    from featgraph.api import validate as val
    from featgraph.errors import BadValue, MissingValue
    from featgraph.load.attribution import _Reader, read_parts, write_graph

    src, out = Path(graph_file), Path(out)
    if top < 1:
        raise BadValue("top", top, "must be 1 or more")
    if not str(out.name).lower().endswith((".json", ".json.gz")):
        raise BadInput(f"{out}: the enriched graph is written as .json or .json.gz; name the file so")
    if out.exists() and not force:
        raise BadInput(f"{out} already exists: pass force=True (--force) to replace it, or another name")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise BadInput(f"{out} is the graph being read: write the enriched graph to another file")
    run = run.layer_run(layer)
    parts, _ = read_parts(src)
    meta, nodes = parts["metadata"], parts["nodes"]
    by_id = {n["node_id"]: n for n in nodes}
    node = by_id.get(node_id)
    if node is None:
        raise BadInput(f"{src.name} has no node {node_id!r}: pass the node_id of a node at the query position")
    if node.get("qk_tracing_results") is not None:
        raise BadInput(f"{src.name}: node {node_id} already has qk_tracing_results: choose another node (one head per node)")
    t = int(node["ctx_idx"])
    tokens = meta["prompt_tokens"]
    if not t < len(tokens):
        raise BadInput(f"{src.name}: node {node_id} is at ctx_idx {t}, past the prompt's {len(tokens)} tokens")

    session = val.Session(run, heads=[head], device=device)
    layer = session.layer
    nl = node.get("layer")
    nlayer = int(nl) if isinstance(nl, int) or (isinstance(nl, str) and nl.isdigit()) else -1
    if nlayer < layer:
        raise BadInput(f"{src.name}: node {node_id} is at layer {nl}, before the head's layer {layer}: the head cannot "
                       f"have moved anything into it; choose a node at layer {layer} or later")
    ids = val.prompt_ids(session, [] if token_ids else [meta["prompt"]], [list(token_ids)] if token_ids else None, None)[0]
    if len(ids) != len(tokens):
        raise BadInput(f"{src.name}: the prompt is {len(ids)} tokens for the run's tokenizer, {len(tokens)} in the graph "
                       "(metadata.prompt_tokens): pass the graph's token ids (token_ids=, --token-ids)")
    for n in nodes:
        m_ = re.fullmatch(r"E_(\d+)_(\d+)", str(n["node_id"])) if n.get("feature_type") == "embedding" else None
        if m_ and int(m_.group(2)) < len(ids) and int(m_.group(1)) != ids[int(m_.group(2))]:
            given = "the token ids given have" if token_ids else "the run's tokenizer gives"
            raise BadInput(f"{src.name}: embedding node {n['node_id']} has token id {m_.group(1)} at position {m_.group(2)}, "
                           f"{given} {ids[int(m_.group(2))]}: pass the graph's token ids (token_ids=, --token-ids)")

    a = _qk_attribution(run, session, ids, head, t, key_position, top)
    s = a.key_position

    # the graph's own nodes by (Neuronpedia id, position), where the graph's feature ids are known
    reader = _Reader(src, model_id, source_set, None)
    reader.metadata, reader.node_rows = meta, []
    for i, n in enumerate(nodes):
        reader._node(i, n)
    try:
        table = reader.nodes_table().select(["node_id", "feature_id", "ctx_idx"]).to_pylist()
        own = {(r["feature_id"], r["ctx_idx"]): r["node_id"] for r in table if r["feature_id"]}
    except MissingValue:
        own = {}
    sae_layer = (run.manifest.sae_in or {}).get("layer")
    sae_layer = int(sae_layer) if isinstance(sae_layer, int) else layer
    qk_only = dict(parts.get("qk_only_nodes") or {})

    def node_of(fid: str, desc: object, pos: int) -> str:
        if (fid, pos) in own:
            return own[(fid, pos)]
        index = fid.rsplit("/", 1)[-1]
        nid = f"{sae_layer}_sae_{index}_{pos}"
        if nid in by_id:
            raise BadInput(f"{src.name} already has a node {nid}, the id featgraph gives the SAE feature {fid} at position "
                           f"{pos}: rename that node")
        if nid not in qk_only:
            label = f"{desc} ({fid})" if isinstance(desc, str) and desc else fid
            qk_only[nid] = {"node_id": nid, "feature": None, "layer": sae_layer, "ctx_idx": pos, "feature_type": "unknown",
                            "jsNodeId": nid, "clerp": f"SAE feature {label}", "activation": None}
        return nid

    pairs = [[node_of(r.query_feature, r.query_feature_description, t), node_of(r.key_feature, r.key_feature_description, s),
              float(r.contribution)] for r in a.pairs.itertuples()]
    queries = [[node_of(r.query_feature, r.query_feature_description, t), float(r.contribution)] for r in a.queries.itertuples()]
    keys = [[node_of(r.key_feature, r.key_feature_description, s), float(r.contribution)] for r in a.keys.itertuples()]
    referenced = {x for row in pairs for x in row[:2]} | {row[0] for row in queries + keys}
    node["qk_tracing_results"] = {
        "pair_wise_contributors": pairs, "top_q_marginal_contributors": queries, "top_k_marginal_contributors": keys,
        "featgraph": {"model": (run.manifest.model or {}).get("neuronpedia_id"), "layer": a.layer, "head": a.head,
                      "query_position": t, "key_position": s, "logit": a.logit, "bias": a.bias, "error": a.error,
                      "attention": a.attention, "sae": (run.manifest.sae_in or {}).get("neuronpedia_id")},
    }
    if qk_only:
        parts["qk_only_nodes"] = qk_only

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".qk-trace-", suffix=out.name, dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        n_links = write_graph(src, tmp, parts, set(by_id))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return QKTrace(out, node_id, a.layer, a.head, t, s, a.logit, len(pairs), len(queries), len(keys),
                   len(referenced & set(by_id)), len(referenced - set(by_id)), len(nodes), n_links)
