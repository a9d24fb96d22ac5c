"""The property graph's rows, derived from a run's tables (pure: tables in, tables out).

Nodes: label `Feature`, properties NODE_PROPS. Relationships: types QK and OV,
properties REL_PROPS; `run` records which run an edge came from (the run's
unique id), `circuit` repeats the type so one query can filter either circuit by
parameter. Rows are Arrow tables: the embedded store scans them without conversion.

The query stores (embedded, Neo4j, and Neo4j's bulk-import files) also keep what the query library
reads instead of scanning every edge, derived from the run's edges at load time:
- `path_rank` and `layer_path_rank` on each OV edge whose output feature has edges at the next layer in
  the same run (null on the others): the edge's rank among the run's such OV edges (of its layer) by the
  strongest cross-layer 2-step path through it (|weight| times the largest |weight| leaving its output at
  the next layer), 1 the strongest, tied edges sharing the smaller rank — so the edges of the k strongest
  paths are those of rank <= k;
- `(:Degree {key, run, feature, layer, heads, degree, rank})` nodes: a feature's edge ends (in + out, a
  like-to-like edge twice) and distinct heads over the whole run (layer -1, heads counted as (layer, head)
  pairs, ranked by heads, then ends, then id) and within each layer (ranked by ends, then id; kept for
  each layer's HUB_RANKS best-connected features).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from featgraph.core.schema import (
    ATTRIBUTION_NODE_COLUMNS,
    CIRCUITS,
    FEATURE_COLUMNS,
    FEATURE_INDEX,
    feature_url,
    parse_feature_id,
    source_layer,
)

NODE_LABEL = "Feature"
NODE_PROPS = {"id": "STRING", "sae": "STRING", "layer": "INT64", FEATURE_INDEX: "INT64",
              "description": "STRING", "url": "STRING"}
REL_PROPS = {"layer": "INT64", "head": "INT64", "kv_head": "INT64", "circuit": "STRING",
             "weight": "DOUBLE", "rank": "INT64", "z": "DOUBLE", "run": "STRING"}
REL_TYPES = CIRCUITS
STORE_REL_PROPS = REL_PROPS | {"path_rank": "INT64", "layer_path_rank": "INT64"}
DEGREE_LABEL = "Degree"
DEGREE_PROPS = {"key": "STRING", "run": "STRING", "feature": "STRING", "layer": "INT64", "heads": "INT64",
                "degree": "INT64", "rank": "INT64"}
HUB_RANKS = 1000  # per-layer Degree rows kept for each layer's best-connected features (recurring_hubs' `top`)
_ARROW = {"STRING": pa.string(), "INT64": pa.int64(), "DOUBLE": pa.float64()}


def node_table(features: pd.DataFrame) -> pa.Table:
    """One row per feature; columns NODE_PROPS (the feature table's own names)."""
    return pa.table({k: pa.array(features[k].to_numpy(dtype=object) if t == "STRING" else features[k].to_numpy(), type=_ARROW[t],
                                 from_pandas=True) for k, t in NODE_PROPS.items()})


def rel_table(edges: pd.DataFrame, circuit: str, run: str) -> pa.Table:
    """`src`, `dst` then REL_PROPS for one relationship type; `run` is the run's id."""
    e = edges[edges["circuit"] == circuit]
    n = len(e)
    cols = {"src": pa.array(e["src"].array, type=pa.string()), "dst": pa.array(e["dst"].array, type=pa.string())}
    for p, t in REL_PROPS.items():
        if p == "run":
            cols[p] = pa.repeat(run, n)
        elif p == "circuit":
            cols[p] = pa.repeat(circuit, n)
        elif p == "z" and "z" not in e.columns:
            cols[p] = pa.nulls(n, pa.float64())
        else:
            cols[p] = pa.array(e[p].to_numpy().astype("float64" if t == "DOUBLE" else "int64"), type=_ARROW[t])
    return pa.table(cols)


def node_rows(features: pd.DataFrame) -> pd.DataFrame:
    return node_table(features).to_pandas()


def rel_rows(edges: pd.DataFrame, circuit: str, run: str) -> pd.DataFrame:
    return rel_table(edges, circuit, run).to_pandas()


def store_rel_table(edges: pd.DataFrame, circuit: str, run: str, ranks: pd.DataFrame) -> pa.Table:
    """`rel_table` plus the derived STORE_REL_PROPS (`ranks`: path_ranks(edges), aligned with `edges`)."""
    keep = (edges["circuit"] == circuit).to_numpy()
    t = rel_table(edges, circuit, run)
    for c in ranks.columns:
        t = t.append_column(c, pa.array(ranks[c].to_numpy()[keep], type=pa.int64(), from_pandas=True))
    return t


def path_ranks(edges: pd.DataFrame) -> pd.DataFrame:
    """`path_rank` and `layer_path_rank` per edge (aligned with `edges`; null but on OV edges v -> o at layer L
    with edges o -> * at layer L + 1): ranks by |w| times the largest |w'| over those edges, competition style
    (1 + the number of edges strictly stronger), over all layers and within L."""
    w = np.abs(edges["weight"].to_numpy(dtype="float64"))
    layer = edges["layer"].to_numpy(dtype="int64")
    codes, _ = pd.factorize(pd.concat([edges["src"], edges["dst"]], ignore_index=True))
    src, dst = codes[: len(edges)], codes[len(edges):]
    out_max = pd.Series(w).groupby([src, layer]).max()
    ov = (edges["circuit"] == "OV").to_numpy()
    best = pd.Series(np.nan, index=range(len(edges)))
    best[ov] = w[ov] * out_max.reindex(pd.MultiIndex.from_arrays([dst[ov], layer[ov] + 1])).to_numpy()
    return pd.DataFrame({"path_rank": best.rank(method="min", ascending=False).astype("Int64"),
                         "layer_path_rank": best.groupby(layer).rank(method="min", ascending=False).astype("Int64")})


def degree_table(edges: pd.DataFrame, run: str, hub_ranks: int = HUB_RANKS) -> pa.Table:
    """The run's Degree rows (DEGREE_PROPS): per feature over the whole run (layer -1) and per layer
    (the `hub_ranks` best-connected features of each layer)."""
    ids, names = pd.factorize(pd.concat([edges["src"], edges["dst"]], ignore_index=True))
    ends = pd.DataFrame({"f": ids, "layer": np.tile(edges["layer"].to_numpy(dtype="int64"), 2),
                         "head": np.tile(edges["head"].to_numpy(dtype="int64"), 2)})
    per_head = ends.groupby(["f", "layer", "head"], sort=False).size().rename("degree").reset_index()
    names = np.asarray(names, dtype=object)
    whole = per_head.groupby("f", sort=False).agg(heads=("head", "size"), degree=("degree", "sum")).reset_index()
    whole["layer"] = -1
    layers = per_head.groupby(["f", "layer"], sort=False).agg(heads=("head", "size"), degree=("degree", "sum")).reset_index()
    whole = _ranked(whole, names, ["heads", "degree"])
    layers = _ranked(layers, names, ["degree"])
    d = pd.concat([whole, layers[layers["rank"] <= hub_ranks]], ignore_index=True)
    d["run"] = run
    d["key"] = d["layer"].astype(str) + "/" + d["feature"]
    return pa.table({k: pa.array(d[k].to_numpy(dtype=object) if t == "STRING" else d[k].to_numpy(dtype="int64"),
                                 type=_ARROW[t]) for k, t in DEGREE_PROPS.items()})


def _ranked(frame: pd.DataFrame, names: np.ndarray, keys: list[str]) -> pd.DataFrame:
    """`frame` with the feature ids and `rank` within each layer: by `keys` descending, then id."""
    frame = frame.assign(feature=names[frame["f"].to_numpy()])
    frame = frame.sort_values(["layer", *keys, "feature"], ascending=[True] + [False] * len(keys) + [True], kind="stable")
    return frame.assign(rank=frame.groupby("layer").cumcount() + 1)


# ---------------------------------------------------------------- attribution graphs (docs/graph.md, "Attribution graphs")
# An imported graph is `(:AttributionGraph)`; its nodes `(:PromptNode)` (a feature at a position, an error, an embedding,
# a logit) keyed `graph/node_id`; its links `(:PromptNode)-[:ATTRIBUTION {graph, weight}]->(:PromptNode)`; each feature
# node `(:PromptNode)-[:OF]->(:Feature {id})`, the node featgraph's QK/OV edges use. The prompt nodes' properties are
# the columns of the graph's nodes.parquet (core/schema.py) plus `key` and `graph`.
GRAPH_LABEL = "AttributionGraph"
GRAPH_PROPS = {"id": "STRING", "slug": "STRING", "scan": "STRING", "model_id": "STRING", "source_set": "STRING",
               "lorsa_source_set": "STRING", "prompt": "STRING", "prompt_tokens": "STRING[]", "schema_version": "INT64",
               "nodes": "INT64", "links": "INT64", "sha256": "STRING", "file": "STRING", "imported": "STRING"}
PROMPT_LABEL = "PromptNode"
PROMPT_PROPS = {"key": "STRING", "graph": "STRING"} | ATTRIBUTION_NODE_COLUMNS
LINK_TYPE = "ATTRIBUTION"
LINK_PROPS = {"graph": "STRING", "weight": "DOUBLE"}
OF_TYPE = "OF"  # (:PromptNode)-[:OF]->(:Feature): no properties
_ARROW_ALL = _ARROW | {"BOOL": pa.bool_(), "STRING[]": pa.list_(pa.string())}



@dataclass(frozen=True)
class GraphFiles:
    """An imported attribution graph as the stores take it: its id, its graph.json contents and its Parquet files
    (nodes: ATTRIBUTION_NODE_COLUMNS, links: ATTRIBUTION_LINK_COLUMNS)."""

    id: str
    info: dict
    nodes_path: Path
    links_path: Path

    def nodes(self) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.nodes_path)


