"""Attribution graphs (circuit-tracer / Neuronpedia graph JSON) imported beside a run's QK/OV edges: the streaming
reader against the file, bad files as one-line errors with nothing written, several graphs per run, the stores'
rows and the joined queries against a pandas reference, and files written by circuit-tracer's own writer checked
against Neuronpedia's published schema (tests/data/neuronpedia-schema/graph-schema.json)."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from attribution_files import cantor, graph_dict, write
from graph_refs import ref_attended_keys, ref_link_heads

from helpers import DATA, fg

pytest.importorskip("ijson", reason="the attribution reader needs ijson: pip install 'featgraph[attribution]'")

SCHEMA = DATA / "neuronpedia-schema" / "graph-schema.json"


def _digests(d):
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _schema_errors(doc):
    import jsonschema

    v = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]


def _import(tmp_path, graph, name="g.json", out=None, *args, gz=False):
    path = write(tmp_path / name, graph, gz=gz)
    out = out or tmp_path / "run"
    return fg("import", path, "--out", out, *args), out


# ---------------------------------------------------------------- the reader against the file

def test_cantor_decoding_inverts_the_pairing():
    from featgraph.load.attribution import cantor_pair, cantor_unpair

    for layer in range(0, 42):
        for index in (0, 1, 2, 7, 255, 16383, 65535, 262143, 10**9):
            z = cantor_pair(layer, index)
            assert z == cantor(layer, index)
            assert cantor_unpair(z) == (layer, index)


@pytest.mark.parametrize("gz", [False, True])
def test_import_reads_the_whole_graph(tmp_path, gz):
    g = graph_dict()
    assert _schema_errors(g) == []
    r, out = _import(tmp_path, g, "g.json.gz" if gz else "g.json", gz=gz)
    assert r.exit_code == 0, r.output
    from featgraph.runs.graphs import list_graphs

    (stored,) = list_graphs(out)
    nodes = pq.read_table(stored.nodes_path).to_pandas()
    links = pq.read_table(stored.links_path).to_pandas()
    assert list(nodes["node_id"]) == [n["node_id"] for n in g["nodes"]]
    assert list(links["source"]) == [x["source"] for x in g["links"]]
    assert list(links["target"]) == [x["target"] for x in g["links"]]
    np.testing.assert_array_equal(links["weight"].to_numpy(), [x["weight"] for x in g["links"]])
    info = stored.info
    assert (info["nodes"], info["links"]) == (len(g["nodes"]), len(g["links"]))
    assert info["prompt"] == g["metadata"]["prompt"] and info["prompt_tokens"] == g["metadata"]["prompt_tokens"]
    assert info["scan"] == "gemma-2-2b" and info["source_set"] == "gemmascope-transcoder-16k" and info["slug"] == "tiny"
    assert info["kinds"] == {"feature": 4, "error": 3, "embedding": 4, "logit": 1}
    assert info["sha256"] == hashlib.sha256((tmp_path / ("g.json.gz" if gz else "g.json")).read_bytes()).hexdigest()
    feats = nodes[nodes["kind"] == "feature"]
    assert list(feats["feature_index"]) == [5, 7, 9, 5]
    assert list(feats["feature_id"]) == [f"gemma-2-2b/{L}-gemmascope-transcoder-16k/{i}" for L, i in ((0, 5), (1, 7), (2, 9), (1, 5))]
    emb = nodes[nodes["kind"] == "embedding"]
    assert list(emb["token"]) == g["metadata"]["prompt_tokens"] and emb["layer"].isna().all()
    logit = nodes[nodes["kind"] == "logit"].iloc[0]
    assert logit["is_target_logit"] and logit["token_prob"] == 0.7 and logit["clerp"] == 'Output " mat" (p=0.700)'
    for col in ("activation", "influence"):
        np.testing.assert_array_equal(nodes[col].to_numpy(dtype=float), [np.nan if n[col] is None else n[col] for n in g["nodes"]])


def test_reader_streams_links_in_batches_and_parts_after_links(tmp_path):
    """Links written in several row groups; metadata and nodes placed after the links (other writers) still read."""
    from featgraph.load.attribution import read_graph

    g = graph_dict()
    reordered = {"links": g["links"], "qParams": g["qParams"], "nodes": g["nodes"], "metadata": g["metadata"]}
    path = write(tmp_path / "late.json", reordered, indent=None)
    out = tmp_path / "o"
    out.mkdir()
    info = read_graph(path, out, batch=5)
    f = pq.ParquetFile(out / "links.parquet")
    assert f.metadata.num_row_groups == -(-len(g["links"]) // 5)
    assert info.links == len(g["links"]) and info.nodes == len(g["nodes"]) and info.prompt == g["metadata"]["prompt"]
    assert f.read().column("weight").to_pylist() == [x["weight"] for x in g["links"]]


def test_source_set_options_and_legacy_encoding(tmp_path):
    """Without feature_details the source set is required (one line naming --source-set); --model-id renames the
    model; a file without schema_version uses the older `{layer}{index:05d}` encoding."""
    g = graph_dict(source_set=None)
    r, out = _import(tmp_path, g)
    assert r.exit_code == 2 and "--source-set is required" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()
    r, out = _import(tmp_path, g, "g.json", tmp_path / "run2", "--source-set", "clt-hp", "--model-id", "gemma-2-2b-x")
    assert r.exit_code == 0, r.output
    from featgraph.runs.graphs import list_graphs

    nodes = pq.read_table(list_graphs(out)[0].nodes_path).to_pandas()
    assert nodes["feature_id"].dropna().iloc[0] == "gemma-2-2b-x/0-clt-hp/5"
    legacy = graph_dict()
    del legacy["metadata"]["schema_version"]
    for n in legacy["nodes"]:
        if n["feature_type"] == "cross layer transcoder":
            n["feature"] = int(f"{n['layer']}{int(n['node_id'].split('_')[1]):05d}")
    r, out = _import(tmp_path, legacy, "legacy.json", tmp_path / "run3")
    assert r.exit_code == 0, r.output
    nodes = pq.read_table(list_graphs(out)[0].nodes_path).to_pandas()
    assert list(nodes["feature_index"].dropna().astype(int)) == [5, 7, 9, 5]


# ---------------------------------------------------------------- bad files

def _bad_cases():
    def node(i, **kw):
        def f(g):
            g["nodes"][i].update(kw)
        return f

    def link(i, **kw):
        def f(g):
            g["links"][i].update(kw)
        return f

    def drop(key):
        def f(g):
            del g[key]
        return f

    def put(key, value):
        def f(g):
            g[key] = value
        return f

    def dup(g):
        g["nodes"][1]["node_id"] = g["nodes"][0]["node_id"]
        g["links"] = [x for x in g["links"] if x["source"] != "1_7_2" and x["target"] != "1_7_2"]

    return {
        "unknown kind": (node(2, feature_type="attention head"), ["nodes[2] (node_id 2_9_3)", "unknown node kind", "'attention head'"]),
        "ctx_idx string": (node(1, ctx_idx="2"), ["nodes[1] (node_id 1_7_2)", "ctx_idx must be a non-negative integer"]),
        "layer bad": (node(0, layer="x"), ["nodes[0] (node_id 0_5_1)", "layer must be"]),
        "feature float": (node(3, feature=2.5), ["nodes[3] (node_id 1_5_3)", "feature must be an integer"]),
        "cantor mismatch": (node(0, feature=cantor(1, 5)), ["nodes[0] (node_id 0_5_1)", "decodes (Cantor pairing", "layer 1"]),
        "activation string": (node(0, activation="high"), ["nodes[0] (node_id 0_5_1)", "activation must be a number"]),
        "weight string": (link(3, weight="0.5"), ["links[3] (", "weight must be a number", "'0.5'"]),
        "source missing": (link(0, source=None), ["links[0]", "source must be a node_id string"]),
        "unknown end": (link(2, target="9_9_9"), ["links[2] (", "target 9_9_9 is not a node of the graph"]),
        "duplicate node": (dup, ["nodes[1] (node_id 0_5_1) repeats the node_id of nodes[0]"]),
        "no links": (drop("links"), ["has no links"]),
        "no metadata": (drop("metadata"), ["has no metadata"]),
        "nodes object": (put("nodes", {"a": 1}), ["nodes must be an array"]),
        "links number": (put("links", 5), ["links must be an array"]),
        "tokens not strings": (lambda g: g["metadata"].update(prompt_tokens=[1, 2]), ["metadata.prompt_tokens must be a list of strings"]),
        "ctx past prompt": (node(0, ctx_idx=9), ["nodes[0] (node_id 0_5_1)", "ctx_idx 9 is past the prompt's 4 tokens"]),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_file_is_one_line_naming_the_node_or_link_and_writes_nothing(tmp_path, case):
    change, needles = _bad_cases()[case]
    g = graph_dict()
    change(g)
    r, out = _import(tmp_path, g)
    assert r.exit_code == 2, (r.output, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json"]  # no staged leftovers


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cut", [0.3, 0.7, 0.999])
def test_truncated_file_into_an_existing_run_changes_nothing(tmp_path, gz, cut):
    good = write(tmp_path / "good.json", graph_dict(slug="first"))
    run = tmp_path / "run"
    assert fg("import", good, "--out", run).exit_code == 0
    before = _digests(run)
    raw = json.dumps(graph_dict(), indent=2).encode()
    data = gzip.compress(raw) if gz else raw
    bad = tmp_path / ("bad.json.gz" if gz else "bad.json")
    bad.write_bytes(data[: int(len(data) * cut)])
    r = fg("import", bad, "--out", run)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "truncated" in r.stderr and "nothing was imported" in r.stderr, r.stderr
    assert _digests(run) == before
    assert [p.name for p in (run / "attribution").iterdir() if p.name.startswith(".")] == []


def test_several_graphs_per_run_each_its_own(tmp_path):
    a = write(tmp_path / "a.json", graph_dict(slug="dallas"))
    b = write(tmp_path / "b.json", graph_dict(slug="dallas", seed=3))
    run = tmp_path / "run"
    assert fg("import", a, "--out", run).exit_code == 0
    first = _digests(run / "attribution")
    r = fg("import", b, "--out", run)
    assert r.exit_code == 0, r.output
    from featgraph.runs.graphs import list_graphs

    ids = [s.id for s in list_graphs(run)]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("dallas-") for i in ids)
    after = _digests(run / "attribution")
    assert all(after[k] == v for k, v in first.items())  # the first graph's files are untouched
    assert fg("import", a, "--out", tmp_path / "a.json").exit_code == 2  # not a run: refused


# ---------------------------------------------------------------- stores and queries

A, B, C, D = (f"gemma-2-2b/{L}-gemmascope-transcoder-16k/{i}" for L, i in ((0, 5), (1, 7), (2, 9), (1, 5)))


def _joined_run(tmp_path):
    """A run of QK/OV edges between the tiny graph's transcoder features (and one the graph lacks), with the
    graph imported into it."""
    from featgraph.api.run import import_edges

    E = "gemma-2-2b/1-gemmascope-transcoder-16k/99"
    rows = [  # layer, head, circuit, src, dst, weight
        (1, 0, "OV", A, B, 0.9), (1, 1, "OV", A, B, -0.4), (2, 0, "OV", A, C, 0.3), (2, 1, "OV", B, C, 1.2),
        (2, 1, "OV", D, C, -2.0), (1, 0, "OV", A, D, 0.2), (3, 0, "OV", A, B, 5.0),  # layer 3 > B's layer: not a carrier
        (2, 0, "QK", A, B, 0.7), (1, 0, "QK", A, B, 0.3),  # a head at B's own layer cannot read B: not an answer
        (3, 0, "QK", B, C, 0.5), (3, 0, "QK", A, C, -0.6), (3, 2, "QK", A, C, 0.05), (2, 0, "QK", A, C, 0.9),
        (3, 1, "QK", D, C, 0.1),  # D is at C's own position, not earlier
        (3, 0, "QK", E, C, 0.8),  # E is not in the graph
    ]
    pd.DataFrame(rows, columns=["layer", "head", "circuit", "src", "dst", "weight"]).to_csv(tmp_path / "edges.csv", index=False)
    run = import_edges(tmp_path / "edges.csv", tmp_path / "run")
    g = graph_dict(links=[("0_5_1", "1_7_2", 0.5), ("0_5_1", "2_9_3", -0.25), ("1_7_2", "2_9_3", 1.5), ("1_5_3", "2_9_3", 0.75),
                          ("0_5_1", "1_5_3", 0.1), ("E_100_0", "0_5_1", 2.0), ("2_9_3", "4_42_3", 3.0), ("0_1_3", "2_9_3", 0.2)])
    write(tmp_path / "g.json", g)
    r = fg("import", tmp_path / "g.json", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    return run.path, g


def _check_queries(run, g, **store):
    from featgraph.runs.graphs import list_graphs

    (stored,) = list_graphs(run.path)
    nodes = pq.read_table(stored.nodes_path).to_pandas()
    links = pq.read_table(stored.links_path).to_pandas()
    edges = run.edge_table
    graphs = run.query("attribution_graphs", **store)
    assert list(graphs["graph"]) == [stored.id] and int(graphs["links"][0]) == len(g["links"])
    got = run.query("link_heads", graph=stored.id, **store)
    want = ref_link_heads(nodes, links, edges)
    assert len(want) == 5  # A->B (two heads at layer 1), A->C, B->C, D->C at layer 2; not layer 3
    cols = list(want.columns)
    pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want, check_dtype=False)
    for node in ("2_9_3", "1_7_2", "0_5_1"):
        got = run.query("attended_keys", graph=stored.id, node=node, **store)
        want = ref_attended_keys(nodes, edges, node)
        pd.testing.assert_frame_equal(got[list(want.columns)].reset_index(drop=True), want, check_dtype=False)
    assert len(run.query("attended_keys", graph=stored.id, node="2_9_3", **store)) == 3
    assert len(run.query("attended_keys", graph=stored.id, node="1_7_2", **store)) == 1
    # every node and link, with its weight, and the features shared with the QK/OV edges
    n = run.query("MATCH (p:PromptNode) RETURN p.node_id AS node_id, p.kind AS kind ORDER BY node_id", **store)
    assert sorted(n["node_id"]) == sorted(x["node_id"] for x in g["nodes"])
    w = run.query("MATCH (a:PromptNode)-[l:ATTRIBUTION]->(b:PromptNode) RETURN a.node_id AS s, b.node_id AS t, l.weight AS w", **store)
    assert sorted(map(tuple, w.to_numpy().tolist())) == sorted((x["source"], x["target"], x["weight"]) for x in g["links"])
    of = run.query("MATCH (p:PromptNode)-[:OF]->(f:Feature) RETURN p.node_id AS node_id, f.id AS feature ORDER BY node_id", **store)
    assert dict(zip(of["node_id"], of["feature"])) == {"0_5_1": A, "1_7_2": B, "2_9_3": C, "1_5_3": D}
    shared = run.query("MATCH (p:PromptNode)-[:OF]->(f:Feature)-[e:OV]->() RETURN count(DISTINCT f) AS n", **store)
    assert int(shared["n"][0]) == 3  # A, B, D have OV out-edges


def test_embedded_store_joins_graph_and_edges(tmp_path):
    from featgraph.api.run import open_run

    path, g = _joined_run(tmp_path)
    r = fg("load", path)
    assert r.exit_code == 0, r.output
    _check_queries(open_run(path), g)
    r = fg("query", path, "link_heads", "--param", "graph=nope")
    assert r.exit_code == 2 and "--param graph nope is not an attribution graph of this run: its graphs are tiny-" in r.stderr, r.stderr
    # the graph's slug names it while it is the only graph with that slug
    run = open_run(path)
    (gid,) = [x.id for x in run.graphs]
    by_slug = fg("query", path, "link_heads", "--param", "graph=tiny", "--format", "csv")
    assert by_slug.exit_code == 0 and len(by_slug.stdout.splitlines()) == 6, by_slug.output
    assert by_slug.stdout == fg("query", path, "link_heads", "--param", f"graph={gid}", "--format", "csv").stdout
    fg("import", write(tmp_path / "again.json", g), "--out", path)
    r = fg("query", path, "link_heads", "--param", "graph=tiny")
    assert r.exit_code == 2 and "is not an attribution graph of this run" in r.stderr, r.stderr


@pytest.mark.neo4j
def test_neo4j_joins_graph_and_edges(tmp_path, neo4j_env):
    from featgraph.api.run import open_run

    path, g = _joined_run(tmp_path)
    run = open_run(path)
    for _ in range(2):  # a re-load replaces the graph's nodes and links, never duplicates them
        r = fg("load", path, "--neo4j")
        assert r.exit_code == 0, r.output
    _check_queries(run, g, neo4j=True)
    # a graph whose load did not finish is refused by the queries about it, until a load completes it
    gid = run.graphs[0].id
    run.query("MATCH (g:AttributionGraph {id: $g}) SET g.status = 'loading'", neo4j=True, write=True, g=gid)
    r = fg("query", path, "link_heads", "--param", f"graph={gid}", "--neo4j")
    assert r.exit_code == 1 and f"the Neo4j load of attribution graph {gid} did not finish" in r.stderr, r.stderr
    assert fg("load", path, "--neo4j").exit_code == 0
    assert len(run.query("link_heads", neo4j=True, graph=gid)) == 5


def test_networkx_and_graphml_hold_the_graph(tmp_path):
    import networkx as nx

    from featgraph.api.run import open_run

    path, g = _joined_run(tmp_path)
    G = open_run(path).to_networkx()
    prompt = [n for n, d in G.nodes(data=True) if d.get("label") == "PromptNode"]
    assert len(prompt) == len(g["nodes"])
    links = [(u, v, d) for u, v, d in G.edges(data=True) if d.get("circuit") == "ATTRIBUTION"]
    assert sorted((u.split("/", 1)[1], v.split("/", 1)[1], d["weight"]) for u, v, d in links) == \
        sorted((x["source"], x["target"], x["weight"]) for x in g["links"])
    assert sum(1 for *_, d in G.edges(data=True) if d.get("circuit") == "OF") == 4
    out = tmp_path / "g.graphml"
    assert fg("export", path, "--graphml", out).exit_code == 0
    H = nx.read_graphml(out)
    assert H.number_of_nodes() == G.number_of_nodes() and H.number_of_edges() == G.number_of_edges()


# ---------------------------------------------------------------- circuit-tracer's own writer

def _circuit_tracer_graph(tmp_path, scan: str = "featgraph-demo"):
    """A circuit-tracer Graph on the demo's tiny Gemma 2 (its config and tokenizer, in tmp_path/model), built without
    running a model: active transcoder features, a causal adjacency matrix, two logit targets; then its own writer."""
    pytest.importorskip("circuit_tracer", reason="circuit-tracer is installed by scripts/setup (pip install --no-deps circuit-tracer==0.5.0)")
    import torch
    from circuit_tracer.attribution.targets import LogitTarget
    from circuit_tracer.graph import Graph
    from circuit_tracer.utils.create_graph_files import create_graph_files
    from circuit_tracer.utils.tl_nnsight_mapping import UnifiedConfig
    from transformers import AutoTokenizer

    from featgraph.api.demo import DEMO_CONFIG, write_tokenizer

    model = tmp_path / "model"
    model.mkdir()
    write_tokenizer(model, DEMO_CONFIG["vocab_size"])
    (model / "config.json").write_text(json.dumps(DEMO_CONFIG))
    c = DEMO_CONFIG
    cfg = UnifiedConfig(n_layers=c["num_hidden_layers"], d_model=c["hidden_size"], d_head=c["head_dim"], n_heads=c["num_attention_heads"],
                        d_mlp=c["intermediate_size"], d_vocab=c["vocab_size"], tokenizer_name=str(model), model_name="featgraph-demo",
                        original_architecture="Gemma2ForCausalLM")
    text = "the cat sat on the mat"
    ids = AutoTokenizer.from_pretrained(model)(text)["input_ids"]
    T, L = len(ids), cfg.n_layers
    g = torch.Generator().manual_seed(0)
    nf = 14
    active = torch.stack([torch.randint(0, L, (nf,), generator=g), torch.randint(0, T, (nf,), generator=g),
                          torch.randint(0, 96, (nf,), generator=g)], 1)
    n_logits = 2
    layer = torch.cat([active[:, 0], torch.arange(L).repeat_interleave(T), torch.full((T,), -1), torch.full((n_logits,), L)])
    pos = torch.cat([active[:, 1], torch.arange(T).repeat(L), torch.arange(T), torch.full((n_logits,), T - 1)])
    n = len(layer)
    causal = (layer[None, :] < layer[:, None]) & (pos[None, :] <= pos[:, None])  # rows: targets, columns: sources
    adj = torch.randn(n, n, generator=g) * (torch.rand(n, n, generator=g) < 0.6) * causal
    graph = Graph(text, torch.tensor(ids), active, adj, cfg, torch.arange(nf), torch.rand(nf, generator=g) * 5,
                  [LogitTarget(" mat", 9), LogitTarget(" cat", 12)], torch.tensor([0.6, 0.3]), scan=scan,
                  vocab_size=c["vocab_size"])
    create_graph_files(graph, "demo-graph", str(tmp_path / "graphs"), node_threshold=0.95, edge_threshold=0.99)
    return tmp_path / "graphs" / "demo-graph.json"


def test_circuit_tracer_file_imports_whole_and_matches_neuronpedia_schema(tmp_path):
    path = _circuit_tracer_graph(tmp_path)
    doc = json.loads(path.read_text())
    assert _schema_errors(doc) == []
    assert {n["feature_type"] for n in doc["nodes"]} >= {"cross layer transcoder", "embedding", "logit"}
    r = fg("import", path, "--out", tmp_path / "run", "--source-set", "demo-transcoder-96")
    assert r.exit_code == 0, r.output
    from featgraph.runs.graphs import list_graphs

    (stored,) = list_graphs(tmp_path / "run")
    nodes = pq.read_table(stored.nodes_path).to_pandas()
    links = pq.read_table(stored.links_path).to_pandas()
    assert len(nodes) == len(doc["nodes"]) and len(links) == len(doc["links"])
    np.testing.assert_array_equal(links["weight"].to_numpy(), [x["weight"] for x in doc["links"]])
    assert stored.info["prompt"] == doc["metadata"]["prompt"] and stored.info["prompt_tokens"] == doc["metadata"]["prompt_tokens"]
    for n, row in zip(doc["nodes"], nodes.itertuples()):
        if n["feature_type"] == "cross layer transcoder":
            layer, index, ctx = map(int, n["node_id"].split("_"))  # circuit-tracer's own id: {layer}_{index}_{ctx}
            assert (row.layer, row.feature_index, row.ctx_idx) == (layer, index, ctx)
            assert row.feature_id == f"featgraph-demo/{layer}-demo-transcoder-96/{index}"
    assert fg("load", tmp_path / "run").exit_code == 0
    from featgraph.api.run import open_run

    got = open_run(tmp_path / "run").query("MATCH (a:PromptNode)-[l:ATTRIBUTION]->(b:PromptNode) RETURN a.node_id AS s, b.node_id AS t, l.weight AS w")
    assert sorted(map(tuple, got.to_numpy().tolist())) == sorted((x["source"], x["target"], x["weight"]) for x in doc["links"])


def _graph_rows(uri, user, password):
    """The attribution part of a Neo4j store: graphs, prompt nodes, links and OF ties, as sorted plain values."""
    from neo4j import GraphDatabase

    with GraphDatabase.driver(uri, auth=(user, password)) as d:
        def rows(q):
            return sorted(json.dumps(r.data(), sort_keys=True, default=str) for r in d.execute_query(q).records)

        return {"graphs": rows("MATCH (g:AttributionGraph) RETURN g {.*, loaded_at: null} AS g"),
                "nodes": rows("MATCH (p:PromptNode) RETURN p {.*} AS p"),
                "links": rows("MATCH (a:PromptNode)-[l:ATTRIBUTION]->(b:PromptNode) RETURN a.key AS a, b.key AS b, l {.*} AS l"),
                "of": rows("MATCH (p:PromptNode)-[:OF]->(f:Feature) RETURN p.key AS p, f.id AS f")}


@pytest.mark.neo4j
def test_bulk_csv_path_equals_online_load(tmp_path, neo4j_env):
    import sys

    from test_exports import _admin

    from featgraph.api.run import open_run

    from helpers import REPO

    sys.path.insert(0, str(REPO / "scripts"))
    from neo4j_server import neo4j_server

    path, g = _joined_run(tmp_path)
    run = open_run(path)
    cmd = run.export_neo4j(tmp_path / "imp")
    assert "--array-delimiter=U+001F" in cmd and any(c.startswith("--relationships=ATTRIBUTION=") for c in cmd)
    done = _admin(cmd, tmp_path / "home")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert fg("load", path, "--neo4j").exit_code == 0
    online = _graph_rows(neo4j_env["uri"], neo4j_env["user"], neo4j_env["password"])
    with neo4j_server(tmp_path / "served", store_home=tmp_path / "home") as srv:
        offline = _graph_rows(srv["uri"], srv["user"], srv["password"])
    assert len(online["links"]) == len(g["links"]) and len(online["nodes"]) == len(g["nodes"]) and len(online["of"]) == 4
    assert json.loads(online["graphs"][0])["g"]["prompt_tokens"] == g["metadata"]["prompt_tokens"]
    for k in ("graphs", "nodes", "links", "of"):
        assert offline[k] == online[k], k


# ---------------------------------------------------------------- QK attribution on a prompt (validate's decomposition)

def test_qk_attribution_pairs_add_up_to_the_models_logit(tmp_path):
    """On a tiny Gemma 2 saved by transformers, the pairs plus the bias and error parts are the logit the model
    computed (its own rotated q, k), the marginals are the pairs' row and column sums plus their share of the
    other side's bias and error, and every pair equals its brute-force value a_ti a_sj (R(t) q_i)·(R(s) k_j)."""
    import torch
    from test_validate import D, _run

    from featgraph.analyse import decompose as dc
    from featgraph.api import validate as val
    from featgraph.api.attribution import qk_attribution
    from featgraph.api.demo import write_tokenizer

    from helpers import TINY, make_tiny_model, write_sae

    make_tiny_model(tmp_path / "model")
    write_tokenizer(tmp_path / "model", TINY["vocab_size"], TINY["max_position_embeddings"])
    run = _run(tmp_path, "random", write_sae(tmp_path / "sae-random", D, 40, seed=1))
    ids = [2, 5, 9, 11, 4, 33, 7, 7, 60, 12, 13, 40]
    session = val.Session(run, device="cpu")
    cap, st = session.prompt(ids)
    for h in session.heads:
        hd = session.qk[h]
        dq, dk = dc.qk_denominators(st, hd)
        for t, s in ((11, 3), (11, 11), (5, 0), (7, 6)):
            p = session.qk_pairs(cap, st, h, t, s)
            total = float(p.pair.sum()) + p.bias + p.error
            size = float(p.pair.abs().sum()) + abs(p.bias) + abs(p.error)  # the target is from float32 states
            assert abs(total - p.target) <= 1e-6 * size, (h, t, s, total, p.target)
            brute = torch.zeros_like(p.pair)
            for a, i in enumerate(p.q_index.tolist()):
                for b, j in enumerate(p.k_index.tolist()):
                    qi = dc.rotate(hd.q_feat[i][None], st.cos[t], st.sin[t])[0]
                    kj = dc.rotate(hd.k_feat[j][None], st.cos[s], st.sin[s])[0]
                    brute[a, b] = hd.scale * st.a[t, i] * st.a[s, j] * (qi @ kj) / (dq[t] * dk[s])
            torch.testing.assert_close(p.pair, brute, rtol=1e-9, atol=1e-12)
            assert len(p.q_index) > 0 and len(p.k_index) > 0
            # marginals: each feature against the other side's whole state, as the model computed it (float32)
            kv = session.attn.config.kv_head(h)
            k_s, q_t = cap.k[kv][s].double(), cap.q[h][t].double()
            for a_, i in enumerate(p.q_index.tolist()):
                qi = dc.rotate(hd.q_feat[i][None], st.cos[t], st.sin[t])[0]
                want = hd.scale * st.a[t, i] * (qi @ k_s) / dq[t]
                assert abs(float(p.q_marginal[a_] - want)) <= 1e-4 * max(1e-3, float(want.abs())), (h, t, s, i)
            for b_, j in enumerate(p.k_index.tolist()):
                kj = dc.rotate(hd.k_feat[j][None], st.cos[s], st.sin[s])[0]
                want = hd.scale * st.a[s, j] * (q_t @ kj) / dk[s]
                assert abs(float(p.k_marginal[b_] - want)) <= 1e-4 * max(1e-3, float(want.abs())), (h, t, s, j)
    a = qk_attribution(run, ids, head=session.heads[0], query_position=11, top=5, device="cpu")
    weights = cap.weights[session.heads[0]][11]
    assert a.key_position == int(weights.argmax()) and a.attention == pytest.approx(float(weights.max()))
    assert len(a.pairs) == 5 and list(a.pairs["contribution"].abs()) == sorted(a.pairs["contribution"].abs(), reverse=True)
    assert a.pairs["query_feature"].str.startswith("model/sae-in/").all()
    assert a.pairs["share"].iloc[0] == pytest.approx(a.pairs["contribution"].iloc[0] / a.logit)
    with pytest.raises(Exception, match="key_position"):
        qk_attribution(run, ids, head=session.heads[0], query_position=3, key_position=5, device="cpu")


