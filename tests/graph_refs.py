"""Pandas references for the cypher/ library (tests/test_graph.py and bench/load.py check both stores
against them): each computes a query's answer from the run's edge table alone, with the query's columns,
order and ties."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd


def edges_of(run):
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


def _head(e, head, layer, circuit=None):
    """The edges of one head (of `layer`; -1: the run's only layer) and, if given, one circuit."""
    if layer == -1:
        (layer,) = e["layer"].unique()
    keep = (e["layer"] == layer) & (e["head"] == head)
    return e[keep & (e["circuit"] == circuit)] if circuit else e[keep]


def ref_top_edges(e, head, circuit, limit, layer=-1):
    s = _head(e, head, layer, circuit).sort_values(["absw", "src", "dst"], ascending=[False, True, True])
    return s[["rank", "weight", "src", "src_description", "dst", "dst_description"]].head(limit)


def ref_like_to_like(e, head, limit, layer=-1):
    s = _head(e, head, layer, "QK")
    s = s[s["src"] == s["dst"]].sort_values(["absw", "src"], ascending=[False, True])
    return s.rename(columns={"src": "feature", "src_description": "description"})[["rank", "weight", "feature", "description"]].head(limit)


def ref_distinct_positive_qk(e, head, limit, layer=-1):
    s = _head(e, head, layer, "QK")
    s = s[(s["src"] != s["dst"]) & (s["weight"] > 0)].sort_values(["weight", "src", "dst"], ascending=[False, True, True])
    s = s.rename(columns={"src": "key", "src_description": "key_description", "dst": "query", "dst_description": "query_description"})
    return s[["rank", "weight", "key", "key_description", "query", "query_description"]].head(limit)


def ref_attends_to(e, feature, limit):
    s = e[(e["circuit"] == "QK") & (e["dst"] == feature)].sort_values(["absw", "layer", "head", "src"], ascending=[False, True, True, True])
    s = s.rename(columns={"src": "key", "src_description": "key_description"})
    return s[["layer", "head", "weight", "key", "key_description"]].head(limit)


def ref_writes(e, feature, limit):
    s = e[(e["circuit"] == "OV") & (e["src"] == feature)].sort_values(["absw", "layer", "head", "dst"], ascending=[False, True, True, True])
    s = s.rename(columns={"dst": "output", "dst_description": "output_description"})
    return s[["layer", "head", "weight", "output", "output_description"]].head(limit)


def ref_two_step(e, head, limit, layer=-1):
    qk = _head(e, head, layer, "QK")[["src", "dst", "weight"]]
    ov = _head(e, head, layer, "OV")[["src", "dst", "weight"]]
    m = qk.merge(ov, on="src", suffixes=("_qk", "_ov"))
    out = pd.DataFrame({"query": m["dst_qk"], "key_value": m["src"], "output": m["dst_ov"],
                        "qk_weight": m["weight_qk"], "ov_weight": m["weight_ov"], "product": m["weight_qk"] * m["weight_ov"]})
    out["a"] = out["product"].abs()
    out = out.sort_values(["a", "query", "key_value", "output"], ascending=[False, True, True, True]).drop(columns="a").head(limit)
    return _described(out, e, "query", "key_value", "output")


def _ends(e):
    cols = ["layer", "head"]
    return pd.concat([e[["src", *cols]].rename(columns={"src": "feature"}), e[["dst", *cols]].rename(columns={"dst": "feature"})])


def ref_recurring_features(e, min_heads, limit):
    """Heads are (layer, head) pairs; over several runs (a `run` column) each run's heads count."""
    ends = _ends(e)
    heads = ends.drop_duplicates().groupby("feature").size().rename("heads")
    if "run" in e.columns:
        heads = pd.concat([_ends(g).drop_duplicates() for _, g in e.groupby("run")]).groupby("feature").size().rename("heads")
    g = ends.groupby("feature").agg(edge_ends=("head", "size")).join(heads).reset_index()
    g = g[g["heads"] >= min_heads].sort_values(["heads", "edge_ends", "feature"], ascending=[False, False, True])
    return _described(g[["feature", "heads", "edge_ends"]].head(limit), e, "feature")


def ref_hubs(e, head, circuit, limit, layer=-1):
    g = _ends(_head(e, head, layer, circuit)).groupby("feature").size().rename("degree").reset_index()
    return _described(g.sort_values(["degree", "feature"], ascending=[False, True]).head(limit), e, "feature")


def ref_tetrads(e, head, circuit, limit, layer=-1):
    s = _head(e, head, layer, circuit)
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


def ref_connecting_heads(e, feature, other, limit):
    s = e[((e["src"] == feature) & (e["dst"] == other)) | ((e["src"] == other) & (e["dst"] == feature))]
    s = s.sort_values(["absw", "layer", "head", "circuit", "src", "dst"], ascending=[False] + [True] * 5)
    return s[["layer", "head", "circuit", "weight", "rank", "src", "src_description", "dst", "dst_description"]].head(limit)


def ref_cross_layer_paths(e, layer, limit):
    first = e[(e["circuit"] == "OV") & ((e["layer"] == layer) if layer != -1 else True)]
    nxt = e.assign(prev=e["layer"] - 1)[["src", "prev", "circuit", "head", "dst", "weight"]]
    m = first.merge(nxt, left_on=["dst", "layer"], right_on=["src", "prev"], suffixes=("", "_2"))
    out = pd.DataFrame({"layer": m["layer"], "head": m["head"], "src": m["src"], "mid": m["dst"], "circuit": m["circuit_2"],
                        "next_head": m["head_2"], "dst": m["dst_2"], "w1": m["weight"], "w2": m["weight_2"],
                        "product": m["weight"] * m["weight_2"]})
    out["a"] = out["product"].abs()
    out = out.sort_values(["a", "src", "mid", "dst", "layer", "head", "circuit", "next_head"],
                          ascending=[False] + [True] * 7).drop(columns="a").head(limit)
    return _described(out, e, "src", "mid", "dst")


def ref_recurring_hubs(e, top, min_layers, limit):
    d = _ends(e).groupby(["layer", "feature"]).size().rename("degree").reset_index()
    d = d.sort_values(["layer", "degree", "feature"], ascending=[True, False, True])
    d["rank"] = d.groupby("layer").cumcount() + 1
    d = d[d["rank"] <= top]
    g = d.groupby("feature").agg(hub_layers=("layer", "size"), hub_degree=("degree", "sum")).reset_index()
    g = g[g["hub_layers"] >= min_layers].sort_values(["hub_layers", "hub_degree", "feature"], ascending=[False, False, True])
    out = g.head(limit).merge(d, on="feature").sort_values(["hub_layers", "hub_degree", "feature", "layer"],
                                                            ascending=[False, False, True, True])
    return _described(out[["feature", "hub_layers", "hub_degree", "layer", "degree", "rank"]], e, "feature")


def _with_z(e):
    """A run imported without z: the stores hold null."""
    return e if "z" in e.columns else e.assign(z=np.nan)


def ref_neighbours(e, feature, limit, only_layer=-1, only_head=-1, only_circuit="*", sign=0, min_weight=0.0, max_rank=0):
    s = _with_z(e)
    if only_layer != -1:
        s = s[s["layer"] == only_layer]
    if only_head != -1:
        s = s[s["head"] == only_head]
    if only_circuit != "*":
        s = s[s["circuit"] == only_circuit]
    if sign:
        s = s[s["weight"] * sign > 0]
    s = s[s["absw"] >= min_weight]
    if max_rank:
        s = s[s["rank"] <= max_rank]
    out = s[s["src"] == feature].sort_values(["absw", "layer", "head", "circuit", "dst"], ascending=[False] + [True] * 4).head(limit)
    inn = s[s["dst"] == feature].sort_values(["absw", "layer", "head", "circuit", "src"], ascending=[False] + [True] * 4).head(limit)
    both = pd.concat([out.assign(side="out"), inn.assign(side="in")])
    return both[["side", "layer", "head", "circuit", "weight", "rank", "z", "src", "src_description", "dst", "dst_description"]]


def ref_subgraph(e, features, limit):
    ids = features.split(",")
    s = _with_z(e)
    s = s[s["src"].isin(ids) & s["dst"].isin(ids)]
    s = s.sort_values(["absw", "layer", "head", "circuit", "src", "dst"], ascending=[False] + [True] * 5)
    return s[["layer", "head", "circuit", "weight", "rank", "z", "src", "src_description", "dst", "dst_description"]].head(limit)


# ---------------------------------------------------------------- attribution graphs (tests/test_attribution.py)

def ref_link_heads(nodes, links, edges, limit=50):
    """link_heads over an attribution graph's nodes.parquet and links.parquet and the run's edge table."""
    n = nodes.set_index("node_id")
    f = links.join(n.add_prefix("a_"), on="source").join(n.add_prefix("b_"), on="target")
    f = f[(f["a_kind"] == "feature") & (f["b_kind"] == "feature") & (f["a_ctx_idx"] < f["b_ctx_idx"])]
    ov = edges[edges["circuit"] == "OV"]
    m = f.merge(ov, left_on=["a_feature_id", "b_feature_id"], right_on=["src", "dst"])
    m = m[(m["layer"] > m["a_layer"]) & (m["layer"] <= m["b_layer"])]
    out = pd.DataFrame({"source_node": m["source"], "target_node": m["target"], "link_weight": m["weight_x"],
                        "layer": m["layer"], "head": m["head"], "ov_weight": m["weight_y"]})
    out = out.assign(_a=out["ov_weight"].abs()).sort_values(["_a", "source_node", "target_node", "layer", "head"],
                                                              ascending=[False, True, True, True, True])
    return out.drop(columns="_a").head(limit).reset_index(drop=True)


def ref_attended_keys(nodes, edges, node, limit=50):
    """attended_keys for feature node `node` of a graph (its nodes.parquet) and the run's edge table."""
    q = nodes[nodes["node_id"] == node].iloc[0]
    keys = nodes[(nodes["kind"] == "feature") & (nodes["ctx_idx"] < q["ctx_idx"])]
    qk = edges[(edges["circuit"] == "QK") & (edges["dst"] == q["feature_id"])]
    m = keys.merge(qk, left_on="feature_id", right_on="src", suffixes=("_k", ""))
    m = m[(m["layer"] > q["layer"]) & (m["layer"] > m["layer_k"])]
    out = pd.DataFrame({"layer": m["layer"], "head": m["head"], "key_node": m["node_id"], "key_position": m["ctx_idx"],
                        "qk_weight": m["weight"]})
    out = out.assign(_a=out["qk_weight"].abs()).sort_values(["layer", "head", "_a", "key_node"], ascending=[True, True, False, True])
    return out.drop(columns="_a").head(limit).reset_index(drop=True)


REFS = {
    "top_edges": ref_top_edges, "like_to_like": ref_like_to_like, "distinct_positive_qk": ref_distinct_positive_qk,
    "attends_to": ref_attends_to, "writes": ref_writes, "two_step": ref_two_step,
    "recurring_features": ref_recurring_features, "hubs": ref_hubs, "tetrads": ref_tetrads,
    "connecting_heads": ref_connecting_heads, "cross_layer_paths": ref_cross_layer_paths, "recurring_hubs": ref_recurring_hubs,
    "neighbours": ref_neighbours, "subgraph": ref_subgraph,
}
# The attribution-graph queries: references over a graph's own tables, checked in tests/test_attribution.py.
ATTRIBUTION_REFS = {"attribution_graphs": None, "link_heads": ref_link_heads, "attended_keys": ref_attended_keys}


def normalised(df):
    df = df.reset_index(drop=True).copy()
    for c in df.columns:
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            df[c] = df[c].astype("float64")
        else:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def assert_same(got, want, what):
    got, want = normalised(got), normalised(want)
    assert list(got.columns) == list(want.columns), what
    assert len(got) == len(want), f"{what}: {len(got)} rows, reference {len(want)}"
    if not len(want):
        return  # an empty answer has no values (nor the dtypes they would give its columns)
    for c in want.columns:
        if want[c].isna().all() and got[c].isna().all():
            continue  # all null (z of a run imported without it): None from Neo4j, NaN from LadybugDB
        if want[c].dtype == "float64":
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-12, atol=0, err_msg=f"{what}: {c}")
        else:
            assert got[c].tolist() == want[c].tolist(), f"{what}: column {c}"
