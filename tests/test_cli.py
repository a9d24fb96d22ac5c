"""The command line end to end: extract, labels, import, tables, demo, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from helpers import NEURONPEDIA, fg, write_sae


def _extract_args(tiny, out, *extra):
    model_dir, _, sae_in, sae_out = tiny
    return ["extract", "--model", model_dir, "--layer", 1, "--sae-in", sae_in, "--sae-out", sae_out,
            "--top-k", 50, "--device", "cpu", "--no-labels", "--out", out, *extra]


def test_extract_then_tables(tiny, tmp_path):
    out = tmp_path / "run"
    r = fg(*_extract_args(tiny, out, "--heads", "0,3", "--csv"))
    assert r.exit_code == 0, r.output
    edges = pd.read_parquet(out / "edges.parquet")
    assert sorted(edges["head"].unique()) == [0, 3]
    assert edges.groupby(["head", "circuit"]).size().eq(50).all()
    assert (edges.groupby(["head", "circuit"])["rank"].min() == 1).all()
    m = json.loads((out / "manifest.json").read_text())
    assert m["rows"]["edges"] == len(edges) and set(m["files"]) == {"edges.parquet", "features.parquet", "edges.csv"}
    assert "HF_TOKEN" not in json.dumps(m)
    st = m["stats"]["0/QK"]
    e = edges[(edges["head"] == 0) & (edges["circuit"] == "QK")]
    np.testing.assert_allclose(e["z"], (e["weight"] - st["mean"]) / st["std"], rtol=1e-5)
    r = fg("tables", out, "--head", 0, "--circuit", "qk", "--top", 5, "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["rank"] for x in rows] == [1, 2, 3, 4, 5] and set(rows[0]) == {
        "layer", "head", "circuit", "rank", "weight", "z", "key", "query", "src", "src_index", "src_description", "dst", "dst_index",
        "dst_description"}
    e0 = edges[(edges["head"] == 0) & (edges["circuit"] == "QK")].sort_values("rank")
    assert [x["z"] for x in rows] == pytest.approx(e0["z"].head(5).tolist(), rel=1e-6)
    r = fg("tables", out, "--head", 3, "--circuit", "ov", "--distinct", "--positive", "--format", "csv")
    t = pd.read_csv(__import__("io").StringIO(r.stdout))
    assert (t["weight"] > 0).all() and list(t.columns)[3:8] == ["rank", "weight", "z", "value", "output"]
    # refusing to overwrite, then --force
    r = fg(*_extract_args(tiny, out))
    assert r.exit_code == 2 and "--force" in r.stderr
    assert fg(*_extract_args(tiny, out, "--force", "--heads", "1")).exit_code == 0
    assert sorted(pd.read_parquet(out / "edges.parquet")["head"].unique()) == [1]


def test_tables_filters_match_pandas(tiny, tmp_path):
    out = tmp_path / "run"
    assert fg(*_extract_args(tiny, out, "--top-k", 400)).exit_code == 0
    edges = pd.read_parquet(out / "edges.parquet")
    want = edges[(edges["head"] == 2) & (edges["circuit"] == "QK") & (edges["src"] != edges["dst"]) & (edges["weight"] > 0)]
    want = want.nsmallest(7, "rank")
    r = fg("tables", out, "--head", 2, "--circuit", "QK", "--distinct", "--positive", "--top", 7, "--format", "json")
    got = json.loads(r.stdout)
    assert [g["rank"] for g in got] == want["rank"].tolist()
    assert [g["key"].split(":")[0] for g in got] == want["src_index"].astype(str).tolist()


def test_labels_with_real_export_and_import(tmp_path):
    edges = pd.DataFrame({
        "layer": [13, 13, 13], "head": [0, 0, 7], "circuit": ["qk", "QK", "OV"],
        "src": ["gemma-2-2b/12-gemmascope-res-16k/3744", "gemma-2-2b/12-gemmascope-res-16k/819", "gemma-2-2b/12-gemmascope-res-16k/1"],
        "dst": ["gemma-2-2b/12-gemmascope-res-16k/8517", "gemma-2-2b/12-gemmascope-res-16k/819", "gemma-2-2b/13-gemmascope-res-16k/2"],
        "weight": [-0.1015, -0.09106, 0.5],
    })
    f = tmp_path / "edges.csv"
    edges.to_csv(f, index=False)
    out = tmp_path / "imp"
    r = fg("import", f, "--out", out)
    assert r.exit_code == 0, r.output
    r = fg("labels", out, "--source", NEURONPEDIA)
    assert r.exit_code == 0, r.output
    assert "labelled 5 of 5" in r.stdout
    feats = pd.read_parquet(out / "features.parquet").set_index("id")
    assert feats.loc["gemma-2-2b/12-gemmascope-res-16k/8517", "description"].startswith("numerical patterns")
    assert feats.loc["gemma-2-2b/12-gemmascope-res-16k/8517", "url"] == "https://www.neuronpedia.org/gemma-2-2b/12-gemmascope-res-16k/8517"
    assert feats.loc["gemma-2-2b/13-gemmascope-res-16k/2", "layer"] == 13
    r = fg("tables", out, "--head", 0, "--circuit", "qk", "--format", "md")
    assert "3744: references to the Hall of Fame" in r.stdout and "8517: numerical patterns" in r.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["labels"]["labelled"] == 5
    # tables also read a bare edge file
    r = fg("tables", f, "--head", 7, "--circuit", "ov")
    assert r.exit_code == 0 and "| 1 | 0.5 | 1 | 2 |" in r.stdout


def _bad_sae(tmp_path, kind):
    p = write_sae(tmp_path / kind, 48, 10, seed=0)
    arrays = dict(np.load(p))
    if kind == "missing":
        del arrays["W_enc"]
        np.savez(p, **arrays)
    elif kind == "dmodel":
        write_sae(tmp_path / kind, 64, 10, seed=0)
    elif kind == "corrupt":
        p.write_bytes(p.read_bytes()[:500])
    return p


@pytest.mark.parametrize("case", ["missing-model", "layer", "sae-dmodel", "sae-missing", "sae-corrupt", "head", "top-k", "circuits"])
def test_bad_input_one_line_nothing_written(tiny, tmp_path, case):
    out = tmp_path / "out"
    args = _extract_args(tiny, out)
    i = args.index
    if case == "missing-model":
        args[i("--model") + 1] = tmp_path / "no-such-model"
    elif case == "layer":
        args[i("--layer") + 1] = 7
    elif case.startswith("sae-"):
        args[i("--sae-in") + 1] = _bad_sae(tmp_path, case[4:])
    elif case == "head":
        args += ["--heads", "0,9"]
    elif case == "top-k":
        args[i("--top-k") + 1] = -5
    elif case == "circuits":
        args[i("--top-k")] = "--circuits"
        args[i("--circuits") + 1] = "qk,xx"
    r = fg(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_edge_file_missing_columns(tmp_path):
    f = tmp_path / "e.csv"
    pd.DataFrame({"layer": [1], "head": [0], "src": ["m/1-x/1"], "dst": ["m/1-x/2"]}).to_csv(f, index=False)
    r = fg("import", f, "--out", tmp_path / "run")
    assert r.exit_code == 2 and "circuit, weight" in r.stderr
    assert not (tmp_path / "run").exists()


def test_debug_shows_traceback(tmp_path):
    cmd = [sys.executable, "-m", "featgraph", "--debug", "tables", str(tmp_path / "none"), "--head", "0", "--circuit", "qk"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" in r.stderr
    r = subprocess.run([c for c in cmd if c != "--debug"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_demo(tmp_path):
    r = fg("demo", "--out", tmp_path / "demo")
    assert r.exit_code == 0, r.output
    assert "featgraph tables" in r.stdout
    feats = pd.read_parquet(tmp_path / "demo" / "run" / "features.parquet")
    assert feats["description"].notna().sum() > 0 and feats["description"].isna().sum() > 0
    # tetrads of an extracted run are explained through the head: the planted antipodal
    # input features 3/4 (decoder rows d_4 = -d_3) have cosine -1 as sources of any head
    t = pd.read_parquet(tmp_path / "demo" / "run" / "tetrads.parquet")
    planted = t[(t["src_a"] == "featgraph-demo/0-demo-res-96/3") & (t["src_b"] == "featgraph-demo/0-demo-res-96/4")]
    assert len(planted) and np.allclose(planted["cos_src"], -1.0, atol=1e-5)
    assert (t["cos_src"].abs() <= 1 + 1e-5).all() and (t["cos_dst"].abs() <= 1 + 1e-5).all()
    for page in ("head0_ov.html", "report/index.html"):
        assert (tmp_path / "demo" / page).is_file()


def test_demo_model_loads_in_transformers(tmp_path):
    """The demo's synthetic checkpoint is in the real format: transformers loads it."""
    from transformers import Gemma2ForCausalLM

    from featgraph.api.demo import write_inputs

    inp = write_inputs(tmp_path)
    m = Gemma2ForCausalLM.from_pretrained(inp.model)
    assert m.config.head_dim == 32 and len(m.model.layers) == 3


