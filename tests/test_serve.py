"""`featgraph serve`: the explorer's server on a real embedded store, driven in a real headless Chromium (Playwright,
Debian's chromium) with every request that is not to the local server blocked and asserted absent; its HTTP
guard (Host, Origin, CORS, methods), its answers against pandas references, and the CLI command."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import warnings

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from graph_refs import edges_of, ref_cross_layer_paths, ref_tetrads
from test_graph import multilayer_edges

import featgraph as fg
from featgraph.analyse.search import rank_features
from featgraph.errors import FeatgraphWarning
from featgraph.server import explorer as explorer_mod
from featgraph.server.server import start

from helpers import REPO, browser

HOSTILE = ['<img src=x onerror="window.__pwned=1">', "</script><script>window.__pwned=2</script>",
           '"><svg onload="window.__pwned=3">', "{{7*7}} ${alert(1)} javascript:alert(1)", '=HYPERLINK("http://evil.example","x")']


@pytest.fixture(scope="module")
def demo_copy(demo_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve") / "run"
    shutil.copytree(demo_run, d)
    if not (d / "graph.lbdb").exists():
        fg.open_run(d).load()
    return d


@pytest.fixture(scope="module")
def server(demo_copy):
    srv = start(fg.open_run(demo_copy), port=0).start_thread()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def multilayer_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ml")
    multilayer_edges().to_parquet(d / "edges.parquet")
    run = fg.import_edges(d / "edges.parquet", d / "run")
    run.load()
    return d / "run"


@pytest.fixture(scope="module")
def multilayer_server(multilayer_run):
    srv = start(fg.open_run(multilayer_run), port=0).start_thread()
    yield srv
    srv.close()


def _get(srv, path, headers=None):
    req = urllib.request.Request(srv.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _post(srv, path, body, ctype="application/json", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(srv.url.rstrip("/") + path, data=data, method="POST",
                                 headers={"Content-Type": ctype, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _page_errors(b) -> list[str]:
    """The page's console messages, less Chromium's own notes on its software WebGL (sigma.js draws with WebGL)."""
    return [m for m in b.console if "GL Driver Message" not in m]


def _open(b, srv):
    b.page.goto(srv.url)
    b.page.wait_for_selector("body[data-ready='1']", timeout=20000)


def _drawn(b) -> int:
    return int(b.page.evaluate("Number(document.body.getAttribute('data-drawn') || 0)"))


def _until(b, expression: str, timeout: float = 20.0):
    """Poll `expression` until truthy (the page's CSP forbids eval, which Playwright's wait_for_function needs)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = b.page.evaluate(expression)
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {expression}")


def _wait_drawn(b, before: int):
    _until(b, f"Number(document.body.getAttribute('data-drawn') || 0) > {before}")


def _drawn_edges(b) -> set[tuple]:
    rows = b.page.evaluate("Array.from(featgraph.state.edges.values()).map(e => [e.circuit, e.layer, e.head, e.src, e.dst, e.weight])")
    return {(c, int(l), int(h), s, d) for c, l, h, s, d, _ in rows}


def _keys(e: pd.DataFrame) -> set[tuple]:
    return {(c, int(l), int(h), s, d) for c, l, h, s, d in zip(e["circuit"], e["layer"], e["head"], e["src"], e["dst"])}


def ref_expand(e, feature, limit=25, only_layer=-1, only_head=-1, only_circuit="*", sign=0, min_weight=0.0, max_rank=0):
    """The edges expanding `feature` draws: its `limit` strongest out- and in-edges among those passing the filters."""
    s = e
    if only_layer != -1:
        s = s[s["layer"] == only_layer]
    if only_head != -1:
        s = s[s["head"] == only_head]
    if only_circuit != "*":
        s = s[s["circuit"] == only_circuit]
    if sign:
        s = s[s["weight"] * sign > 0]
    s = s[s["weight"].abs() >= min_weight]
    if max_rank:
        s = s[s["rank"] <= max_rank]
    key = s.assign(a=s["weight"].abs())
    out = key[key["src"] == feature].sort_values(["a", "layer", "head", "circuit", "dst"], ascending=[False, True, True, True, True]).head(limit)
    inn = key[key["dst"] == feature].sort_values(["a", "layer", "head", "circuit", "src"], ascending=[False, True, True, True, True]).head(limit)
    return pd.concat([out, inn])


