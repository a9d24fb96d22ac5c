"""NetworkX view of a run's tables: a MultiDiGraph with the stores' property names."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from featgraph.graph.rows import (
    LINK_TYPE,
    NODE_PROPS,
    OF_TYPE,
    PROMPT_LABEL,
    REL_PROPS,
    REL_TYPES,
    GraphFiles,
    link_batches,
    node_rows,
    of_table,
    prompt_node_table,
    rel_rows,
    with_graph_features,
)
from featgraph.runs.files import staged_file


def to_networkx(edges: pd.DataFrame, features: pd.DataFrame, run: str, graphs: Sequence[GraphFiles] = ()):
    """MultiDiGraph: nodes keyed by feature id (a missing description is None); edges keyed
    `CIRCUIT/L{layer}/h{head}/r{rank}` (e.g. `QK/L13/h0/r17`), unique in the graph, type in `circuit`.

    The key is also the edge's GraphML id, and readers such as Gephi keep one edge per id, so it must
    be unique across the whole graph: a table made elsewhere that repeats a rank gets `/2`, `/3`, …
    on the repeats.

    Attribution `graphs` add their prompt nodes, keyed `graph/node_id` with `label` "PromptNode" (a missing
    property is left out), their links (`circuit` "ATTRIBUTION", keyed `ATTRIBUTION/graph/i`) and each feature
    node's tie to its Feature (`circuit` "OF", keyed `OF/graph/node_id`); the graphs' features join the nodes.
    """
    import networkx as nx

    g = nx.MultiDiGraph(run=run)
    graph_nodes = {gr.id: gr.nodes() for gr in graphs}
    features = with_graph_features(features, list(graph_nodes.values()))
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
    for gr in graphs:
        _add_attribution(g, gr, graph_nodes[gr.id])
    return g


def _add_attribution(g, gr: GraphFiles, nodes) -> None:
    for row in prompt_node_table(nodes, gr.id).to_pylist():
        g.add_node(row.pop("key"), label=PROMPT_LABEL, **{k: v for k, v in row.items() if v is not None})
    for row in of_table(nodes, gr.id).to_pylist():
        g.add_edge(row["src"], row["dst"], key=f"{OF_TYPE}/{row['src']}", circuit=OF_TYPE, graph=gr.id)
    i = 0
    for batch in link_batches(gr.links_path, gr.id):
        for s, d, w in zip(batch.column("src").to_pylist(), batch.column("dst").to_pylist(), batch.column("weight").to_pylist()):
            g.add_edge(s, d, key=f"{LINK_TYPE}/{gr.id}/{i}", circuit=LINK_TYPE, graph=gr.id, weight=w)
            i += 1


# Characters XML 1.0 does not allow in a document (control characters but tab, newline and CR; lone surrogates;
# U+FFFE, U+FFFF): written raw they make the GraphML unreadable, so they become U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def write_graphml(g, out: Path) -> Path:
    """GraphML for Gephi/Cytoscape/igraph/JGraphT: one typed <key> per attribute, missing text as "" (a None or
    NaN would make networkx declare a second, double-typed key of the same name), and a missing number (an
    imported run's z, say) left out of its element: GraphML's default for an absent <data> is "unknown", while
    the text `nan` is rejected by Java's number parser, which Gephi and other JVM readers use."""
    import math

    import networkx as nx

    h = g.copy()
    for props, items in ((NODE_PROPS, h.nodes(data=True)), (REL_PROPS, h.edges(data=True))):
        text = [k for k, t in props.items() if t == "STRING" and k != "id"]
        numbers = [k for k, t in props.items() if t != "STRING"]
        for *_, d in items:
            for k in text:
                if not isinstance(d.get(k), str):
                    d[k] = ""
            for k in numbers:
                v = d.get(k)
                if v is None or (isinstance(v, float) and not math.isfinite(v)):
                    d.pop(k, None)
            for k, v in d.items():
                if isinstance(v, str) and _NOT_XML.search(v):
                    d[k] = _NOT_XML.sub("\ufffd", v)
    bad = {n: _NOT_XML.sub("\ufffd", n) for n in h.nodes if isinstance(n, str) and _NOT_XML.search(n)}
    if bad:
        h = nx.relabel_nodes(h, bad)
    with staged_file(Path(out)) as tmp:
        nx.write_graphml(h, tmp)
    return Path(out)
