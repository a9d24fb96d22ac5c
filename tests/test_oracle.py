"""Every QK and OV value featgraph writes equals what transformers' own Gemma 2 modules compute.

The oracle runs the real input_layernorm, rotary embedding, q/k/v projections,
attention, o_proj and post_attention_layernorm of a tiny random
Gemma2ForCausalLM (saved sharded by save_pretrained), capturing q, k, v and the
attention output through a function registered with AttentionInterface. The
weights-only definitions leave out the RMS factors, so those are multiplied back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import featgraph as fg

from helpers import LAYER, oracle


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
