"""`run.show()`: the explorer page drawn in a notebook without a server — executed in a real Jupyter kernel
(nbclient), its output opened in a real headless Chromium with the network cut off."""

from __future__ import annotations

import html
import re
import shutil

import pytest

import featgraph as fg
from featgraph.analyse.filters import subgraph
from featgraph.errors import BadValue

from helpers import REPO, browser


def _page_errors(b) -> list[str]:
    return [m for m in b.console if "GL Driver Message" not in m]


def _open(b, path):
    b.page.goto(path.as_uri())
    b.page.wait_for_selector("body[data-ready='1']", timeout=20000)


@pytest.mark.browser
def test_show_draws_a_head_in_two_columns_offline(demo_run, tmp_path):
    run = fg.open_run(demo_run)
    view = run.show(head=1, circuit="ov", top=40)
    assert view._repr_html_().startswith("<iframe srcdoc=") and "sandbox=" in view._repr_html_()
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", view.page)
    view.save(tmp_path / "v.html")
    want = subgraph(run.edge_table, 1, "OV", 40)
    with browser() as b:
        _open(b, tmp_path / "v.html")
        edges = b.page.evaluate("featgraph.graph.mapEdges((k, a, s, d) => [s, d])")
        assert sorted((s[2:], d[2:]) for s, d in edges) == sorted(zip(want["src"], want["dst"]))
        assert all(s.startswith("s:") and d.startswith("d:") for s, d in edges)
        assert b.page.evaluate("featgraph.state.layout") == "columns"
        assert b.page.locator("#left").is_hidden()  # no server: no find, expand or console
        assert _page_errors(b) == [] and b.requests == []


def test_show_checks_its_arguments(demo_run):
    run = fg.open_run(demo_run)
    with pytest.raises(BadValue, match="layout"):
        run.show(head=1, layout="circle")
    with pytest.raises(BadValue, match="more edges than a notebook page"):
        run.show(head=1, top=10**6)


@pytest.mark.browser
def test_show_in_a_jupyter_kernel(demo_run, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra (pip install 'featgraph[notebook]')")
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra (pip install 'featgraph[notebook]')")
    pytest.importorskip("ipykernel", reason="the notebook extra (pip install 'featgraph[notebook]')")
    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout's featgraph
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import featgraph as fg\nrun = fg.open_run({str(run_dir)!r})"),
                nbformat.v4.new_code_cell("run.show(feature='featgraph-demo/0-demo-res-96/28', circuit='qk', hops=1, top=30)"),
                nbformat.v4.new_code_cell("run.show(query='top_edges', params={'head': 2, 'circuit': 'ov', 'limit': 12})")]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    pages = []
    for cell in nb.cells[1:]:
        (out,) = [o for o in cell.outputs if o.get("output_type") == "execute_result"]
        shown = out["data"]["text/html"]
        m = re.match(r'<iframe srcdoc="(.*?)" style=', shown, re.DOTALL)
        assert m, shown[:200]
        pages.append(html.unescape(m.group(1)))
    run = fg.open_run(run_dir)
    e = run.edge_table
    top = e[(e["head"] == 2) & (e["circuit"] == "OV")].assign(a=e["weight"].abs()).sort_values(["a", "src", "dst"], ascending=[False, True, True]).head(12)
    near = subgraph(e, None, "QK", 30, "featgraph-demo/0-demo-res-96/28", 1)
    with browser() as b:
        for page, want in zip(pages, (near, top)):
            path = tmp_path / "shown.html"
            path.write_text(page, encoding="utf-8")
            _open(b, path)
            got = b.page.evaluate("Array.from(featgraph.state.edges.values()).map(e => [e.src, e.dst, e.head, e.circuit])")
            assert sorted(map(tuple, got)) == sorted(zip(want["src"], want["dst"], want["head"].astype(int), want["circuit"]))
            assert _page_errors(b) == [] and b.requests == []
