"""Neuronpedia ids inferred from what the files say (docs/ids.md): HF cache folders, config.json,
Gemma Scope's layout; each recorded in the manifest with how it was found; invented ones warned about."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import featgraph as fg
from featgraph.errors import FeatgraphWarning
from featgraph.load import model as model_io
from featgraph.load import sae as sae_io

from helpers import LAYER, NEURONPEDIA, write_sae
from helpers import fg as cli

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"
D_MODEL = 2304  # Gemma 2 2B's width: Gemma Scope's residual SAEs read vectors of this size


def as_hf_cache(src: Path, cache: Path, repo: str) -> Path:
    """`src`'s files laid out as huggingface_hub's cache does: snapshot entries are symlinks into blobs/."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / SNAPSHOT
    for f in src.rglob("*"):
        if f.is_file():
            blob = root / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, blob)
            link = snap / f.relative_to(src)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    return snap


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A 2-layer Gemma 2 as wide as Gemma 2 2B (tiny otherwise), saved by transformers."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=8, hidden_size=D_MODEL, intermediate_size=8, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("wide") / "model"
    Gemma2ForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    return path


def _extract(model, out, sae_in, sae_out, *extra):
    return cli("extract", "--model", model, "--layer", LAYER, "--sae-in", sae_in, "--sae-out", sae_out, "--top-k", 20,
               "--device", "cpu", "--out", out, *extra)


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_hf_cache_snapshot_and_gemma_scope_local_dir_get_neuronpedia_ids_and_labels(wide, tmp_path):
    """The post's setup from files on disk: the model in the HF cache, the SAEs as `hf download --local-dir` leaves
    them (no repo name in the path). The ids are Neuronpedia's, so the real label exports attach."""
    snap = as_hf_cache(wide, tmp_path / "hub", "google/gemma-2-2b")
    gs = tmp_path / "gemma-scope"  # hf download google/gemma-scope-2b-pt-res --local-dir gemma-scope
    sae_in = write_sae(gs / "layer_12/width_16k/average_l0_82", D_MODEL, 64, seed=1)
    sae_out = write_sae(gs / "layer_13/width_16k/average_l0_84", D_MODEL, 64, seed=2)
    out = tmp_path / "run"
    r = _extract(snap, out, sae_in, sae_out, "--label-source", NEURONPEDIA)
    assert r.exit_code == 0, r.output
    # the tiny model's layer 1 with Gemma Scope's layer 12/13 SAEs: the hook points say they do not pair, and nothing else
    assert r.stderr.splitlines() == [
        "warning: the input SAE reads blocks.12.hook_resid_post, the input of layer 13, but layer 1 reads resid_pre 1 "
        "(= resid_post 0): its edges pair features of other points of the model (`featgraph sae REF` shows where an SAE reads)",
        "warning: the output SAE reads blocks.13.hook_resid_post, layer 13's attention output, but layer 1 writes resid_post, "
        "resid_mid, attn_out or hook_z of 1: its edges pair features of other points of the model (`featgraph sae REF` "
        "shows where an SAE reads)"], r.stderr
    m = _manifest(out)
    assert m["model"]["neuronpedia_id"] == "gemma-2-2b"
    assert m["model"]["id_source"] == "SAELens registry: the SAEs' Neuronpedia model gemma-2-2b"
    assert (m["sae_in"]["neuronpedia_id"], m["sae_out"]["neuronpedia_id"]) == ("12-gemmascope-res-16k", "13-gemmascope-res-16k")
    # the path names no repo: its tail is a registry path of several repos, and d_in = Gemma 2 2B's d_model picks
    # Gemma Scope 2B's residual SAE, the canonical entry's id
    assert m["sae_in"]["id_source"].startswith("SAELens registry gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")
    assert "path layer_12/width_16k/average_l0_82" in m["sae_in"]["id_source"] and "d_in = d_model" in m["sae_in"]["id_source"]
    edges = pd.read_parquet(out / "edges.parquet")
    qk, ov = edges[edges["circuit"] == "QK"], edges[edges["circuit"] == "OV"]
    assert qk["src"].str.startswith("gemma-2-2b/12-gemmascope-res-16k/").all()
    assert ov["dst"].str.startswith("gemma-2-2b/13-gemmascope-res-16k/").all()
    # the features got the real exports' descriptions (features 0-299 of both SAEs are in the slices)
    feats = pd.read_parquet(out / "features.parquet")
    labels = {}
    for f in NEURONPEDIA.glob("*.json"):
        for e in json.loads(f.read_text())["explanations"]:
            if e["description"].strip():
                labels.setdefault(f"{e['modelId']}/{e['layer']}/{e['index']}", e["description"].strip())
    assert feats["description"].notna().all()
    assert all(d == labels[i] for i, d in zip(feats["id"], feats["description"]))  # the first in file order


