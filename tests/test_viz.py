"""Graph pages, opened in a real headless Chromium (Playwright driving Debian's chromium) with the network cut off:
they build the network, hovering an edge shows its weight, nodes are captioned with labels, search and legend work."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import featgraph as fg
from featgraph.analyse.filters import subgraph
from featgraph.render.html import short_caption
from featgraph.render.viz import CAPTION, MAX_EDGES

from helpers import browser
from helpers import fg as cli


def _open(b, page):
    b.page.goto(page.as_uri())
    b.page.wait_for_selector("body[data-ready='1']", timeout=20000)


def _viz(run, out, *args):
    r = cli("viz", run, "--out", out, *args)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.browser
@pytest.mark.parametrize("top,feature", [(60, None), (400, None), (100, "featgraph-demo/0-demo-res-96/28")])
def test_page_builds_offline_with_every_node_and_edge(demo_run, tmp_path, top, feature):
    args = ["--head", 1, "--circuit", "qk", "--top", top] + (["--feature", feature, "--hops", 2] if feature else [])
    page = _viz(demo_run, tmp_path / "v.html", *args)
    text = page.read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", text)
    edges = subgraph(fg.open_run(demo_run).edge_table, 1, "QK", top, feature, 2)
    nodes = pd.unique(pd.concat([edges["src"], edges["dst"]]))
    with browser() as b:
        _open(b, page)
        got = b.page.evaluate("[featgraph.nodes.length, featgraph.edges.length, document.querySelectorAll('#mynetwork canvas').length]")
        # two columns: a feature is drawn once as a key and once as a query where it is both
        assert got[:2] == [edges["src"].nunique() + edges["dst"].nunique(), len(edges)] and got[2] >= 1
        assert set(b.page.evaluate("featgraph.nodes.get().map(n => n.feature)")) == set(nodes)
        assert b.console == [] and b.requests == []


def _edge_point(b, edge_id):
    """A DOM point on an edge's drawn curve: halfway along it, or for a loop the point farthest from its node."""
    return b.page.evaluate("""(id) => {
        const n = featgraph.network, e = n.body.edges[id];
        let p = e.edgeType.getPoint(0.5);
        if (e.fromId === e.toId) {  // a loop is a circle beside its node: take its far side
            const c = n.getPositions([e.fromId])[e.fromId], [x, y, r] = e.edgeType._getCircleData(n.canvas.getContext());
            const len = Math.hypot(x - c.x, y - c.y) || 1;
            p = {x: x + r * (x - c.x) / len, y: y + r * (y - c.y) / len};
        }
        const d = n.canvasToDOM(p), r = document.getElementById('mynetwork').getBoundingClientRect();
        return [d.x + r.left, d.y + r.top]; }""", edge_id)


@pytest.mark.browser
def test_hovering_an_edge_shows_its_weight_and_labels(demo_run, tmp_path):
    run = fg.open_run(demo_run)
    page = _viz(demo_run, tmp_path / "v.html", "--head", 0, "--circuit", "ov", "--top", 40)
    e = subgraph(run.edge_table, 0, "OV", 40).reset_index(drop=True)
    desc = run.features.set_index("id")["description"]
    with browser() as b:
        _open(b, page)
        b.page.evaluate("window.hovered = []; featgraph.network.on('hoverEdge', p => hovered.push(p.edge))")
        # an edge whose midpoint no other edge passes near: where edges cross, vis-network's popup and its hover
        # event may each pick a different one of them
        eid = b.page.evaluate("""() => { const n = featgraph.network, all = Object.values(n.body.edges);
            for (const e of all) {
                if (e.fromId === e.toId) continue;
                const p = e.edgeType.getPoint(0.5), box = {left: p.x - 8, right: p.x + 8, top: p.y - 8, bottom: p.y + 8};
                if (all.every(o => o === e || !o.isOverlappingWith(box))) return e.id;
            }
            return null; }""")
        assert eid is not None, "every edge's midpoint is crossed by another edge"
        b.page.mouse.move(*_edge_point(b, eid))
        tip = b.page.wait_for_selector("div.vis-tooltip", state="visible", timeout=5000).inner_text()
        hovered = b.page.evaluate("hovered")
        assert hovered, "no edge reacted to the pointer"
        m = re.search(r"weight (\S+)\s+\(z (\S+)\), rank (\d+)", tip)
        assert m, tip
        # the tooltip is that of an edge the pointer hovered (on its way it may cross another edge first)
        ends = b.page.evaluate("(ids) => ids.map(id => { const e = featgraph.edges.get(id); return [e.src, e.dst]; })", hovered)
        rows = [e[(e["src"] == s) & (e["dst"] == d)].iloc[0] for s, d in ends]
        shown = [r for r in rows if float(m[1]) == pytest.approx(float(r["weight"]), rel=1e-3)]
        assert shown, (tip, [float(r["weight"]) for r in rows])
        row = shown[0]
        assert float(m[2]) == pytest.approx(float(row["z"]), rel=1e-3) and int(m[3]) == int(row["rank"])
        src_caption = short_caption(int(row["src_index"]), desc.get(row["src"]), 10_000)
        assert src_caption in tip and "value" in tip and "output" in tip
        assert b.console == []


