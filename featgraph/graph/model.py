"""The property graph's rows, derived from a run (pure: DataFrames in, out).

Nodes: label `Feature`, properties NODE_PROPS. Relationships: types QK and OV,
properties REL_PROPS; `run` records which run an edge came from, `circuit`
repeats the type so one query can filter either circuit by parameter.
"""

from __future__ import annotations

import pandas as pd

from featgraph.export import Run
from featgraph.schema import CIRCUITS, GRAPH_FEATURE_INDEX

NODE_LABEL = "Feature"
NODE_PROPS = {"id": "STRING", "sae": "STRING", "layer": "INT64", GRAPH_FEATURE_INDEX: "INT64",
              "description": "STRING", "url": "STRING"}
REL_PROPS = {"layer": "INT64", "head": "INT64", "kv_head": "INT64", "circuit": "STRING",
             "weight": "DOUBLE", "rank": "INT64", "z": "DOUBLE", "run": "STRING"}
REL_TYPES = CIRCUITS


def run_name(run: Run, override: str | None = None) -> str:
    """A run is identified in a shared store by its directory name (or --run-name)."""
    if override:
        return override
    return run.path.name if run.path is not None else "edges"


def node_rows(run: Run) -> pd.DataFrame:
    f = run.features.rename(columns={"index": GRAPH_FEATURE_INDEX})
    out = f[list(NODE_PROPS)].copy()
    out["description"] = out["description"].astype(object).where(out["description"].notna(), None)
    out["layer"] = out["layer"].astype("int64")
    out[GRAPH_FEATURE_INDEX] = out[GRAPH_FEATURE_INDEX].astype("int64")
    return out.reset_index(drop=True)


def rel_rows(run: Run, circuit: str, name: str) -> pd.DataFrame:
    """`src`, `dst` then REL_PROPS for one relationship type."""
    e = run.edges[run.edges["circuit"] == circuit]
    out = pd.DataFrame({"src": e["src"].astype(str).to_numpy(), "dst": e["dst"].astype(str).to_numpy()})
    for p in REL_PROPS:
        if p == "run":
            out[p] = name
        elif p == "z":
            out[p] = e["z"].astype("float64").to_numpy() if "z" in e.columns else float("nan")
        elif p == "weight":
            out[p] = e["weight"].astype("float64").to_numpy()
        elif p == "circuit":
            out[p] = circuit
        else:
            out[p] = e[p].astype("int64").to_numpy()
    return out
