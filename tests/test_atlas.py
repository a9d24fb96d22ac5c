"""The atlas: every head of several layers in one graph whose SAE features are shared nodes across layers.

A tiny random Gemma 2 (3 layers) with a residual SAE per layer in Gemma Scope's local layout; the atlas of
layers 1-2 is checked against independent per-layer `extract` runs, a cross-layer Cypher path on the embedded
store against a pandas join, and for resume, --force and bad --layers.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

import featgraph as fg
from featgraph.api import compute
from featgraph.errors import BadInput, FeatgraphWarning, MissingValue

from helpers import TINY, make_tiny_model, write_sae
from helpers import fg as cli

KEY = ["layer", "head", "circuit", "src", "dst"]
WIDTHS = {0: 40, 1: 36, 2: 44}  # a different width per layer: an index from the wrong SAE would show
TOP_K = 150
MODEL_ID = "gemma-2-tiny"  # the model folder's name, as featgraph infers it (docs/ids.md)


def _sae_path(root, layer):
    return root / "gemma-scope-2b-pt-res" / f"layer_{layer}" / "width_16k" / "average_l0_71" / "params.npz"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(model dir, SAE template): the tiny model and a Gemma Scope-layout SAE for each of its layers."""
    root = tmp_path_factory.mktemp("atlas_in")
    make_tiny_model(root / MODEL_ID)
    for layer, width in WIDTHS.items():
        write_sae(_sae_path(root, layer).parent, TINY["hidden_size"], width, seed=20 + layer)
    return root / MODEL_ID, str(root / "gemma-scope-2b-pt-res" / "layer_{layer}" / "width_16k" / "average_l0_71" / "params.npz")


def _atlas_args(inputs, out, *extra):
    model, template = inputs
    return ["atlas", "--model", model, "--layers", "1-2", "--sae-template", template, "--top-k", TOP_K,
            "--device", "cpu", "--no-labels", "--out", out, *extra]


@pytest.fixture(scope="module")
def made(inputs, tmp_path_factory):
    """The atlas of layers 1-2 made by the CLI, and each layer extracted on its own (the reference)."""
    root = tmp_path_factory.mktemp("atlas")
    r = cli(*_atlas_args(inputs, root / "atlas"))
    assert r.exit_code == 0, r.output
    model, template = inputs
    alone = {L: fg.extract(model=model, layer=L, sae_in=template.format(layer=L - 1), sae_out=template.format(layer=L),
                           top_k=TOP_K, device="cpu", labels=False, out=root / f"alone{L}") for L in (1, 2)}
    return root / "atlas", alone


def _sorted(e: pd.DataFrame) -> pd.DataFrame:
    return e.sort_values(KEY).reset_index(drop=True)


def test_combined_edges_are_the_per_layer_runs(made):
    out, alone = made
    atlas = fg.open_run(out)
    assert atlas.is_atlas and atlas.layers == [1, 2] and atlas.manifest.command == "atlas"
    want = pd.concat([alone[L].edge_table for L in (1, 2)], ignore_index=True)
    pd.testing.assert_frame_equal(_sorted(atlas.edge_table), _sorted(want))
    assert atlas.edge_table.groupby(["layer", "head", "circuit"]).size().eq(TOP_K).all()
    assert len(atlas.edge_table.groupby(["layer", "head", "circuit"])) == 2 * TINY["num_attention_heads"] * 2
    # each layer is a complete run of its own, with the same edges
    for L in (1, 2):
        part = fg.open_run(out / "layers" / f"L{L}")
        pd.testing.assert_frame_equal(_sorted(part.edge_table), _sorted(alone[L].edge_table))
    m = json.loads((out / "manifest.json").read_text())
    assert m["layers"] == [1, 2] and set(m["atlas"]["parts"]) == {"1", "2"}
    assert m["atlas"]["parts"]["2"]["run_id"] == fg.open_run(out / "layers" / "L2").run_id
    assert json.loads((out / ".featgraph").read_text())["kind"] == "atlas"


