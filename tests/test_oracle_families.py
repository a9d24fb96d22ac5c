"""Every QK and OV value featgraph writes for Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE and Gemma 4 equals what transformers'
own modules compute (tests/family_models.oracle: the real decoder layer, MLP off), on tiny random models saved
by save_pretrained — at RoPE offset 0 and a nonzero one, into residual and attention-output SAEs — and the traps
of these families: their `post_attention_layernorm` is the MLP's norm, biases are not a feature's term, Qwen3's
and Gemma 4's norms have gain w, Gemma 4's layers differ in head size, rotate partially, take keys as values and
scale their output, and some reuse another layer's keys and values (refused).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from family_models import CONFIGS, make_tiny, oracle

import featgraph as fg
from featgraph.core.weights import ModelConfig, Rope
from featgraph.errors import BadInput
from featgraph.load import model as model_io

from helpers import write_sae

D_MODEL = 48
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "gemma4_text")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """family -> (model_dir, model, {layer: residual SAE of that layer}, {layer: attention-output SAE})."""
    root = tmp_path_factory.mktemp("families")
    made = {}
    for i, fam in enumerate(FAMILIES):
        model = make_tiny(fam, root / fam, seed=i)
        cfg = model.config
        res = {L: write_sae(root / f"{fam}-res-{L}", D_MODEL, 20 + L, seed=10 * i + L) for L in range(cfg.num_hidden_layers)}
        att = {L: write_sae(root / f"{fam}-att-{L}", cfg.num_attention_heads * model.model.layers[L].self_attn.head_dim,
                            18 + L, seed=100 + 10 * i + L) for L in range(cfg.num_hidden_layers)}
        made[fam] = (root / fam, model, res, att)
    return made


def _extract(model_dir, layer, sae_in, sae_out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.FeatgraphWarning)  # no Neuronpedia ids for these made-up SAEs
        return fg.extract(model=model_dir, layer=layer, sae_in=sae_in, sae_out=sae_out, top_k=10**6, device="cpu", **kw)


def _check(edges, want_qk, want_ov, n_heads, n_kv):
    groups = n_heads // n_kv
    for h in range(n_heads):
        e = edges[(edges["head"] == h) & (edges["circuit"] == "QK")]
        assert len(e) and (e["kv_head"] == h // groups).all()
        w = want_qk[h].numpy()[e["dst_index"].to_numpy(), e["src_index"].to_numpy()]  # edge src = key, dst = query
        np.testing.assert_allclose(e["weight"].to_numpy(), w, rtol=2e-4, atol=2e-4 * np.abs(want_qk[h].numpy()).max())
        e = edges[(edges["head"] == h) & (edges["circuit"] == "OV")]
        w = want_ov[h].numpy()[e["src_index"].to_numpy(), e["dst_index"].to_numpy()]
        assert len(e) == want_ov[h].numel()
        np.testing.assert_allclose(e["weight"].to_numpy(), w, rtol=2e-4, atol=2e-4 * np.abs(want_ov[h].numpy()).max())


def _cases():
    for fam in FAMILIES:
        layers = (1, 2) if fam == "gemma4_text" else (1,)  # Gemma 4: a full-attention and a sliding layer
        for layer in layers:
            for offset in (0, 7):
                yield pytest.param(fam, layer, offset, id=f"{fam}-L{layer}-d{offset}")


@pytest.mark.parametrize(("fam", "layer", "offset"), list(_cases()))
def test_every_edge_matches_transformers(tiny, fam, layer, offset):
    model_dir, model, res, _ = tiny[fam]
    sae_in, sae_out = res[layer - 1], res[layer]
    run = _extract(model_dir, layer, sae_in, sae_out, rope_offset=offset)
    d_in, W_enc = np.load(sae_in)["W_dec"], np.load(sae_out)["W_enc"]
    want = oracle(model, layer, d_in, W_enc, rope_offset=offset)
    attn = model.model.layers[layer].self_attn
    _check(run.edge_table, want["qk"], want["ov"], attn.config.num_attention_heads, attn.k_proj.out_features // attn.head_dim)
    assert len(run.edge_table[run.edge_table["circuit"] == "QK"]) == attn.config.num_attention_heads * d_in.shape[0] ** 2


@pytest.mark.parametrize("fam", FAMILIES)
def test_attention_output_sae_matches_the_tensor_o_proj_receives(tiny, fam):
    model_dir, model, res, att = tiny[fam]
    layer = 1
    run = _extract(model_dir, layer, res[0], att[layer], ov_target="attn", circuits=["ov"])
    want = oracle(model, layer, np.load(res[0])["W_dec"], W_enc_att=np.load(att[layer])["W_enc"])["ov_att"]
    e = run.edge_table
    for h in range(model.config.num_attention_heads):
        eh = e[e["head"] == h]
        w = want[h].numpy()[eh["src_index"].to_numpy(), eh["dst_index"].to_numpy()]
        assert len(eh) == want[h].numel()
        np.testing.assert_allclose(eh["weight"].to_numpy(), w, rtol=2e-4, atol=2e-4 * np.abs(want[h].numpy()).max())


def test_rotary_frequencies_are_transformers(tiny):
    """Llama 3's three-band llama3 scaling (all three bands occur at d_head 16, θ 5000, original context 64), Mistral's
    and Qwen's default RoPE, Gemma 4's default (sliding) and proportional (full: half the pairs rotated, frequencies
    from the full head size) RoPE, per layer, against the model's own rotary embedding."""
    for fam in FAMILIES:
        model_dir, model, _, _ = tiny[fam]
        cfg = model_io.load_config(str(model_dir))
        emb = model.model.rotary_emb
        for layer in range(cfg.n_layers):
            c = cfg.at_layer(layer)
            if fam == "gemma4_text":
                want = getattr(emb, f"{cfg.layer_type(layer)}_inv_freq")
            else:
                want = emb.inv_freq
            torch.testing.assert_close(cfg.layer_rope(layer).inv_freq(c.d_head).float(), want, rtol=1e-6, atol=0)
    llama = model_io.load_config(str(tiny["llama"][0])).layer_rope(1)
    assert llama.type == "llama3" and llama.factor == 8.0 and llama.original_max_position_embeddings == 64
    inv = llama.inv_freq(16)
    plain = Rope(5000.0).inv_freq(16)
    assert inv[0] == plain[0] and inv[-1] == plain[-1] / 8 and plain[1] / 8 < inv[1] < plain[1]  # high, low, mid bands
    g4 = model_io.load_config(str(tiny["gemma4_text"][0]))
    full = g4.layer_rope(1)
    assert full.type == "proportional" and full.partial_rotary_factor == 0.5
    assert (full.inv_freq(32)[8:] == 0).all() and (full.inv_freq(32)[:8] > 0).all()