@pytest.mark.browser
def test_nodes_are_captioned_with_labels_and_link_to_neuronpedia(demo_run, tmp_path):
    run = fg.open_run(demo_run)
    page = _viz(demo_run, tmp_path / "v.html", "--head", 2, "--circuit", "qk", "--top", 50)
    desc = run.features.set_index("id")["description"]
    with browser() as b:
        _open(b, page)
        nodes = b.page.evaluate("featgraph.nodes.get().map(n => [n.id, n.feature, n.label])")
        for _, fid, label in nodes:
            idx = int(fid.rsplit("/", 1)[1])
            assert label == short_caption(idx, desc.get(fid), CAPTION)
        node, labelled = next((key, fid) for key, fid, label in nodes if ":" in label)
        # a click opens the side panel with the full label linked to Neuronpedia
        pos = b.page.evaluate("""(id) => { const n = featgraph.network, d = n.canvasToDOM(n.getPositions([id])[id]),
                                  r = document.getElementById('mynetwork').getBoundingClientRect(); return [d.x + r.left, d.y + r.top]; }""",
                              node)
        b.page.mouse.click(*pos)
        link = b.page.wait_for_selector("#panel h2 a")
        assert link.get_attribute("href") == f"https://www.neuronpedia.org/{labelled}"
        assert link.inner_text() == f"{labelled.rsplit('/', 1)[1]}: {desc[labelled]}"
        assert b.page.locator("#panel table tr").count() >= 1


@pytest.mark.browser
def test_saes_differ_by_colour_and_shape_and_the_legend_says_so(demo_run, tmp_path):
    page = _viz(demo_run, tmp_path / "v.html", "--head", 0, "--circuit", "ov", "--top", 80)
    with browser() as b:
        _open(b, page)
        nodes = b.page.evaluate("featgraph.nodes.get().map(n => [n.feature.split('/')[1], n.shape, n.color])")
        style = {sae: {(shape, color)} for sae, shape, color in nodes}
        for sae, shape, color in nodes:
            style[sae].add((shape, color))
        assert all(len(v) == 1 for v in style.values()) and len(style) == 2
        (a,), (b_,) = style.values()
        assert a[0] != b_[0] and a[1] != b_[1]
        legend = b.page.inner_text("#legend")
        assert "positive" in legend and "negative" in legend and "0-demo-res-96 (value)" in legend and "1-demo-res-80 (output)" in legend


@pytest.mark.browser
def test_search_box_highlights_matching_features(demo_run, tmp_path):
    run = fg.open_run(demo_run)
    page = _viz(demo_run, tmp_path / "v.html", "--head", 1, "--circuit", "qk", "--top", 120)
    e = subgraph(run.edge_table, 1, "QK", 120)
    ids = set(e["src"]) | set(e["dst"])
    desc = run.features.set_index("id")["description"]
    want = sum(1 for f in ids if isinstance(desc.get(f), str) and "numbers" in desc[f].lower())
    assert want > 0
    with browser() as b:
        _open(b, page)
        b.page.fill("#search", "NUMBERS")
        b.page.wait_for_selector(f"body[data-matches='{want}']", timeout=5000)
        assert b.page.inner_text("#matches") == f"{want} match" + ("" if want == 1 else "es")
        faded = b.page.evaluate("featgraph.nodes.get().filter(n => n.color === '#dddddd').map(n => n.feature)")
        drawn = b.page.evaluate("featgraph.nodes.get().map(n => n.feature)")
        assert sorted(faded) == sorted(f for f in drawn if not (isinstance(desc.get(f), str) and "numbers" in desc[f].lower()))
        b.page.press("#search", "Enter")
        assert "numbers" in b.page.inner_text("#panel h2").lower()


