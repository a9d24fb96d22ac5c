"""`featgraph report`: a complete offline page per run, checked in a real headless Chromium (Playwright)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import featgraph as fg
from featgraph.analyse.tetrads import find_tetrads

from helpers import browser
from helpers import fg as cli


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "rep"
    r = cli("report", demo_run, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_report_files_and_sections(demo_run, report):
    index = (report / "index.html").read_text()
    run = fg.open_run(demo_run)
    for (head, circ), _ in run.edge_table.groupby(["head", "circuit"]):
        assert (report / f"head{head}_{circ.lower()}.html").is_file()
        assert f"id='L1h{head}'" in index
    for png in ("positional.png", "correlation.png"):
        assert (report / png).read_bytes()[:4] == b"\x89PNG" and f"src='{png}'" in index
    assert f"tetrads <b>{len(find_tetrads(run.edge_table)):,}</b>" in index
    # QK with and without like-to-like; OV once (like-to-like is a QK notion)
    assert index.count("QK: top 15 without like-to-like") == 4 and "OV: top 15 without" not in index
    assert index.count("OV: top 15</h4>") == 4
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=['\"]https?://", index)


@pytest.mark.browser
def test_report_opens_with_the_overview_and_links_every_feature(demo_run, report):
    run = fg.open_run(demo_run)
    e = run.edge_table
    desc = run.features.set_index("id")["description"]
    with browser() as b:
        b.page.goto((report / "index.html").as_uri())
        assert b.console == [] and b.requests == []
        # the overview comes first: a card per head, in head order, before the figures
        cards = b.page.locator(".overview .card")
        assert cards.count() == e["head"].nunique()
        first = cards.nth(0).inner_text()
        qk0 = e[(e["head"] == 0) & (e["circuit"] == "QK")]
        like = (qk0["src"] == qk0["dst"]).mean()
        assert f"QK {len(qk0)} edges, {100 * like:.0f}% like-to-like" in first
        best = qk0[qk0["src"] != qk0["dst"]].sort_values("rank").iloc[0]
        assert f"{best['src_index']}: " in first and f"{float(best['weight']):.4g}" in first
        assert b.page.evaluate("document.querySelector('.overview').compareDocumentPosition(document.querySelector('img')) & 4") == 4
        # every feature is `index: label`, linked to its Neuronpedia page, full label and id on hover
        links = b.page.evaluate("[...document.querySelectorAll('a.feat')].map(a => [a.href, a.textContent, a.title])")
        assert len(links) > 200
        for href, text, title in links:
            fid = href.removeprefix("https://www.neuronpedia.org/")
            assert href.startswith("https://www.neuronpedia.org/featgraph-demo/")
            full = f"{fid.rsplit('/', 1)[1]}: {desc[fid]}" if isinstance(desc.get(fid), str) else fid.rsplit("/", 1)[1]
            assert title.split("\n")[0] == full and title.split("\n")[1] == fid
            assert text == full or (text.endswith("…") and full.startswith(text[:-1]))


@pytest.mark.browser
def test_tables_show_weight_and_z_and_tetrads_are_cards(demo_run, report):
    run = fg.open_run(demo_run)
    e = run.edge_table
    tet = find_tetrads(e)
    with browser() as b:
        b.page.goto((report / "index.html").as_uri())
        row = b.page.locator("#L1h2 ~ div.grid table.edges tr").nth(1).inner_text().split("\t")
        want = e[(e["head"] == 2) & (e["circuit"] == "QK")].sort_values("rank").iloc[0]
        assert int(row[0]) == 1 and float(row[1]) == pytest.approx(float(want["weight"]), rel=1e-3)
        assert float(row[2]) == pytest.approx(float(want["z"]), rel=1e-2)
        n_cards = b.page.evaluate("document.querySelectorAll('.cards:not(.overview) .card').length")
        want_cards = sum(min(6, len(g)) for _, g in tet.groupby(["head", "circuit"]))
        assert n_cards == want_cards
        # the strongest tetrad of head 0 OV: the four signed weights in its 2×2 grid
        t0 = tet[(tet["head"] == 0) & (tet["circuit"] == "OV")].iloc[0]
        card = b.page.locator("#L1h0 ~ h4:has-text('OV tetrads') + .cards .card").first.inner_text()
        for w in ("w_ax", "w_ay", "w_bx", "w_by"):
            assert f"{float(t0[w]):.4g}" in card
        assert f"strength {float(t0['strength']):.4g}" in card and "cos of the values" in card


@pytest.mark.browser
def test_search_box_filters_features_by_label(demo_run, report):
    run = fg.open_run(demo_run)
    ids = set(run.edge_table["src"]) | set(run.edge_table["dst"])
    desc = run.features.set_index("id")["description"].fillna("")
    want = [f for f in ids if "legal proceedings" in desc.get(f, "").lower()]
    assert want
    with browser() as b:
        b.page.goto((report / "index.html").as_uri())
        b.page.fill("#search", "Legal  PROCEEDINGS")
        b.page.wait_for_selector(f"body[data-matches='{len(want)}']", timeout=5000)
        shown = b.page.evaluate("[...document.querySelectorAll('#results a.feat')].map(a => a.href.split('neuronpedia.org/')[1])")
        assert sorted(shown) == sorted(want)
        hits = b.page.evaluate("[...document.querySelectorAll('tr.hit')].map(r => r.getAttribute('data-f'))")
        assert hits and all(any(w in h.split(" ") for w in want) for h in hits)
        b.page.fill("#search", "")
        assert b.page.evaluate("document.querySelectorAll('.hit').length") == 0


def test_long_labels_are_cut_with_the_full_text_on_hover(tmp_path):
    e = pd.DataFrame({"layer": 13, "head": [0, 0], "circuit": ["QK", "OV"],
                      "src": ["gemma-2-2b/12-gemmascope-res-16k/1", "gemma-2-2b/12-gemmascope-res-16k/1"],
                      "dst": ["gemma-2-2b/12-gemmascope-res-16k/2", "gemma-2-2b/13-gemmascope-res-16k/3"], "weight": [1.0, -2.0]})
    f = tmp_path / "e.csv"
    e.to_csv(f, index=False)
    assert cli("import", f, "--out", tmp_path / "run").exit_code == 0
    long = "references to " + "very " * 30 + "long things"
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"explanations": [
        {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "1", "description": long}]}))
    assert cli("labels", tmp_path / "run", "--source", labels).exit_code == 0
    assert cli("report", tmp_path / "run", "--out", tmp_path / "rep").exit_code == 0
    index = (tmp_path / "rep" / "index.html").read_text()
    cut = re.findall(r"<a class='feat'[^>]*title='1: references to very[^']*'>([^<]*)</a>", index)
    assert cut and all(c.endswith("…") and len(c) <= 48 for c in cut)
    assert f"title='1: {long}&#10;gemma-2-2b/12-gemmascope-res-16k/1'" in index


def test_report_on_edge_file_without_weights(tmp_path):
    e = pd.DataFrame({"layer": 13, "head": [0, 0, 1], "circuit": ["QK", "OV", "QK"],
                      "src": ["m/12-a/1", "m/12-a/1", "m/12-a/2"], "dst": ["m/12-a/1", "m/13-b/3", "m/12-a/5"], "weight": [1.0, -2.0, 0.5]})
    f = tmp_path / "e.csv"
    e.to_csv(f, index=False)
    r = cli("report", f, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert "warning: report: the positional and correlation figures were not made" in r.stderr, r.stderr
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "Not in this report: the positional and correlation figures were not made: they need the run" in index and "id='L13h1'" in index


def test_a_report_whose_figures_cannot_be_made_says_which_and_why(demo_run, tmp_path):
    """The run's inputs are gone: the page is written, but stderr and the page both say what is missing."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    m = json.loads((run / "manifest.json").read_text())
    m["model"]["ref"], m["model"]["ref_from_run"] = str(tmp_path / "gone"), "../gone"
    (run / "manifest.json").write_text(json.dumps(m))
    r = cli("report", run, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    said = [line for line in r.stderr.splitlines() if line.startswith("warning: report:")]
    assert any("positional and correlation figures were not made" in s and "gone" in s for s in said), r.stderr
    assert any("tetrad cards have no cosines" in s for s in said), r.stderr
    index = (tmp_path / "rep" / "index.html").read_text()
    assert index.count("class='note missing'") == 2 and "Not in this report: the positional and correlation figures" in index
    assert not (tmp_path / "rep" / "positional.png").exists()
    r = cli("report", run, "--out", tmp_path / "rep2", "--no-plots")
    assert r.exit_code == 0 and "warning" not in r.stderr, r.stderr  # asked for: a note on the page, no warning
    assert "not asked for (--no-plots)" in (tmp_path / "rep2" / "index.html").read_text()


def test_refuses_to_overwrite_without_force(demo_run, report):
    r = cli("report", demo_run, "--out", report, "--no-plots")
    assert r.exit_code == 2 and (report / "positional.png").exists()
