"""Model and SAE loaders on files in the real formats."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import hub
from featgraph.load import model as model_io
from featgraph.load import sae as sae_io

from helpers import make_tiny_model, write_sae


def test_sharded_model_reads_the_six_tensors(tiny):
    model_dir, model, _, _ = tiny
    assert (model_dir / "model.safetensors.index.json").is_file()
    w = model_io.load_attention(str(model_dir), 1)
    sd = model.state_dict()
    torch.testing.assert_close(w.W_Q, sd["model.layers.1.self_attn.q_proj.weight"])
    torch.testing.assert_close(w.W_O, sd["model.layers.1.self_attn.o_proj.weight"])
    torch.testing.assert_close(w.ln_post, sd["model.layers.1.post_attention_layernorm.weight"])
    assert w.config.d_head == 16 and w.config.d_model == 48 and w.config.n_kv_heads == 2


def test_single_file_model(tmp_path):
    make_tiny_model(tmp_path / "m", seed=3)
    # re-save unsharded with safetensors directly: one model.safetensors, no index
    from safetensors.torch import load_file, save_file

    merged = {}
    idx = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    for shard in set(idx["weight_map"].values()):
        merged |= load_file(tmp_path / "m" / shard)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(tmp_path / "m" / "config.json", one)
    save_file(merged, one / "model.safetensors")
    w = model_io.load_attention(str(one), 2)
    torch.testing.assert_close(w.W_K, merged["model.layers.2.self_attn.k_proj.weight"])


def test_hub_path_downloads_only_the_needed_shards(tiny, monkeypatch, tmp_path):
    model_dir = tiny[0]
    snap = tmp_path / "hub" / "models--google--gemma-2-2b" / "snapshots" / "abc123"
    shutil.copytree(model_dir, snap)
    asked = []

    def fake_download(repo_id, filename, revision=None, **kw):
        assert repo_id == "google/gemma-2-2b" and revision == "main"
        asked.append(filename)
        return str(snap / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    w = model_io.load_attention("google/gemma-2-2b@main", 1)
    idx = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    needed = {idx[n] for n in model_io.tensor_names(1).values()}
    shards = [a for a in asked if a.endswith(".safetensors")]
    assert set(shards) == needed and len(shards) == len(set(shards))
    assert w.source["revision"] == "abc123"


def test_gated_repo_message(monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors as hfe

    def gated(*a, **k):
        raise _gated_error(hfe)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(FeatgraphError, match="accept the licence.*HF_TOKEN"):
        model_io.load_attention("google/gemma-2-2b", 13)


def _gated_error(hfe):
    err = hfe.GatedRepoError.__new__(hfe.GatedRepoError)
    Exception.__init__(err, "gated")
    return err


def test_model_errors(tiny, tmp_path):
    with pytest.raises(BadInput, match="not found"):
        model_io.load_attention(str(tmp_path / "nope"), 1)
    with pytest.raises(BadInput, match="out of range"):
        model_io.load_attention(str(tiny[0]), 3)
    bad = tmp_path / "bad"
    shutil.copytree(tiny[0], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["head_dim"] = 8
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInput, match="shape"):
        model_io.load_attention(str(bad), 1)


def test_sae_local_and_shapes(tmp_path):
    p = write_sae(tmp_path / "s", 48, 20, seed=0)
    s = sae_io.load(str(p), expect_d_in=48)
    ref = np.load(p)
    np.testing.assert_array_equal(s.W_dec.numpy(), ref["W_dec"])
    assert s.d_sae == 20 and s.d_in == 48
    norms = s.W_dec.norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms))  # fixtures are not unit-norm
    # only the requested arrays are read
    s2 = sae_io.load(str(p.parent), ("W_enc",))
    assert s2.W_dec is None and s2.W_enc is not None


def test_sae_errors(tmp_path):
    p = write_sae(tmp_path / "s", 48, 20, seed=0)
    with pytest.raises(BadInput, match="d_model is 64"):
        sae_io.load(str(p), expect_d_in=64)
    arrays = dict(np.load(p))
    del arrays["threshold"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(BadInput, match="lacks threshold"):
        sae_io.load(str(tmp_path / "missing.npz"))
    arrays = dict(np.load(p))
    arrays["b_dec"] = arrays["b_dec"][:5]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(BadInput, match="b_dec has shape"):
        sae_io.load(str(tmp_path / "shape.npz"))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(p.read_bytes()[: 2000])
    with pytest.raises(BadInput, match="corrupt|not a readable"):
        sae_io.load(str(corrupt))


def test_sae_references_resolve():
    r = sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")
    assert r.repo.repo_id == "google/gemma-scope-2b-pt-res"
    assert r.filename == "layer_12/width_16k/average_l0_82/params.npz"
    r = sae_io.resolve("gemma-scope-2b-pt-att-canonical/layer_13/width_16k/canonical")
    assert r.filename == "layer_13/width_16k/average_l0_92/params.npz"
    r = sae_io.resolve("google/gemma-scope-2b-pt-res@abc/layer_13/width_65k/average_l0_74")
    assert (r.repo.repo_id, r.repo.revision, r.filename) == ("google/gemma-scope-2b-pt-res", "abc", "layer_13/width_65k/average_l0_74/params.npz")
    assert sae_io.neuronpedia_source(r.filename)[0] is None  # repo is not in the filename
    assert sae_io.neuronpedia_source("google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz") == ("12-gemmascope-res-16k", 12)
    assert sae_io.neuronpedia_source("x/gemma-scope-2b-pt-att/layer_13/width_16k/average_l0_92/") == ("13-gemmascope-att-16k", 13)
    with pytest.raises(BadInput):
        sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_12/width_16k")
    with pytest.raises(BadInput):
        sae_io.resolve("./missing/params.npz")


def test_canonical_rule_over_listing(monkeypatch):
    listing = [f"layer_20/width_16k/average_l0_{v}/params.npz" for v in (22, 38, 71, 139, 294)]
    monkeypatch.setattr(hub, "list_files", lambda ref, prefix: [f for f in listing if f.startswith(prefix)])
    r = sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical")
    assert r.filename == "layer_20/width_16k/average_l0_71/params.npz"
    assert "closest to 100" in r.canonical_rule