def test_features_are_shared_nodes_across_layers(made):
    out, alone = made
    atlas = fg.open_run(out)
    e, f = atlas.edge_table, atlas.features
    assert f["id"].is_unique
    assert set(e["src"]) | set(e["dst"]) == set(f["id"])
    # the SAE of layer 1 is layer 1's OV output and layer 2's input: one id per feature either way
    ov1 = e[(e["layer"] == 1) & (e["circuit"] == "OV")]
    qk2 = e[(e["layer"] == 2) & (e["circuit"] == "QK")]
    sae1 = f"{MODEL_ID}/1-gemmascope-res-16k__l0-71/"
    assert ov1["dst"].str.startswith(sae1).all() and qk2["src"].str.startswith(sae1).all()
    by_index = {}
    for ids, idx in ((ov1["dst"], ov1["dst_index"]), (qk2["src"], qk2["src_index"]), (qk2["dst"], qk2["dst_index"])):
        for i, x in zip(ids, idx):
            assert by_index.setdefault(int(x), i) == i
    shared = set(ov1["dst"]) & (set(qk2["src"]) | set(qk2["dst"]))
    assert len(shared) > 10
    assert (ov1["dst_index"] < WIDTHS[1]).all() and (qk2["src_index"] < WIDTHS[1]).all()
    # the same ids as the independent runs give them
    assert set(alone[1].edge_table.query("circuit == 'OV'")["dst"]) == set(ov1["dst"])


def _check_cross_layer_paths(atlas, l1: int, l2: int) -> None:
    """Two-step paths from layer l1's OV into layer l2's QK keys / OV values, on the embedded store, equal a pandas join."""
    atlas.load()
    e = atlas.edge_table
    cols = ["a", "h1", "b", "h2", "c", "w"]

    def join(first, second):
        x = e[(e["layer"] == l1) & (e["circuit"] == first)]
        y = e[(e["layer"] == l2) & (e["circuit"] == second)]
        j = x.merge(y, left_on="dst", right_on="src", suffixes=("_1", "_2"))
        return pd.DataFrame({"a": j["src_1"], "h1": j["head_1"].astype("int64"), "b": j["dst_1"],
                             "h2": j["head_2"].astype("int64"), "c": j["dst_2"],
                             "w": j["weight_1"].astype("float64") * j["weight_2"].astype("float64")})

    for first, second in (("OV", "QK"), ("OV", "OV")):
        # a value feature at l1−1 -OV of a layer-l1 head-> a feature at l1 -(key of a layer-l2 head, or its value)-> …
        got = atlas.query(f"MATCH (a:Feature)-[r1:{first}]->(b:Feature)-[r2:{second}]->(c:Feature) "
                          "WHERE r1.layer = $l1 AND r2.layer = $l2 "
                          "RETURN a.id AS a, r1.head AS h1, b.id AS b, r2.head AS h2, c.id AS c, r1.weight * r2.weight AS w",
                          l1=l1, l2=l2)
        want = join(first, second)
        assert len(want) > 100
        got, want = (d[cols].sort_values(cols[:5]).reset_index(drop=True) for d in (got, want))
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-6)
    # and nothing joins layer l2's outputs back into layer l1's inputs
    back = atlas.query("MATCH (a:Feature)-[r1:OV]->(b:Feature)-[r2:QK]->(c:Feature) WHERE r1.layer = $l2 AND r2.layer = $l1 "
                       "RETURN count(*) AS n", l1=l1, l2=l2)
    assert int(back["n"].iloc[0]) == 0


def test_cross_layer_cypher_paths_equal_a_pandas_join(made):
    _check_cross_layer_paths(fg.open_run(made[0]), 1, 2)


