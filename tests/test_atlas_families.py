"""A tiny Llama and a tiny Gemma 4 atlas: every layer's edges are its own extract's, features are shared nodes
across layers, and a cross-layer Cypher path on the embedded store equals a pandas join. Gemma 4's layers differ
in head size (sliding 16, full 32) and its last layers reuse earlier keys and values (refused, one line)."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from family_models import make_tiny
from test_atlas import _check_cross_layer_paths

import featgraph as fg

from helpers import fg as cli
from helpers import write_sae

D = 48
TOP_K = 120


@pytest.fixture(scope="module", params=["llama", "gemma4_text"])
def made(request, tmp_path_factory):
    fam = request.param
    root = tmp_path_factory.mktemp(f"atlas-{fam}")
    make_tiny(fam, root / fam, seed=3)
    for layer in range(5):
        write_sae(root / "sae" / f"layer_{layer}", D, 30 + 2 * layer, seed=40 + layer)
    template = str(root / "sae" / "layer_{layer}" / "params.npz")
    layers = (1, 2, 3) if fam == "gemma4_text" else (1, 2)
    r = cli("atlas", "--model", root / fam, "--layers", f"{layers[0]}-{layers[-1]}", "--sae-template", template,
            "--top-k", TOP_K, "--device", "cpu", "--no-labels", "--out", root / "atlas")
    assert r.exit_code == 0, r.output
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.FeatgraphWarning)
        alone = {L: fg.extract(model=root / fam, layer=L, sae_in=template.format(layer=L - 1), sae_out=template.format(layer=L),
                               top_k=TOP_K, device="cpu", labels=False) for L in layers}
    return fam, root, template, layers, alone


def test_atlas_layers_are_their_own_extracts(made):
    fam, root, _, layers, alone = made
    atlas = fg.open_run(root / "atlas")
    assert atlas.is_atlas and atlas.layers == list(layers)
    want = pd.concat([alone[L].edge_table.assign(layer=L) for L in layers], ignore_index=True)
    got = atlas.edge_table
    key = ["layer", "head", "circuit", "src_index", "dst_index"]  # ids differ: the atlas shares one id per feature
    cols = [*key, "weight", "kv_head"]
    pd.testing.assert_frame_equal(got[cols].sort_values(key).reset_index(drop=True),
                                  want[cols].sort_values(key).reset_index(drop=True), check_dtype=False)
    assert got["src"].nunique() + got["dst"].nunique() > 0 and set(got["layer"]) == set(layers)
    if fam == "gemma4_text":  # the full-attention layers' single kv head, the sliding layer's two
        kv = got[got["circuit"] == "QK"].groupby("layer")["kv_head"].max().to_dict()
        assert kv == {1: 0, 2: 1, 3: 0}
    _check_cross_layer_paths(atlas, layers[0], layers[1])


def test_gemma4_atlas_over_a_layer_that_reuses_keys_is_refused(made, tmp_path):
    fam, root, template, _, _ = made
    if fam != "gemma4_text":  # only Gemma 4 has layers that reuse another layer's keys and values
        from featgraph.load import model as model_io

        assert not model_io.load_config(str(root / fam)).kv_shared
        return
    r = cli("atlas", "--model", root / fam, "--layers", "3-4", "--sae-template", template, "--device", "cpu",
            "--no-labels", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "layer 4 reuses layer 2's keys and values" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()  # refused before anything is written
