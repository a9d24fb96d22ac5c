"""Results that join: tables carry ids, indices and descriptions; one default per option in the API and the CLI;
keyword-friendly signatures; a one-line repr."""

from __future__ import annotations

import inspect
import io
import json

import pandas as pd
import typer

import featgraph as fg
from featgraph.cli.app import app

from helpers import fg as cli


def test_tables_join_back_to_the_edges(demo_run):
    run = fg.open_run(demo_run)
    t = run.table(0, "qk", distinct=True, top=10)
    joined = t.merge(run.edges, on=["layer", "head", "circuit", "src", "dst"], suffixes=("", "_edge"))
    assert len(joined) == len(t) == 10
    assert (joined["weight"] == joined["weight_edge"]).all() and (joined["rank"] == joined["rank_edge"]).all()
    assert (t["src_index"] == t["key"].str.split(":").str[0].astype(int)).all()
    assert t["src_description"].equals(joined["src_description_edge"].rename("src_description"))
    for fmt in ("csv", "json"):
        r = cli("tables", demo_run, "--head", 0, "--circuit", "qk", "--distinct", "--top", 10, "--format", fmt)
        got = pd.read_csv(io.StringIO(r.stdout)) if fmt == "csv" else pd.DataFrame(json.loads(r.stdout))
        assert got["src"].tolist() == t["src"].tolist() and got["dst_index"].tolist() == t["dst_index"].tolist()
    md = cli("tables", demo_run, "--head", 0, "--circuit", "qk", "--top", 3).stdout
    assert md.splitlines()[0] == "| rank | weight | z | key | query |"  # the post's view


def test_api_and_cli_share_defaults():
    """Every option both take has one default (search's limit was 20 in Python, 10 on the command line)."""
    group = typer.main.get_command(app)
    pairs = {"search": fg.Run.search, "tables": fg.Run.table, "viz": fg.Run.viz, "tetrads": fg.Run.tetrads,
             "report": fg.Run.report, "correlation": fg.Run.correlation}
    checked = 0
    for name, method in pairs.items():
        api = inspect.signature(method).parameters
        for p in group.commands[name].params:
            if p.name in api and api[p.name].default is not inspect.Parameter.empty and p.default is not None:
                assert api[p.name].default == p.default, (name, p.name, api[p.name].default, p.default)
                checked += 1
    assert checked >= 8


def test_keyword_calls_and_a_short_repr(demo_run, tmp_path):
    run = fg.open_run(demo_run)
    assert run.viz(circuit="ov", out=tmp_path / "v.html", top=20).is_file()  # head=None: all heads, by keyword
    g = fg.to_networkx(demo_run, head=0, circuit="qk", layer=1)
    assert g.number_of_edges() == len(run.edge_table.query("head == 0 and circuit == 'QK'"))
    text = repr(run)
    assert "\n" not in text and len(text) < 200 and str(demo_run) in text and "edges" in text, text


def test_manifest_conventions_and_selection_are_typed(demo_run):
    from featgraph.runs.manifest import ConventionsRecord, Manifest, SelectionRecord

    m = fg.open_run(demo_run).manifest
    conv, sel = m.conventions, m.selection
    assert isinstance(conv, ConventionsRecord) and isinstance(sel, SelectionRecord)
    assert conv.known and conv.ov_target == "resid" and conv.attn_scale is None and conv.rope_offset == 0
    assert conv.rope_theta == 10000.0 and conv.qk_norm is False and conv["rope"]["theta"] == 10000.0  # still reads as stored
    assert sel.top_k == 200 and sel.per_source_k == 2 and sel.min_abs is None and sel.precision == "fp32"
    raw = json.loads((demo_run / "manifest.json").read_text())
    assert json.loads(m.to_json())["conventions"] == raw["conventions"] and Manifest.from_dict(m.to_dict()) == m
