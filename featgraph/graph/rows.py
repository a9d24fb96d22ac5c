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

import numpy as np
import pandas as pd
import pyarrow as pa

from featgraph.core.schema import CIRCUITS, GRAPH_FEATURE_INDEX

NODE_LABEL = "Feature"
NODE_PROPS = {"id": "STRING", "sae": "STRING", "layer": "INT64", GRAPH_FEATURE_INDEX: "INT64",
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
    """One row per feature; columns NODE_PROPS (the feature index as `feature_index`)."""
    f = features.rename(columns={"index": GRAPH_FEATURE_INDEX})
    return pa.table({k: pa.array(f[k].to_numpy(dtype=object) if t == "STRING" else f[k].to_numpy(), type=_ARROW[t],
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
