"""`featgraph validate` on Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE and Gemma 4: the feature decomposition of real attention
is exact — with projection biases (Llama attention_bias, Qwen2) as non-feature terms, no post-attention norm on
the attention output (Llama, Mistral, Qwen), Mistral's and Qwen3-MoE's every-layer sliding window, Qwen3's query/key norms (gain
w), and Gemma 4's query/key/value norms, keys-as-values, per-layer head sizes and layer_scalar.

Tiny random models saved by transformers (tests/family_models.py) run on token ids; transformers' own eager
attention (captured through AttentionInterface) gives the real logits, pattern and head outputs, and the
model's own o_proj (and Gemma 4's post-attention norm and layer_scalar) their sum over heads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from family_models import make_tiny
from test_validate import PROMPTS, _cat, _complete_sae

import featgraph as fg_api
from featgraph.api import validate as val
from featgraph.api.demo import write_tokenizer
from featgraph.api.run import open_run

from helpers import write_sae

D = 48
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "gemma4_text")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate-families")
    for i, fam in enumerate(FAMILIES):
        make_tiny(fam, root / fam, seed=i)
        write_tokenizer(root / fam, 64, 256)
    write_sae(root / "sae_out", D, 36, seed=2)
    return root


def _session(root, fam, layer, sae_in, name):
    out = root / f"{fam}-{name}-{layer}"
    if not out.exists():
        n_in = np.load(sae_in)["W_dec"].shape[0]
        fg_api.extract(model=root / fam, layer=layer, sae_in=sae_in, sae_out=root / "sae_out" / "params.npz",
                       top_k=max(n_in * n_in, n_in * 36), device="cpu", out=out, labels=False, sae_in_id="sae-in",
                       sae_out_id="sae-out")
    return val.Session(open_run(out), device="cpu")


def _check(session, ids, complete):
    dec = session.model.model.layers[session.layer]
    w_enc = torch.from_numpy(np.load(session.run.manifest.sae_out["ref"])["W_enc"]).double()
    cap, st = session.prompt(ids)
    T = len(ids)
    rms_o = session.rms_o(cap)
    ov_sum = 0
    for h in session.heads:
        qk = _cat(session.qk_blocks(cap, st, h, block=8))
        window = session.sliding or T
        assert list(zip(qk["t"].tolist(), qk["s"].tolist())) == [(t, s) for t in range(T) for s in range(T) if s <= t and t - s < window]
        L = torch.full((T, T), -torch.inf, dtype=torch.float64)
        L[qk["t"], qk["s"]] = qk["target"]
        np.testing.assert_allclose(torch.softmax(L, -1).numpy(), cap.weights[h].double().numpy(), atol=2e-6)
        y = qk["target"]
        tol = 1e-5 * float(y.abs().max())
        if complete:
            assert float(qk["error"].abs().max()) < 1e-9 * float(y.abs().max())
            np.testing.assert_allclose((qk["active"] + qk["bias"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        else:
            assert float(qk["error"].abs().max()) > 1e-2 * float(y.abs().max())
        np.testing.assert_allclose((qk["active"] + qk["bias"] + qk["error"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        ov = _cat(session.ov_blocks(cap, st, h, rms_o, block=8))
        y = ov["target"]
        tol = 1e-5 * float(y.abs().max())
        if complete:
            assert float(ov["error"].abs().max()) < 1e-9 * float(y.abs().max())
            np.testing.assert_allclose((ov["active"] + ov["bias"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        np.testing.assert_allclose((ov["active"] + ov["bias"] + ov["error"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        ov_sum = ov_sum + y.reshape(T, -1)
    # The heads' targets add up to what the attention adds to the residual stream, from the model's own modules.
    with torch.no_grad():
        o = dec.self_attn.o_proj(cap.out.reshape(T, -1))
        if session.family.post_attn_norm:  # Gemma 4: the post-attention norm, and layer_scalar scaling everything
            z = (dec.post_attention_layernorm(o) * dec.layer_scalar).double()
        else:  # the attention output joins the residual stream as o_proj writes it; its bias is not a head's
            z = (o - (dec.self_attn.o_proj.bias if dec.self_attn.o_proj.bias is not None else 0)).double()
    scored = np.unique(session._edges(0, "OV")["dst_index"])
    np.testing.assert_allclose(ov_sum.numpy(), (z @ w_enc[:, scored]).numpy(), rtol=1e-5, atol=1e-5 * float(ov_sum.abs().max()))


def _layers(fam):
    return (1, 2) if fam == "gemma4_text" else (1,)


@pytest.mark.parametrize("fam", FAMILIES)
def test_complete_sae_feature_and_bias_terms_are_the_real_attention(made, fam):
    b = np.random.default_rng(3).normal(size=D)
    sae = _complete_sae(made / "sae-complete", b)
    for layer in _layers(fam):
        session = _session(made, fam, layer, sae, "complete")
        for ids in PROMPTS:
            _check(session, ids, complete=True)


@pytest.mark.parametrize("fam", FAMILIES)
def test_random_sae_all_terms_are_the_real_attention(made, fam):
    sae = write_sae(made / "sae-random", D, 40, seed=1)
    for layer in _layers(fam):
        session = _session(made, fam, layer, sae, "random")
        for ids in PROMPTS:
            _check(session, ids, complete=False)
        assert session.sliding == {"mistral": 6, "qwen3_moe": 6, "gemma4_text": 6 if layer == 2 else None}.get(fam)
