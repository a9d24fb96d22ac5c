"""`featgraph report`: a complete offline page per run."""

from __future__ import annotations

import re

import featgraph as fg
from featgraph.analyse.tetrads import find_tetrads
from featgraph.cli import app

from helpers import chromium, runner


def test_report(demo_run, tmp_path):
    out = tmp_path / "rep"
    r = runner.invoke(app, ["report", str(demo_run), "--out", str(out)])
    assert r.exit_code == 0, r.output
    index = (out / "index.html").read_text()
    run = fg.open_run(demo_run)
    groups = run.edges.groupby(["head", "circuit"]).groups
    for head, circ in groups:
        assert f"Head {head} · {circ}" in index
        assert (out / f"head{head}_{circ.lower()}.html").is_file()
    for png in ("positional.png", "correlation.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and f"src='{png}'" in index
    assert f"{len(find_tetrads(run.edge_table))} tetrads" in index
    assert "without like-to-like" in index
    dom, console = chromium(out / "index.html")
    assert console == [] and "<img" in dom
    # refuses to overwrite without --force, leaves the old one intact
    r = runner.invoke(app, ["report", str(demo_run), "--out", str(out), "--no-plots"])
    assert r.exit_code == 2 and (out / "positional.png").exists()


def test_report_on_edge_file_without_weights(tmp_path):
    import pandas as pd

    e = pd.DataFrame({"layer": 13, "head": [0, 0, 1], "circuit": ["QK", "OV", "QK"],
                      "src": ["m/12-a/1", "m/12-a/1", "m/12-a/2"], "dst": ["m/12-a/1", "m/13-b/3", "m/12-a/5"], "weight": [1.0, -2.0, 0.5]})
    f = tmp_path / "e.csv"
    e.to_csv(f, index=False)
    r = runner.invoke(app, ["report", str(f), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "need the run's model and SAEs" in index and re.search(r"Head 1 · QK", index)