def test_interrupted_atlas_resumes_after_the_finished_layer(inputs, made, tmp_path, monkeypatch):
    model, template = inputs
    out = tmp_path / "atlas"
    calls = []
    real = compute.extract

    def crash_on_second(*a, **k):
        calls.append(k["layer"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted while layer 2 runs
        return real(*a, **k)

    monkeypatch.setattr(compute, "extract", crash_on_second)
    common = dict(model=model, layers=[1, 2], sae_template=template, top_k=TOP_K, device="cpu", labels=False, out=out)
    with pytest.raises(KeyboardInterrupt):
        fg.atlas(**common)
    assert calls == [1, 2]
    assert (out / "layers" / "L1" / "manifest.json").is_file() and not (out / "layers" / "L2").exists()
    half = fg.open_run(out)  # the layers finished so far are already one run
    assert half.layers == [1]
    half.load()
    half.tetrads(explain=False)
    assert (out / "tetrads.parquet").is_file()

    calls.clear()
    monkeypatch.setattr(compute, "extract", lambda *a, **k: (calls.append(k["layer"]), real(*a, **k))[1])
    run = fg.atlas(**common)
    assert calls == [2]  # layer 1 was skipped
    pd.testing.assert_frame_equal(_sorted(run.edge_table), _sorted(fg.open_run(made[0]).edge_table))
    assert run.run_id == half.run_id  # the same atlas, grown
    # the store follows the new layer; tetrads found over fewer layers are gone
    n = run.query("MATCH ()-[r:QK]->() WHERE r.layer = 2 RETURN count(*) AS n")["n"].iloc[0]
    assert n == (run.edge_table.query("layer == 2 and circuit == 'QK'")).shape[0] and n > 0
    assert not (out / "tetrads.parquet").exists()

    calls.clear()
    run = fg.atlas(**common)  # finished: nothing computed again
    assert calls == []

    # a request the finished layers were not computed with is refused, and changes nothing
    before = (out / "edges.parquet").read_bytes()
    with pytest.raises(BadInput, match=r"layer 1 of the atlas .* top_k 150, not 40"):
        fg.atlas(**common | {"top_k": 40})
    assert (out / "edges.parquet").read_bytes() == before and calls == []


def test_combined_run_rebuilt_when_due_and_when_the_call_ends(inputs, tmp_path, monkeypatch):
    """The combined run is rebuilt after a finished layer only when COMBINE_EVERY_S has passed since the last rebuild
    (after every layer with 0), and always when the call ends: once for the whole call with a long interval, and then
    it holds every layer."""
    from featgraph.api import multilayer
    from featgraph.runs import atlasdir

    model, template = inputs
    held = []
    real = atlasdir.combine
    monkeypatch.setattr(atlasdir, "combine", lambda out, done, *a, **k: (held.append(sorted(done)), real(out, done, *a, **k))[1])
    common = dict(model=model, layers=[1, 2], sae_template=template, top_k=TOP_K, device="cpu", labels=False)
    for every, want in ((0.0, [[], [1], [1, 2]]), (3600.0, [[], [1, 2]])):
        monkeypatch.setattr(multilayer, "COMBINE_EVERY_S", every)
        held.clear()
        run = fg.atlas(**common, out=tmp_path / f"every{every:g}")
        assert held == want  # ([] is the rebuild before any layer: what an interrupted rebuild left, made whole)
        assert run.layers == [1, 2]


def test_a_failing_rebuild_does_not_hide_the_error_that_stopped_the_atlas(inputs, tmp_path, monkeypatch):
    """When a layer fails and the combined run's rebuild at the end fails too, the layer's error is the one raised;
    the rebuild's is a warning saying the next call rebuilds it."""
    from featgraph.runs import atlasdir

    model, template = inputs
    real_extract, real_combine = compute.extract, atlasdir.combine

    def extract(*a, **k):
        if k["layer"] == 2:
            raise RuntimeError("layer 2 broke")
        return real_extract(*a, **k)

    def combine(out, done, *a, **k):
        if done:
            raise OSError("disk full")
        return real_combine(out, done, *a, **k)

    monkeypatch.setattr(compute, "extract", extract)
    monkeypatch.setattr(atlasdir, "combine", combine)
    with pytest.warns(FeatgraphWarning, match=r"not rebuilt \(disk full\); the next `atlas` call"):
        with pytest.raises(RuntimeError, match="layer 2 broke"):
            fg.atlas(model=model, layers=[1, 2], sae_template=template, top_k=TOP_K, device="cpu", labels=False,
                     out=tmp_path / "atlas")


def test_force_recomputes_every_layer(inputs, made, tmp_path, monkeypatch):
    out = tmp_path / "atlas"
    r = cli(*_atlas_args(inputs, out, "--layers", "2"))
    assert r.exit_code == 0, r.output
    calls = []
    real = compute.extract
    monkeypatch.setattr(compute, "extract", lambda *a, **k: (calls.append(k["layer"]), real(*a, **k))[1])
    r = cli(*_atlas_args(inputs, out, "--top-k", 40))
    assert r.exit_code == 2 and "layer 2 of the atlas" in r.stderr and "--force" in r.stderr and calls == []
    r = cli(*_atlas_args(inputs, out, "--top-k", 40, "--force"))
    assert r.exit_code == 0, r.output
    assert calls == [1, 2]
    e = fg.open_run(out).edge_table
    assert e.groupby(["layer", "head", "circuit"]).size().eq(40).all()
    top = _sorted(fg.open_run(made[0]).edge_table.query("rank <= 40"))
    pd.testing.assert_frame_equal(_sorted(e), top)


@pytest.mark.parametrize(("layers", "says"), [
    ("0", "--layers 0 has no residual SAE before it"),
    ("1-3", "--layers 3 is beyond the model's layers 0..2"),
    ("one", "--layers must be layers and ranges like 1-25 or 1,5,7-9, got 'one'"),
    ("2-1", "--layers has the range 2-1 running backwards"),
    ("1,,2", "--layers must be layers and ranges"),
])
def test_bad_layers_are_one_line_errors_with_nothing_written(inputs, tmp_path, layers, says):
    out = tmp_path / "atlas"
    r = cli(*_atlas_args(inputs, out, "--layers", layers))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: {says}") and r.stderr.count("\n") == 1, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_other_bad_requests_write_nothing(inputs, tmp_path):
    model, template = inputs
    bad = [("--sae-template", template.replace("{layer}", "1"), "--sae-template must contain {layer}"),
           ("--sae-template", str(tmp_path / "none" / "layer_{layer}.npz"), "the SAE of layer 0: SAE"),
           ("--heads", "0,9", "--heads is out of range: layer 1 has heads 0..3, got 9")]
    for flag, value, says in bad:
        r = cli(*_atlas_args(inputs, tmp_path / "atlas", flag, value))
        assert r.exit_code == 2 and r.stderr.startswith(f"error: {says}"), r.stderr
    r = cli("atlas", "--model", model, "--layers", "1", "--out", tmp_path / "atlas", "--no-labels")  # no default SAEs
    assert r.exit_code == 2 and "default SAEs only for a model with a residual SAE after every layer" in r.stderr
    assert "gpt2-small (gpt2-small-res-jb)" in r.stderr and r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    run_dir = tmp_path / "run"
    fg.extract(model=model, layer=1, sae_in=template.format(layer=0), sae_out=template.format(layer=1), top_k=5,
               device="cpu", labels=False, out=run_dir)
    r = cli(*_atlas_args(inputs, run_dir, "--force"))  # never replaces a run with an atlas
    assert r.exit_code == 2 and "is a featgraph run" in r.stderr
    assert fg.open_run(run_dir).manifest.command == "extract"


def test_invented_source_ids_are_shared_too(inputs, tmp_path):
    """SAE files whose paths name nothing get invented ids; the SAE of layer 1 keeps one id in both layers."""
    model, template = inputs
    plain = tmp_path / "saes"
    for L in WIDTHS:
        (plain / f"sae{L}").mkdir(parents=True)
        shutil.copy(template.format(layer=L), plain / f"sae{L}" / "params.npz")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = fg.atlas(model=model, layers="1-2", sae_template=str(plain / "sae{layer}" / "params.npz"), top_k=20,
                       device="cpu", labels=False, out=tmp_path / "atlas")
    said = [str(w.message) for w in seen if issubclass(w.category, FeatgraphWarning) and "no Neuronpedia id" in str(w.message)]
    # the warnings name the atlas's own option, not extract's --sae-in-id that atlas does not have
    assert said and all("--sae-id-template" in m and "--sae-in-id" not in m and "--sae-out-id" not in m for m in said), said
    e = run.edge_table
    out1 = set(e[(e["layer"] == 1) & (e["circuit"] == "OV")]["dst"].str.rsplit("/", n=1).str[0])
    in2 = set(e[e["layer"] == 2]["src"].str.rsplit("/", n=1).str[0])
    assert out1 == in2 and len(in2) == 1
    named = fg.atlas(model=model, layers="1-2", sae_template=str(plain / "sae{layer}" / "params.npz"), top_k=20,
                     sae_id_template="{layer}-tiny-res", device="cpu", labels=False, out=tmp_path / "named")
    assert set(named.features["sae"]) == {"0-tiny-res", "1-tiny-res", "2-tiny-res"}


def test_label_files_label_the_layers_they_cover(inputs, tmp_path):
    model, template = inputs
    labels = tmp_path / "labels.jsonl"
    rows = [{"modelId": MODEL_ID, "layer": "1-gemmascope-res-16k__l0-71", "index": str(i), "description": f"tiny feature {i}"}
            for i in range(WIDTHS[1])]
    labels.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = fg.atlas(model=model, layers="1-2", sae_template=template, top_k=20, device="cpu", label_sources=[labels],
                   out=tmp_path / "atlas")
    f = run.features
    labelled = f[f["description"].notna()]
    assert len(labelled) and (labelled["sae"] == "1-gemmascope-res-16k__l0-71").all()
    assert (f[f["sae"] == "1-gemmascope-res-16k__l0-71"]["description"].notna()).all()
    # both layers' runs carry the labels of the SAE they share
    for L in (1, 2):
        part = fg.open_run(tmp_path / "atlas" / "layers" / f"L{L}").features
        assert part[part["sae"] == "1-gemmascope-res-16k__l0-71"]["description"].notna().all()

    # `featgraph labels ATLAS` labels the layers' runs too, so rebuilding the atlas keeps the labels
    more = tmp_path / "labels0.jsonl"
    more.write_text("\n".join(json.dumps({"modelId": MODEL_ID, "layer": "0-gemmascope-res-16k__l0-71", "index": str(i),
                                          "description": f"first {i}"}) for i in range(WIDTHS[0])) + "\n")
    r = cli("labels", tmp_path / "atlas", "--source", more)
    assert r.exit_code == 0, r.output
    layer1 = fg.open_run(tmp_path / "atlas" / "layers" / "L1").features
    assert layer1[layer1["sae"] == "0-gemmascope-res-16k__l0-71"]["description"].str.startswith("first").all()
    again = fg.atlas(model=model, layers="1-2", sae_template=template, top_k=20, device="cpu", labels=False,
                     out=tmp_path / "atlas")  # finished: only the combined tables are rebuilt
    f = again.features.set_index("id")["description"]
    assert f[again.features["sae"].isin(["0-gemmascope-res-16k__l0-71", "1-gemmascope-res-16k__l0-71"]).to_numpy()].notna().all()
    assert f[again.features["sae"].eq("2-gemmascope-res-16k__l0-71").to_numpy()].isna().all()
    assert again.manifest.labels["labelled"] == int(f.notna().sum())
    r = cli("labels", tmp_path / "atlas", "--source", tmp_path / "labels_none.jsonl")
    assert r.exit_code == 2


def test_gemma3_atlas_with_gemma_scope_2_saes(tmp_path):
    """The second family: a tiny Gemma 3 (local layers 0, 2 and global 1, 3, each kind with its own rotary base) with
    Gemma Scope 2 SAEs (params.safetensors + config.json) in their release layout, ids named after the files."""
    from helpers import TINY3, make_tiny_gemma3, write_gs2_sae

    make_tiny_gemma3(tmp_path / "gemma-3-tiny")
    root = tmp_path / "gemma-scope-2-1b-pt" / "resid_post_all"
    for L in range(TINY3["num_hidden_layers"]):
        write_gs2_sae(root / f"layer_{L}_width_16k_l0_small", TINY3["hidden_size"], 30 + 2 * L, seed=40 + L,
                      config={"model_name": "google/gemma-3-1b-pt", "hf_hook_point_in": f"model.layers.{L}.output"})
    template = str(root / "layer_{layer}_width_16k_l0_small")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FeatgraphWarning)  # Neuronpedia hosts none of these SAEs: named after their files
        r = cli("atlas", "--model", tmp_path / "gemma-3-tiny", "--layers", "1-3", "--sae-template", template, "--top-k", 120,
                "--device", "cpu", "--no-labels", "--out", tmp_path / "atlas")
        assert r.exit_code == 0, r.output
        alone = [fg.extract(model=tmp_path / "gemma-3-tiny", layer=L, sae_in=template.format(layer=L - 1),
                            sae_out=template.format(layer=L), top_k=120, device="cpu", labels=False) for L in (1, 2, 3)]
    atlas = fg.open_run(tmp_path / "atlas")
    assert atlas.layers == [1, 2, 3]
    pd.testing.assert_frame_equal(_sorted(atlas.edge_table), _sorted(pd.concat([a.edge_table for a in alone], ignore_index=True)))
    e = atlas.edge_table
    out2 = set(e[(e["layer"] == 2) & (e["circuit"] == "OV")]["dst"].str.rsplit("/", n=1).str[0])
    assert out2 == {"gemma-3-tiny/2-gemmascope-2-resid_post_all-16k-l0_small"}
    assert out2 == set(e[e["layer"] == 3]["src"].str.rsplit("/", n=1).str[0])
    # each layer's run records its own rotation: local layers the local base, global ones the global base
    theta = {L: atlas.layer_run(L).manifest.conventions["rope"]["theta"] for L in (1, 2, 3)}
    assert theta == {1: TINY3["rope_theta"], 2: TINY3["rope_local_base_freq"], 3: TINY3["rope_theta"]}
    _check_cross_layer_paths(atlas, 2, 3)


# ---------------------------------------------------------------- `layer` where `head` is taken

def test_one_layer_calls_need_a_layer_on_an_atlas(made):
    out, alone = made
    atlas = fg.open_run(out)
    with pytest.raises(MissingValue, match=r"^layer is required \(this run holds layers 1-2: pick one\)$"):
        atlas.table(0, "qk")
    with pytest.raises(BadInput, match=r"^layer 5 has no edges in this run: layers present are 1-2$"):
        atlas.table(0, "qk", layer=5)
    pd.testing.assert_frame_equal(atlas.table(1, "ov", layer=2, top=None), alone[2].table(1, "ov", top=None))
    assert alone[2].table(1, "ov").equals(alone[2].table(1, "ov", layer=2))  # a one-layer run: layer may be left out
    r = cli("tables", out, "--head", 0, "--circuit", "qk")
    assert r.exit_code == 2 and r.stderr == "error: --layer is required (this run holds layers 1-2: pick one)\n"
    r = cli("tables", out, "--head", 0, "--circuit", "qk", "--layer", 1, "--format", "csv")
    assert r.exit_code == 0 and r.stdout == cli("tables", out / "layers" / "L1", "--head", 0, "--circuit", "qk",
                                                  "--format", "csv").stdout
    with pytest.raises(MissingValue):
        atlas.tetrads(head=0)
    with pytest.raises(MissingValue):
        atlas.to_networkx(head=0)


def test_tetrads_are_per_layer_head_and_circuit(made, tmp_path):
    out, alone = made
    atlas = fg.open_run(out)
    t = atlas.tetrads(explain=True)
    want = pd.concat([alone[L].tetrads(explain=True) for L in (1, 2)], ignore_index=True)
    cols = ["layer", "head", "circuit", "src_a", "src_b", "dst_x", "dst_y"]
    assert len(t) and len(t) == len(want)
    got, want = (d.sort_values(cols).reset_index(drop=True) for d in (t, want))
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["cos_src"].notna().all()  # each layer's cosines from that layer's weights
    assert (out / "tetrads.parquet").is_file()
    one = atlas.tetrads(head=1, circuit="ov", layer=2, explain=False)
    assert set(zip(one["layer"], one["head"], one["circuit"])) <= {(2, 1, "OV")}
    r = cli("tetrads", out, "--layer", 2, "--head", 1, "--circuit", "ov", "--no-explain", "--format", "csv")
    assert r.exit_code == 0 and len(pd.read_csv(io.StringIO(r.stdout))) == min(20, len(one))


def test_viz_networkx_search_and_correlation_take_a_layer(made, tmp_path):
    out, alone = made
    atlas = fg.open_run(out)
    g = atlas.to_networkx(layer=2, head=1, circuit="ov")
    assert g.number_of_edges() == TOP_K and {d["layer"] for *_, d in g.edges(data=True)} == {2}
    whole = atlas.to_networkx()
    assert whole.number_of_edges() == len(atlas.edge_table)
    assert whole.number_of_nodes() == len(atlas.features)  # one node per feature, across layers
    page = atlas.viz(None, "qk", tmp_path / "all.html", top=50)  # every layer
    assert "all layers" in page.read_text()
    r = cli("viz", out, "--circuit", "ov", "--head", 0, "--out", tmp_path / "h.html")
    assert r.exit_code == 2 and "--layer is required" in r.stderr
    r = cli("viz", out, "--circuit", "ov", "--head", 0, "--layer", 1, "--out", tmp_path / "h.html")
    assert r.exit_code == 0 and "layer 1 head 0 OV" in (tmp_path / "h.html").read_text()
    c = atlas.correlation(layer=2)
    pd.testing.assert_frame_equal(c, alone[2].correlation())
    with pytest.raises(MissingValue):
        atlas.correlation()
    with pytest.raises(BadInput, match="validate runs one layer's run"):
        atlas.validate(prompts=["a"])
    s = atlas.search("0", limit=5)  # a number matches feature indices, in every SAE
    assert set(s["layer"]) == {1, 2}
    assert set(atlas.search("0", limit=5, layer=1)["layer"]) == {1}
    assert np.array_equal(atlas.layer_run(2).edge_table.to_numpy(), fg.open_run(out / "layers" / "L2").edge_table.to_numpy())


def test_report_of_an_atlas(made, tmp_path):
    out, _ = made
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        index = fg.open_run(out).report(tmp_path / "report", top=5)
    said = [str(w.message) for w in seen if issubclass(w.category, FeatgraphWarning)]
    assert any("figures are per layer" in m for m in said), said
    html = index.read_text()
    assert "layer 1 · head 0" in html and "layer 2 · head 3" in html and "Layer 2 · head 3" in html
    assert (tmp_path / "report" / "layer2_head3_ov.html").is_file()
    assert "matrix std" in html  # each layer's exact moments, from its run


def test_one_progress_bar_counts_layers_times_heads(inputs, made, tmp_path):
    model, template = inputs
    seen: list[tuple[str, int | None, list[int]]] = []

    def progress(description, total):
        steps: list[int] = []
        seen.append((description, total, steps))
        return steps.append

    fg.atlas(model=model, layers="1-2", sae_template=template, heads=[0, 2], top_k=5, device="cpu", labels=False,
             out=tmp_path / "atlas", progress=progress)
    assert [(d, t) for d, t, _ in seen] == [("atlas: 2 layers × 2 heads (QK, OV)", 8)]  # no bar per matrix
    assert seen[0][2] == [1] * 8  # one step per finished matrix: the ETA moves with the work
    seen.clear()
    fg.atlas(model=model, layers="1-2", sae_template=template, top_k=TOP_K, device="cpu", labels=False, out=made[0],
             progress=progress)  # finished: the bar is full at once
    assert [(d, t, s) for d, t, s in seen] == [("atlas: 2 layers × 4 heads (QK, OV)", 16, [16])]


def test_qk_trace_on_an_atlas_takes_the_layer(made, tmp_path):
    """qk-trace on an atlas needs --layer and then equals qk-trace on that layer's own run."""
    import json

    from attribution_files import graph_dict, write

    out, _ = made
    g = graph_dict(tokens=("<bos>", "a", "b", "c", "d"), features=((2, 5, 4), (0, 3, 1)), source_set="res")
    rename = {n["node_id"]: f"E_tok_{n['ctx_idx']}" for n in g["nodes"] if n["feature_type"] == "embedding"}
    for n in g["nodes"]:
        n["node_id"] = rename.get(n["node_id"], n["node_id"])
    for x in g["links"]:
        x["source"], x["target"] = rename.get(x["source"], x["source"]), rename.get(x["target"], x["target"])
    src = write(tmp_path / "g.json", g)
    args = [src, "--node", "2_5_4", "--head", 1, "--token-ids", "2,5,9,11,4", "--device", "cpu"]
    r = cli("qk-trace", out, *args, "--out", tmp_path / "a.json")
    assert r.exit_code == 2 and r.stderr == "error: --layer is required (this run holds layers 1-2: pick one)\n", r.output
    assert not (tmp_path / "a.json").exists()
    r = cli("qk-trace", out, *args, "--layer", 2, "--out", tmp_path / "a.json")
    assert r.exit_code == 0 and "layer 2 head 1" in r.stdout, r.output
    r = cli("qk-trace", out / "layers" / "L2", *args, "--out", tmp_path / "b.json")
    assert r.exit_code == 0, r.output
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a == b and next(n for n in a["nodes"] if n["node_id"] == "2_5_4")["qk_tracing_results"]["pair_wise_contributors"]
