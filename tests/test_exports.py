"""Exports where researchers take them: GraphML read back by networkx and by igraph's strict reader."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

import igraph
import networkx as nx
import pandas as pd
import pytest

import featgraph as fg_api
from featgraph.graph.rows import NODE_PROPS, REL_PROPS

from helpers import fg

GRAPHML = "{http://graphml.graphdrawing.org/xmlns}"


@pytest.fixture(scope="module")
def two_layers(demo_run, tmp_path_factory):
    """A run whose edge table holds the demo's edges twice, as layer 1 and as layer 2 where every
    rank is 1 (a table made elsewhere may repeat ranks): edge ids must still be unique."""
    e = fg_api.open_run(demo_run).edges
    e2 = e.assign(layer=2, rank=1)
    d = tmp_path_factory.mktemp("two")
    pd.concat([e, e2], ignore_index=True).to_parquet(d / "edges.parquet")
    assert fg("import", d / "edges.parquet", "--out", d / "run").exit_code == 0
    return d / "run"


def _edge_multiset(rows):
    return Counter((s, t, c, int(h), int(layer), round(float(w), 4)) for s, t, c, h, layer, w in rows)


@pytest.mark.parametrize("which", ["demo", "two_layers"])
def test_graphml_keeps_every_edge_for_strict_readers(which, demo_run, two_layers, tmp_path):
    path = demo_run if which == "demo" else two_layers
    run = fg_api.open_run(path)
    want = _edge_multiset(run.edges[["src", "dst", "circuit", "head", "layer", "weight"]].itertuples(index=False))
    out = tmp_path / "g.graphml"
    r = fg("export", path, "--graphml", out)
    assert r.exit_code == 0, r.output

    root = ET.parse(out).getroot()
    keys = root.findall(f"{GRAPHML}key")
    declared = [(k.get("for"), k.get("attr.name")) for k in keys]
    assert len(declared) == len(set(declared)), f"a <key> declared twice: {sorted(declared)}"
    types = {(k.get("for"), k.get("attr.name")): k.get("attr.type") for k in keys}
    want_types = {"STRING": "string", "INT64": "long", "DOUBLE": "double"}
    for name, t in NODE_PROPS.items():
        if name != "id":
            assert types[("node", name)] == want_types[t], name
    for name, t in REL_PROPS.items():
        assert types[("edge", name)] == want_types[t], name
    key_ids = {k.get("id") for k in keys}
    assert all(d.get("key") in key_ids for d in root.iter(f"{GRAPHML}data"))
    edges = root.findall(f".//{GRAPHML}edge")
    ids = [e.get("id") for e in edges]
    assert len(edges) == len(run.edges)
    assert None not in ids and len(set(ids)) == len(ids), "edge ids repeat: Gephi keeps one edge per id"

    back = nx.read_graphml(out, force_multigraph=True)
    assert _edge_multiset((u, v, d["circuit"], d["head"], d["layer"], d["weight"])
                          for u, v, d in back.edges(data=True)) == want

    g = igraph.Graph.Read_GraphML(str(out))  # libxml2-based; refuses a repeated attribute name
    assert g.ecount() == len(run.edges)
    names = g.vs["id"]
    assert _edge_multiset((names[e.source], names[e.target], e["circuit"], e["head"], e["layer"], e["weight"])
                          for e in g.es) == want
    desc = dict(zip(names, g.vs["description"]))
    feats = run.features.set_index("id")["description"]
    unlabelled = [f for f in names if pd.isna(feats[f])]
    assert unlabelled, "the data must exercise features without a description"
    assert all(desc[f] == "" for f in unlabelled)
    assert all(desc[f] == feats[f] for f in names if f not in unlabelled)


def test_networkx_edge_keys_unique(two_layers):
    run = fg_api.open_run(two_layers)
    g = run.to_networkx()
    keys = [k for _, _, k in g.edges(keys=True)]
    assert len(keys) == len(run.edges) == len(set(keys))
    row = run.edges.iloc[0]
    data = g.get_edge_data(row["src"], row["dst"])
    assert {(d["layer"], d["circuit"], d["head"]) for d in data.values()} >= {(row["layer"], row["circuit"], row["head"])}
