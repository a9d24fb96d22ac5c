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
import torch

from featgraph.circuits import Conventions
from featgraph.extract import ExtractConfig, run_extract
from featgraph.select import Selection

LAYER = 1


def _capture_interface():
    from transformers import AttentionInterface
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    captured: dict[str, torch.Tensor] = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        out, weights = eager_attention_forward(module, query, key, value, attention_mask, **kwargs)
        captured.update(q=query.detach(), k=key.detach(), v=value.detach(), out=out.detach(), scaling=module.scaling)
        return out, weights

    AttentionInterface.register("featgraph_capture", capture)
    return captured


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(x.pow(2).mean(-1) + eps)


def oracle(model, sae_in: np.ndarray, W_enc: np.ndarray, rope_offset: int = 0):
    """QK[h] as [n_query, n_key] and OV[h] as [n_value, n_out] from transformers' modules."""
    captured = _capture_interface()
    model.config._attn_implementation = "featgraph_capture"
    layer = model.model.layers[LAYER]
    eps = model.config.rms_norm_eps
    X = torch.from_numpy(sae_in)  # [n_in, d_model]
    n = X.shape[0]
    with torch.no_grad():
        # Queries at position Δ (batch 0), keys at position 0 (batch 1).
        h = layer.input_layernorm(X.expand(2, n, -1).contiguous())
        pos = torch.tensor([[rope_offset] * n, [0] * n])
        cos, sin = model.model.rotary_emb(h, pos)
        layer.self_attn(h, position_embeddings=(cos, sin), attention_mask=None)
        q, k = captured["q"][0], captured["k"][1]  # [n_heads, n, d_head], [n_kv, n, d_head]
        scaling = captured["scaling"]
        r_in = _rms(X, eps)
        groups = q.shape[0] // k.shape[0]
        qk = [(q[hh] @ k[hh // groups].T) * r_in[:, None] * r_in[None, :] for hh in range(q.shape[0])]

        # One-token sequences: each head's attention output is exactly its value vector.
        h1 = layer.input_layernorm(X[:, None, :])
        cos1, sin1 = model.model.rotary_emb(h1, torch.zeros(n, 1, dtype=torch.long))
        layer.self_attn(h1, position_embeddings=(cos1, sin1), attention_mask=None)
        out = captured["out"][:, 0]  # [n, n_heads, d_head]
        enc = torch.from_numpy(W_enc)
        ov = []
        for hh in range(out.shape[1]):
            z = torch.zeros_like(out)
            z[:, hh] = out[:, hh]
            o = layer.self_attn.o_proj(z.reshape(n, -1))
            y = layer.post_attention_layernorm(o)
            ov.append((y @ enc) * _rms(o, eps)[:, None] * r_in[:, None])
    return qk, ov, scaling


def _extract(tmp_path, tiny, name, **conv):
    model_dir, _, sae_in, sae_out = tiny
    cfg = ExtractConfig(model=str(model_dir), layer=LAYER, sae_in=str(sae_in), sae_out=str(sae_out),
                        selection=Selection(top_k=10**6), conventions=Conventions(**conv), device="cpu")
    run = run_extract(cfg, tmp_path / name)
    return pd.read_parquet(run / "edges.parquet")


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
