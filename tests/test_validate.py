"""`featgraph validate`: the feature decomposition of real attention is exact, and its scores are right.

Tiny random Gemma 2 and Gemma 3 models (text-only and multimodal) saved by transformers run on token ids;
transformers' own eager attention (through the AttentionInterface capture) gives the real logits, patterns
and head outputs. References are independent: softmax of the logits against the captured pattern (with the
layer's own mask), the model's own o_proj and post-attention norm, the tensor o_proj receives (a hook),
Gemma 3's q_proj/q_norm modules for the per-position query scales, brute-force loops over pairs and edges,
scipy's Spearman ρ.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import featgraph as fg_api
from featgraph.api import validate as val
from featgraph.api.demo import write_tokenizer
from featgraph.api.run import open_run
from featgraph.core import circuits

from helpers import LAYER, TINY, TINY3, fg, make_tiny_gemma3, make_tiny_model, read_gs2, write_gs2_sae, write_sae

D = TINY["hidden_size"]
D_ATTN = TINY["num_attention_heads"] * TINY["head_dim"]
assert TINY3["hidden_size"] == D and TINY3["num_attention_heads"] * TINY3["head_dim"] == D_ATTN


def _complete_sae(path, b_dec):
    """d_sae = 2·d_model, decoder rows ±e_i, threshold 0: a = [(x−b)⁺, (x−b)⁻] reconstructs x exactly."""
    eye = np.eye(D, dtype=np.float32)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "params.npz", W_enc=np.concatenate([eye, -eye], 1), W_dec=np.concatenate([eye, -eye], 0),
             b_enc=np.concatenate([-b_dec, b_dec]).astype(np.float32), b_dec=b_dec.astype(np.float32),
             threshold=np.zeros(2 * D, np.float32))
    return path / "params.npz"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    make_tiny_model(root / "model")
    write_tokenizer(root / "model", TINY["vocab_size"], TINY["max_position_embeddings"])
    return root


def _arrays(path) -> dict:
    path = str(path)
    return read_gs2(path) if path.endswith(".safetensors") else dict(np.load(path))


def _run(root, name, sae_in, top_k=None, layer=LAYER, sae_out=None, model="model", **kw):
    out = root / name
    if not out.exists():
        if sae_out is None:
            sae_out = root / "sae_out" / "params.npz"
            if not sae_out.exists():
                write_sae(root / "sae_out", D, 36, seed=2)
        n_in, n_out = _arrays(sae_in)["W_dec"].shape[0], _arrays(sae_out)["W_enc"].shape[1]
        fg_api.extract(model=root / model, layer=layer, sae_in=sae_in, sae_out=sae_out,
                       top_k=top_k or max(n_in * n_in, n_in * n_out), device="cpu", out=out, labels=False,
                       sae_in_id="sae-in", sae_out_id="sae-out", **kw)
    return open_run(out)


PROMPTS = [[2, 5, 9, 11, 4, 33, 7, 7, 60, 12, 13, 40, 41, 3, 2, 8, 19, 23, 24, 50],
           [2, *range(4, 41)]]  # 20 and 38 tokens; blocks of 8 query positions


def _cat(blocks):
    blocks = list(blocks)
    return {k: torch.cat([b[k] for b in blocks]) for k in blocks[0]}


def _decoder_layer(session):
    """The transformers decoder layer the session validates (Gemma 2, Gemma 3 text or multimodal)."""
    lm = session.model.model
    return (lm.language_model if hasattr(lm, "language_model") else lm).layers[session.layer]


def _causal_softmax_check(session, cap, qk, h):
    """The target logits reproduce the model's own attention pattern (softcap, causal and sliding-window mask,
    softmax), and the scored pairs are exactly those the layer attends."""
    T = cap.weights.shape[-1]
    window = session.hf_config.sliding_window if session.hf_config.layer_types[session.layer] == "sliding_attention" else T
    want = [(t, s) for t in range(T) for s in range(T) if s <= t and t - s < window]
    assert list(zip(qk["t"].tolist(), qk["s"].tolist())) == want
    L = torch.full((T, T), -torch.inf, dtype=torch.float64)
    L[qk["t"], qk["s"]] = qk["target"]
    cap_ = session.attn.config.attn_logit_softcapping  # None for Gemma 3
    A = torch.softmax(cap_ * torch.tanh(L / cap_) if cap_ else L, -1)
    np.testing.assert_allclose(A.numpy(), cap.weights[h].double().numpy(), atol=2e-6)


def _o_proj_input(session, ids):
    """What o_proj receives at the session's layer, [T, n_heads·d_head], from a plain forward pass with a hook."""
    seen = {}
    o_proj = _decoder_layer(session).self_attn.o_proj
    hook = o_proj.register_forward_pre_hook(lambda mod, args: seen.update(z=args[0][0].detach().double()))
    try:
        with torch.no_grad():
            session.model(input_ids=torch.tensor([ids]))
    finally:
        hook.remove()
    return seen["z"]