# ---------------------------------------------------------------- the HTTP guard (no browser)

def test_run_serve_and_fg_serve_are_the_api_twins(demo_copy):
    run = fg.open_run(demo_copy)
    for srv in (run.serve(port=0, block=False), fg.serve(demo_copy, port=0, block=False)):
        try:
            assert srv.url.startswith("http://127.0.0.1:")
            status, _, body = _get(srv, "/")
            assert status == 200 and b"/static/app.js" in body
        finally:
            srv.close()


def test_binds_loopback_and_answers_only_requests_addressed_to_it(server):
    assert server.url.startswith("http://127.0.0.1:")
    status, headers, body = _get(server, "/")
    assert status == 200 and b"/static/app.js" in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert not any(k.lower().startswith("access-control") for k in headers)
    # another Host (DNS rebinding) or another site's Origin is refused; no preflight is ever granted
    assert _get(server, "/api/info", {"Host": "evil.example:80"})[0] == 403
    assert _get(server, "/api/info", {"Origin": "http://evil.example"})[0] == 403
    assert _post(server, "/api/query", {"query": "top_edges"}, headers={"Origin": "http://evil.example"})[0] == 403
    req = urllib.request.Request(server.url + "api/query", method="OPTIONS", headers={"Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code in (403, 405) and not any(k.lower().startswith("access-control") for k in err.value.headers)
    # a form post (no preflight) is refused: POST takes JSON only
    assert _post(server, "/api/query", b"query=x", ctype="application/x-www-form-urlencoded")[0] == 415
    # only the packaged files are served
    for path in ("/static/../../pyproject.toml", "/static/%2e%2e/explorer.py", "/static/vendor/../app.js.map", "/etc/passwd"):
        assert _get(server, path)[0] == 404, path
    for name in ("vendor/sigma.min.js", "vendor/graphology.umd.min.js", "vendor/sigma.LICENSE.txt"):
        assert _get(server, "/static/" + name)[0] == 200


def test_another_host_is_warned_about(demo_copy):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        srv = start(fg.open_run(demo_copy), host="0.0.0.0", port=0)
    srv.close()
    assert any(issubclass(w.category, FeatgraphWarning) and "anyone who can reach" in str(w.message) for w in caught)


def test_answers_match_pandas(server, demo_copy):
    run = fg.open_run(demo_copy)
    e = edges_of(run)
    feature = e["src"].value_counts().index[0]
    for filters in ({}, {"only_circuit": "OV", "sign": -1}, {"only_head": 2, "min_weight": 20.0, "max_rank": 40, "limit": 5}):
        q = "&".join(f"{k}={v}" for k, v in {"feature": feature, **filters}.items())
        status, _, body = _get(server, "/api/expand?" + q)
        assert status == 200, body
        got = json.loads(body)
        assert {(x["circuit"], x["layer"], x["head"], x["src"], x["dst"]) for x in got["edges"]} == _keys(ref_expand(e, feature, **filters))
        assert feature in got["features"]
    status, _, body = _get(server, "/api/search?q=numbers&limit=5")
    got = json.loads(body)
    assert [r["id"] for r in got["results"]] == list(rank_features(run.features, "numbers", 5)["id"])
    assert got["results"][0]["caption"].endswith(run.features.set_index("id").loc[got["results"][0]["id"], "description"])
    status, _, body = _get(server, "/api/head?layer=1&head=0&circuit=QK&limit=30")
    got = json.loads(body)
    top = e[(e["head"] == 0) & (e["circuit"] == "QK")].assign(a=e["weight"].abs()).sort_values(["a", "src", "dst"], ascending=[False, True, True]).head(30)
    assert [(x["src"], x["dst"]) for x in got["edges"]] == list(zip(top["src"], top["dst"]))
    lib = run.query("top_edges", head=0, circuit="QK", limit=30)  # the library query the head view stands for
    assert [(x["src"], x["dst"]) for x in got["edges"]] == list(zip(lib["src"], lib["dst"]))
    assert all(x["z"] is not None and x["rank"] is not None for x in got["edges"])
    # tetrads: the library's, each with its four edges (rank and z from the run's table)
    status, _, body = _get(server, "/api/tetrads?layer=1&head=0&circuit=OV&limit=5")
    got = json.loads(body)
    want = ref_tetrads(e, 0, "OV", 5)
    assert [(t["a"], t["b"], t["x"], t["y"]) for t in got["tetrads"]] == list(zip(want["src_a"], want["src_b"], want["dst_x"], want["dst_y"]))
    table = e[(e["head"] == 0) & (e["circuit"] == "OV")].set_index(["src", "dst"])
    for x in got["edges"]:
        row = table.loc[(x["src"], x["dst"])]
        assert x["rank"] == int(row["rank"]) and x["z"] == pytest.approx(float(row["z"])) and x["weight"] == pytest.approx(float(row["weight"]))
    # bad requests: one line each, 400
    for path, words in (("/api/expand?feature=nope", "is not a feature"), ("/api/head?layer=1&head=99&circuit=QK", "head"),
                        ("/api/expand?feature=" + feature + "&limit=100000", "more than the page draws"),
                        ("/api/search?q=", "give some text")):
        status, _, body = _get(server, path)
        assert status == 400 and words in json.loads(body)["error"], (path, body)


@pytest.mark.parametrize("which", ["demo", "multilayer"])
def test_adjacency_answers_as_the_store(which, demo_copy, multilayer_run):
    """The server answers expand and paths from in-memory adjacency (analyse.adjacency); the embedded store's library
    queries `neighbours` and `cross_layer_paths` are the reference: the same rows, in the same order, ties included
    (the multilayer run's weights lie on a 0.1 grid, so ties are many)."""
    from featgraph.analyse.adjacency import Adjacency

    run = fg.open_run(demo_copy if which == "demo" else multilayer_run)
    t = run.edge_table
    adj = Adjacency(t)
    cols = ["layer", "head", "circuit", "weight", "rank", "src", "dst"]

    def rows(pos):
        return t.take(pos)[cols].astype({"layer": "int64", "head": "int64", "weight": "float64"}).reset_index(drop=True)

    def store(df):
        return df[cols].astype({"layer": "int64", "head": "int64", "weight": "float64"}).reset_index(drop=True)

    rng = np.random.default_rng(1)
    ends = pd.concat([t["src"], t["dst"]]).value_counts()
    features = list(ends.index[:3]) + list(rng.choice(ends.index, 5, replace=False))
    layers = run.layers
    filters = [{}, {"only_circuit": "OV", "sign": -1}, {"only_circuit": "QK", "sign": 1, "limit": 3},
               {"only_head": 1, "min_weight": 0.5, "max_rank": 40, "limit": 5}, {"only_layer": layers[-1], "limit": 7},
               {"min_weight": 1e9}, {"limit": 1}]
    checked = 0
    for f in features:
        for flt in filters:
            params = {"limit": 25, **flt}
            want = run.query("neighbours", feature=f, **params)
            out, inn = adj.neighbours(f, **params)
            assert (want["side"] == "out").sum() == len(out), (f, flt)
            pd.testing.assert_frame_equal(rows(np.r_[out, inn]), store(want), check_dtype=False, obj=f"{f} {flt}")
            checked += len(want)
    assert checked > 100
    assert [len(x) for x in adj.neighbours("no/such/1", 5)] == [0, 0]
    # each feature's strongest edge each way (search results show it): pandas' idxmax, the first among equals
    a = t["weight"].abs().reset_index(drop=True)
    asked = [*features, *ends.index[-5:], "no/such/1"]
    for side, got in zip(("src", "dst"), adj.strongest(asked)):
        best = a.groupby(t[side].astype(str).to_numpy()).idxmax()
        assert list(got) == [int(best.get(f, -1)) for f in asked], side
    # the edges of each head and circuit, in table order
    want = t.reset_index(drop=True).groupby(["layer", "head", "circuit"]).indices
    got = adj.heads()
    assert set(got) == {(int(l), int(h), str(c)) for l, h, c in want}
    assert all(list(got[(int(l), int(h), str(c))]) == list(v) for (l, h, c), v in want.items())
    pcols = ["layer", "head", "src", "mid", "circuit", "next_head", "dst", "w1", "w2", "product"]
    for layer in [-1, *layers]:
        for limit in (1, 5, 20, 300):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FeatgraphWarning)  # the one-layer run: "found nothing", as it should
                want = run.query("cross_layer_paths", layer=layer, limit=limit)
            p = adj.paths(layer, limit)
            a, b = t.take(p["first"].to_numpy()).reset_index(drop=True), t.take(p["second"].to_numpy()).reset_index(drop=True)
            got = pd.DataFrame({"layer": a["layer"], "head": a["head"], "src": a["src"], "mid": a["dst"], "circuit": b["circuit"],
                                "next_head": b["head"], "dst": b["dst"], "w1": a["weight"], "w2": b["weight"], "product": p["product"]})
            assert (a["circuit"] == "OV").all() and (a["dst"] == b["src"]).all() and (b["layer"] == a["layer"] + 1).all()
            pd.testing.assert_frame_equal(got.astype({"layer": "int64", "head": "int64", "next_head": "int64", "w1": "float64", "w2": "float64"}),
                                          want[pcols].reset_index(drop=True).astype({"layer": "int64", "head": "int64", "next_head": "int64"}),
                                          check_dtype=False, obj=f"paths layer {layer} limit {limit}")
            if which == "multilayer" and layer != layers[-1]:
                assert len(want) == limit  # a real answer, not two empty ones
    assert adj.paths(99, 5).empty


def test_console_refuses_writes_files_and_extensions(server):
    for cypher in ("MATCH (n:Feature) SET n.description = 'x' RETURN n", "MATCH (n) DETACH DELETE n",
                   "COPY (MATCH (n) RETURN n) TO '/tmp/featgraph-serve-leak.csv'", "LOAD FROM '/etc/passwd' RETURN *",
                   "CALL current_setting('home_directory') RETURN *; MATCH (n) RETURN n", "INSTALL httpfs",
                   "CREATE (n:Feature {id: 'x'})"):
        status, _, body = _post(server, "/api/query", {"query": cypher})
        assert status == 400, (cypher, body)
        msg = json.loads(body)["error"]
        assert "refused" in msg or "one statement" in msg, (cypher, msg)
    status, _, body = _post(server, "/api/query", {"query": "MATCH (f:Feature) RETURN f.id AS id ORDER BY id LIMIT 3"})
    assert status == 200 and len(json.loads(body)["rows"]) == 3


def test_console_says_when_it_cuts_rows(server, monkeypatch):
    monkeypatch.setattr(explorer_mod, "MAX_ROWS", 7)
    status, _, body = _post(server, "/api/query", {"query": "MATCH (f:Feature) RETURN f.id AS id"})
    got = json.loads(body)
    assert status == 200 and len(got["rows"]) == 7 and got["truncated"] and got["total"] > 7
    assert "shows the first 7" in got["message"]


def test_a_long_query_is_cut_off(demo_copy):
    srv = start(fg.open_run(demo_copy), port=0, timeout=0.5).start_thread()
    try:
        status, _, body = _post(srv, "/api/query", {"query": "MATCH (a:Feature), (b:Feature), (c:Feature), (d:Feature) "
                                                       "WHERE a.feature_index + b.feature_index + c.feature_index + d.feature_index = -1 RETURN count(*) AS n"})
        msg = json.loads(body)["error"]
        assert status == 400 and "0.5 s" in msg, msg
        assert _get(srv, "/api/info")[0] == 200  # the server still answers
    finally:
        srv.close()


def test_exports_read_back(server, demo_copy, tmp_path):
    run = fg.open_run(demo_copy)
    e = edges_of(run)
    pinned = list(e[e["circuit"] == "QK"]["src"].value_counts().index[:4])
    want = e[e["src"].isin(pinned) & e["dst"].isin(pinned)]
    assert len(want) > 3
    status, headers, body = _post(server, "/api/export", {"format": "csv", "features": pinned})
    assert status == 200 and "pinned.csv" in headers["Content-Disposition"]
    got = pd.read_csv(io.BytesIO(body))
    assert _keys(got) == _keys(want)
    np.testing.assert_allclose(got.sort_values(["circuit", "layer", "head", "src", "dst"])["weight"],
                               want.sort_values(["circuit", "layer", "head", "src", "dst"])["weight"], rtol=1e-6)
    status, _, body = _post(server, "/api/export", {"format": "graphml", "features": pinned})
    g = nx.read_graphml(io.BytesIO(body))
    assert set(g.nodes) <= set(pinned) and g.number_of_edges() == len(want)
    assert {(d["circuit"], int(d["layer"]), int(d["head"]), s, t) for s, t, d in g.edges(data=True)} == _keys(want)
    # the Cypher file reproduces the subgraph through `featgraph query` (the library query `subgraph`)
    status, _, body = _post(server, "/api/export", {"format": "cypher", "features": pinned})
    text = body.decode()
    assert "featgraph query RUN subgraph --param features=" + ",".join(pinned) in text
    (tmp_path / "pinned.cypher").write_text(text)
    again = run.query(tmp_path / "pinned.cypher", features=",".join(pinned))
    assert _keys(again) == _keys(want)
    status, headers, body = _post(server, "/api/export", {"format": "html", "features": pinned})
    assert status == 200 and (b"<html" in body[:200] or body[:2] == b"PK")
    status, _, body = _post(server, "/api/export", {"format": "pdf", "features": pinned})
    assert status == 400 and "graphml, csv, html or cypher" in json.loads(body)["error"]


# ---------------------------------------------------------------- in Chromium

@pytest.mark.browser
def test_find_expand_with_each_filter_collapse_and_pin(server, demo_copy):
    run = fg.open_run(demo_copy)
    e = edges_of(run)
    with browser(allow=server.url) as b:
        _open(b, server)
        b.page.fill("#q", "numbers")
        b.page.press("#q", "Enter")
        b.page.wait_for_selector("body[data-searches='1']")
        ids = b.page.evaluate("Array.from(document.querySelectorAll('#results .result')).map(r => r.getAttribute('data-id'))")
        assert ids == list(rank_features(run.features, "numbers", 20)["id"])
        href = b.page.get_attribute(f".result[data-id='{ids[0]}'] a", "href")
        assert href == f"https://www.neuronpedia.org/{ids[0]}"
        feature = ids[0]
        before = _drawn(b)
        b.page.click(f".result[data-id='{feature}'] button.expand")
        _wait_drawn(b, before)
        assert _drawn_edges(b) == _keys(ref_expand(e, feature))
        # each filter, one at a time, on a cleared canvas
        for sel, value, kw in (("#f-layer", "1", {"only_layer": 1}), ("#f-head", "2", {"only_head": 2}),
                               ("#f-circuit", "OV", {"only_circuit": "OV"}), ("#f-sign", "-1", {"sign": -1}),
                               ("#f-min", "30", {"min_weight": 30.0}), ("#f-rank", "20", {"max_rank": 20}),
                               ("#f-limit", "3", {"limit": 3})):
            b.page.click("#clear")
            if sel in ("#f-min", "#f-rank", "#f-limit"):
                b.page.fill(sel, value)
            else:
                b.page.select_option(sel, value)
            before = _drawn(b)
            b.page.evaluate("(id) => featgraph.expand(id)", feature)
            _wait_drawn(b, before)
            assert _drawn_edges(b) == _keys(ref_expand(e, feature, **kw)), sel
            b.page.fill("#f-min", "0") if sel == "#f-min" else None
            b.page.fill("#f-rank", "0") if sel == "#f-rank" else None
            b.page.fill("#f-limit", "25") if sel == "#f-limit" else None
            if sel not in ("#f-min", "#f-rank", "#f-limit"):
                b.page.select_option(sel, "-1" if sel in ("#f-layer", "#f-head") else ("*" if sel == "#f-circuit" else "0"))
        # click a drawn feature: its panel, then pin it; collapse removes what its expansion added, the pin stays
        b.page.click("#clear")
        before = _drawn(b)
        b.page.evaluate("(id) => featgraph.expand(id)", feature)
        _wait_drawn(b, before)
        other = next(iter(_drawn_edges(b)))[4 if next(iter(_drawn_edges(b)))[3] == feature else 3]
        key = b.page.evaluate("(id) => featgraph.graph.findNode((k, a) => a.feature === id)", other)
        b.page.mouse.click(*b.page.evaluate("(k) => featgraph.viewport(k)", key))
        b.page.wait_for_selector("#panel h2 a")
        assert b.page.evaluate("featgraph.state.selected") == other
        b.page.click("#panel button.pin")
        assert b.page.evaluate("Array.from(featgraph.state.pinned)") == [other]
        b.page.evaluate("(id) => featgraph.collapse(id)", feature)
        assert _drawn_edges(b) == set()
        assert other in b.page.evaluate("Array.from(featgraph.state.features.keys())")
        assert _page_errors(b) == [] and b.requests == []


@pytest.mark.browser
def test_two_column_layout_orders_to_reduce_crossings_and_clips_nothing(server, demo_copy):
    run = fg.open_run(demo_copy)
    with browser(allow=server.url) as b:
        _open(b, server)
        b.page.select_option("#h-layer", "1")
        b.page.select_option("#h-head", "1")
        b.page.select_option("#h-circuit", "QK")
        b.page.fill("#h-top", "80")
        before = _drawn(b)
        b.page.click("#head")
        _wait_drawn(b, before)
        nodes = b.page.evaluate("featgraph.graph.mapNodes((k, a) => [k, a.feature, a.x, a.y])")
        left = [n for n in nodes if n[0].startswith("s:")]
        right = [n for n in nodes if n[0].startswith("d:")]
        assert left and right and len(left) + len(right) == len(nodes)
        assert len({n[2] for n in left}) == 1 and len({n[2] for n in right}) == 1 and left[0][2] < right[0][2]
        # every key -> query edge goes left to right
        ends = b.page.evaluate("featgraph.graph.mapEdges((k, a, s, d) => [s, d])")
        assert all(s.startswith("s:") and d.startswith("d:") for s, d in ends) and len(ends) == 80
        # barycentric ordering: fewer crossings than the features in index order
        got = b.page.evaluate("featgraph.crossings()")
        index = run.features.set_index("id")["feature_index"]
        pos_l = {k: r for r, k in enumerate(sorted((n[0] for n in left), key=lambda k: index[k[2:]]))}
        pos_r = {k: r for r, k in enumerate(sorted((n[0] for n in right), key=lambda k: index[k[2:]]))}
        segs = [(pos_l[s], pos_r[d]) for s, d in ends]
        naive = sum(1 for i in range(len(segs)) for j in range(i + 1, len(segs)) if (segs[i][0] - segs[j][0]) * (segs[i][1] - segs[j][1]) < 0)
        assert got < naive, (got, naive)
        # the first view clips no node
        box = b.page.evaluate("(() => { const r = document.getElementById('graph').getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()")
        for key, *_ in nodes:
            x, y = b.page.evaluate("(k) => featgraph.viewport(k)", key)
            assert box[0] <= x <= box[2] and box[1] <= y <= box[3], key
        # hover a node: its full label
        k = left[0][0]
        b.page.mouse.move(*b.page.evaluate("(k) => featgraph.viewport(k)", k))
        tip = b.page.wait_for_selector("#tip", state="visible").inner_text()
        desc = run.features.set_index("id")["description"].get(k[2:])
        assert (desc or str(index[k[2:]])) in tip
        assert _page_errors(b) == [] and b.requests == []


@pytest.mark.browser
def test_cross_layer_paths_in_layers_as_rows_match_pandas(multilayer_server):
    run = multilayer_server.explorer.run
    e = edges_of(run)
    ref = ref_cross_layer_paths(e, -1, 20)
    want = _keys(pd.concat([
        pd.DataFrame({"circuit": "OV", "layer": ref["layer"], "head": ref["head"], "src": ref["src"], "dst": ref["mid"]}),
        pd.DataFrame({"circuit": ref["circuit"], "layer": ref["layer"] + 1, "head": ref["next_head"], "src": ref["mid"], "dst": ref["dst"]})]))
    with browser(allow=multilayer_server.url) as b:
        _open(b, multilayer_server)
        b.page.select_option("#h-layer", str(run.layers[0]))
        b.page.evaluate("document.getElementById('h-layer').appendChild(new Option('all', '-1')); document.getElementById('h-layer').value = '-1'")
        before = _drawn(b)
        b.page.click("#paths")
        _wait_drawn(b, before)
        assert _drawn_edges(b) == want
        assert b.page.evaluate("featgraph.state.layout") == "layers"
        assert b.page.locator("#panel .motif").count() == len(ref)
        # rows: a feature's SAE layer is its row, lower layers above; every path reads top to bottom
        nodes = b.page.evaluate("featgraph.graph.mapNodes((k, a) => [a.feature, a.y])")
        layer = run.features.set_index("id")["layer"]
        ys = {}
        for fid, y in nodes:
            ys.setdefault(int(layer[fid]), set()).add(y)
        assert all(len(v) == 1 for v in ys.values())
        rows = sorted(ys)
        assert [next(iter(ys[r])) for r in rows] == sorted((next(iter(ys[r])) for r in rows), reverse=True)
        # the tetrads of a head: each a 2x2 motif, highlighted when clicked
        b.page.select_option("#h-layer", str(run.layers[1]))
        b.page.select_option("#h-circuit", "OV")
        before = _drawn(b)
        b.page.click("#tetrads")
        _wait_drawn(b, before)
        n = b.page.locator("#panel .motif").count()
        assert n >= 1
        b.page.click("#panel .motif >> nth=0")
        assert b.page.evaluate("featgraph.state.highlight.size") == 4
        assert _page_errors(b) == [] and b.requests == []


@pytest.mark.browser
def test_console_in_the_page(server):
    with browser(allow=server.url) as b:
        _open(b, server)
        b.page.select_option("#c-query", "")
        b.page.fill("#c-text", "MATCH (n:Feature) SET n.description = 'owned' RETURN n")
        b.page.click("#c-run")
        b.page.wait_for_selector("#status.error")
        assert "SET is refused" in b.page.inner_text("#status")
        b.page.select_option("#c-query", "top_edges")
        b.page.fill("#c-params input[data-param='head']", "3")
        b.page.fill("#c-params input[data-param='limit']", "12")
        before = _drawn(b)
        b.page.click("#c-run")
        b.page.wait_for_selector("body[data-console='1']")
        assert b.page.locator("#table tr").count() == 13
        assert b.page.locator("#status.error").count() == 0
        # the refusal's 400 is the only console line (Chromium logs every failed request)
        assert [m for m in _page_errors(b) if "status of 400" not in m] == [] and b.requests == [] and _drawn(b) >= before


@pytest.mark.browser
def test_hostile_labels_stay_text(tmp_path):
    from featgraph.core.schema import features_from_edges
    from featgraph.runs.manifest import Manifest
    from featgraph.runs.rundir import write_run

    edges = multilayer_edges(layers=(1,), heads=1, n=8, per=20)
    edges = edges.assign(src_index=edges["src"].str.rsplit("/", n=1).str[-1].astype("int64"),
                         dst_index=edges["dst"].str.rsplit("/", n=1).str[-1].astype("int64"))
    feats = features_from_edges(edges)
    feats["description"] = [HOSTILE[i % len(HOSTILE)] + f" #{i}" for i in range(len(feats))]
    path = write_run(tmp_path / "hostile", edges.assign(rank=edges.groupby(["circuit"]).cumcount() + 1), feats, Manifest(command="test"))
    fg.open_run(path).load()
    srv = start(fg.open_run(path), port=0).start_thread()
    try:
        with browser(allow=srv.url) as b:
            _open(b, srv)
            b.page.fill("#q", "img")
            b.page.press("#q", "Enter")
            b.page.wait_for_selector("body[data-searches='1']")
            first = b.page.get_attribute("#results .result", "data-id")
            before = _drawn(b)
            b.page.click("#results .result button.expand")
            _wait_drawn(b, before)
            key = b.page.evaluate("(id) => featgraph.graph.findNode((k, a) => a.feature === id)", first)
            b.page.mouse.click(*b.page.evaluate("(k) => featgraph.viewport(k)", key))
            b.page.wait_for_selector("#panel h2 a")
            b.page.mouse.move(*b.page.evaluate("(k) => featgraph.viewport(k)", key))
            b.page.wait_for_selector("#tip", state="visible")
            assert b.page.evaluate("window.__pwned === undefined")
            assert b.page.locator("main img, main svg, #tip img, #tip svg, #results script").count() == 0
            assert '<img src=x onerror="window.__pwned=1">' in b.page.inner_text("#results")
            assert _page_errors(b) == [] and b.requests == []
        # the CSV export prefixes a label a spreadsheet would run as a formula
        status, _, body = _post(srv, "/api/export", {"format": "csv", "features": list(feats["id"])})
        assert status == 200
        got = pd.read_csv(io.BytesIO(body))
        labels = set(got["src_description"]) | set(got["dst_description"])
        assert any(x.startswith("'=HYPERLINK") for x in labels) and not any(x.startswith("=") for x in labels)
    finally:
        srv.close()


def test_cli_serves_until_stopped(demo_copy):
    proc = subprocess.Popen([sys.executable, "-m", "featgraph", "serve", str(demo_copy), "--port", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line[line.index("http://"):].split()[0]
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            info = json.loads(r.read())
        assert info["layers"] == [1] and "embedded store" in info["where"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.neo4j
def test_serves_from_neo4j_and_never_shows_the_credentials(demo_run, neo4j_env, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(demo_run, d)
    run = fg.open_run(d)
    run.load(neo4j=True)
    e = edges_of(run)
    feature = e["dst"].value_counts().index[0]
    srv = start(fg.open_run(d), neo4j=True, port=0).start_thread()
    try:
        bodies = [_get(srv, p)[2] for p in ("/", "/api/info", "/static/app.js", "/api/search?q=numbers")]
        status, _, body = _get(srv, f"/api/expand?feature={feature}&only_circuit=QK&limit=10")
        assert status == 200 and _keys(pd.DataFrame(json.loads(body)["edges"])) == _keys(ref_expand(e, feature, only_circuit="QK", limit=10))
        bodies.append(body)
        assert "Neo4j at bolt://127.0.0.1" in json.loads(bodies[1])["where"]
        assert not any(neo4j_env["password"].encode() in b for b in bodies)
        status, _, body = _post(srv, "/api/query", {"query": "MATCH (n:Feature) SET n.description = 'x' RETURN count(n) AS n"})
        assert status == 400 and "Neo4j rejected the query" in json.loads(body)["error"]
        assert neo4j_env["password"] not in body.decode()
    finally:
        srv.close()


def test_feature_lookup_describes_as_feature_payload(demo_copy):
    """The server's FeatureLookup (hashed index, contiguous columns) gives what feature_payload gives from the table,
    for features with and without labels and ids the table lacks."""
    from featgraph.render.explorer import FeatureLookup, feature_payload

    f = fg.open_run(demo_copy).features.drop_duplicates("id").set_index("id")
    f.loc[f.index[1], "description"] = None
    ids = [*f.index[::7], f.index[1], "gemma-2-2b/3-x/12", "nope", f.index[0]]
    got = FeatureLookup(f).payload(ids)
    assert got == feature_payload(f, ids) and list(got) == list(dict.fromkeys(ids))
    assert got[f.index[1]]["description"] is None and got["gemma-2-2b/3-x/12"]["feature_index"] == 12
    assert FeatureLookup(f).payload([]) == {}


def test_head_view_is_top_edges_with_ties(multilayer_run):
    """A head's view (the two-column draw) is the library's top_edges, row for row, on a run whose weights lie on a
    0.1 grid (many ties at the cut: they are ordered by src, dst as top_edges orders them)."""
    from featgraph.server.explorer import Explorer

    run = fg.open_run(multilayer_run)
    ex = Explorer(run)
    try:
        checked = 0
        for layer in run.layers[:2]:
            for head in (0, 2):
                for circuit in ("QK", "OV"):
                    for limit in (1, 7, 60, 500):
                        got = ex.head(layer, head, circuit, limit)["edges"]
                        want = run.query("top_edges", layer=layer, head=head, circuit=circuit, limit=limit)
                        assert [(e["src"], e["dst"], e["weight"]) for e in got] == \
                            [(s, d, pytest.approx(w)) for s, d, w in zip(want["src"], want["dst"], want["weight"])], (layer, head, circuit, limit)
                        checked += len(got)
        assert checked > 1000
    finally:
        ex.close()
