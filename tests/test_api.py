"""The Python API: every CLI command has an API twin giving the same result; objects in memory work
like files; old runs open; the library prints nothing and names parameters as Python spells them."""

from __future__ import annotations

import io
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import featgraph as fg
from featgraph.errors import BadValue
from featgraph.runs.manifest import FORMAT_VERSION, Manifest

from helpers import LAYER
from helpers import fg as cli

KEY = ["layer", "head", "circuit", "src", "dst"]


def _edges(run_or_dir):
    e = run_or_dir.edge_table if isinstance(run_or_dir, fg.Run) else pd.read_parquet(run_or_dir / "edges.parquet")
    return e.sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def api_run(demo_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("api") / "run"
    shutil.copytree(demo_run, d)
    run = fg.open_run(d)
    run.load()
    return run


def test_extract_cli_and_api_write_the_same_run(tiny, tmp_path):
    model_dir, _, sae_in, sae_out = tiny
    common = dict(model=model_dir, layer=LAYER, sae_in=sae_in, sae_out=sae_out, heads=[0, 3], top_k=40, device="cpu",
                  sae_in_id="0-tiny-in", sae_out_id="1-tiny-out")
    run = fg.extract(**common, out=tmp_path / "api", labels=False)
    r = cli("extract", "--model", model_dir, "--layer", LAYER, "--sae-in", sae_in, "--sae-out", sae_out, "--heads", "0,3",
            "--top-k", 40, "--device", "cpu", "--sae-in-id", "0-tiny-in", "--sae-out-id", "1-tiny-out", "--no-labels",
            "--out", tmp_path / "cli")
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(_edges(run), _edges(tmp_path / "cli"))
    a, b = run.manifest, fg.open_run(tmp_path / "cli").manifest
    assert a.run_id != b.run_id  # two runs made, two identities
    assert (a.selection, a.conventions, a.heads, a.circuits) == (b.selection, b.conventions, b.heads, b.circuits)
    # without `out` the run lives in memory and holds the same edges
    mem = fg.extract(**common)
    assert mem.path is None
    pd.testing.assert_frame_equal(_edges(mem), _edges(run))


def test_objects_in_memory_give_the_same_edges_as_files(tiny, tmp_path):
    model_dir, model, sae_in, sae_out = tiny
    files = fg.extract(model=model_dir, layer=LAYER, sae_in=sae_in, sae_out=sae_out, top_k=60, device="cpu",
                       sae_in_id="0-tiny-in", sae_out_id="1-tiny-out")
    arrays_in, arrays_out = dict(np.load(sae_in)), dict(np.load(sae_out))
    # a SAELens-like object: tensors as attributes, the Neuronpedia id in cfg.metadata
    saelens_in = SimpleNamespace(W_dec=torch.from_numpy(arrays_in["W_dec"]), b_dec=torch.from_numpy(arrays_in["b_dec"]),
                                 W_enc=torch.from_numpy(arrays_in["W_enc"]),
                                 cfg=SimpleNamespace(metadata=SimpleNamespace(neuronpedia_id="tiny/0-tiny-in")))
    cases = {
        "module": dict(model=model, sae_in=saelens_in, sae_out={"W_enc": arrays_out["W_enc"]}),
        "decoder layer": dict(model=(model.model.layers[LAYER].state_dict(), model.config), sae_in=arrays_in,
                              sae_out={"W_enc": torch.from_numpy(arrays_out["W_enc"])}),
        "state dict": dict(model=(model.state_dict(), model.config.to_dict()), sae_in=arrays_in, sae_out=arrays_out),
    }
    for name, inputs in cases.items():
        run = fg.extract(layer=LAYER, top_k=60, device="cpu", model_id="tiny", sae_in_id="0-tiny-in", sae_out_id="1-tiny-out",
                         **inputs)
        got, want = _edges(run), _edges(files)
        np.testing.assert_array_equal(got["src_index"], want["src_index"], err_msg=name)
        np.testing.assert_array_equal(got["dst_index"], want["dst_index"], err_msg=name)
        np.testing.assert_allclose(got["weight"], want["weight"], rtol=1e-6, err_msg=name)
        assert run.manifest.model["ref"] is None and run.manifest.model["in_memory"], name
    # the SAELens object's own Neuronpedia id names its features when none is given
    run = fg.extract(model=model, layer=LAYER, sae_in=saelens_in, sae_out={"W_enc": arrays_out["W_enc"]}, top_k=5,
                     device="cpu", model_id="tiny", sae_out_id="1-tiny-out")
    assert run.edge_table["src"].str.startswith("tiny/0-tiny-in/").all()
    assert run.manifest.sae_in["id_source"] == "SAELens cfg.neuronpedia_id"


def test_bad_objects_are_one_line_errors(tiny):
    _, model, sae_in, _ = tiny
    with pytest.raises(fg.BadInput, match="state dict|model is a"):
        fg.extract(model=42, layer=LAYER, sae_in=sae_in)
    with pytest.raises(fg.BadInput, match="W_dec"):
        fg.extract(model=model, layer=LAYER, sae_in={"W_enc": np.zeros((48, 4), np.float32)}, circuits=["qk"])
    with pytest.raises(fg.BadInput, match="d_model"):
        fg.extract(model=model, layer=LAYER, sae_in={"W_dec": np.zeros((4, 7), np.float32), "b_dec": np.zeros(7, np.float32)},
                   circuits=["qk"])


def test_errors_name_the_parameter_as_python_and_the_cli_spell_it(tiny, tmp_path):
    model_dir, _, sae_in, sae_out = tiny
    with pytest.raises(BadValue, match=r"^top_k must be a positive integer, got 0$"):
        fg.extract(model=model_dir, layer=LAYER, sae_in=sae_in, sae_out=sae_out, top_k=0)
    r = cli("extract", "--model", model_dir, "--layer", LAYER, "--sae-in", sae_in, "--sae-out", sae_out, "--top-k", 0,
            "--no-labels", "--out", tmp_path / "x")
    assert r.exit_code == 2 and r.stderr == "error: --top-k must be a positive integer, got 0\n"


def test_cli_commands_equal_their_api_twins(api_run, tmp_path):
    d = api_run.path
    # tables
    r = cli("tables", d, "--head", 1, "--circuit", "ov", "--top", 12, "--format", "json")
    pd.testing.assert_frame_equal(pd.DataFrame(json.loads(r.stdout)), api_run.table(1, "ov", top=12), check_dtype=False)
    # query: a library query and literal Cypher
    r = cli("query", d, "top_edges", "--param", "head=2", "--param", "circuit=qk", "--format", "json")
    pd.testing.assert_frame_equal(pd.DataFrame(json.loads(r.stdout)), api_run.query("top_edges", head=2, circuit="qk"),
                                  check_dtype=False)
    r = cli("query", d, "MATCH (f:Feature) WHERE f.feature_index < $n RETURN f.id AS id ORDER BY id", "--param", "n=5",
            "--format", "csv")
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(r.stdout)),
                                  api_run.query("MATCH (f:Feature) WHERE f.feature_index < $n RETURN f.id AS id ORDER BY id", n=5), check_dtype=False)
    # tetrads (filtered: nothing written into the run)
    r = cli("tetrads", d, "--head", 0, "--circuit", "ov", "--top", 1000, "--format", "csv", "--no-explain")
    got = pd.read_csv(io.StringIO(r.stdout))
    want = api_run.tetrads(head=0, circuit="ov", explain=False)
    assert len(got) == len(want) and got["strength"].tolist() == pytest.approx(want["strength"].tolist())
    assert got["src_a"].tolist() == want["src_a"].tolist() and got["dst_y"].tolist() == want["dst_y"].tolist()
    # correlation: the CSV the CLI writes is the API's frame
    r = cli("correlation", d, "--out", tmp_path / "c.png", "--heads", "0,2")
    assert r.exit_code == 0, r.output
    df = api_run.correlation(heads=[0, 2])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "c.csv"), df, check_dtype=False)
    for h, rho in df.attrs["pearson_r"].items():
        assert f"head {h}: r = {rho:.4f}" in r.stdout
    # positional
    m = api_run.manifest
    r = cli("positional", "--model", m.model["ref"], "--layer", m.layer, "--sae-in", m.sae_in["ref"], "--out", tmp_path / "p.png",
            "--max-distance", 64)
    assert r.exit_code == 0, r.output
    prof = fg.positional(m.model["ref"], m.layer, m.sae_in["ref"], max_distance=64)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "p.csv"), prof, check_dtype=False)
    # export: the GraphML holds the API's graph
    import networkx as nx

    assert cli("export", d, "--graphml", tmp_path / "g.graphml").exit_code == 0
    assert nx.read_graphml(tmp_path / "g.graphml", force_multigraph=True).number_of_edges() == api_run.to_networkx().number_of_edges()
    # load: the same counts
    r = cli("load", d)
    counts = api_run.load()
    assert r.stdout.strip() == f"loaded {counts['nodes']} features, {counts['QK']} QK and {counts['OV']} OV edges into the embedded store"


