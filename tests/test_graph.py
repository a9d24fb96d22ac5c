"""Graph stores: every cypher/ query on the embedded store and on a real Neo4j equals a pandas reference."""

from __future__ import annotations

import shutil

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from graph_refs import ATTRIBUTION_REFS, REFS, edges_of, ref_cross_layer_paths, ref_recurring_features, ref_recurring_hubs, ref_tetrads, ref_top_edges
from graph_refs import assert_same as _assert_same

import featgraph as fg_api
from featgraph.errors import BadValue, FeatgraphError, MissingValue
from featgraph.graph import library
from featgraph.graph.tokens import return_items, tokenize

from helpers import fg


def _cases(run):
    e = run.edges
    qk_dst = e[e["circuit"] == "QK"]["dst"].value_counts().index[0]
    ov_src = e[e["circuit"] == "OV"]["src"].value_counts().index[0]
    pair = e[e["src"] != e["dst"]].groupby(["src", "dst"]).size().idxmax()
    loop = e[e["src"] == e["dst"]]["src"].value_counts().index[0]
    return [
        ("top_edges", {"head": 0, "circuit": "QK", "limit": 25}), ("top_edges", {"head": 3, "circuit": "OV", "limit": 1000}),
        ("like_to_like", {"head": 0, "limit": 1000}), ("like_to_like", {"head": 2, "limit": 5}),
        ("distinct_positive_qk", {"head": 1, "limit": 30}),
        ("attends_to", {"feature": qk_dst, "limit": 1000}), ("writes", {"feature": ov_src, "limit": 15}),
        ("two_step", {"head": 0, "limit": 200}), ("recurring_features", {"min_heads": 2, "limit": 1000}),
        ("hubs", {"head": 1, "circuit": "OV", "limit": 50}), ("hubs", {"head": 2, "circuit": "QK", "limit": 1000}),
        ("tetrads", {"head": 0, "circuit": "OV", "limit": 10000}), ("tetrads", {"head": 3, "circuit": "QK", "limit": 10000}),
        ("connecting_heads", {"feature": pair[0], "other": pair[1], "limit": 100}),
        ("connecting_heads", {"feature": loop, "other": loop, "limit": 100}),
        ("cross_layer_paths", {"layer": -1, "limit": 50}), ("recurring_hubs", {"top": 10, "min_layers": 1, "limit": 30}),
        ("neighbours", {"feature": qk_dst, "limit": 1000}), ("neighbours", {"feature": loop, "limit": 7}),
        ("neighbours", {"feature": ov_src, "only_head": 2, "only_circuit": "OV", "sign": -1, "min_weight": 1.5, "max_rank": 300, "limit": 50}),
        ("neighbours", {"feature": qk_dst, "only_layer": 1, "only_circuit": "QK", "sign": 1, "limit": 4}),
        ("subgraph", {"features": ",".join([qk_dst, ov_src, loop, *pair]), "limit": 5000}),
        ("subgraph", {"features": ",".join([qk_dst, ov_src, loop, *pair]), "limit": 3}),
    ]


