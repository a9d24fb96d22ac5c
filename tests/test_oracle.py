"""Every QK and OV value featgraph writes equals what transformers' own Gemma 2 modules compute.

The oracle runs the real input_layernorm, rotary embedding, q/k/v projections,
attention, o_proj and post_attention_layernorm of a tiny random
Gemma2ForCausalLM (saved sharded by save_pretrained), capturing q, k, v and the
attention output through a function registered with AttentionInterface. The
weights-only definitions leave out the RMS factors, so those are multiplied back.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import featgraph as fg

from helpers import LAYER, oracle, oracle_layer, write_sae


def _extract(tmp_path, tiny, name, **conv):
    model_dir, _, sae_in, sae_out = tiny
    run = fg.extract(model=model_dir, layer=LAYER, sae_in=sae_in, sae_out=sae_out, top_k=10**6, device="cpu",
                     out=tmp_path / name, labels=False, **conv)
    return pd.read_parquet(run.path / "edges.parquet")


@pytest.mark.parametrize("rope_offset", [0, 1, 7])
def test_every_edge_matches_transformers(tmp_path, tiny, rope_offset):
    _, model, sae_in, sae_out = tiny
    d_in = np.load(sae_in)["W_dec"]
    W_enc = np.load(sae_out)["W_enc"]
    edges = _extract(tmp_path, tiny, f"r{rope_offset}", rope_offset=rope_offset)
    qk, ov, _ = oracle(model, d_in, W_enc, rope_offset)
    n_in, n_out = d_in.shape[0], W_enc.shape[1]
    for h in range(4):
        e = edges[(edges["head"] == h) & (edges["circuit"] == "QK")]
        assert len(e) == n_in * n_in  # every entry selected
        assert (e["kv_head"] == h // 2).all()
        # edge src = key, dst = query
        want = qk[h].numpy()[e["dst_index"].to_numpy(), e["src_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
        e = edges[(edges["head"] == h) & (edges["circuit"] == "OV")]
        assert len(e) == n_in * n_out
        want = ov[h].numpy()[e["src_index"].to_numpy(), e["dst_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_attention_scale_option_matches_transformers_scaling(tmp_path, tiny):
    _, model, sae_in, sae_out = tiny
    raw = _extract(tmp_path, tiny, "raw")
    scaled = _extract(tmp_path, tiny, "scaled", attn_scale=True)
    _, _, scaling = oracle(model, np.load(sae_in)["W_dec"], np.load(sae_out)["W_enc"])
    key = ["head", "circuit", "src_index", "dst_index"]
    m = raw.merge(scaled, on=key, suffixes=("_raw", "_s"))
    qk = m[m["circuit"] == "QK"]
    np.testing.assert_allclose(qk["weight_s"], qk["weight_raw"] * scaling, rtol=1e-5, atol=1e-6)
    ov = m[m["circuit"] == "OV"]
    np.testing.assert_array_equal(ov["weight_s"], ov["weight_raw"])


def test_attention_output_sae_matches_the_tensor_o_proj_receives(tmp_path, tiny):
    """An attention-output SAE as OV destination: every edge against the input of transformers' o_proj."""
    model_dir, model, sae_in, _ = tiny
    # Gemma Scope's layout for the attention SAE of layer 1 whose L0 (79) Neuronpedia hosts as 1-gemmascope-att-16k.
    sae_att = write_sae(tmp_path / "gemma-scope-2b-pt-att" / "layer_1" / "width_16k" / "average_l0_79", 64, 28, seed=9)
    with pytest.warns(fg.FeatgraphWarning, match="input SAE"):
        run = fg.extract(model=model_dir, layer=LAYER, sae_in=sae_in, sae_out=sae_att, top_k=10**6, device="cpu",
                         out=tmp_path / "att", labels=False)
    edges = pd.read_parquet(run.path / "edges.parquet")
    d_in, W_att = np.load(sae_in)["W_dec"], np.load(sae_att)["W_enc"]
    want = oracle_layer(model, LAYER, d_in, W_enc_att=W_att)["ov_att"]
    for h in range(4):
        e = edges[(edges["head"] == h) & (edges["circuit"] == "OV")]
        assert len(e) == d_in.shape[0] * W_att.shape[1]
        w = want[h].numpy()[e["src_index"].to_numpy(), e["dst_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), w, rtol=2e-4, atol=2e-4 * np.abs(w).max())
    m = run.manifest
    assert m.conventions["ov_target"] == "attn" and m.sae_out["reads"] == "attn"
    assert m.sae_out["neuronpedia_id"] == "1-gemmascope-att-16k"
    # A Gemma Scope file the registry knows names the run's model after its entry (docs/ids.md, "The model id").
    assert edges[edges["circuit"] == "OV"]["dst"].str.startswith("gemma-2-2b/1-gemmascope-att-16k/").all()
    assert m.sae_out["reads_how"] == "d_in 64 = n_heads·d_head"


def test_a_rope_base_written_as_rope_parameters_is_read(tmp_path):
    """transformers ≥ 5 writes Gemma 2's RoPE base as rope_parameters (no rope_theta): the offset uses it."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from helpers import TINY

    torch.manual_seed(5)
    cfg = Gemma2Config(**(TINY | {"rope_theta": 300.0}))
    cfg._attn_implementation = "eager"
    model = Gemma2ForCausalLM(cfg).eval()
    model.save_pretrained(tmp_path / "m")
    assert "rope_theta" not in json.loads((tmp_path / "m" / "config.json").read_text())
    sae_in = write_sae(tmp_path / "in", TINY["hidden_size"], 12, seed=3)
    with pytest.warns(fg.FeatgraphWarning):
        run = fg.extract(model=tmp_path / "m", layer=LAYER, sae_in=sae_in, circuits=["qk"], rope_offset=5,
                         top_k=10**6, device="cpu", out=tmp_path / "run", labels=False)
    edges = pd.read_parquet(run.path / "edges.parquet")
    qk = oracle_layer(model, LAYER, np.load(sae_in)["W_dec"], rope_offset=5)["qk"]
    for h in range(4):
        e = edges[edges["head"] == h]
        want = qk[h].numpy()[e["dst_index"].to_numpy(), e["src_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
    assert run.manifest.conventions["rope"]["theta"] == 300.0