def test_gemma4_layers_have_their_own_shapes_and_values(tiny):
    model_dir, model, _, _ = tiny["gemma4_text"]
    cfg = model_io.load_config(str(model_dir))
    assert cfg.value_is_key == (1, 3, 5) and cfg.kv_shared == {4: 2, 5: 3}
    sliding, full = model_io.load_attention(str(model_dir), 2), model_io.load_attention(str(model_dir), 1)
    assert (sliding.config.d_head, sliding.config.n_kv_heads, full.config.d_head, full.config.n_kv_heads) == (16, 2, 32, 1)
    assert sliding.config.query_pre_attn_scalar == full.config.query_pre_attn_scalar == 1.0  # Gemma 4's scaling is 1
    assert full.W_V is full.W_K  # no v_proj: the key projection is the value's
    assert float(full.layer_scalar) == model.model.layers[1].layer_scalar.item() == 0.75
    # The same shapes from the form real Gemma 4 configs use (global_head_dim, num_global_key_value_heads).
    raw = json.loads((model_dir / "config.json").read_text())
    raw.pop("per_layer_config")
    older = ModelConfig.from_json(raw | {"global_head_dim": 32, "num_global_key_value_heads": 1}, "x")
    assert older.at_layer(3).d_head == 32 and older.at_layer(3).n_kv_heads == 1 and older.at_layer(2).d_head == 16