def test_extract_only_warns_when_labels_are_unreachable(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATGRAPH_NEURONPEDIA_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("FEATGRAPH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = [a for a in _extract_args(tiny, out) if a != "--no-labels"]
    r = fg(*args)
    assert r.exit_code == 0, r.output
    assert "warning: labels not attached" in r.stderr and (out / "edges.parquet").exists()
    assert "--label-source FILE_OR_DIR" in r.stderr and "--source" not in r.stderr, r.stderr  # extract's own flag
    assert pd.read_parquet(out / "features.parquet")["description"].isna().all()


@pytest.mark.parametrize("circuit", ["qk,ov", "", "xx"])
def test_single_circuit_option_rejects_lists_and_junk(tiny, tmp_path, circuit):
    out = tmp_path / "run"
    assert fg(*_extract_args(tiny, out)).exit_code == 0
    r = fg("tables", out, "--head", 0, "--circuit", circuit)
    assert r.exit_code == 2 and r.stderr.startswith("error: --circuit") and r.stderr.count("\n") == 1


def test_label_source_for_other_saes_is_refused_before_computing(tiny, tmp_path, monkeypatch):
    import featgraph.api.compute as compute

    def never(*a, **k):
        raise AssertionError("computed before checking the labels")

    monkeypatch.setattr(compute, "compute_edges", never)
    out = tmp_path / "run"
    args = [a for a in _extract_args(tiny, out) if a != "--no-labels"]
    r = fg(*args, "--sae-in-id", "0-tiny-in", "--sae-out-id", "1-tiny-out", "--label-source", NEURONPEDIA)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "gemma-2-2b/12-gemmascope-res-16k" in r.stderr and "nothing was computed" in r.stderr
    assert not out.exists()


def test_a_killed_embedded_load_leaves_nothing_the_next_load_keeps(demo_run, tmp_path):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(demo_run, d)
    stale = d / ".graph.tmp-killed"
    (stale / "graph.lbdb").mkdir(parents=True)
    (stale / "graph.lbdb" / "data").write_bytes(b"\0" * 4096)  # what a load killed mid-way leaves behind
    assert fg("load", d).exit_code == 0
    assert not stale.exists() and not list(d.glob(".graph.tmp-*"))
    assert fg("query", d, "MATCH (f:Feature) RETURN count(f) AS n", "--format", "csv").stdout.split()[1] == str(
        len(pd.read_parquet(d / "features.parquet")))