@pytest.mark.browser
def test_like_to_like_edges_join_a_features_two_sides(demo_run, tmp_path):
    run = fg.open_run(demo_run)
    e = run.edge_table
    loop = e[(e["circuit"] == "QK") & (e["src"] == e["dst"])].iloc[0]
    f = loop["src"]
    page = _viz(demo_run, tmp_path / "v.html", "--head", int(loop["head"]), "--circuit", "qk", "--feature", f, "--hops", 1)
    with browser() as b:
        _open(b, page)
        # the feature as a key on the left and as a query on the right, the like-to-like edge between them
        got = b.page.evaluate("""(f) => { const e = featgraph.edges.get().find(e => e.src === f && e.dst === f),
                                   p = featgraph.network.getPositions([e.from, e.to]); return [e.from, e.to, p[e.from].x, p[e.to].x]; }""", f)
        assert got[:2] == [f"s:{f}", f"d:{f}"] and got[2] < got[3]
        b.page.mouse.click(*b.page.evaluate("""(id) => { const n = featgraph.network, d = n.canvasToDOM(n.getPositions([id])[id]),
                                  r = document.getElementById('mynetwork').getBoundingClientRect(); return [d.x + r.left, d.y + r.top]; }""", f"s:{f}"))
        b.page.wait_for_selector("#panel h2 a")
        assert "↺ itself" in b.page.inner_text("#panel table")  # the panel lists the feature's edges, both sides
        assert b.console == []


_BOXES = """() => {  // each node's box (its shape and label) in the first view, in the canvas' pixels; and the canvas' size
    const n = featgraph.network, c = document.getElementById('mynetwork');
    return [c.clientWidth, c.clientHeight, featgraph.nodes.getIds().map(id => {
        const bb = n.getBoundingBox(id), a = n.canvasToDOM({x: bb.left, y: bb.top}), z = n.canvasToDOM({x: bb.right, y: bb.bottom});
        const p = n.getPositions([id])[id];
        return [id, a.x, a.y, z.x, z.y, p.x, p.y]; })]; }"""


def _crossings(segs):
    return sum(1 for i in range(len(segs)) for j in range(i + 1, len(segs)) if (segs[i][0] - segs[j][0]) * (segs[i][1] - segs[j][1]) < 0)


@pytest.mark.browser
@pytest.mark.parametrize("circuit", ["qk", "ov"])
def test_a_head_page_is_two_columns_crossing_reduced_and_the_first_view_clips_no_node(demo_run, tmp_path, circuit):
    """Keys → queries (QK) or values → outputs (OV) in two columns ordered to reduce crossings, the explorer's
    layout (templates/layout.js); in the first view every node's box, label included, lies inside the canvas."""
    run = fg.open_run(demo_run)
    page = _viz(demo_run, tmp_path / "v.html", "--head", 1, "--circuit", circuit, "--top", 150)
    e = subgraph(run.edge_table, 1, circuit.upper(), 150)
    index = run.features.set_index("id")["feature_index"]
    for viewport in ((1400, 900), (900, 700)):
        with browser(viewport=viewport) as b:
            _open(b, page)
            assert b.page.evaluate("featgraph.layout") == "columns"
            w, h, boxes = b.page.evaluate(_BOXES)
            assert len(boxes) == e["src"].nunique() + e["dst"].nunique()
            for key, x0, y0, x1, y1, *_ in boxes:
                assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (key, (x0, y0, x1, y1), (w, h))
            left = {k: (x, y) for k, *_, x, y in boxes if k.startswith("s:")}
            right = {k: (x, y) for k, *_, x, y in boxes if k.startswith("d:")}
            assert len(left) + len(right) == len(boxes)
            assert {k[2:] for k in left} == set(e["src"]) and {k[2:] for k in right} == set(e["dst"])
            (xl,), (xr,) = {x for x, _ in left.values()}, {x for x, _ in right.values()}
            assert xl < xr  # sources in one column on the left, destinations in one on the right
            ends = b.page.evaluate("featgraph.edges.get().map(e => [e.from, e.to])")
            assert len(ends) == len(e) and all(s in left and d in right for s, d in ends)
            # crossing-reduced: fewer crossings than the features in index order
            drawn = _crossings([(left[s][1], right[d][1]) for s, d in ends])
            rank_l = {k: index[k[2:]] for k in left}
            rank_r = {k: index[k[2:]] for k in right}
            naive = _crossings([(rank_l[s], rank_r[d]) for s, d in ends])
            assert drawn < naive, (drawn, naive)
            assert b.console == [] and b.requests == []


