"""Graph stores: every cypher/ query on the embedded store and on a real Neo4j equals a pandas reference."""

from __future__ import annotations

import itertools
import shutil

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import featgraph as fg_api
from featgraph.errors import FeatgraphError
from featgraph.graph import library
from featgraph.graph.tokens import return_items, tokenize

from helpers import fg

# ---------------------------------------------------------------- pandas references

def _edges(run):
    e = run.edges.copy()
    d = run.features.set_index("id")["description"]
    e["src_description"] = e["src"].map(d)
    e["dst_description"] = e["dst"].map(d)
    e["weight"] = e["weight"].astype("float64")
    e["absw"] = e["weight"].abs()
    return e


def _described(df, e, *cols):
    """df with `<col>_description` right after each feature-id column, looked up in the edge table's labels."""
    d = pd.concat([pd.Series(e["src_description"].to_numpy(), index=e["src"]), pd.Series(e["dst_description"].to_numpy(), index=e["dst"])])
    d = d[~d.index.duplicated()]
    order = []
    for c in df.columns:
        order.append(c)
        if c in cols:
            df = df.assign(**{f"{c}_description": df[c].map(d)})
            order.append(f"{c}_description")
    return df[order]


def ref_top_edges(e, head, circuit, limit):
    s = e[(e["head"] == head) & (e["circuit"] == circuit)].sort_values(["absw", "src", "dst"], ascending=[False, True, True])
    return s[["rank", "weight", "src", "src_description", "dst", "dst_description"]].head(limit)


def ref_like_to_like(e, head, limit):
    s = e[(e["head"] == head) & (e["circuit"] == "QK") & (e["src"] == e["dst"])]
    s = s.sort_values(["absw", "src"], ascending=[False, True])
    return s.rename(columns={"src": "feature", "src_description": "description"})[["rank", "weight", "feature", "description"]].head(limit)


def ref_distinct_positive_qk(e, head, limit):
    s = e[(e["head"] == head) & (e["circuit"] == "QK") & (e["src"] != e["dst"]) & (e["weight"] > 0)]
    s = s.sort_values(["weight", "src", "dst"], ascending=[False, True, True])
    s = s.rename(columns={"src": "key", "src_description": "key_description", "dst": "query", "dst_description": "query_description"})
    return s[["rank", "weight", "key", "key_description", "query", "query_description"]].head(limit)


def ref_attends_to(e, feature, limit):
    s = e[(e["circuit"] == "QK") & (e["dst"] == feature)].sort_values(["absw", "head", "src"], ascending=[False, True, True])
    return s.rename(columns={"src": "key", "src_description": "key_description"})[["head", "weight", "key", "key_description"]].head(limit)


def ref_writes(e, feature, limit):
    s = e[(e["circuit"] == "OV") & (e["src"] == feature)].sort_values(["absw", "head", "dst"], ascending=[False, True, True])
    return s.rename(columns={"dst": "output", "dst_description": "output_description"})[["head", "weight", "output", "output_description"]].head(limit)


def ref_two_step(e, head, limit):
    qk = e[(e["head"] == head) & (e["circuit"] == "QK")][["src", "dst", "weight"]]
    ov = e[(e["head"] == head) & (e["circuit"] == "OV")][["src", "dst", "weight"]]
    m = qk.merge(ov, on="src", suffixes=("_qk", "_ov"))
    out = pd.DataFrame({"query": m["dst_qk"], "key_value": m["src"], "output": m["dst_ov"],
                        "qk_weight": m["weight_qk"], "ov_weight": m["weight_ov"], "product": m["weight_qk"] * m["weight_ov"]})
    out["a"] = out["product"].abs()
    out = out.sort_values(["a", "query", "key_value", "output"], ascending=[False, True, True, True]).drop(columns="a").head(limit)
    return _described(out, e, "query", "key_value", "output")


def _ends(e):
    return pd.concat([e[["src", "head"]].rename(columns={"src": "feature"}), e[["dst", "head"]].rename(columns={"dst": "feature"})])


def ref_recurring_features(e, min_heads, limit):
    g = _ends(e).groupby("feature")["head"].agg(heads="nunique", edge_ends="size").reset_index()
    g = g[g["heads"] >= min_heads].sort_values(["heads", "edge_ends", "feature"], ascending=[False, False, True])
    return _described(g[["feature", "heads", "edge_ends"]].head(limit), e, "feature")


def ref_hubs(e, head, circuit, limit):
    g = _ends(e[(e["head"] == head) & (e["circuit"] == circuit)]).groupby("feature").size().rename("degree").reset_index()
    return _described(g.sort_values(["degree", "feature"], ascending=[False, True]).head(limit), e, "feature")