def graph_table(infos: list[dict]) -> pa.Table:
    """One row per imported graph (GRAPH_PROPS) from their graph.json contents."""
    return pa.table({k: pa.array([i.get(k) if k != "prompt_tokens" else list(i.get(k) or []) for i in infos], type=_ARROW_ALL[t])
                     for k, t in GRAPH_PROPS.items()})


def prompt_node_table(nodes: pa.Table, graph: str) -> pa.Table:
    """A graph's nodes.parquet as PROMPT_PROPS rows: `key` = `graph/node_id`, `graph` = the graph's id."""
    import pyarrow.compute as pc

    key = pc.binary_join_element_wise(pa.repeat(graph, nodes.num_rows), nodes.column("node_id"), "/")
    cols = {"key": key, "graph": pa.repeat(graph, nodes.num_rows).cast(pa.string())}
    return pa.table(cols | {k: nodes.column(k) for k in ATTRIBUTION_NODE_COLUMNS})


def link_batches(links_path, graph: str, batch: int = 1_000_000):
    """A graph's links.parquet as ATTRIBUTION rows, `src`, `dst` (prompt-node keys), then LINK_PROPS, a batch at a time."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for b in pq.ParquetFile(links_path).iter_batches(batch_size=batch):
        g = pa.repeat(graph, b.num_rows).cast(pa.string())
        yield pa.table({"src": pc.binary_join_element_wise(g, b.column("source"), "/"),
                        "dst": pc.binary_join_element_wise(g, b.column("target"), "/"), "graph": g, "weight": b.column("weight")})


def of_table(nodes: pa.Table, graph: str) -> pa.Table:
    """OF rows `src` (prompt-node key), `dst` (feature id) for the graph's feature nodes."""
    import pyarrow.compute as pc

    f = nodes.filter(pc.is_valid(nodes.column("feature_id")))
    return pa.table({"src": pc.binary_join_element_wise(pa.repeat(graph, f.num_rows).cast(pa.string()), f.column("node_id"), "/"),
                     "dst": f.column("feature_id")})


def graph_features(nodes: pa.Table) -> pd.DataFrame:
    """The Feature rows (FEATURE_COLUMNS of core/schema.py: id, sae, layer, feature_index, description, url) of a graph's
    feature nodes, one per feature id; `sae` is the id's source (`{layer}-{source set}`)."""
    ids = pd.unique(nodes.column("feature_id").drop_null().to_pandas())
    rows = []
    for fid in ids:
        _, source, index = parse_feature_id(fid)
        layer = source_layer(source)
        rows.append({"id": fid, "sae": source, "layer": -1 if layer is None else layer, FEATURE_INDEX: index, "description": None,
                     "url": feature_url(fid)})
    return pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))


def with_graph_features(features: pd.DataFrame, graph_nodes: list[pa.Table]) -> pd.DataFrame:
    """The run's features plus those of its graphs' feature nodes that the run lacks (the run's rows win)."""
    extra = [graph_features(n) for n in graph_nodes]
    extra = [e for e in extra if len(e)]
    if not extra:
        return features
    more = pd.concat(extra, ignore_index=True).drop_duplicates("id")
    more = more[~more["id"].isin(features["id"])]
    if more.empty:
        return features
    return pd.concat([features, more.astype(features.dtypes.to_dict())], ignore_index=True)
