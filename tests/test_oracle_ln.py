"""GPT-2 and GPT-NeoX (Pythia): every QK and OV edge featgraph writes equals what transformers' own modules compute.

The oracle (`ln_models.oracle`) runs the real LayerNorm, fused projections with their biases, rotary embedding
(GPT-NeoX's partial rotary) and output projection of tiny random models saved by save_pretrained, and takes a
feature's part of each vector as transformers' value for the residual d_i minus its value for a zero residual
(the biases), times the LayerNorm's σ(d_i). Traps proven here: a LayerNorm reads the mean-centred direction (adding
c·1 to a decoder row changes nothing); no norm or projection bias is a feature's term (changing them changes
nothing); GPT-2 has no rotary (rope offsets and the positional profile are refused); an output SAE trained on
TransformerLens' centred residual (SAELens' config_overrides center_writing_weights) reads the head's write centred.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from ln_models import FAMILIES, centre_writing_weights, make_tiny, oracle

import featgraph as fg
from featgraph.core.weights import SAE
from featgraph.errors import BadInput
from featgraph.load import model as model_io

from helpers import fg as cli
from helpers import write_sae

D_MODEL, N_HEADS, N_IN, N_OUT, LAYER = 48, 4, 24, 20, 1


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    model = make_tiny(request.param, root / "model")
    sae_in = write_sae(root / "sae_in", D_MODEL, N_IN, seed=1)
    sae_out = write_sae(root / "sae_out", D_MODEL, N_OUT, seed=2)
    return request.param, root / "model", model, sae_in, sae_out


def _extract(model, sae_in, sae_out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.FeatgraphWarning)  # no Neuronpedia ids for synthetic SAEs
        # d_model = n_heads·d_head in these families: a residual SAE is said to be one.
        run = fg.extract(model=model, layer=LAYER, sae_in=sae_in, sae_out=sae_out, top_k=10**6, device="cpu",
                         labels=False, **({"ov_target": "resid"} if sae_out is not None else {}) | kw)
    return run, run.edge_table


def _check(edges, qk, ov, n_in=N_IN, n_out=N_OUT):
    for h in range(N_HEADS):
        e = edges[(edges["head"] == h) & (edges["circuit"] == "QK")]
        assert len(e) == n_in * n_in and (e["kv_head"] == h).all()
        want = qk[h].numpy()[e["dst_index"].to_numpy(), e["src_index"].to_numpy()]  # edge src = key, dst = query
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
        if ov is not None:
            e = edges[(edges["head"] == h) & (edges["circuit"] == "OV")]
            assert len(e) == n_in * n_out
            want = ov[h].numpy()[e["src_index"].to_numpy(), e["dst_index"].to_numpy()]
            np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_config_is_read_as_transformers_reads_it(tiny):
    family, model_dir, model, _, _ = tiny
    cfg = model_io.load_config(str(model_dir))
    assert (cfg.model_type, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head) == (family, 48, 4, 4, 12)
    assert cfg.rms_norm_eps == 0.1 and cfg.query_pre_attn_scalar == 12  # scaling = head_dim^-0.5 in both
    layers = model.transformer.h if family == "gpt2" else model.gpt_neox.layers
    attn = layers[LAYER].attn if family == "gpt2" else layers[LAYER].attention
    assert attn.scaling == cfg.query_pre_attn_scalar ** -0.5
    if family == "gpt_neox":
        rope = cfg.layer_rope(LAYER)
        assert rope.rotary_dims == attn.rotary_ndims == 6 and rope.theta == 100
        torch.testing.assert_close(rope.inv_freq(12).float(), model.gpt_neox.rotary_emb.inv_freq)


@pytest.mark.parametrize("rope_offset", [0, 3, 300])
def test_every_edge_matches_transformers(tiny, rope_offset):
    family, model_dir, model, sae_in, sae_out = tiny
    if family == "gpt2" and rope_offset:  # no rotary embedding: an offset is refused, not ignored
        with pytest.raises(BadInput, match="GPT-2 has no rotary embedding"):
            _extract(model_dir, sae_in, sae_out, rope_offset=rope_offset)
        return
    run, edges = _extract(model_dir, sae_in, sae_out, rope_offset=rope_offset)
    d_in, W_enc = np.load(sae_in)["W_dec"], np.load(sae_out)["W_enc"]
    assert np.abs(d_in.mean(1)).min() > 1e-3  # the rows are not centred: the LayerNorm's centring is exercised
    want = oracle(model, LAYER, d_in, W_enc, rope_offset=rope_offset)
    _check(edges, want["qk"], want["ov"])
    conv = run.manifest.conventions
    assert "C d" in conv["norm_gain"] and conv["ov"].startswith("OV(value j, output k) = v_j · p_k, p_k = W_O[:, h]ᵀ e_k")
    if family == "gpt2":
        assert conv["rope"] is None and "no rotary" in conv["qk"]
    else:
        assert conv["rope"]["rotary_dims"] == 6 and conv["rope"]["offset"] == rope_offset
    # The module in memory gives the same edges as its checkpoint.
    _, mem = _extract(model, {"W_dec": d_in, "b_dec": np.load(sae_in)["b_dec"]}, {"W_enc": W_enc},
                      rope_offset=rope_offset)
    key = ["head", "circuit", "src_index", "dst_index"]
    both = edges.merge(mem, on=key, suffixes=("", "_mem"))
    assert len(both) == len(edges)
    np.testing.assert_allclose(both["weight"], both["weight_mem"], rtol=1e-6)


def test_a_layernorm_reads_the_mean_centred_direction(tiny):
    """Adding c·1 to a decoder row changes none of its edges (the LayerNorm removes it), while scaling it does."""
    _, model_dir, _, sae_in, sae_out = tiny
    W = dict(np.load(sae_in))
    shifted = W["W_dec"].copy()
    shifted[5] += 3.0
    key = ["head", "circuit", "src_index", "dst_index"]
    a = _extract(model_dir, {"W_dec": W["W_dec"], "b_dec": W["b_dec"]}, sae_out)[1].sort_values(key).reset_index(drop=True)
    b = _extract(model_dir, {"W_dec": shifted, "b_dec": W["b_dec"]}, sae_out)[1].sort_values(key).reset_index(drop=True)
    np.testing.assert_allclose(a["weight"], b["weight"], rtol=1e-4, atol=1e-5 * a["weight"].abs().max())
    shifted[5] *= 2.0
    c = _extract(model_dir, {"W_dec": shifted, "b_dec": W["b_dec"]}, sae_out)[1].sort_values(key).reset_index(drop=True)
    touched = (c["src_index"] == 5) | ((c["circuit"] == "QK") & (c["dst_index"] == 5))
    assert not np.allclose(a["weight"][touched], c["weight"][touched])


def test_no_bias_is_a_features_term(tiny, tmp_path):
    """Other LayerNorm and projection biases in the checkpoint: the same edges; the oracle (which keeps the biases
    in transformers' modules and takes them out as the zero residual's output) agrees with both."""
    family, _, model, sae_in, sae_out = tiny
    other = make_tiny(family, tmp_path / "m0", seed=0)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if name.endswith("bias") and (".ln_1." in name or "input_layernorm" in name or ".attn." in name
                                          or ".attention." in name):
                p.add_(torch.randn_like(p))
    other.save_pretrained(tmp_path / "m")
    _, a = _extract(model, sae_in, sae_out)
    _, b = _extract(tmp_path / "m", sae_in, sae_out)
    key = ["head", "circuit", "src_index", "dst_index"]
    m = a.merge(b, on=key, suffixes=("", "_b"))
    assert len(m) == len(a)
    np.testing.assert_allclose(m["weight"], m["weight_b"], rtol=1e-5, atol=1e-6 * m["weight"].abs().max())
    want = oracle(other, LAYER, np.load(sae_in)["W_dec"], np.load(sae_out)["W_enc"])
    _check(b, want["qk"], want["ov"])


def test_gpt2_refuses_rope_offsets_and_the_positional_profile(tmp_path):
    model_dir = tmp_path / "model"
    make_tiny("gpt2", model_dir)
    sae_in = write_sae(tmp_path / "in", D_MODEL, N_IN, seed=1)
    with pytest.raises(BadInput, match="GPT-2 has no rotary embedding"):
        fg.extract(model=model_dir, layer=LAYER, sae_in=sae_in, circuits=["qk"], rope_offset=3, device="cpu", labels=False)
    r = cli("extract", "--model", model_dir, "--layer", LAYER, "--sae-in", sae_in, "--circuits", "qk", "--rope-offset", 3,
            "--no-labels", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "--rope-offset) does not apply" in r.stderr and not (tmp_path / "run").exists()
    r = cli("positional", "--model", model_dir, "--layer", LAYER, "--sae-in", sae_in, "--out", tmp_path / "p.png")
    assert r.exit_code == 2 and "the rotary positional profile does not apply" in r.stderr


def test_a_centred_basis_output_sae_reads_the_heads_write_centred(tmp_path):
    """SAELens' gpt2-small-res-jb SAEs were trained on TransformerLens' model with center_writing_weights
    (pretrained_saes.yaml config_overrides). Reproduce that processing on transformers' GPT-2: its residual stream
    is exactly C·x (C the mean-centring) at every layer; QK edges do not change; an output SAE reading that stream
    gets p_k = W_O[:, h]ᵀ C e_k, which is what the processed model's own c_proj writes."""
    model_dir = tmp_path / "model"
    model = make_tiny("gpt2", model_dir)
    centred = centre_writing_weights(model)
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model(ids, output_hidden_states=True).hidden_states
        b = centred(ids, output_hidden_states=True).hidden_states
    for x, y in zip(a[:-1], b[:-1]):  # every block's input (the last entry is after ln_f)
        torch.testing.assert_close(y, x - x.mean(-1, keepdim=True), rtol=1e-4, atol=1e-4)
    sae_in = write_sae(tmp_path / "in", D_MODEL, N_IN, seed=1)
    W_in, W_enc = dict(np.load(sae_in)), np.load(write_sae(tmp_path / "out", D_MODEL, N_OUT, seed=2))["W_enc"]
    source = {"model_from_pretrained_kwargs": {"center_writing_weights": True}}
    out_tl = SAE(d_in=D_MODEL, d_sae=N_OUT, W_enc=torch.from_numpy(W_enc), source=source)
    in_tl = SAE(d_in=D_MODEL, d_sae=N_IN, W_dec=torch.from_numpy(W_in["W_dec"]), b_dec=torch.from_numpy(W_in["b_dec"]),
                source=dict(source))
    run, edges = _extract(model_dir, in_tl, out_tl)
    want = oracle(centred, LAYER, W_in["W_dec"], W_enc)
    _check(edges, want["qk"], want["ov"])
    assert run.manifest.conventions["out_basis"] == "centred" and "C e_k" in run.manifest.conventions["ov"]
    assert run.manifest.sae_out["basis"] == "centred" and run.manifest.sae_in["basis"] == "centred"
    _, raw = _extract(model_dir, sae_in, {"W_enc": W_enc})  # the same SAE taken to read transformers' residual
    key = ["head", "circuit", "src_index", "dst_index"]
    m = edges.merge(raw, on=key, suffixes=("", "_raw"))
    qk, ov = m[m["circuit"] == "QK"], m[m["circuit"] == "OV"]
    np.testing.assert_allclose(qk["weight"], qk["weight_raw"], rtol=1e-5, atol=1e-6 * qk["weight"].abs().max())
    assert np.abs(ov["weight"] - ov["weight_raw"]).max() > 0.05 * ov["weight"].abs().max()
    _check(raw, oracle(model, LAYER, W_in["W_dec"], W_enc)["qk"], oracle(model, LAYER, W_in["W_dec"], W_enc)["ov"])


