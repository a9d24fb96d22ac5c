"""NetworkX view of a run: a MultiDiGraph with the stores' property names."""

from __future__ import annotations

from pathlib import Path

from featgraph.export import Run, read_run, staged_file
from featgraph.graph.model import NODE_PROPS, REL_PROPS, REL_TYPES, node_rows, rel_rows, run_name


def to_networkx(run: Run | str | Path):
    """MultiDiGraph: nodes keyed by feature id; edges keyed by `CIRCUIT/head`, type in `circuit`."""
    import networkx as nx

    r = run if isinstance(run, Run) else read_run(Path(run))
    g = nx.MultiDiGraph(run=run_name(r))
    for row in node_rows(r).to_dict("records"):
        g.add_node(row["id"], **{k: row[k] for k in NODE_PROPS if k != "id"})
    for circ in REL_TYPES:
        rows = rel_rows(r, circ, run_name(r))
        for row in rows.to_dict("records"):
            g.add_edge(row["src"], row["dst"], key=f"{circ}/{row['head']}", **{k: row[k] for k in REL_PROPS})
    return g


def write_graphml(run: Run, out: Path) -> Path:
    """GraphML for Gephi/Cytoscape (None descriptions become empty strings)."""
    import networkx as nx

    g = to_networkx(run)
    for _, d in g.nodes(data=True):
        if d.get("description") is None:
            d["description"] = ""
    with staged_file(Path(out)) as tmp:
        nx.write_graphml(g, tmp)
    return Path(out)
