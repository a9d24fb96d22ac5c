"""NetworkX view of a run's tables: a MultiDiGraph with the stores' property names."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from featgraph.graph.rows import NODE_PROPS, REL_PROPS, REL_TYPES, node_rows, rel_rows
from featgraph.runs.files import staged_file


def to_networkx(edges: pd.DataFrame, features: pd.DataFrame, run: str):
    """MultiDiGraph: nodes keyed by feature id (a missing description is None); edges keyed
    `CIRCUIT/L{layer}/h{head}/r{rank}` (e.g. `QK/L13/h0/r17`), unique in the graph, type in `circuit`.

    The key is also the edge's GraphML id, and readers such as Gephi keep one edge per id, so it must
    be unique across the whole graph: a table made elsewhere that repeats a rank gets `/2`, `/3`, …
    on the repeats.
    """
    import networkx as nx

    g = nx.MultiDiGraph(run=run)
    nodes = node_rows(features)
    nodes = nodes.astype(object).where(nodes.notna(), None)
    for row in nodes.to_dict("records"):
        g.add_node(row["id"], **{k: row[k] for k in NODE_PROPS if k != "id"})
    seen: Counter[str] = Counter()
    for circ in REL_TYPES:
        for row in rel_rows(edges, circ, run).to_dict("records"):
            key = f"{circ}/L{row['layer']}/h{row['head']}/r{row['rank']}"
            seen[key] += 1
            if seen[key] > 1:
                key = f"{key}/{seen[key]}"
            g.add_edge(row["src"], row["dst"], key=key, **{k: row[k] for k in REL_PROPS})
    return g


def write_graphml(g, out: Path) -> Path:
    """GraphML for Gephi/Cytoscape/igraph: one typed <key> per attribute, missing text as "" (a None or
    NaN would make networkx declare a second, double-typed key of the same name)."""
    import networkx as nx

    h = g.copy()
    for props, items in ((NODE_PROPS, h.nodes(data=True)), (REL_PROPS, h.edges(data=True))):
        text = [k for k, t in props.items() if t == "STRING" and k != "id"]
        for *_, d in items:
            for k in text:
                if not isinstance(d.get(k), str):
                    d[k] = ""
    with staged_file(Path(out)) as tmp:
        nx.write_graphml(h, tmp)
    return Path(out)