def test_real_checkpoint_names_are_found(tmp_path):
    """openai-community/gpt2's model.safetensors names its tensors `h.L.…` (no `transformer.`); Pythia's
    config.json gives rotary_pct / rotary_emb_base instead of rope_parameters."""
    from safetensors.torch import load_file, save_file

    model = make_tiny("gpt2", tmp_path / "m")
    state = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items() if k.startswith("transformer.")}
    bare = tmp_path / "bare"
    bare.mkdir()
    save_file(state, str(bare / "model.safetensors"))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps(cfg))
    a, b = model_io.load_attention(str(tmp_path / "m"), LAYER), model_io.load_attention(str(bare), LAYER)
    assert torch.equal(a.W_Q, b.W_Q) and torch.equal(a.b_O, b.b_O)

    neox = make_tiny("gpt_neox", tmp_path / "n")
    cfg = json.loads((tmp_path / "n" / "config.json").read_text())
    old = {k: v for k, v in cfg.items() if k != "rope_parameters"} | {"rotary_pct": 0.5, "rotary_emb_base": 100}
    (tmp_path / "n" / "config.json").write_text(json.dumps(old))
    c = model_io.load_config(str(tmp_path / "n"))
    assert c.layer_rope(LAYER).rotary_dims == 6 and c.layer_rope(LAYER).theta == 100
    assert load_file(str(tmp_path / "n" / "model.safetensors"))  # a single-file checkpoint
    del neox


