"""NetworkX view of a run's tables: a MultiDiGraph with the stores' property names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from featgraph.files import staged_file
from featgraph.graph.rows import NODE_PROPS, REL_PROPS, REL_TYPES, node_rows, rel_rows


def to_networkx(edges: pd.DataFrame, features: pd.DataFrame, run: str):
    """MultiDiGraph: nodes keyed by feature id; edges keyed by `CIRCUIT/head`, type in `circuit`."""
    import networkx as nx

    g = nx.MultiDiGraph(run=run)
    for row in node_rows(features).to_dict("records"):
        g.add_node(row["id"], **{k: row[k] for k in NODE_PROPS if k != "id"})
    for circ in REL_TYPES:
        for row in rel_rows(edges, circ, run).to_dict("records"):
            g.add_edge(row["src"], row["dst"], key=f"{circ}/{row['head']}", **{k: row[k] for k in REL_PROPS})
    return g


def write_graphml(g, out: Path) -> Path:
    """GraphML for Gephi/Cytoscape (None descriptions become empty strings)."""
    import networkx as nx

    for _, d in g.nodes(data=True):
        if d.get("description") is None:
            d["description"] = ""
    with staged_file(Path(out)) as tmp:
        nx.write_graphml(g, tmp)
    return Path(out)