def _multi_cases(run):
    """The cases of a run of several layers: every head query at two layers, the cross-layer queries at all."""
    e = run.edges
    lo, hi = run.layers[1], run.layers[-1]
    pair = e[e["src"] != e["dst"]].groupby(["src", "dst"]).size().idxmax()
    mid = e[(e["circuit"] == "OV") & (e["layer"] == lo)]["dst"].value_counts().index[0]
    cases = []
    for layer in (lo, hi):
        cases += [("top_edges", {"head": 1, "layer": layer, "circuit": "OV", "limit": 40}),
                  ("like_to_like", {"head": 0, "layer": layer, "limit": 100}),
                  ("distinct_positive_qk", {"head": 2, "layer": layer, "limit": 30}),
                  ("two_step", {"head": 1, "layer": layer, "limit": 300}),
                  ("hubs", {"head": 0, "layer": layer, "circuit": "QK", "limit": 100}),
                  ("tetrads", {"head": 1, "layer": layer, "circuit": "OV", "limit": 10000}),
                  ("tetrads", {"head": 2, "layer": layer, "circuit": "QK", "limit": 10000}),
                  ("cross_layer_paths", {"layer": layer, "limit": 40})]
    return [
        *cases, ("attends_to", {"feature": mid, "limit": 100}), ("writes", {"feature": mid, "limit": 100}),
        ("recurring_features", {"min_heads": 3, "limit": 200}),
        ("connecting_heads", {"feature": pair[0], "other": pair[1], "limit": 100}),
        ("connecting_heads", {"feature": pair[1], "other": pair[0], "limit": 2}),
        ("neighbours", {"feature": mid, "limit": 100}), ("neighbours", {"feature": mid, "only_layer": lo, "limit": 100}),
        ("subgraph", {"features": ",".join([mid, pair[0], pair[1]]), "limit": 100}),
        ("cross_layer_paths", {"layer": -1, "limit": 1}), ("cross_layer_paths", {"layer": -1, "limit": 25}),
        ("cross_layer_paths", {"layer": -1, "limit": 100000}),
        ("recurring_hubs", {"top": 30, "min_layers": 2, "limit": 50}), ("recurring_hubs", {"top": 1000, "min_layers": 2, "limit": 7}),
        ("recurring_hubs", {"top": 3, "min_layers": 1, "limit": 1000}),
    ]


def test_library_covers_every_reference():
    assert set(library.library()) == set(REFS) | set(ATTRIBUTION_REFS)
    for q in library.library().values():
        assert q.description and all(p.doc for p in q.params), q.name
        # every column aliased (or a bare variable), so both stores name it alike whatever their expression names
        for store in library.STORES:
            text = q.text_for(store)
            items = return_items(text, tokenize(text))
            assert items and all(aliased or t.isidentifier() for t, aliased in items), (q.name, store)
            assert [t for t, _ in items] == [t for t, _ in return_items(q.text, tokenize(q.text))], (q.name, store)
        # a query that takes a head takes its layer
        names = {p.name for p in q.params}
        assert "head" not in names or "layer" in names, q.name


def test_store_variants(tmp_path, monkeypatch):
    """NAME.STORE.cypher is that store's text of NAME; its parameters must be NAME's."""
    head = "// Features.\n// @param limit int = 3: rows\n"
    (tmp_path / "q.cypher").write_text(head + "MATCH (f:Feature) RETURN f.id AS id LIMIT $limit\n")
    (tmp_path / "q.neo4j.cypher").write_text(head + "MATCH (f:Feature) WITH f LIMIT $limit RETURN f.id AS id\n")
    (tmp_path / "r.two.cypher").write_text(head + "RETURN 1 AS one\n")  # not a store: an ordinary name
    monkeypatch.setenv("FEATGRAPH_CYPHER", str(tmp_path))
    lib = library.library()
    assert sorted(lib) == ["q", "r.two"]
    assert "WITH f LIMIT" in lib["q"].text_for("neo4j") and "WITH f LIMIT" not in lib["q"].text_for("embedded")
    (tmp_path / "q.embedded.cypher").write_text("// Features.\n// @param limit int = 5: rows\nRETURN 1 AS id\n")
    with pytest.raises(FeatgraphError, match=r"q\.embedded\.cypher .*same @param"):
        library.library()
    (tmp_path / "q.embedded.cypher").unlink()
    (tmp_path / "lone.neo4j.cypher").write_text(head + "RETURN 1 AS one\n")
    with pytest.raises(FeatgraphError, match=r"lone\.neo4j\.cypher needs lone\.cypher"):
        library.library()