@pytest.mark.parametrize("layer", [4, 5])
def test_gemma4_layers_reusing_keys_and_values_are_refused(tiny, layer):
    model_dir, model, res, _ = tiny["gemma4_text"]
    src = {4: 2, 5: 3}[layer]
    with pytest.raises(BadInput, match=rf"layer {layer} reuses layer {src}'s keys and values") as e:
        _extract(model_dir, layer, res[layer - 1], res[layer])
    assert "\n" not in str(e.value) and "layers 0..3" in str(e.value)
    with pytest.raises(BadInput, match=rf"layer {layer} reuses layer {src}'s keys and values"):
        _extract(model, layer, res[layer - 1], res[layer])  # the module in memory too


@pytest.mark.parametrize("fam", ["llama", "qwen2"])
def test_post_attention_layernorm_is_the_mlp_norm_and_biases_are_not_terms(tiny, fam):
    """Llama's and Qwen's post_attention_layernorm normalises the MLP's input: changing it changes no edge. Their
    projection biases (and the norms' absence of any) are not a feature's term: changing them changes no edge. The
    oracle (the real decoder layer) is the proof these edges are right; this shows the tensors are not read."""
    model_dir, model, res, _ = tiny[fam]
    base = _extract(model_dir, 1, res[0], res[1]).edge_table
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    changed = 0
    for k in sd:
        if k.startswith("model.layers.1.") and (k.endswith("post_attention_layernorm.weight") or k.endswith(".bias")):
            sd[k] = sd[k] * 3 + 1
            changed += 1
    assert changed == (5 if fam == "llama" else 4)  # the norm and q/k/v(/o) biases
    other = _extract((sd, model.config), 1, res[0], res[1]).edge_table
    key = ["head", "circuit", "src_index", "dst_index"]
    both = base.merge(other, on=key, suffixes=("", "_b"))
    assert len(both) == len(base)
    np.testing.assert_array_equal(both["weight"], both["weight_b"])
    attn = model_io.load_attention(str(model_dir), 1)
    assert attn.ln_post is None and attn.b_Q is not None and attn.b_V is not None  # biases read, for validate only
    assert (attn.b_O is not None) == (fam == "llama")


def test_gemma4_multimodal_checkpoint_matches_transformers(tmp_path):
    """Gemma4ForConditionalGeneration saved by transformers: tensors under model.language_model., config in text_config."""
    model = make_tiny("gemma4", tmp_path / "mm", seed=7)
    cfg = json.loads((tmp_path / "mm" / "config.json").read_text())
    assert cfg["model_type"] == "gemma4" and cfg["text_config"]["model_type"] == "gemma4_text"
    sae_in, sae_out = write_sae(tmp_path / "in", D_MODEL, 14, seed=1), write_sae(tmp_path / "out", D_MODEL, 12, seed=2)
    for layer in (1, 2):
        run = _extract(tmp_path / "mm", layer, sae_in, sae_out, rope_offset=5)
        want = oracle(model, layer, np.load(sae_in)["W_dec"], np.load(sae_out)["W_enc"], rope_offset=5)
        attn = model.model.language_model.layers[layer].self_attn
        _check(run.edge_table, want["qk"], want["ov"], 4, attn.k_proj.out_features // attn.head_dim)


def test_conventions_name_each_familys_definitions(tiny):
    conv = {fam: _extract(tiny[fam][0], 1, tiny[fam][2][0], tiny[fam][2][1], circuits=["qk", "ov"]).manifest.conventions
            for fam in ("llama", "qwen3", "gemma4_text")}
    assert conv["llama"]["norm_gain"].startswith("weight") and "without a norm" in conv["llama"]["ov"]
    assert conv["llama"]["rope"]["type"] == "llama3" and conv["llama"]["rope"]["original_max_position_embeddings"] == 64
    assert "g_q = q_norm.weight" in conv["qwen3"]["qk_norm"]
    g4 = conv["gemma4_text"]
    assert "g_post" in g4["ov"] and "v_norm" in g4["v_norm"] and "layer_scalar" in g4["layer_scalar"]
    assert g4["rope"]["type"] == "proportional" and g4["rope"]["layer_type"] == "full_attention"
    assert CONFIGS["gemma4_text"]["rope_parameters"]["full_attention"]["partial_rotary_factor"] == g4["rope"]["partial_rotary_factor"]
