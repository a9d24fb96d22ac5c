"""Exports where researchers take them: GraphML read back by networkx and by igraph's strict reader,
and `export-neo4j` CSVs imported by the real `neo4j-admin database import` into a store a real
Neo4j 5.26 then serves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import igraph
import networkx as nx
import pandas as pd
import pytest

import featgraph as fg_api
from featgraph.graph.rows import NODE_PROPS, REL_PROPS

from helpers import REPO, fg

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


# ---------------------------------------------------------------- neo4j-admin bulk import

def _admin(cmd: list[str], home) -> subprocess.CompletedProcess:
    """Run a `neo4j-admin ...` command line with the Maven jars the test server uses (AdminTool is
    the tool's entry point; it needs a Neo4j home and a conf directory)."""
    (home / "conf").mkdir(parents=True, exist_ok=True)
    assert cmd[0] == "neo4j-admin"
    env = dict(os.environ, NEO4J_HOME=str(home), NEO4J_CONF=str(home / "conf"))
    return subprocess.run(["java", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-cp", str(REPO / ".neo4j" / "lib" / "*"), "org.neo4j.cli.AdminTool",
                           *cmd[1:]], env=env, cwd=home, capture_output=True, text=True, timeout=600)


def _graph_dump(uri, user, password):
    from neo4j import GraphDatabase

    with GraphDatabase.driver(uri, auth=(user, password)) as d:
        labels = d.execute_query("MATCH (n) UNWIND labels(n) AS l RETURN l, count(*) AS n ORDER BY l").records
        feats = d.execute_query("MATCH (f:Feature) RETURN f {.*} AS p ORDER BY f.id").records
        runs = d.execute_query("MATCH (r:FeatgraphRun) RETURN r {.id, .status, .features, .QK, .OV} AS p").records
        rels = d.execute_query("MATCH (a)-[r]->(b) RETURN a.id AS a, b.id AS b, type(r) AS t, r {.*} AS p").records
        total = d.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
    rel_key = sorted((r["a"], r["b"], r["t"], sorted(r["p"].items())) for r in rels)
    return {"nodes": total, "labels": [tuple(r.values()) for r in labels], "features": [r["p"] for r in feats],
            "runs": [r["p"] for r in runs], "rels": len(rels), "rel_rows": rel_key}


@pytest.mark.neo4j
def test_admin_import_equals_online_load(demo_run, neo4j_env, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from neo4j_server import neo4j_server

    demo_run = shutil.copytree(demo_run, tmp_path / "run")  # a load records itself in the run's manifest
    f = fg_api.open_run(demo_run).features.head(1)  # a label over two lines (a quoted CSV field with a newline)
    fg_api.open_run(demo_run).label(label_table=pd.DataFrame({
        "model": [f["id"].iloc[0].split("/")[0]], "sae": f["sae"], "feature_index": f["feature_index"],
        "description": ['line one\nline two, "quoted"'], "explainer": "test"}))
    imp = tmp_path / "imp"
    cmd = fg_api.open_run(demo_run).export_neo4j(imp)
    assert cmd[:5] == ["neo4j-admin", "database", "import", "full", "neo4j"]
    home = tmp_path / "home"
    done = _admin(cmd, home)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    assert fg("load", demo_run, "--neo4j").exit_code == 0
    online = _graph_dump(neo4j_env["uri"], neo4j_env["user"], neo4j_env["password"])
    with neo4j_server(tmp_path / "served", store_home=home) as srv:
        offline = _graph_dump(srv["uri"], srv["user"], srv["password"])
    run = fg_api.open_run(demo_run)
    degrees = dict(online["labels"]).get("Degree", 0)  # the run's Degree rows (featgraph.graph.rows), besides its node
    assert online["rels"] == len(run.edges) and online["nodes"] == len(run.features) + 1 + degrees and degrees > 0
    assert offline["runs"] == online["runs"] == [
        {"id": run.run_id, "status": "complete", "features": len(run.features),
         "QK": int((run.edges["circuit"] == "QK").sum()), "OV": int((run.edges["circuit"] == "OV").sum())}]
    for k in ("nodes", "labels", "features", "rels", "rel_rows"):
        assert offline[k] == online[k], k
    assert 'line one\nline two, "quoted"' in {p.get("description") for p in offline["features"]}
