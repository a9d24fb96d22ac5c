"""After `labels`, the stores show the new labels or the command says which copy is stale and how to refresh it."""

from __future__ import annotations

import json
import shutil

import pytest

import featgraph as fg

from helpers import fg as cli


def _relabel(run_dir, tmp_path, fid, text):
    model, source, index = fid.split("/")
    f = tmp_path / "new_labels.json"
    f.write_text(json.dumps({"explanations": [{"modelId": model, "layer": source, "index": index, "description": text}]}))
    return cli("labels", run_dir, "--source", f)


@pytest.fixture
def run_dir(demo_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(demo_run, d)
    return d


def test_embedded_store_and_tables_agree_after_labels(run_dir, tmp_path):
    assert cli("load", run_dir).exit_code == 0
    fid = fg.open_run(run_dir).edge_table.query("head == 0 and circuit == 'QK'").sort_values("rank").iloc[0]["src"]
    r = _relabel(run_dir, tmp_path, fid, "a brand new label")
    assert r.exit_code == 0, r.output
    assert "1 matched" in r.stdout and "Neo4j" not in r.stderr  # never loaded into Neo4j: nothing stale
    run = fg.open_run(run_dir)
    got = run.query("MATCH (f:Feature {id: $id}) RETURN f.description AS d", id=fid)["d"][0]
    assert got == "a brand new label" == run.features.set_index("id").loc[fid, "description"]
    assert "a brand new label" in run.table(0, "qk").iloc[0]["key"]


@pytest.mark.neo4j
def test_labels_say_a_loaded_neo4j_copy_is_stale_until_reloaded(run_dir, tmp_path, neo4j_env):
    assert cli("load", run_dir, "--neo4j").exit_code == 0
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["stores"]["neo4j"]["uri"] == neo4j_env["uri"] and neo4j_env["password"] not in json.dumps(m)
    fid = fg.open_run(run_dir).edge_table.iloc[0]["src"]
    r = _relabel(run_dir, tmp_path, fid, "relabelled")
    assert r.exit_code == 0
    assert "warning: the copy of this run loaded into Neo4j" in r.stderr and f"featgraph load {run_dir} --neo4j" in r.stderr
    query = "MATCH (f:Feature {id: $id}) RETURN f.description AS d"
    run = fg.open_run(run_dir)
    assert run.query(query, neo4j=True, id=fid)["d"][0] != "relabelled"  # stale, as the warning said
    assert cli("load", run_dir, "--neo4j").exit_code == 0
    assert fg.open_run(run_dir).query(query, neo4j=True, id=fid)["d"][0] == "relabelled"
    assert "stores" in json.loads((run_dir / "manifest.json").read_text())  # labelling kept the record
