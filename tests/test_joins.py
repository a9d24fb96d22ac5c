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


def test_one_name_for_the_feature_index(demo_run, tmp_path):
    """The feature index is `feature_index` in features.parquet, Run.features, label search, store queries, NetworkX
    node attributes, GraphML keys and the explorer's JSON (features.parquet and search said `index`, the rest
    `feature_index`; `index` cannot be a bare property name in LadybugDB: docs/graph.md)."""
    import shutil
    import xml.etree.ElementTree as ET

    import pyarrow.parquet as pq

    from featgraph.analyse.search import rank_features
    from featgraph.core.schema import FEATURE_INDEX
    from featgraph.server.explorer import Explorer

    assert FEATURE_INDEX == "feature_index"
    d = tmp_path / "run"
    shutil.copytree(demo_run, d)
    run = fg.open_run(d)
    assert "feature_index" in pq.read_schema(d / "features.parquet").names
    assert "feature_index" in run.features.columns and "index" not in run.features.columns
    want = run.features.set_index("id")["feature_index"]
    assert (want.index.str.rsplit("/", n=1).str[-1].astype(int) == want).all()
    i = int(want.iloc[0])
    assert "feature_index" in rank_features(run.features, str(i)).columns
    run.load()
    got = run.query("MATCH (f:Feature) RETURN f.id AS id, f.feature_index AS feature_index ORDER BY feature_index, id")
    assert got.set_index("id")["feature_index"].sort_index().tolist() == want.sort_index().tolist()
    g = run.to_networkx()
    assert all(g.nodes[f]["feature_index"] == want[f] and "index" not in g.nodes[f] for f in want.index)
    keys = {k.get("attr.name") for k in ET.parse(run.export_graphml(tmp_path / "g.graphml")).getroot()
            if k.tag.endswith("key") and k.get("for") == "node"}
    assert "feature_index" in keys and "index" not in keys
    ex = Explorer(run)
    try:
        found = ex.search(str(i))["features"]
        assert found and all(v["feature_index"] == want[f] and "index" not in v for f, v in found.items())
        assert all("index" not in v for v in ex.expand(next(iter(found)))["features"].values())
    finally:
        ex.close()


def test_a_run_from_before_the_rename_still_reads(demo_run, tmp_path):
    """A features.parquet written with the old column `index` (featgraph before the name was unified) reads as
    `feature_index` everywhere, loads and answers queries, and a relabel rewrites it under the new name; the
    manifest's checksum still holds (the file itself is not touched by reading)."""
    import hashlib
    import shutil
    import warnings

    import pyarrow.parquet as pq

    d = tmp_path / "old"
    shutil.copytree(demo_run, d)
    new = pd.read_parquet(d / "features.parquet")
    new.rename(columns={"feature_index": "index"}).to_parquet(d / "features.parquet", index=False)
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["features.parquet"]["sha256"] = hashlib.sha256((d / "features.parquet").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(m))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = fg.open_run(d)
    assert "index" not in run.features.columns
    pd.testing.assert_frame_equal(run.features, new)
    run.load()
    got = run.query("MATCH (f:Feature) WHERE f.feature_index < 3 RETURN f.id AS id ORDER BY id")
    assert got["id"].tolist() == sorted(new.loc[new["feature_index"] < 3, "id"])
    r = cli("search", d, "3", "--format", "csv")
    assert r.exit_code == 0, r.output
    assert pq.read_schema(d / "features.parquet").names[3] == "index"  # reading left the old file as it was
    labels = tmp_path / "labels.jsonl"
    f0 = new.iloc[0]
    labels.write_text(json.dumps({"modelId": f0["id"].split("/")[0], "layer": f0["sae"], "index": str(f0["feature_index"]),
                                  "description": "relabelled"}) + "\n")
    run.label([labels])
    assert "feature_index" in pq.read_schema(d / "features.parquet").names
    assert fg.open_run(d).features.set_index("id").loc[f0["id"], "description"] == "relabelled"
    old_table = pd.DataFrame({"model": [f0["id"].split("/")[0]], "sae": [f0["sae"]], "index": [f0["feature_index"]],
                              "description": ["from an old label table"], "explainer": ["test"]})
    fg.open_run(d).label(label_table=old_table)  # a label table written the old way (column `index`) still labels
    assert fg.open_run(d).features.set_index("id").loc[f0["id"], "description"] == "from an old label table"