@pytest.fixture(scope="module")
def loaded(demo_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("g") / "run"
    shutil.copytree(demo_run, d)
    fg_api.open_run(d).load()
    return d


def test_embedded_matches_pandas(loaded):
    run = fg_api.open_run(loaded)
    e = edges_of(run)
    assert (e["src"] == e["dst"]).any() and len(ref_tetrads(e, 0, "OV", 10)) > 0  # the data exercises both
    lib = library.library()
    for name, params in _cases(run):
        got = run.query(name, **{k: str(v) for k, v in params.items()})  # strings, as the CLI passes them
        _assert_same(got, REFS[name](e, **params), f"embedded {name} {params}")
        bound = lib[name].bind({k: str(v) for k, v in params.items()})
        assert bound == {p.name: library.cast(p.default, p.type, p.name) for p in lib[name].params if p.default} | params


# ---------------------------------------------------------------- a run of several layers

def multilayer_edges(layers=(1, 2, 3, 4), heads=3, n=24, per=150, seed=0) -> pd.DataFrame:
    """Random edges of every (layer, head, circuit), sharing features across layers as an atlas does: layer L reads
    the residual SAE of L - 1 (QK keys and queries, OV values) and writes that of L (OV outputs), so an OV output
    of layer L is the same node as a source of layer L + 1. Weights on a 0.1 grid, so ties exercise the orderings."""
    rng = np.random.default_rng(seed)
    frames = []
    for layer in layers:
        for h in range(heads):
            for c in ("QK", "OV"):
                key = rng.choice(n * n, size=per, replace=False)
                s, d = key // n, key % n
                if c == "QK":  # like-to-like edges, as real heads have
                    s[:6] = d[:6]
                    s, d = zip(*dict.fromkeys(zip(s, d)))
                w = np.round(rng.uniform(-2, 2, len(s)), 1)
                w[w == 0] = 0.1
                out = layer - 1 if c == "QK" else layer
                frames.append(pd.DataFrame({
                    "layer": layer, "head": h, "kv_head": h // 2, "circuit": c,
                    "src": [f"gemma-2-2b/{layer - 1}-gemmascope-res-16k/{i}" for i in s],
                    "dst": [f"gemma-2-2b/{out}-gemmascope-res-16k/{i}" for i in d], "weight": w}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def multilayer(tmp_path_factory):
    d = tmp_path_factory.mktemp("ml")
    multilayer_edges().to_parquet(d / "edges.parquet")
    run = fg_api.import_edges(d / "edges.parquet", d / "run")
    run.load()
    return d / "run"


def test_multilayer_embedded_matches_pandas(multilayer):
    run = fg_api.open_run(multilayer)
    e = edges_of(run)
    # the data exercises what the queries look for: shared nodes across layers, paths, tetrads, recurring hubs
    assert len(ref_cross_layer_paths(e, -1, 10**6)) > 1000 and len(ref_tetrads(e, 1, "OV", 10**6, layer=2)) > 0
    assert len(ref_recurring_hubs(e, 30, 2, 1000)) > 10 and (e["src"] == e["dst"]).any()
    for name, params in _multi_cases(run):
        _assert_same(run.query(name, **params), REFS[name](e, **params), f"embedded {name} {params}")


@pytest.mark.neo4j
def test_multilayer_neo4j_matches_pandas(multilayer, neo4j_env, tmp_path):
    run = fg_api.open_run(multilayer)
    # a second run in the store sharing features (layers 2-3 of other edges): every answer stays this run's
    other = multilayer_edges(layers=(2, 3), seed=1)
    other.to_parquet(tmp_path / "other.parquet")
    fg_api.import_edges(tmp_path / "other.parquet", tmp_path / "other").load(neo4j=True)
    assert fg("load", multilayer, "--neo4j").exit_code == 0
    e = edges_of(run)
    for name, params in _multi_cases(run):
        _assert_same(run.query(name, neo4j=True, **params), REFS[name](e, **params), f"neo4j {name} {params}")
    # over all runs, each run's heads count
    both = pd.concat([e.assign(run="a"), edges_of(fg_api.open_run(tmp_path / "other")).assign(run="b")], ignore_index=True)
    _assert_same(run.query("recurring_features", neo4j=True, min_heads=2, limit=500, run="*"),
                 ref_recurring_features(both, 2, 500), "neo4j recurring_features run=*")


def test_layer_is_checked(multilayer, loaded):
    run = fg_api.open_run(multilayer)
    with pytest.raises(MissingValue, match=r"layer is required \(this run holds layers 1-4"):
        run.query("top_edges", head=0)
    r = fg("query", multilayer, "hubs", "--param", "head=0")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--param layer" in r.stderr and "1-4" in r.stderr
    r = fg("query", multilayer, "tetrads", "--param", "head=0", "--param", "layer=7")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "layers present are 1-4" in r.stderr
    with pytest.raises(BadValue, match="layers present are 1-4"):
        run.query("cross_layer_paths", layer=0)
    with pytest.raises(BadValue, match="heads present of layer 2 are 0, 1, 2"):
        run.query("two_step", head=5, layer=2)
    with pytest.raises(BadValue, match="top must be 1 to 1000"):
        run.query("recurring_hubs", top=1001)
    with pytest.raises(BadValue, match="limit must be 0 or more, got -1"):
        run.query("top_edges", head=0, layer=2, limit=-1)
    with pytest.raises(BadValue, match="other must be a feature id"):
        run.query("connecting_heads", feature=run.features["id"].iloc[0], other="nope")
    # a run of one layer needs none (-1 is its layer), and takes its own
    one = fg_api.open_run(loaded)
    (layer,) = one.layers
    assert one.query("top_edges", head=0, limit=5).equals(one.query("top_edges", head=0, layer=layer, limit=5))
    with pytest.raises(BadValue, match=f"layers present are {layer}"):
        one.query("top_edges", head=0, layer=layer + 1)


def test_embedded_reload_replaces(loaded):
    run = fg_api.open_run(loaded)
    before = run.query("MATCH ()-[r]->() RETURN count(r) AS n")["n"][0]
    r = fg("load", loaded)
    assert r.exit_code == 0, r.output
    assert run.query("MATCH ()-[r]->() RETURN count(r) AS n")["n"][0] == before == len(run.edges)
    assert run.query("MATCH (f:Feature) RETURN count(f) AS n")["n"][0] == len(run.features)


@pytest.mark.neo4j
def test_neo4j_matches_pandas_and_loads_idempotently(loaded, neo4j_env, tmp_path):
    run = fg_api.open_run(loaded)
    for _ in range(2):  # re-loading never duplicates
        r = fg("load", loaded, "--neo4j")
        assert r.exit_code == 0, r.output
    n_edges = run.query("MATCH ()-[r]->() RETURN count(r) AS n", neo4j=True)["n"][0]
    n_nodes = run.query("MATCH (f:Feature) RETURN count(f) AS n", neo4j=True)["n"][0]
    assert (n_edges, n_nodes) == (len(run.edges), len(run.features))
    # a second run sharing every feature: nodes shared, edges recorded per run
    assert fg("load", loaded, "--neo4j", "--run-name", "other").exit_code == 0
    assert run.query("MATCH (f:Feature) RETURN count(f) AS n", neo4j=True)["n"][0] == len(run.features)
    runs = run.query("MATCH ()-[r]->() RETURN r.run AS run, count(*) AS n ORDER BY run", neo4j=True)
    assert sorted(map(tuple, runs.to_numpy().tolist())) == sorted([("other", len(run.edges)), (run.run_id, len(run.edges))])
    # with two runs in the store, each library query still answers for the run it is asked about
    e = edges_of(run)
    for name, params in _cases(run):
        got = run.query(name, neo4j=True, **params)
        _assert_same(got, REFS[name](e, **params), f"neo4j {name} {params}")
    both = run.query("top_edges", neo4j=True, head=0, circuit="QK", limit=100000, run="*")
    assert len(both) == 2 * len(ref_top_edges(e, 0, "QK", 100000))
    # the constraint is there
    cons = run.query("SHOW CONSTRAINTS YIELD name RETURN name", neo4j=True)
    assert "feature_id" in cons["name"].tolist()


@pytest.mark.neo4j
def test_columns_are_named_alike_on_both_stores(loaded, neo4j_env):
    run = fg_api.open_run(loaded)
    assert fg("load", loaded, "--neo4j").exit_code == 0
    for name, params in _cases(run):
        assert list(run.query(name, **params).columns) == list(run.query(name, neo4j=True, **params).columns), name
    for q in ("MATCH (f:Feature) RETURN f.layer, count(*), min(f.id), count( * ) AS n ORDER BY f.layer",
              "WITH 1 AS `a b` RETURN DISTINCT `a b`, 1 +  2, 'x, y', $x, [1, 2] AS l"):
        emb, neo = run.query(q, x=5), run.query(q, neo4j=True, x=5)
        _assert_same(emb, neo, q)
    # a parameter used but not given is an error on both
    for neo4j in (False, True):
        with pytest.raises(FeatgraphError, match=r"\bh\b"):
            run.query("MATCH (f:Feature) WHERE f.layer = $h RETURN f.id AS id", neo4j=neo4j)


@pytest.mark.neo4j
def test_neo4j_read_mode_and_bad_credentials(loaded, neo4j_env, monkeypatch):
    r = fg("query", loaded, "CREATE (n:Scratch) RETURN n", "--neo4j")
    assert r.exit_code == 1 and "--write" in r.stderr
    assert fg("query", loaded, "CREATE (n:Scratch) RETURN 1 AS one", "--neo4j", "--write").exit_code == 0
    monkeypatch.setenv("NEO4J_PASSWORD", "definitely-wrong-password")
    r = fg("query", loaded, "RETURN 1", "--neo4j")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "credentials" in r.stderr
    assert "definitely-wrong-password" not in r.output
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:9")
    r = fg("load", loaded, "--neo4j")
    assert r.exit_code == 1 and "cannot reach Neo4j" in r.stderr and r.stderr.count("\n") == 1


def test_networkx_and_graphml(loaded, tmp_path):
    run = fg_api.open_run(loaded)
    g = fg_api.to_networkx(loaded)
    assert isinstance(g, nx.MultiDiGraph)
    assert g.number_of_edges() == len(run.edges) and g.number_of_nodes() == len(run.features)
    row = run.edges.iloc[0]
    data = g.get_edge_data(row["src"], row["dst"])[f"{row['circuit']}/L{row['layer']}/h{row['head']}/r{row['rank']}"]
    assert data["weight"] == pytest.approx(float(row["weight"])) and data["rank"] == row["rank"]
    loops = sum(1 for u, v in g.edges() if u == v)
    assert loops == int((run.edges["src"] == run.edges["dst"]).sum())  # like-to-like edges survive
    out = tmp_path / "g.graphml"
    assert fg("export", loaded, "--graphml", out).exit_code == 0
    back = nx.read_graphml(out, force_multigraph=True)
    assert back.number_of_edges() == len(run.edges)


def test_export_neo4j_csv(loaded, tmp_path):
    out = tmp_path / "imp"
    r = fg("export-neo4j", loaded, "--out", out)
    assert r.exit_code == 0 and "neo4j-admin database import full" in r.stdout
    nodes = pd.read_csv(out / "features.csv")
    assert list(nodes.columns)[:4] == ["id:ID(Feature)", "sae", "layer:long", "feature_index:long"]
    qk = pd.read_csv(out / "qk.csv")
    assert {":START_ID(Feature)", ":END_ID(Feature)", ":TYPE", "weight:double", "head:long"} <= set(qk.columns)
    assert len(qk) + len(pd.read_csv(out / "ov.csv")) == len(fg_api.open_run(loaded).edges)
    # what an online load writes besides: the Degree rows (the command imports them) and the schema to create after
    assert "--nodes=Degree=" in r.stdout and len(pd.read_csv(out / "degree.csv")) > len(nodes)
    schema = (out / "schema.cypher").read_text()
    assert "REQUIRE f.id IS UNIQUE;" in schema and "ON (r.circuit, r.layer, r.head);" in schema and "DROP" not in schema


def test_query_errors(loaded):
    r = fg("query", loaded, "top_edges")
    assert r.exit_code == 2 and "--param head" in r.stderr
    r = fg("query", loaded, "top_edges", "--param", "head=zero")
    assert r.exit_code == 2 and "--param head" in r.stderr and "valid int" in r.stderr
    r = fg("query", loaded, "no_such_query")
    assert r.exit_code == 2
    r = fg("query", loaded, "MATCH (n RETURN n")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    r = fg("query", "--list")
    assert r.exit_code == 0 and "tetrads" in r.stdout


def test_cypher_names_the_feature_index_as_the_schema_does():
    """Every Cypher file (the library and the stores' own) reads and writes the feature index under
    core/schema.py's FEATURE_INDEX, never as `index` (a parse error in LadybugDB: docs/graph.md); the Neo4j
    feature upsert sets every node property the embedded store and NetworkX get (graph/rows.py NODE_PROPS)."""
    import re
    from pathlib import Path

    from featgraph.core.schema import FEATURE_INDEX
    from featgraph.graph.rows import NODE_PROPS

    root = Path(__file__).resolve().parents[1] / "cypher"
    files = sorted(root.rglob("*.cypher"))
    assert len(files) > 30
    props = set()
    for f in files:
        text = "\n".join(line.split("//", 1)[0] for line in f.read_text().splitlines())
        props |= set(re.findall(r"\b[a-z]\w*\.`?([A-Za-z_]\w*)", text))
        assert not re.search(r"\.`?index\b", text), f
    assert FEATURE_INDEX in props
    nodes = (root / "store" / "neo4j_nodes.cypher").read_text()
    for p in NODE_PROPS:
        assert (f"{{{p}: ${p}[i]}}" if p == "id" else f"f.{p} = ") in nodes and f"${p}[i]" in nodes, p


def test_union_parts_come_in_the_declared_order(tmp_path, monkeypatch):
    """Cypher gives a UNION's rows no order (LadybugDB returned `neighbours`' in-edges first in one CI run): a
    query's @parts line puts the parts back in order, each keeping the order its own ORDER BY gave."""
    assert library.library()["neighbours"].parts == ("side", ("out", "in"))
    head = "// Both parts.\n// @parts side: out, in\n// @param limit int = 3: rows\n"
    (tmp_path / "q.cypher").write_text(head + "RETURN 'in' AS side\n")
    (tmp_path / "q.neo4j.cypher").write_text("// Both parts.\n// @param limit int = 3: rows\nRETURN 1 AS one\n")
    monkeypatch.setenv("FEATGRAPH_CYPHER", str(tmp_path))
    with pytest.raises(FeatgraphError, match=r"q\.neo4j\.cypher .*same @param and @parts"):
        library.library()
    (tmp_path / "q.neo4j.cypher").unlink()
    q = library.library()["q"]
    assert q.parts == ("side", ("out", "in")) and "@parts" not in q.description
    swapped = pd.DataFrame({"side": ["in", "in", "out", "out", "out"], "w": [9, 1, 5, 4, 7]})
    assert q.in_part_order(swapped).to_dict("list") == {"side": ["out"] * 3 + ["in"] * 2, "w": [5, 4, 7, 9, 1]}
    assert q.in_part_order(swapped[["w"]]).equals(swapped[["w"]])  # no such column: unchanged


def test_run_query_returns_neighbours_out_edges_first(loaded, monkeypatch):
    """`Run.query` applies @parts whatever order the store returns: here a store that answers in-edges first."""
    from featgraph.graph.embedded import EmbeddedStore

    run = fg_api.open_run(loaded)
    e = edges_of(run)
    feature = e["dst"].value_counts().index[0]
    want = run.query("neighbours", feature=feature, limit=5)
    assert want["side"].tolist() == ["out"] * (want["side"] == "out").sum() + ["in"] * (want["side"] == "in").sum()
    plain = EmbeddedStore.query

    def in_first(self, cypher, params=None):  # the two parts swapped, each in its own order, as the CI run saw
        rows = plain(self, cypher, params)
        return pd.concat([rows[rows["side"] == "in"], rows[rows["side"] == "out"]], ignore_index=True)

    monkeypatch.setattr(EmbeddedStore, "query", in_first)
    assert (want["side"] == "in").any() and (want["side"] == "out").any()
    pd.testing.assert_frame_equal(run.query("neighbours", feature=feature, limit=5), want)