def test_import_cli_and_api(tmp_path):
    e = pd.DataFrame({"layer": 13, "head": [0, 0, 1], "circuit": ["qk", "OV", "QK"],
                      "src": ["m/12-a/1", "m/12-a/1", "m/12-a/2"], "dst": ["m/12-a/1", "m/13-b/3", "m/12-a/5"],
                      "weight": [1.0, -2.0, 0.5]})
    f = tmp_path / "e.csv"
    e.to_csv(f, index=False)
    assert cli("import", f, "--out", tmp_path / "cli").exit_code == 0
    run = fg.import_edges(f, tmp_path / "api")
    pd.testing.assert_frame_equal(_edges(run), _edges(tmp_path / "cli"))
    assert run.manifest.command == "import" and run.manifest.format_version == FORMAT_VERSION


def test_the_library_prints_nothing(api_run, tmp_path, capfd):
    api_run.table(0, "qk")
    api_run.query("hubs", head=0)
    api_run.tetrads(head=1, circuit="qk", explain=True)
    api_run.viz(0, "ov", tmp_path / "v.html")
    api_run.report(tmp_path / "rep", plots=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_run_written_before_format_version_2_opens(tmp_path):
    """Version-1 runs: no format_version, no run_id, conventions as a sentence (imported runs)."""
    d = tmp_path / "old"
    d.mkdir()
    edges = pd.DataFrame({"layer": [13], "head": [0], "kv_head": [0], "circuit": ["QK"], "src": ["m/12-a/1"], "src_index": [1],
                          "dst": ["m/12-a/2"], "dst_index": [2], "weight": np.float32([0.5]), "rank": [1]})
    edges.to_parquet(d / "edges.parquet", index=False)
    old = {"source": {"imported_from": "/somewhere/e.csv"}, "conventions": "unknown (imported)",
           "featgraph_version": "0.1.0", "rows": {"edges": 1, "features": 2}, "files": {}, "future_key": {"kept": True}}
    (d / "manifest.json").write_text(json.dumps(old))
    run = fg.open_run(d)
    conv = run.manifest.conventions
    assert run.manifest.format_version == 1 and not conv.known and conv.note == "unknown (imported)" and conv.ov_target == "resid"
    assert run.manifest.to_dict()["conventions"] == "unknown (imported)"  # written back as it came
    assert run.run_id.startswith("old-") and fg.open_run(d).run_id == run.run_id  # stable, derived from the edges
    assert run.manifest.to_dict()["future_key"] == {"kept": True}  # unknown keys survive a round trip
    assert run.table(0, "qk")["key"].tolist() == ["1"]
    assert Manifest.from_dict(run.manifest.to_dict()) == run.manifest