# ---------------------------------------------------------------- QK attribution written into a graph (qk_tracing_results)

def _qk_setup(tmp_path):
    """A tiny Gemma 2 with its tokenizer, a run whose input SAE is named `1-tinyres` (so a graph feature node of
    source set `tinyres` at layer 1 is the same Neuronpedia feature), and a prompt of the tokenizer's words."""
    from test_validate import D

    import featgraph as fg_api
    from featgraph.api.demo import WORDS, write_tokenizer
    from featgraph.api.run import open_run

    from helpers import LAYER, TINY, make_tiny_model, write_sae

    make_tiny_model(tmp_path / "model")
    write_tokenizer(tmp_path / "model", TINY["vocab_size"], TINY["max_position_embeddings"])
    sae_in, sae_out = write_sae(tmp_path / "sae-in", D, 40, seed=1), write_sae(tmp_path / "sae-out", D, 36, seed=2)
    fg_api.extract(model=tmp_path / "model", layer=LAYER, sae_in=sae_in, sae_out=sae_out, top_k=2000, device="cpu",
                   out=tmp_path / "run", labels=False, model_id="model", sae_in_id="1-tinyres", sae_out_id="1-tinyout")
    words = list(WORDS[:7])
    return open_run(tmp_path / "run"), words


def test_qk_trace_writes_neuronpedia_qk_tracing_results(tmp_path):
    """`featgraph qk-trace` writes the head's QK attribution on the graph's prompt into the node at the query
    position as Neuronpedia's qk_tracing_results: the file validates against Neuronpedia's schema, the lists equal
    fg.qk_attribution's tables (pandas), contributors are the graph's own node where the graph has that feature at
    that position and a qk_only_nodes entry otherwise, and everything else of the graph is as in the source file."""
    from featgraph.api.attribution import qk_attribution, qk_trace

    run, words = _qk_setup(tmp_path)
    tokens = ["<bos>", *words]
    t, head, top = len(tokens) - 1, 1, 6
    ref = qk_attribution(run, " ".join(words), head=head, query_position=t, top=top, device="cpu")
    s = ref.key_position
    own_q = int(ref.pairs["query_feature"].iloc[0].rsplit("/", 1)[1])  # the strongest pair's query feature, at t
    own_k = int(ref.keys["key_feature"].iloc[-1].rsplit("/", 1)[1])  # a weaker key feature, at s
    features = ((1, own_q, t), (1, own_k, s), (2, 3, t), (0, 5, 1))
    g = graph_dict(tokens=tokens, features=features, scan="model", source_set="tinyres", seed=3)
    g["metadata"]["prompt"] = " ".join(words)
    ids = [2, *range(4, 4 + len(words))]  # the word-level tokenizer: <bos> 2, then the words in order from 4
    rename = {n["node_id"]: f"E_{ids[n['ctx_idx']]}_{n['ctx_idx']}" for n in g["nodes"] if n["feature_type"] == "embedding"}
    for n in g["nodes"]:  # embedding node ids carry the token ids, as circuit-tracer writes them
        n["node_id"] = rename.get(n["node_id"], n["node_id"])
    for x in g["links"]:
        x["source"], x["target"] = rename.get(x["source"], x["source"]), rename.get(x["target"], x["target"])
    src = write(tmp_path / "g.json", g)
    target = f"2_3_{t}"
    res = fg("qk-trace", tmp_path / "run", src, "--node", target, "--head", head, "--top", top, "--device", "cpu",
             "--out", tmp_path / "enriched.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "enriched.json").read_text())
    assert _schema_errors(doc) == []

    # the lists equal the reference tables, each feature named by its node
    def node_of(fid, pos):
        i = int(fid.rsplit("/", 1)[1])
        return {(own_q, t): f"1_{own_q}_{t}", (own_k, s): f"1_{own_k}_{s}"}.get((i, pos), f"1_sae_{i}_{pos}")

    qk = next(n for n in doc["nodes"] if n["node_id"] == target)["qk_tracing_results"]
    want_pairs = [[node_of(r.query_feature, t), node_of(r.key_feature, s), r.contribution] for r in ref.pairs.itertuples()]
    want_q = [[node_of(r.query_feature, t), r.contribution] for r in ref.queries.itertuples()]
    want_k = [[node_of(r.key_feature, s), r.contribution] for r in ref.keys.itertuples()]
    for got, want in ((qk["pair_wise_contributors"], want_pairs), (qk["top_q_marginal_contributors"], want_q),
                      (qk["top_k_marginal_contributors"], want_k)):
        assert [row[:-1] for row in got] == [row[:-1] for row in want]
        assert [row[-1] for row in got] == pytest.approx([row[-1] for row in want], rel=1e-12, abs=1e-15)
        assert all(isinstance(row[-1], float) and all(isinstance(x, str) for x in row[:-1]) for row in got)
    assert len(qk["pair_wise_contributors"]) == top
    assert qk["featgraph"]["head"] == head and qk["featgraph"]["key_position"] == s
    assert qk["featgraph"]["logit"] == pytest.approx(ref.logit)
    used = {x for row in qk["pair_wise_contributors"] for x in row[:2]} | {
        row[0] for row in qk["top_q_marginal_contributors"] + qk["top_k_marginal_contributors"]}
    assert f"1_{own_q}_{t}" in used and f"1_{own_k}_{s}" in used  # the graph's own nodes are used where they exist
    graph_ids = {n["node_id"] for n in g["nodes"]}
    assert doc["qk_only_nodes"] and set(doc["qk_only_nodes"]) == used - graph_ids  # every other contributor is described, and nothing more
    for nid, d in doc["qk_only_nodes"].items():
        assert d["node_id"] == d["jsNodeId"] == nid and d["layer"] == 1 and d["ctx_idx"] in (t, s)
        assert d["clerp"].startswith("SAE feature model/1-tinyres/")

    # the rest of the graph is the source file's
    del next(n for n in doc["nodes"] if n["node_id"] == target)["qk_tracing_results"]
    del doc["qk_only_nodes"]
    assert doc == g

    # it imports back, the results kept on the node
    res = fg("import", tmp_path / "enriched.json", "--out", tmp_path / "back")
    assert res.exit_code == 0, res.output
    from featgraph.runs.graphs import list_graphs

    stored = pq.read_table(list_graphs(tmp_path / "back")[0].nodes_path).to_pandas().set_index("node_id")
    assert json.loads(stored.loc[target, "qk_tracing_results"])["pair_wise_contributors"] == qk["pair_wise_contributors"]

    # gzip out, an explicit key position, and the API
    r = qk_trace(run, src, target, head, tmp_path / "e.json.gz", key_position=0, top=3, device="cpu")
    with gzip.open(tmp_path / "e.json.gz", "rt") as f:
        doc = json.load(f)
    assert _schema_errors(doc) == [] and r.key_position == 0 and r.links == len(g["links"]) and r.nodes == len(g["nodes"])
    ref0 = qk_attribution(run, " ".join(words), head=head, query_position=t, key_position=0, top=3, device="cpu")
    got = next(n for n in doc["nodes"] if n["node_id"] == target)["qk_tracing_results"]["top_k_marginal_contributors"]
    assert [v for _, v in got] == pytest.approx(list(ref0.keys["contribution"]), rel=1e-12)


@pytest.mark.parametrize("case", ["no node", "before the layer", "already traced", "tokens differ", "token ids differ", "exists"])
def test_qk_trace_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    _, words = _qk_setup(tmp_path)
    tokens = ["<bos>", *words]
    g = graph_dict(tokens=tokens, features=((0, 5, 3), (2, 3, 6)), scan="model", source_set="tinyres")
    g["metadata"]["prompt"] = " ".join(words)
    node, out, args = "2_3_6", tmp_path / "e.json", []
    if case == "no node":
        node, want = "9_9_9", "has no node '9_9_9'"
    elif case == "before the layer":
        node, want = "0_5_3", "before the head's layer 1"
    elif case == "already traced":
        g["nodes"][1]["qk_tracing_results"] = {"pair_wise_contributors": [], "top_q_marginal_contributors": [],
                                               "top_k_marginal_contributors": []}
        want = "already has qk_tracing_results"
    elif case == "tokens differ":
        g["metadata"]["prompt"] = " ".join(words[:-1])
        want = "pass the graph's token ids"
    elif case == "token ids differ":  # graph_dict's embedding nodes are E_{100 + pos}_{pos}
        args, want = ["--token-ids", "2,4,5,6,7,8,9,10"], "E_100_0 has token id 100 at position 0, the token ids given have 2"
    else:
        out.write_text("keep")
        want = "already exists"
    src = write(tmp_path / "g.json", g)
    res = fg("qk-trace", tmp_path / "run", src, "--node", node, "--head", 0, "--device", "cpu", "--out", out, *args)
    assert res.exit_code == 2, res.output
    assert want in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert (out.read_text() == "keep") if case == "exists" else not out.exists()
    assert not list(tmp_path.glob(".qk-trace-*"))


def test_qk_trace_keeps_earlier_results_and_parts_after_the_links(tmp_path):
    """A file with QK tracing results already (a node's qk_tracing_results, a qk_only_nodes written after the links,
    as a writer may order them) keeps them: the new node's contributors are added to qk_only_nodes beside the old,
    and the rest equals the source."""
    from featgraph.api.attribution import qk_trace

    run, words = _qk_setup(tmp_path)
    tokens = ["<bos>", *words]
    t = len(tokens) - 1
    g = graph_dict(tokens=tokens, features=((2, 3, t), (2, 4, t)), scan="model", source_set="tinyres", seed=5)
    g["metadata"]["prompt"] = " ".join(words)
    g["nodes"] = [n for n in g["nodes"] if n["feature_type"] != "embedding"]  # (their ids carry other token ids)
    g["links"] = [x for x in g["links"] if not (x["source"].startswith("E_") or x["target"].startswith("E_"))]
    old = {"pair_wise_contributors": [["2_4_" + str(t), "old_k", 0.5]], "top_q_marginal_contributors": [["2_4_" + str(t), 0.25]],
           "top_k_marginal_contributors": [["old_k", 0.125]]}
    next(n for n in g["nodes"] if n["node_id"] == f"2_4_{t}")["qk_tracing_results"] = old
    g["qk_only_nodes"] = {"old_k": {"node_id": "old_k", "feature": None, "layer": 0, "ctx_idx": 1, "feature_type": "bias",
                                    "jsNodeId": "old_k", "clerp": "an earlier contributor"}}
    src = tmp_path / "g.json"
    src.write_text(json.dumps({k: g[k] for k in ("metadata", "qParams", "nodes", "links", "qk_only_nodes")}))  # after the links
    r = qk_trace(run, src, f"2_3_{t}", 0, tmp_path / "e.json", device="cpu")
    doc = json.loads((tmp_path / "e.json").read_text())
    assert _schema_errors(doc) == [] and r.qk_only_nodes > 0
    assert doc["qk_only_nodes"]["old_k"] == g["qk_only_nodes"]["old_k"] and len(doc["qk_only_nodes"]) == 1 + r.qk_only_nodes
    new = next(n for n in doc["nodes"] if n["node_id"] == f"2_3_{t}").pop("qk_tracing_results")
    assert {row[0] for row in new["top_q_marginal_contributors"]} <= set(doc["qk_only_nodes"]) | {n["node_id"] for n in g["nodes"]}
    del g["qk_only_nodes"], doc["qk_only_nodes"]
    assert doc == g
    with pytest.raises(Exception, match="already has qk_tracing_results"):
        qk_trace(run, src, f"2_4_{t}", 0, tmp_path / "f.json", device="cpu")