def test_a_tiny_gpt2_atlas_is_its_layers(tmp_path):
    """The atlas of a tiny GPT-2 (layers 1-2, a residual SAE per layer): the combined edges are the layers' own
    extracts, and each layer's edges match transformers (the pairing: layer L reads the SAE of L−1, writes to L's)."""
    model = make_tiny("gpt2", tmp_path / "gpt2-tiny")
    widths = {0: 20, 1: 18, 2: 22}
    for layer, width in widths.items():
        write_sae(tmp_path / "saes" / f"L{layer}", D_MODEL, width, seed=30 + layer)
    template = str(tmp_path / "saes" / "L{layer}" / "params.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.FeatgraphWarning)
        run = fg.atlas(model=tmp_path / "gpt2-tiny", layers="1-2", sae_template=template, top_k=10**6, device="cpu",
                       labels=False, out=tmp_path / "atlas")
    assert run.is_atlas and run.layers == [1, 2]
    e = run.edge_table
    for layer in (1, 2):
        d_in = np.load(template.format(layer=layer - 1))["W_dec"]
        W_enc = np.load(template.format(layer=layer))["W_enc"]
        want = oracle(model, layer, d_in, W_enc)
        _check(e[e["layer"] == layer], want["qk"], want["ov"], widths[layer - 1], widths[layer])
    # Layer 1's OV outputs are layer 2's keys, queries and values: the same nodes.
    out1 = set(e[(e["layer"] == 1) & (e["circuit"] == "OV")]["dst"])
    src2 = set(e[(e["layer"] == 2)]["src"])
    assert out1 == src2