def test_non_canonical_l0_is_not_named_as_the_canonical_sae(wide, tmp_path):
    """Neuronpedia's `12-gemmascope-res-16k` is the L0-82 SAE; an L0-176 one is `…__l0-176` there (both in SAELens'
    registry); an L0 the registry gives no Neuronpedia id gets featgraph's name in the same style, and no labels."""
    gs = tmp_path / "hub" / "models--google--gemma-scope-2b-pt-res" / "snapshots" / SNAPSHOT
    sae_in = write_sae(gs / "layer_12/width_16k/average_l0_176", D_MODEL, 16, seed=1)
    sae_out = write_sae(gs / "layer_3/width_65k/average_l0_89", D_MODEL, 16, seed=2)
    out = tmp_path / "run"
    r = _extract(wide, out, sae_in, sae_out, "--no-labels")
    assert r.exit_code == 0, r.output
    m = _manifest(out)
    assert m["sae_in"]["neuronpedia_id"] == "12-gemmascope-res-16k__l0-176"
    assert m["sae_in"]["id_source"] == ("SAELens registry gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_176 "
                                        "(google/gemma-scope-2b-pt-res in the path)")
    assert m["sae_out"]["neuronpedia_id"] == "3-gemmascope-res-65k"
    assert "gemma-scope-2b-pt-res-canonical/layer_3/width_65k/canonical" in m["sae_out"]["id_source"]
    # layer 13's L0 23 SAE: in the registry, not on Neuronpedia -> featgraph's name, one warning, no labels asked for
    other = write_sae(gs / "layer_13/width_16k/average_l0_23", D_MODEL, 16, seed=3)
    r = _extract(wide, tmp_path / "run2", sae_in, other, "--no-labels")
    assert r.exit_code == 0, r.output
    m = _manifest(tmp_path / "run2")
    assert m["sae_out"]["neuronpedia_id"] == "13-gemmascope-res-16k__l0-23"
    assert "Neuronpedia has no source for gemma-scope-2b-pt-res/layer_13/width_16k/average_l0_23" in r.stderr
    # the model directory is named `model`, but the SAEs are Gemma 2 2B's in SAELens' registry: Neuronpedia's name wins
    assert (m["model"]["neuronpedia_id"], m["model"]["id_source"]) == (
        "gemma-2-2b", "SAELens registry: the SAEs' Neuronpedia model gemma-2-2b (the model reference alone says model)")


def test_model_id_from_config_name_or_path(tiny, tmp_path):
    model_dir = tiny[0]
    ckpt = tmp_path / "checkpoints" / "final"
    shutil.copytree(model_dir, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text()) | {"_name_or_path": "google/gemma-2-2b"}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert model_io.infer_model_id(str(ckpt)) == ("gemma-2-2b", "config.json _name_or_path google/gemma-2-2b")
    # a local path there names nothing: the directory's own name does
    (ckpt / "config.json").write_text(json.dumps(cfg | {"_name_or_path": "/home/me/ckpt"}))
    assert model_io.infer_model_id(str(ckpt)) == ("final", "directory name")
    assert model_io.infer_model_id("google/gemma-2-2b@main") == ("gemma-2-2b", "Hub repo id google/gemma-2-2b")
    # a bare snapshot folder (a commit hash) outside the cache names nothing
    bare = tmp_path / SNAPSHOT
    shutil.copytree(model_dir, bare)
    assert model_io.infer_model_id(str(bare)) == (None, "invented")


