"""pyvis pages: content checks, and a real headless Chromium with the network cut off."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import featgraph as fg
from featgraph.analyse.filters import subgraph
from featgraph.cli import app

from helpers import PROBE, chromium, runner


@pytest.mark.browser
@pytest.mark.parametrize("top,feature", [(60, None), (400, None), (100, "featgraph-demo/0-demo-res-96/28")])
def test_page_renders_offline_without_errors(demo_run, tmp_path, top, feature):
    out = tmp_path / "v.html"
    args = ["viz", str(demo_run), "--head", "1", "--circuit", "qk", "--top", str(top), "--out", str(out)]
    if feature:
        args += ["--feature", feature, "--hops", "2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    page = out.read_text()
    # nothing to fetch: no external scripts or stylesheets
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", page)
    edges = subgraph(fg.open_run(demo_run).edge_table, 1, "QK", top, feature, 2)
    nodes = pd.unique(pd.concat([edges["src"], edges["dst"]]))
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE, 1))
    dom, console = chromium(probe)
    assert console == [], console
    m = re.search(r'<body[^>]*data-nodes="(\d+)"[^>]*data-edges="(\d+)"[^>]*data-canvas="(\d+)"', dom)
    assert m, "the page did not build its network"
    assert (int(m[1]), int(m[2])) == (len(nodes), len(edges)) and int(m[3]) >= 1


@pytest.mark.browser
def test_large_graph_uses_a_precomputed_layout(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    n = 600
    e = pd.DataFrame({"layer": 13, "head": 0, "circuit": "OV",
                      "src": [f"gemma-2-2b/12-gemmascope-res-16k/{i}" for i in rng.integers(0, 5000, n)],
                      "dst": [f"gemma-2-2b/13-gemmascope-res-16k/{i}" for i in rng.integers(0, 5000, n)],
                      "weight": rng.normal(size=n)}).drop_duplicates(["src", "dst"])
    f = tmp_path / "e.parquet"
    e.to_parquet(f)
    out = tmp_path / "big.html"
    assert runner.invoke(app, ["viz", str(f), "--head", "0", "--circuit", "ov", "--top", "1000", "--out", str(out)]).exit_code == 0
    page = out.read_text()
    assert '"physics": false' in page and '"x": ' in page
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE, 1))
    dom, console = chromium(probe)
    assert console == [], console
    nodes = len(pd.unique(pd.concat([e["src"], e["dst"]])))
    assert f'data-nodes="{nodes}"' in dom and f'data-edges="{len(e)}"' in dom


def test_page_content(demo_run, tmp_path):
    out = tmp_path / "v.html"
    assert runner.invoke(app, ["viz", str(demo_run), "--head", "0", "--circuit", "ov", "--top", "30", "--out", str(out)]).exit_code == 0
    page = out.read_text()
    e = subgraph(fg.open_run(demo_run).edge_table, 0, "OV", 30)
    # arrows go source -> destination, colours by sign
    first = e.iloc[0]
    assert f'"from": "{first["src"]}"' in page and f'"to": "{first["dst"]}"' in page
    assert "#2166ac" in page and "#b2182b" in page
    assert "https://www.neuronpedia.org/featgraph-demo/" in page


@pytest.mark.parametrize("args,msg", [
    (["--head", "9", "--circuit", "qk"], "head 9"),
    (["--head", "0", "--circuit", "qk", "--feature", "nope/x/1"], "has no QK edge"),
    (["--head", "0", "--circuit", "zz"], "qk or ov"),
])
def test_bad_input(demo_run, tmp_path, args, msg):
    out = tmp_path / "v.html"
    r = runner.invoke(app, ["viz", str(demo_run), *args, "--out", str(out)])
    assert r.exit_code == 2 and msg in r.stderr and not out.exists()


def test_unwritable_output(demo_run, tmp_path):
    r = runner.invoke(app, ["viz", str(demo_run), "--head", "0", "--circuit", "qk", "--out", str(tmp_path / "no" / "v.html")])
    assert r.exit_code == 2 and "does not exist" in r.stderr