@pytest.mark.browser
def test_an_atlas_page_has_layers_as_rows_and_the_first_view_clips_no_node(tmp_path):
    from test_graph import multilayer_edges

    e = multilayer_edges()
    f = tmp_path / "atlas.parquet"
    e.to_parquet(f)
    page = _viz(f, tmp_path / "atlas.html", "--circuit", "ov", "--top", 200)  # no --head, no --layer: every layer
    with browser() as b:
        _open(b, page)
        assert b.page.evaluate("featgraph.layout") == "layers"
        w, h, boxes = b.page.evaluate(_BOXES)
        for key, x0, y0, x1, y1, *_ in boxes:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (key, (x0, y0, x1, y1), (w, h))
        layer_of = {k: int(k.split("/")[1].split("-")[0]) for k, *_ in boxes}  # the SAE's layer (gemma-2-2b/L-...)
        assert all(k.startswith("f:") for k in layer_of)
        ys = {}
        for k, *_, _x, y in boxes:
            ys.setdefault(layer_of[k], set()).add(y)
        assert all(len(v) == 1 for v in ys.values()) and len(ys) >= 3  # one row per layer
        rows = [ys[layer].pop() for layer in sorted(ys)]
        assert rows == sorted(rows)  # the first layer on top, each next one below
        # an OV edge of layer L reads layer L - 1's SAE and writes layer L's: every edge goes one row down
        ends = b.page.evaluate("featgraph.edges.get().map(e => [e.from, e.to])")
        assert ends and all(layer_of[d] == layer_of[s] + 1 for s, d in ends)
        assert b.console == [] and b.requests == []


@pytest.mark.browser
def test_match_centres_the_page_on_features_by_label(demo_run, tmp_path):
    run = fg.open_run(demo_run)
    page = _viz(demo_run, tmp_path / "v.html", "--circuit", "qk", "--match", "court", "--hops", 1)
    desc = run.features.set_index("id")["description"].fillna("")
    e = run.edge_table[run.edge_table["circuit"] == "QK"]
    present = set(e["src"]) | set(e["dst"])
    matched = [f for f in present if "court" in desc.get(f, "").lower()][:10]
    with browser() as b:
        _open(b, page)
        big = set(b.page.evaluate("featgraph.nodes.get().filter(n => n.borderWidth === 4).map(n => n.feature)"))
        assert big and big <= set(matched)
        assert "matching 'court'" in b.page.inner_text("#title")


@pytest.mark.browser
def test_five_hundred_edges_open_quickly_with_a_precomputed_layout(tmp_path):
    rng = np.random.default_rng(0)
    n = 700
    e = pd.DataFrame({"layer": 13, "head": 0, "circuit": "OV",
                      "src": [f"gemma-2-2b/12-gemmascope-res-16k/{i}" for i in rng.integers(0, 400, n)],
                      "dst": [f"gemma-2-2b/13-gemmascope-res-16k/{i}" for i in rng.integers(0, 400, n)],
                      "weight": rng.normal(size=n)}).drop_duplicates(["src", "dst"]).head(500)
    f = tmp_path / "e.parquet"
    e.to_parquet(f)
    page = _viz(f, tmp_path / "big.html", "--head", 0, "--circuit", "ov", "--top", 500)
    with browser() as b:
        _open(b, page)
        xy = b.page.evaluate("featgraph.nodes.get().map(n => [n.x, n.y])")
        assert all(x is not None and y is not None for x, y in xy)
        assert b.page.evaluate("featgraph.network.physics.options.enabled") is False
        assert b.page.evaluate("featgraph.edges.length") == len(e)


def test_too_many_edges_is_a_clear_error(demo_run, tmp_path):
    r = cli("viz", demo_run, "--head", 0, "--circuit", "qk", "--top", MAX_EDGES + 1, "--out", tmp_path / "v.html")
    assert r.exit_code == 2 and "--top" in r.stderr and "feature" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "v.html").exists()


@pytest.mark.parametrize("args,msg", [
    (["--head", "9", "--circuit", "qk"], "head 9"),
    (["--head", "0", "--circuit", "qk", "--feature", "nope/x/1"], "has no QK edge"),
    (["--head", "0", "--circuit", "zz"], "qk or ov"),
    (["--head", "0", "--circuit", "qk", "--match", "zzzzqqq"], "matching 'zzzzqqq'"),
    (["--head", "0", "--circuit", "qk", "--match", "court", "--feature", "a/b/1"], "not both"),
])
def test_bad_input(demo_run, tmp_path, args, msg):
    out = tmp_path / "v.html"
    r = cli("viz", demo_run, *args, "--out", out)
    assert r.exit_code == 2 and msg in r.stderr and not out.exists(), r.output


def test_unwritable_output(demo_run, tmp_path):
    r = cli("viz", demo_run, "--head", "0", "--circuit", "qk", "--out", tmp_path / "no" / "v.html")
    assert r.exit_code == 2 and "does not exist" in r.stderr