@pytest.mark.parametrize(("text", "dims", "want"), [
    ("google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz", (None, None, None), "12-gemmascope-res-16k"),
    ("/c/models--google--gemma-scope-2b-pt-att/snapshots/h/layer_13/width_16k/average_l0_92/params.npz", (None, None, None),
     "13-gemmascope-att-16k"),
    ("/c/models--google--gemma-scope-2b-pt-mlp/snapshots/h/layer_0/width_65k/average_l0_72/params.npz", (None, None, None),
     "0-gemmascope-mlp-65k"),
    ("/d/layer_12/width_1m/average_l0_107/params.npz", (2304, 2304, 2048), "12-gemmascope-res-1m"),
    ("/d/layer_12/width_16k/average_l0_82/params.npz", (2048, 2304, 2048), None),  # att L0 82: not in the registry
    ("/d/layer_13/width_16k/average_l0_92/params.npz", (2048, 2304, 2048), "13-gemmascope-att-16k"),
    ("/d/layer_12/width_16k/average_l0_82/params.npz", (None, None, None), None),  # no kind known
    ("/d/layer_12/width_16k/average_l0_82/params.npz", (3584, 3584, 4096), None),  # not Gemma 2 2B: not this table
    ("/d/gemma-scope-9b-pt-res/layer_20/width_16k/average_l0_68/params.npz", (2304, 2304, 2048), "20-gemmascope-res-16k"),
    ("/d/layer_12/width_16k/canonical/params.npz", (2304, 2304, 2048), None),  # no L0: cannot tell which SAE
])
def test_gemma_scope_path_rules(text, dims, want):
    assert sae_io.neuronpedia_source(text, *dims)[0] == want


def test_invented_ids_warn_once_each_naming_the_flag(tiny, tmp_path):
    model_dir, model, sae_in, sae_out = tiny
    out = tmp_path / "run"
    r = _extract(model_dir, out, sae_in, sae_out, "--no-labels")
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert len([x for x in lines if "--sae-in-id" in x]) == 1 and len([x for x in lines if "--sae-out-id" in x]) == 1
    assert len(lines) == 2, r.stderr
    m = _manifest(out)
    assert (m["sae_in"]["id_source"], m["sae_out"]["id_source"]) == ("invented", "invented")
    # given ids are recorded as given; nothing is invented, nothing warned
    r = _extract(model_dir, tmp_path / "given", sae_in, sae_out, "--no-labels", "--model-id", "gemma-2-2b",
                 "--sae-in-id", "0-x", "--sae-out-id", "1-y")
    assert r.exit_code == 0 and r.stderr == "", r.output
    m = _manifest(tmp_path / "given")
    assert m["model"]["id_source"] == "given (model_id=, --model-id)"
    assert m["sae_in"]["id_source"] == "given (sae_in_id=, --sae-in-id)"
    # a state dict names no model: its id is invented, once, naming both spellings of the parameter
    arrays_in, arrays_out = dict(np.load(sae_in)), dict(np.load(sae_out))
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        run = fg.extract(model=(model.state_dict(), model.config.to_dict()), layer=LAYER, sae_in=arrays_in,
                         sae_out=arrays_out, top_k=5, device="cpu", sae_in_id="0-x", sae_out_id="1-y")
    msgs = [str(w.message) for w in got if issubclass(w.category, FeatgraphWarning)]
    assert len(msgs) == 1 and "--model-id" in msgs[0] and "model_id=" in msgs[0], msgs
    assert run.manifest.model["id_source"] == "invented"


def test_positional_title_uses_the_inferred_model_id(tiny, tmp_path, monkeypatch):
    import featgraph.render.plots as plots_module

    model_dir, _, sae_in, _ = tiny
    snap = as_hf_cache(model_dir, tmp_path / "hub", "google/gemma-2-2b")
    titles = []
    monkeypatch.setattr(plots_module, "positional_figure", lambda df, out, name, layer: titles.append(name))
    fg.positional(str(snap), LAYER, str(sae_in), max_distance=8, out=tmp_path / "p.png")
    assert titles == ["gemma-2-2b"]