def _check_exact(session, ids, complete, qk_only=False):
    layer = _decoder_layer(session)
    w_enc = torch.from_numpy(_arrays(session.run.manifest.sae_out["ref"])["W_enc"]).double()
    attn_target = session.conv.ov_target == "attn"
    cap, st = session.prompt(ids)
    rms_o = session.rms_o(cap)
    ov_sum = 0
    for h in session.heads:
        qk = _cat(session.qk_blocks(cap, st, h, block=8))
        _causal_softmax_check(session, cap, qk, h)  # every pair the layer attends (all s ≤ t on a global layer), once
        y = qk["target"]
        tol = 1e-5 * float(y.abs().max())
        if complete:
            assert float(qk["error"].abs().max()) < 1e-9 * float(y.abs().max())
            np.testing.assert_allclose((qk["active"] + qk["bias"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        else:
            assert float(qk["error"].abs().max()) > 1e-2 * float(y.abs().max())  # the error terms matter here
        np.testing.assert_allclose((qk["active"] + qk["bias"] + qk["error"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        if qk_only:
            continue
        # the captured values are the normalised residual (gain 1 + w) through the head's value map
        v = (st.x / st.rms[:, None]) @ session.ov[h].Wv.T
        np.testing.assert_allclose(cap.v[session.attn.config.kv_head(h)].double().numpy(), v.numpy(), rtol=1e-5, atol=1e-5)
        ov = _cat(session.ov_blocks(cap, st, h, rms_o, block=8))
        y = ov["target"]
        tol = 1e-5 * float(y.abs().max())
        if complete:
            assert float(ov["error"].abs().max()) < 1e-9 * float(y.abs().max())
            np.testing.assert_allclose((ov["active"] + ov["bias"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        np.testing.assert_allclose((ov["active"] + ov["bias"] + ov["error"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        ov_sum = ov_sum + y.reshape(len(ids), -1)
    if qk_only:
        return
    if attn_target:
        # An attention-output SAE: the heads' targets add up to what o_proj receives (a hook, in a plain forward
        # pass) times the SAE's encoder, i.e. the pre-activation less b_enc.
        z = _o_proj_input(session, ids)
    else:
        # The heads' targets add up to the real pre-activation change: o_proj, post-attention norm, output encoder.
        with torch.no_grad():
            z = layer.post_attention_layernorm(layer.self_attn.o_proj(cap.out.reshape(len(ids), -1))).double()
    scored = np.unique(session._edges(0, "OV")["dst_index"])
    np.testing.assert_allclose(ov_sum.numpy(), (z @ w_enc[:, scored]).numpy(), rtol=1e-5, atol=1e-5 * float(ov_sum.abs().max()))


@pytest.mark.parametrize("b_dec", ["zero", "random"])
def test_complete_sae_feature_and_bias_terms_are_the_real_logits(tiny_dir, b_dec):
    b = np.zeros(D) if b_dec == "zero" else np.random.default_rng(3).normal(size=D)
    run = _run(tiny_dir, f"complete-{b_dec}", _complete_sae(tiny_dir / f"sae-complete-{b_dec}", b))
    session = val.Session(run, device="cpu")
    for ids in PROMPTS:
        _check_exact(session, ids, complete=True)


def test_random_sae_all_terms_are_the_real_logits(tiny_dir):
    run = _run(tiny_dir, "random", write_sae(tiny_dir / "sae-random", D, 40, seed=1))
    session = val.Session(run, device="cpu")
    for ids in PROMPTS:
        _check_exact(session, ids, complete=False)


def test_capture_leaves_the_model_unchanged(tiny_dir):
    run = _run(tiny_dir, "random", write_sae(tiny_dir / "sae-random", D, 40, seed=1))
    session = val.Session(run, device="cpu")
    model, ids = session.model, torch.tensor([PROMPTS[1]])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with val.capturing(model, session.family, LAYER) as got:
            captured = model(input_ids=ids).logits
    assert model.config._attn_implementation == "eager"
    torch.testing.assert_close(captured, plain, rtol=0, atol=0)
    assert float(torch.triu(got["weights"], 1).abs().max()) == 0.0  # causal


def _pairs(session, ids_list):
    """Target and predictions over all pairs of all prompts, per (head, circuit), from the blocks."""
    out = {}
    for ids in ids_list:
        cap, st = session.prompt(ids)
        rms_o = session.rms_o(cap)
        for h in session.heads:
            for circ, blocks in (("QK", session.qk_blocks(cap, st, h, 8)), ("OV", session.ov_blocks(cap, st, h, rms_o, 8))):
                b = _cat(blocks)
                p = {"target": b["target"], "selected": b["selected"], "active_d0": b["active_d0"], "active": b["active"],
                     "active_bias": b["active"] + b["bias"], "exact": b["active"] + b["bias"] + b["error"]}
                acc = out.setdefault((h, circ), {k: [] for k in p})
                for k, v in p.items():
                    acc[k].append(v.numpy())
    return {key: {k: np.concatenate(v) for k, v in d.items()} for key, d in out.items()}


def test_all_edges_selected_equals_all_active_pairs_and_scores_match_scipy(tiny_dir):
    from scipy.stats import spearmanr

    run = _run(tiny_dir, "random", write_sae(tiny_dir / "sae-random", D, 40, seed=1))
    pairs = _pairs(val.Session(run, device="cpu"), PROMPTS)
    df = run.validate(token_ids=PROMPTS, device="cpu")
    assert len(df) == 8 and set(df["circuit"]) == {"QK", "OV"}
    for (h, circ), p in pairs.items():
        np.testing.assert_allclose(p["selected"], p["active_d0"], rtol=1e-5, atol=1e-6 * np.abs(p["active_d0"]).max())
        row = df[(df["head"] == h) & (df["circuit"] == circ)].iloc[0]
        assert row["pairs"] == len(p["target"])
        for name in ("selected", "active_d0", "active", "active_bias"):
            assert row[f"rho_{name}"] == pytest.approx(spearmanr(p[name], p["target"]).statistic, abs=1e-4)
        for name in ("selected", "active_d0", "active", "active_bias", "exact"):
            want = 1 - np.var(p["target"] - p[name]) / np.var(p["target"])
            assert row[f"r2_{name}"] == pytest.approx(want, rel=1e-6, abs=1e-9)
        assert row["rho_selected"] == pytest.approx(row["rho_active_d0"], abs=1e-4)
        assert row["r2_exact"] == pytest.approx(1.0, abs=1e-8) and row["max_abs_error"] < 1e-4
    # the whole run: kept in the run; the edge usage as attrs and in the file
    heads, edges = val.read(run.path / "validation.parquet")
    pd.testing.assert_frame_equal(heads, df[list(heads.columns)], check_dtype=False)
    assert len(edges) == len(run.edge_table) and {"src_description", "realised_rank"} <= set(edges.columns)


def test_selected_edges_follow_the_runs_conventions(tiny_dir):
    """attn_scale and rope_offset: (i) = (ii) with all edges, and (i) with a few edges equals a brute-force sum."""
    sae = write_sae(tiny_dir / "sae-random", D, 40, seed=1)
    full = _run(tiny_dir, "conv-all", sae, attn_scale=True, rope_offset=3)
    few = _run(tiny_dir, "conv-few", sae, top_k=30, attn_scale=True, rope_offset=3)
    s_full, s_few = val.Session(full, device="cpu"), val.Session(few, device="cpu")
    ids = PROMPTS[0]
    cap, st = s_few.prompt(ids)
    a, rms = st.a.numpy(), st.rms.numpy()
    scale = 1 / math.sqrt(TINY["query_pre_attn_scalar"])
    for h in (0, 3):
        b = _cat(s_full.qk_blocks(*s_full.prompt(ids), h, 8))
        np.testing.assert_allclose(b["selected"], b["active_d0"], rtol=1e-5, atol=1e-6 * float(b["active_d0"].abs().max()))
        e = few.edge_table[(few.edge_table["head"] == h) & (few.edge_table["circuit"] == "QK")]
        b = _cat(s_few.qk_blocks(cap, st, h, 8))
        for t, s, got in zip(b["t"].numpy(), b["s"].numpy(), b["selected"].numpy()):
            # stored weights already carry the scale (attn_scale); the logit divides by both RMS
            want = sum(a[t, i] * a[s, j] * w for i, j, w in zip(e["dst_index"], e["src_index"], e["weight"])) / (rms[t] * rms[s])
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert float(b["selected"].abs().max()) > 0
    assert s_few.scale == pytest.approx(scale)


def test_edge_usage_matches_brute_force(tiny_dir):
    run = _run(tiny_dir, "few", write_sae(tiny_dir / "sae-random", D, 40, seed=1), top_k=12)
    ids = PROMPTS[0]
    df = run.validate(token_ids=[ids], device="cpu")
    edges = df.attrs["edges"]
    session = val.Session(run, device="cpu")
    cap, st = session.prompt(ids)
    a, rms, T = st.a.numpy(), st.rms.numpy(), len(ids)
    attn = session.attn64
    c = attn.config
    layer = session.model.model.layers[LAYER]
    with torch.no_grad():
        o = layer.self_attn.o_proj(cap.out.reshape(T, -1)).double()
    rms_o = torch.sqrt(o.pow(2).mean(-1) + c.rms_norm_eps).numpy()
    scale = 1 / math.sqrt(c.query_pre_attn_scalar)
    for h in range(c.n_heads):
        f = circuits.circuit_factors(attn, session.sae.W_dec, None, h, "QK")
        for r in edges[(edges["head"] == h) & (edges["circuit"] == "QK")].itertuples():
            q, k = f.dst[r.dst_index], f.src[r.src_index]
            cs = [scale * a[t, r.dst_index] * a[s, r.src_index] * float(circuits.rope_rotate(q, t - s, c.rope_theta) @ k) / (rms[t] * rms[s])
                  for t in range(T) for s in range(t + 1) if a[t, r.dst_index] > 0 and a[s, r.src_index] > 0]
            assert r.pairs_active == len(cs)
            assert r.total_contribution == pytest.approx(sum(cs), rel=1e-5, abs=1e-9)
            assert r.total_abs_contribution == pytest.approx(sum(map(abs, cs)), rel=1e-5, abs=1e-9)
            assert (np.isnan(r.mean_contribution) and not cs) or r.mean_contribution == pytest.approx(np.mean(cs), rel=1e-5)
        A = cap.weights[h].double().numpy()
        for r in edges[(edges["head"] == h) & (edges["circuit"] == "OV")].itertuples():
            cs = [A[t, s] * a[s, r.src_index] * r.weight / (rms[s] * rms_o[t])
                  for t in range(T) for s in range(t + 1) if A[t, s] > 0 and a[s, r.src_index] > 0]
            assert r.pairs_active == len(cs)
            assert r.total_contribution == pytest.approx(sum(cs), rel=1e-5, abs=1e-9)
    for circ, g in edges.groupby(["head", "circuit"]):
        order = g.sort_values(["total_abs_contribution", "rank"], ascending=[False, True])
        assert order["realised_rank"].tolist() == list(range(1, len(g) + 1)), circ


# ---------------------------------------------------------------- attention-output SAEs as OV targets

def test_attention_output_sae_ov_is_exact_on_gemma2(tiny_dir):
    """OV into an attention-output SAE (d_in = n_heads·d_head): head h's share z_t^h · W_enc[h·d_head:(h+1)·d_head, k]
    splits exactly into value features, bias and error, and the heads' shares add up to o_proj's input times W_enc."""
    sae_att = write_sae(tiny_dir / "sae-att", D_ATTN, 20, seed=5)
    run = _run(tiny_dir, "att", write_sae(tiny_dir / "sae-random", D, 40, seed=1), sae_out=sae_att)
    assert run.manifest.conventions["ov_target"] == "attn"
    session = val.Session(run, device="cpu")
    for ids in PROMPTS:
        _check_exact(session, ids, complete=False)
    pairs = _pairs(session, PROMPTS[:1])
    for h in session.heads:
        p = pairs[(h, "OV")]
        np.testing.assert_allclose(p["selected"], p["active_d0"], rtol=1e-5, atol=1e-6 * np.abs(p["active_d0"]).max())


def test_attention_output_edge_usage_matches_brute_force(tiny_dir):
    sae_att = write_sae(tiny_dir / "sae-att", D_ATTN, 20, seed=5)
    run = _run(tiny_dir, "att-few", write_sae(tiny_dir / "sae-random", D, 40, seed=1), sae_out=sae_att, top_k=10)
    ids = PROMPTS[0]
    edges = run.validate(token_ids=[ids], device="cpu").attrs["edges"]
    session = val.Session(run, device="cpu")
    cap, st = session.prompt(ids)
    a, rms, T = st.a.numpy(), st.rms.numpy(), len(ids)
    ov = edges[edges["circuit"] == "OV"]
    assert len(ov) == 10 * TINY["num_attention_heads"] and (ov["pairs_active"] > 0).any()
    for r in ov.itertuples():
        A = cap.weights[r.head].double().numpy()
        # no output norm: an attention-output SAE reads the heads' outputs as they are
        cs = [A[t, s] * a[s, r.src_index] * r.weight / rms[s] for t in range(T) for s in range(t + 1) if A[t, s] > 0 and a[s, r.src_index] > 0]
        assert r.pairs_active == len(cs)
        assert r.total_contribution == pytest.approx(sum(cs), rel=1e-5, abs=1e-9)


# ---------------------------------------------------------------- Gemma 3: query/key norms, local and global RoPE

G3_PROMPTS = [PROMPTS[0], [2, *range(4, 30)]]  # 20 and 27 tokens: beyond the local layers' window of 8


@pytest.fixture(scope="module")
def g3_dir(tmp_path_factory):
    """A tiny Gemma3ForCausalLM (layers 0, 2 local, 1, 3 global; eps 0.1) with a tokenizer, and its SAEs."""
    root = tmp_path_factory.mktemp("validate-g3")
    make_tiny_gemma3(root / "model")
    write_tokenizer(root / "model", TINY3["vocab_size"], TINY3["max_position_embeddings"])
    write_sae(root / "sae_out", D, 36, seed=2)
    return root


def _g3_run(root, name, layer, sae_in=None, **kw):
    """A Gemma 3 run; the input SAE a Gemma Scope 2 params.safetensors unless given."""
    sae_in = sae_in or write_gs2_sae(root / "sae-gs2", D, 40, seed=1)
    return _run(root, name, sae_in, layer=layer, **kw)


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("b_dec", ["zero", "random"])
def test_gemma3_complete_sae_feature_and_bias_terms_are_the_real_logits(g3_dir, layer, b_dec):
    """Global (1) and local (2: own RoPE base, sliding window of 8) layers: with q_norm/k_norm and their eps, the
    feature and bias terms over the per-position query/key denominators are the real logits; OV likewise."""
    b = np.zeros(D) if b_dec == "zero" else np.random.default_rng(3).normal(size=D)
    sae = _complete_sae(g3_dir / f"sae-complete-{b_dec}", b)
    session = val.Session(_g3_run(g3_dir, f"complete-{b_dec}-{layer}", layer, sae), device="cpu")
    assert session.family.qk_norm and session.attn.config.rms_norm_eps == 0.1
    for ids in G3_PROMPTS:
        _check_exact(session, ids, complete=True)
    assert session.sliding == (8 if layer == 2 else None)


@pytest.mark.parametrize("layer", [1, 2])
def test_gemma3_random_sae_all_terms_are_the_real_logits(g3_dir, layer):
    session = val.Session(_g3_run(g3_dir, f"random-{layer}", layer), device="cpu")
    for ids in G3_PROMPTS:
        _check_exact(session, ids, complete=False)


def _g3_scales(session, st, h):
    """From transformers' own modules: c_t with q_norm(q_proj(input_layernorm(x_t))) = c_t · g_q ⊙ W_Q[h] (g_in ⊙ x_t),
    its key twin, and rms(W_Q[h] (g_in ⊙ d_i)), rms(W_K[kv] (g_in ⊙ d_j)) per feature."""
    attn = _decoder_layer(session).self_attn
    ln = _decoder_layer(session).input_layernorm
    d, kv = TINY3["head_dim"], h // (TINY3["num_attention_heads"] // TINY3["num_key_value_heads"])
    x = st.x.float()
    g_in = 1 + ln.weight.detach()

    def scale(proj, norm, head):
        normed = norm(proj(ln(x)).view(len(x), -1, d)[:, head]).double()
        raw = ((1 + norm.weight) * proj(x * g_in).view(len(x), -1, d)[:, head]).double()
        c = (normed * raw).sum(-1) / raw.pow(2).sum(-1)  # least squares; the residual shows it is one scale
        assert float((normed - c[:, None] * raw).abs().max()) < 1e-5 * float(normed.abs().max())
        return c.numpy()

    def feat_rms(proj, head):
        u = proj(session.sae.W_dec.float() * g_in).view(session.sae.W_dec.shape[0], -1, d)[:, head]
        return u.double().pow(2).mean(-1).sqrt().numpy()

    with torch.no_grad():
        return scale(attn.q_proj, attn.q_norm, h), scale(attn.k_proj, attn.k_norm, kv), feat_rms(attn.q_proj, h), feat_rms(attn.k_proj, kv)


@pytest.mark.parametrize("layer", [1, 2])
def test_gemma3_selected_edges_are_the_stored_weights_in_raw_form(g3_dir, layer):
    """The run stores per-feature normalised QK; (i) multiplies each edge back by rms(u_i)·rms(w_j) and divides by the
    per-position denominators, so that with every edge it equals (ii), and with a few edges it equals a brute-force
    sum with the query/key scales read off transformers' q_norm and k_norm (offset and --attn-scale as stored)."""
    full = val.Session(_g3_run(g3_dir, f"random-{layer}", layer), device="cpu")
    few_run = _g3_run(g3_dir, f"few-{layer}", layer, top_k=25, attn_scale=True, rope_offset=2)
    few = val.Session(few_run, device="cpu")
    scale = 1 / math.sqrt(TINY3["query_pre_attn_scalar"])
    ids = G3_PROMPTS[1]
    cap, st = few.prompt(ids)
    a = st.a.numpy()
    for h in range(TINY3["num_attention_heads"]):
        b = _cat(full.qk_blocks(*full.prompt(ids), h, 8))
        np.testing.assert_allclose(b["selected"], b["active_d0"], rtol=1e-5, atol=1e-6 * float(b["active_d0"].abs().max()))
        cq, ck, rq, rk = _g3_scales(few, st, h)
        e = few_run.edge_table[(few_run.edge_table["head"] == h) & (few_run.edge_table["circuit"] == "QK")]
        b = _cat(few.qk_blocks(cap, st, h, 8))
        for t, s, got in zip(b["t"].numpy(), b["s"].numpy(), b["selected"].numpy()):
            # stored weights carry the scale (attn_scale) and the run's offset: only the norms are put back
            want = sum(a[t, i] * a[s, j] * w * rq[i] * rk[j] for i, j, w in zip(e["dst_index"], e["src_index"], e["weight"]))
            assert got == pytest.approx(want * cq[t] * ck[s], rel=1e-4, abs=1e-9)
        assert float(b["selected"].abs().max()) > 0
    assert few.scale == pytest.approx(scale)


def test_gemma3_edge_usage_matches_brute_force_in_the_window(g3_dir):
    """Local layer 2 (window 8): only pairs the layer attends count; contributions at the true distance with the
    layer's own RoPE, from the run's normalised factors, rms(u_i)·rms(w_j) and transformers' query/key scales."""
    run = _g3_run(g3_dir, "few-usage", 2, top_k=15)
    ids = G3_PROMPTS[1]
    edges = run.validate(token_ids=[ids], device="cpu").attrs["edges"]
    session = val.Session(run, device="cpu")
    _, st = session.prompt(ids)
    a, T, window = st.a.numpy(), len(ids), TINY3["sliding_window"]
    attn = session.attn64
    scale = 1 / math.sqrt(TINY3["query_pre_attn_scalar"])
    qk = edges[edges["circuit"] == "QK"]
    assert (qk["pairs_active"] > 0).any()
    for h in range(TINY3["num_attention_heads"]):
        cq, ck, rq, rk = _g3_scales(session, st, h)
        f = circuits.circuit_factors(attn, session.sae.W_dec, None, h, "QK")  # the run's normalised factors
        for r in qk[qk["head"] == h].itertuples():
            i, j = r.dst_index, r.src_index
            cs = [scale * a[t, i] * a[s, j] * rq[i] * rk[j] * cq[t] * ck[s]
                  * float(circuits.rope_rotate(f.dst[i], t - s, attn.rope) @ f.src[j])
                  for t in range(T) for s in range(max(0, t - window + 1), t + 1) if a[t, i] > 0 and a[s, j] > 0]
            assert r.pairs_active == len(cs)
            assert r.total_contribution == pytest.approx(sum(cs), rel=1e-4, abs=1e-9)
            assert r.total_abs_contribution == pytest.approx(sum(map(abs, cs)), rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("layer", [1, 2])
def test_gemma3_attention_output_sae_ov_is_exact(g3_dir, layer):
    sae_att = write_sae(g3_dir / "sae-att", D_ATTN, 20, seed=5)
    session = val.Session(_g3_run(g3_dir, f"att-{layer}", layer, sae_out=sae_att), device="cpu")
    assert session.conv.ov_target == "attn"
    for ids in G3_PROMPTS:
        _check_exact(session, ids, complete=False)


def test_gemma3_multimodal_checkpoint_is_exact(tmp_path):
    """Gemma3ForConditionalGeneration (language model under language_model.model.): QK on a local and a global
    layer, OV into a residual SAE, and scores with every edge, (i) = (ii)."""
    make_tiny_gemma3(tmp_path / "model", seed=4, multimodal=True)
    write_sae(tmp_path / "sae_out", D, 36, seed=2)
    sae_in = write_gs2_sae(tmp_path / "sae-gs2", D, 30, seed=6)
    for layer in (1, 2):
        run = _run(tmp_path, f"mm-{layer}", sae_in, layer=layer)
        session = val.Session(run, device="cpu")
        assert session.family.model_type == "gemma3"
        _check_exact(session, G3_PROMPTS[1], complete=False)
    df = run.validate(token_ids=G3_PROMPTS, device="cpu")
    assert len(df) == 8 and df["r2_exact"].between(1 - 1e-8, 1 + 1e-8).all() and (df["max_abs_error"] < 1e-4).all()
    assert np.allclose(df["rho_selected"], df["rho_active_d0"], atol=1e-4)
    qk = df[df["circuit"] == "QK"]
    assert (qk["pairs"] == sum(min(t + 1, 8) for n in map(len, G3_PROMPTS) for t in range(n))).all()


def test_gemma3_cli_end_to_end(g3_dir, tmp_path):
    """extract then validate a tiny Gemma 3 from the command line: text prompts through the model's tokenizer,
    the table, validation.parquet and the figure; an attention-output run likewise."""
    sae_in = write_gs2_sae(g3_dir / "sae-gs2", D, 40, seed=1)
    for name, extra in (("resid", ()), ("attn", ("--sae-out", write_sae(g3_dir / "sae-att", D_ATTN, 20, seed=5)))):
        out = tmp_path / name
        args = ["--sae-out", g3_dir / "sae_out" / "params.npz"] if not extra else list(extra)
        r = fg("extract", "--model", g3_dir / "model", "--layer", 2, "--sae-in", sae_in, *args, "--top-k", 20,
               "--no-labels", "--device", "cpu", "--out", out)
        assert r.exit_code == 0, r.output
        png = tmp_path / f"{name}.png"
        r = fg("validate", out, "--prompt", "the people came home after a long day of work and then the people went out",
               "--prompt", "two words", "--device", "cpu", "--out", png, "--format", "json")
        assert r.exit_code == 0, r.output
        rows = json.loads(r.stdout)
        assert [(row["head"], row["circuit"]) for row in rows] == [(h, c) for c in ("QK", "OV") for h in range(4)]
        heads, edges = val.read(out / "validation.parquet")
        assert heads["r2_exact"].between(1 - 1e-8, 1 + 1e-8).all() and len(edges) == len(pd.read_parquet(out / "edges.parquet"))
        # 17 and 3 tokens with <bos>, local layer 2 attends at most 8 keys
        assert {row["pairs"] for row in rows if row["circuit"] == "QK"} == {sum(min(t + 1, 8) for t in range(17)) + 6}
        assert png.stat().st_size > 10_000


# ---------------------------------------------------------------- the command line

def _one_line_error(r, code: int = 2):
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_bad_inputs_are_one_line_and_write_nothing(tiny_dir, tmp_path):
    run = _run(tiny_dir, "few", write_sae(tiny_dir / "sae-random", D, 40, seed=1), top_k=12)
    (run.path / "validation.parquet").unlink(missing_ok=True)
    png = tmp_path / "v.png"
    imported = tmp_path / "imported"
    assert fg("import", run.path / "edges.parquet", "--out", imported).exit_code == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    long_prompt = " ".join(["the"] * (TINY["max_position_embeddings"] + 5))
    cases = {
        "imported": (imported, "--prompt", "the cat"),
        "too long": (run.path, "--prompt", long_prompt),
        "empty file": (run.path, "--text-file", empty),
        "no prompts": (run.path,),
        "bad jsonl": (run.path, "--text-file", tmp_path / "x.jsonl"),
        "max tokens": (run.path, "--prompt", "the", "--max-tokens", 0),
    }
    (tmp_path / "x.jsonl").write_text('{"txt": "no text field"}\n')
    words = {"imported": "extract", "too long": "window", "empty file": "no prompts", "no prompts": "no prompts",
             "bad jsonl": "text", "max tokens": "--max-tokens"}
    for name, args in cases.items():
        line = _one_line_error(fg("validate", *args, "--device", "cpu", "--out", png))
        assert words[name] in line, (name, line)
        assert not png.exists() and not (run.path / "validation.parquet").exists() and not (imported / "validation.parquet").exists()
    # --max-tokens makes the long prompt fit
    r = fg("validate", run.path, "--prompt", long_prompt, "--max-tokens", 40, "--device", "cpu", "--format", "json")
    assert r.exit_code == 0, r.output
    assert {row["pairs"] for row in json.loads(r.stdout) if row["circuit"] == "QK"} == {40 * 41 // 2}


def test_demo_validates_end_to_end(tmp_path):
    d = tmp_path / "demo"
    assert fg("demo", "--out", d).exit_code == 0
    run = d / "run"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d / "inputs" / "model")
    assert tok("The cat")["input_ids"] == [2, 6, 3]  # <bos>, "the", <unk>
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "the people came home after a long day of work"}) + "\n")
    png = tmp_path / "validation.png"
    r = fg("validate", run, "--prompt", "two words and three more words made the first line .", "--text-file", prompts,
           "--device", "cpu", "--out", png)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2 prompts, ") and str(png) in lines[0]
    rows = [l for l in lines if l.startswith("| ") and not l.startswith("| head")]
    assert [tuple(x.strip() for x in l.split("|")[1:3]) for l in rows] == [(str(h), c) for c in ("QK", "OV") for h in range(4)]
    heads, edges = val.read(run / "validation.parquet")
    assert heads["r2_exact"].between(1 - 1e-9, 1 + 1e-9).all() and len(edges) == len(pd.read_parquet(run / "edges.parquet"))
    assert png.stat().st_size > 10_000
    # a filtered call writes nothing in the run; the report shows the whole-run results
    before = (run / "validation.parquet").stat().st_mtime_ns
    r = fg("validate", run, "--prompt", "the first line", "--heads", "1", "--device", "cpu", "--format", "csv")
    assert r.exit_code == 0 and pd.read_csv(__import__("io").StringIO(r.stdout))["head"].tolist() == [1, 1]
    assert (run / "validation.parquet").stat().st_mtime_ns == before
    # an empty prompt is refused; a whole-run validation from other prompts does not replace this one unasked
    for args in (("--prompt", ""), ("--prompt", "the man", "--prompt", "  ")):
        line = _one_line_error(fg("validate", run, *args, "--device", "cpu"))
        assert "is empty" in line, line
    line = _one_line_error(fg("validate", run, "--prompt", "the first line", "--device", "cpu"))
    assert "validation.parquet holds a validation made from other prompts" in line and "--force" in line, line
    assert (run / "validation.parquet").stat().st_mtime_ns == before
    r = fg("validate", run, "--prompt", "two words and three more words made the first line .", "--text-file", prompts,
           "--device", "cpu")  # the same prompts: made again, in place
    assert r.exit_code == 0 and (run / "validation.parquet").stat().st_mtime_ns != before, r.output
    r = fg("validate", run, "--prompt", "the first line", "--device", "cpu", "--force")
    assert r.exit_code == 0 and r.stdout.startswith("1 prompts"), r.output
    r = fg("validate", run, "--prompt", "two words and three more words made the first line .", "--text-file", prompts,
           "--device", "cpu", "--force")
    assert r.exit_code == 0, r.output
    r = fg("report", run, "--out", tmp_path / "report", "--no-plots")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Edges against real attention on prompts" in page and (tmp_path / "report" / "validation.png").stat().st_size > 10_000


def test_without_transformers_the_error_names_the_extra(tmp_path, monkeypatch):
    d = tmp_path / "demo"
    assert fg("demo", "--out", d).exit_code == 0
    for name in [m for m in sys.modules if m == "transformers" or m.startswith("transformers.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed: importing it raises ModuleNotFoundError
    line = _one_line_error(fg("validate", d / "run", "--prompt", "the cat", "--device", "cpu"), code=1)
    assert "'transformers'" in line and "pip install 'featgraph[validate]'" in line, line
    assert not (d / "run" / "validation.parquet").exists()
