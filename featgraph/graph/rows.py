"""The property graph's rows, derived from a run's tables (pure: tables in, tables out).

Nodes: label `Feature`, properties NODE_PROPS. Relationships: types QK and OV,
properties REL_PROPS; `run` records which run an edge came from (the run's
unique id), `circuit` repeats the type so one query can filter either circuit by
parameter. Rows are Arrow tables: the embedded store scans them without conversion.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from featgraph.schema import CIRCUITS, GRAPH_FEATURE_INDEX

NODE_LABEL = "Feature"
NODE_PROPS = {"id": "STRING", "sae": "STRING", "layer": "INT64", GRAPH_FEATURE_INDEX: "INT64",
              "description": "STRING", "url": "STRING"}
REL_PROPS = {"layer": "INT64", "head": "INT64", "kv_head": "INT64", "circuit": "STRING",
             "weight": "DOUBLE", "rank": "INT64", "z": "DOUBLE", "run": "STRING"}
REL_TYPES = CIRCUITS
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