def ref_tetrads(e, head, circuit, limit):
    s = e[(e["head"] == head) & (e["circuit"] == circuit)]
    w = {(a, b): x for a, b, x in zip(s["src"], s["dst"], s["weight"])}
    outs = s.groupby("src")["dst"].apply(set).to_dict()
    rows = []
    for a, b in itertools.combinations(sorted(outs), 2):
        for x, y in itertools.combinations(sorted(outs[a] & outs[b]), 2):
            ax, ay, bx, by = w[a, x], w[a, y], w[b, x], w[b, y]
            if ax * by > 0 and ax * ay < 0 and ax * bx < 0:
                rows.append((a, b, x, y, ax, ay, bx, by, min(map(abs, (ax, ay, bx, by)))))
    df = pd.DataFrame(rows, columns=["src_a", "src_b", "dst_x", "dst_y", "w_ax", "w_ay", "w_bx", "w_by", "strength"])
    df = df.sort_values(["strength", "src_a", "src_b", "dst_x", "dst_y"], ascending=[False] + [True] * 4).head(limit)
    return _described(df, e, "src_a", "src_b", "dst_x", "dst_y")


REFS = {
    "top_edges": ref_top_edges, "like_to_like": ref_like_to_like, "distinct_positive_qk": ref_distinct_positive_qk,
    "attends_to": ref_attends_to, "writes": ref_writes, "two_step": ref_two_step,
    "recurring_features": ref_recurring_features, "hubs": ref_hubs, "tetrads": ref_tetrads,
}


def _cases(run):
    e = run.edges
    qk_dst = e[e["circuit"] == "QK"]["dst"].value_counts().index[0]
    ov_src = e[e["circuit"] == "OV"]["src"].value_counts().index[0]
    return [
        ("top_edges", {"head": 0, "circuit": "QK", "limit": 25}), ("top_edges", {"head": 3, "circuit": "OV", "limit": 1000}),
        ("like_to_like", {"head": 0, "limit": 1000}), ("like_to_like", {"head": 2, "limit": 5}),
        ("distinct_positive_qk", {"head": 1, "limit": 30}),
        ("attends_to", {"feature": qk_dst, "limit": 1000}), ("writes", {"feature": ov_src, "limit": 15}),
        ("two_step", {"head": 0, "limit": 200}), ("recurring_features", {"min_heads": 2, "limit": 1000}),
        ("hubs", {"head": 1, "circuit": "OV", "limit": 50}), ("hubs", {"head": 2, "circuit": "QK", "limit": 1000}),
        ("tetrads", {"head": 0, "circuit": "OV", "limit": 10000}), ("tetrads", {"head": 3, "circuit": "QK", "limit": 10000}),
    ]


def _norm(df):
    df = df.reset_index(drop=True).copy()
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            df[c] = df[c].astype("float64")
        else:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def _assert_same(got, want, what):
    got, want = _norm(got), _norm(want)
    assert list(got.columns) == list(want.columns), what
    assert len(got) == len(want), f"{what}: {len(got)} rows, reference {len(want)}"
    for c in want.columns:
        if want[c].dtype == "float64":
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-12, atol=0, err_msg=f"{what}: {c}")
        else:
            assert got[c].tolist() == want[c].tolist(), f"{what}: column {c}"


def test_library_covers_every_reference():
    assert set(library.library()) == set(REFS)
    for q in library.library().values():
        assert q.description and all(p.doc for p in q.params), q.name
        # every column aliased (or a bare variable), so both stores name it alike whatever their expression names
        items = return_items(q.text, tokenize(q.text))
        assert items and all(aliased or text.isidentifier() for text, aliased in items), q.name


@pytest.fixture(scope="module")
def loaded(demo_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("g") / "run"
    shutil.copytree(demo_run, d)
    fg_api.open_run(d).load()
    return d


def test_embedded_matches_pandas(loaded):
    run = fg_api.open_run(loaded)
    e = _edges(run)
    assert (e["src"] == e["dst"]).any() and len(ref_tetrads(e, 0, "OV", 10)) > 0  # the data exercises both
    lib = library.library()
    for name, params in _cases(run):
        got = run.query(name, **{k: str(v) for k, v in params.items()})  # strings, as the CLI passes them
        _assert_same(got, REFS[name](e, **params), f"embedded {name} {params}")
        assert lib[name].bind({k: str(v) for k, v in params.items()}) == params | {"run": "*"}


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
    e = _edges(run)
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


def test_query_errors(loaded):
    r = fg("query", loaded, "top_edges")
    assert r.exit_code == 2 and "--param head" in r.stderr
    r = fg("query", loaded, "top_edges", "--param", "head=zero")
    assert r.exit_code == 2 and "--param head" in r.stderr and "valid int" in r.stderr
    r = fg("query", loaded, "no_such_query")
    assert r.exit_code == 2
    r = fg("query", loaded, "MATCH (n RETURN n")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    r = fg("query", "--list")
    assert r.exit_code == 0 and "tetrads" in r.stdout
