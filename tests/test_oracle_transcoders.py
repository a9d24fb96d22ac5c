"""Transcoder features as QK/OV endpoints (docs/maths.md, "Transcoder features as endpoints"): every edge equals what
transformers' own modules compute on tiny random models saved by save_pretrained — decoder rows (what the MLP of an
earlier layer writes) entering the layer's q/k/v as the residual stream, and each head's write read by a later
transcoder through transformers' own pre-MLP norm module of that transcoder's layer. The transcoder files are in each
publisher's layout (tests/sae_formats.py): Gemma Scope's npz (Gemma 2, reads before the norm's gain), Gemma Scope 2's
safetensors (Gemma 3, reads the norm's output), circuit-tracer's own writer (Qwen3)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from family_models import CONFIGS, make_tiny
from family_models import oracle as family_oracle

import featgraph as fg

from helpers import TINY, TINY3, make_tiny_gemma3, make_tiny_model, oracle_layer
from sae_formats import write_circuit_tracer_transcoders, write_gemma_scope_2_transcoder, write_gemma_scope_transcoder

L = 1  # the layer whose heads the tests take


def _gs_transcoder(root, layer, d_model, d_sae, seed):
    """Gemma Scope's transcoder of `layer` at the path its Hub repo has (the registry names it: Neuronpedia ids)."""
    l0 = {0: 76, 1: 65, 2: 49}[layer]
    folder, raw = write_gemma_scope_transcoder(root / "gemma-scope-2b-pt-transcoders" / f"layer_{layer}" / "width_16k" /
                                               f"average_l0_{l0}", d_model, d_sae, seed)
    return folder, {k: v.numpy() for k, v in raw.items()}


def _check(edges, qk, ov, n_in, n_out, n_heads=4):
    for h in range(n_heads):
        e = edges[(edges["head"] == h) & (edges["circuit"] == "QK")]
        assert len(e) == n_in * n_in
        want = qk[h].numpy()[e["dst_index"].to_numpy(), e["src_index"].to_numpy()]  # src = key, dst = query
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
        e = edges[(edges["head"] == h) & (edges["circuit"] == "OV")]
        assert len(e) == n_in * n_out
        want = ov[h].numpy()[e["src_index"].to_numpy(), e["dst_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


@pytest.fixture(scope="module")
def gemma2(tmp_path_factory):
    root = tmp_path_factory.mktemp("tc2")
    model = make_tiny_model(root / "model", seed=3)
    tcs = {layer: _gs_transcoder(root, layer, TINY["hidden_size"], 20 + layer, seed=40 + layer) for layer in range(3)}
    return root, model, tcs


@pytest.mark.parametrize("out_layer", [1, 2])
def test_gemma_scope_transcoders_on_gemma_2(tmp_path, gemma2, out_layer):
    """Layer 0's transcoder as the source, layer 1's (the next MLP) or layer 2's as the OV output; the ids are the ones
    circuit-tracer's graphs give their nodes (gemma-2-2b/{layer}-gemmascope-transcoder-16k/{index})."""
    root, model, tcs = gemma2
    (f_in, raw_in), (f_out, raw_out) = tcs[0], tcs[out_layer]
    with warnings.catch_warnings():
        warnings.simplefilter("error", fg.FeatgraphWarning)  # layer 0 -> layer 1 -> layer 1 or 2: paired, no warning
        run = fg.extract(model=root / "model", layer=L, sae_in=f_in, sae_out=f_out, top_k=10**6, device="cpu",
                         out=tmp_path / "run", labels=False)
    edges = pd.read_parquet(run.path / "edges.parquet")
    got = oracle_layer(model, L, raw_in["W_dec"], transcoder=(out_layer, raw_out["W_enc"], "normalised"))
    _check(edges, got["qk"], got["ov_tc"], raw_in["W_dec"].shape[0], raw_out["W_enc"].shape[1])
    assert edges["src"].str.startswith("gemma-2-2b/0-gemmascope-transcoder-16k/").all()
    assert edges[edges["circuit"] == "QK"]["dst"].str.startswith("gemma-2-2b/0-gemmascope-transcoder-16k/").all()
    assert edges[edges["circuit"] == "OV"]["dst"].str.startswith(f"gemma-2-2b/{out_layer}-gemmascope-transcoder-16k/").all()
    m = run.manifest
    assert m.sae_out["transcoder"]["reads"] == "normalised" and m.conventions["ov_target"] == "resid"
    assert m.sae_out["encoder_in_residual_units"].startswith("e_k = W_enc[:, k]")
    # validate decomposes the residual into the input SAE's features: a transcoder run is refused in one line
    with pytest.raises(fg.BadInput, match="transcoder's features are read from an MLP's input"):
        run.validate(token_ids=[[1, 2, 3]], device="cpu")
    # the gain does matter: reading the norm's output instead would give other values
    other = oracle_layer(model, L, raw_in["W_dec"], transcoder=(out_layer, raw_out["W_enc"], "mlp_input"))["ov_tc"][0]
    e = edges[(edges["head"] == 0) & (edges["circuit"] == "OV")]
    assert not np.allclose(e["weight"], other.numpy()[e["src_index"], e["dst_index"]], rtol=1e-2)


def test_unpaired_transcoders_warn(tmp_path, gemma2):
    root, _, tcs = gemma2
    with pytest.warns(fg.FeatgraphWarning) as rec:
        fg.extract(model=root / "model", layer=L, sae_in=tcs[1][0], sae_out=tcs[0][0], top_k=10, device="cpu", labels=False)
    text = " | ".join(str(w.message) for w in rec)
    assert "the input SAE is layer 1's transcoder, written after layer 1's attention" in text
    assert "the output SAE is layer 0's transcoder, which reads before layer 1's attention writes" in text
    with pytest.raises(fg.BadValue, match="must be auto or resid for a transcoder output"):
        fg.extract(model=root / "model", layer=L, sae_in=tcs[0][0], sae_out=tcs[1][0], ov_target="attn", device="cpu",
                   labels=False)


def test_gemma_scope_2_transcoders_on_gemma_3(tmp_path):
    """Gemma 3 (query/key norms, per-layer RoPE): Gemma Scope 2's transcoders read the pre-MLP norm's output (its gain)."""
    model = make_tiny_gemma3(tmp_path / "model", seed=2)
    d = TINY3["hidden_size"]
    f_in, raw_in = write_gemma_scope_2_transcoder(tmp_path / "transcoder_all" / "layer_0_width_16k_l0_small", d, 18, 5, layer=0)
    f_out, raw_out = write_gemma_scope_2_transcoder(tmp_path / "transcoder_all" / "layer_1_width_16k_l0_small_affine", d, 22,
                                                    6, layer=1, affine=True)
    with pytest.warns(fg.FeatgraphWarning, match="not on Neuronpedia|Neuronpedia has no source"):
        run = fg.extract(model=tmp_path / "model", layer=L, sae_in=f_in, sae_out=f_out, top_k=10**6, device="cpu",
                         out=tmp_path / "run", labels=False)
    edges = pd.read_parquet(run.path / "edges.parquet")
    W_dec, W_enc = raw_in["w_dec"].numpy(), raw_out["w_enc"].numpy()
    got = oracle_layer(model, L, W_dec, transcoder=(1, W_enc, "mlp_input"))
    _check(edges, got["qk"], got["ov_tc"], W_dec.shape[0], W_enc.shape[1])
    assert run.manifest.sae_out["encoder_in_residual_units"].startswith("e_k = g ⊙ W_enc[:, k], g = 1 + layer 1's "
                                                                         "pre_feedforward_layernorm.weight")


def test_circuit_tracer_transcoders_on_qwen3(tmp_path):
    """Qwen3 (gain w, no norm on the attention output; post_attention_layernorm is the MLP's norm) with a transcoder
    set written by circuit-tracer's own TranscoderSet.to_safetensors, reading mlp.hook_in."""
    model = make_tiny("qwen3", tmp_path / "model", seed=4)
    d = CONFIGS["qwen3"]["hidden_size"]
    folder, sets = write_circuit_tracer_transcoders(tmp_path / "tcs", d, 17, 3, 11)
    tcs = sets["transcoders"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", fg.FeatgraphWarning)
        run = fg.extract(model=tmp_path / "model", layer=L, sae_in=folder / "layer_0.safetensors",
                         sae_out=folder / "layer_2.safetensors", top_k=10**6, device="cpu", out=tmp_path / "run", labels=False)
    edges = pd.read_parquet(run.path / "edges.parquet")
    W_dec = tcs[0].W_dec.detach().numpy()
    W_enc = tcs[2].W_enc.detach().T.contiguous().numpy()  # circuit-tracer's nn.Linear layout -> [d_model, d_sae]
    got = family_oracle(model, L, W_dec, transcoder=(2, W_enc, "mlp_input"))
    _check(edges, got["qk"], got["ov_tc"], W_dec.shape[0], W_enc.shape[1])
    assert "post_attention_layernorm.weight" in run.manifest.sae_out["encoder_in_residual_units"]
    # layer_L.safetensors is a path of SAELens' mwhanna-qwen3-4b-transcoders, and config.yaml's model_name confirms it:
    # the features get the Neuronpedia ids of that set (qwen3-4b/{layer}-transcoder-hp)
    assert edges["src"].str.startswith("qwen3-4b/0-transcoder-hp/").all()
    assert edges[edges["circuit"] == "OV"]["dst"].str.startswith("qwen3-4b/2-transcoder-hp/").all()


def test_parallel_families_refuse_transcoder_outputs():
    from featgraph import families
    from featgraph.api.compute import transcoder_output
    from featgraph.core.weights import SAE

    sae = SAE(d_in=4, d_sae=3, W_enc=torch.zeros(4, 3), source={"site": "transcoder", "transcoder": {"layer": 1, "reads": "mlp_input"}})
    with pytest.raises(fg.BadInput, match="runs attention and MLP in parallel"):
        transcoder_output(sae, None, families.of("gpt_neox"))


def test_circuit_tracer_transcoders_on_gpt2(tmp_path):
    """GPT-2 (LayerNorm: the pre-MLP norm ln_2 centres, scales by w and adds a bias): the OV edge into a transcoder
    reading ln_2's output equals the head's write read through transformers' own ln_2 of that layer (minus what a zero
    write gives: its bias, no feature's term), with ln_2's σ of the write multiplied back, then W_enc."""
    import ln_models

    model = ln_models.make_tiny("gpt2", tmp_path / "model", seed=3)
    d = model.config.n_embd
    folder, sets = write_circuit_tracer_transcoders(tmp_path / "tcs", d, 13, 3, 12, model_name="gpt2")
    tcs = sets["transcoders"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.FeatgraphWarning)  # no Neuronpedia ids for this synthetic set
        run = fg.extract(model=tmp_path / "model", layer=L, sae_in=folder / "layer_0.safetensors",
                         sae_out=folder / "layer_2.safetensors", top_k=10**6, device="cpu", labels=False)
    edges = run.edge_table
    W_dec = tcs[0].W_dec.detach().numpy()
    W_enc = tcs[2].W_enc.detach().T.contiguous().numpy()
    ln2 = model.transformer.h[2].ln_2
    eye = np.eye(d, dtype=np.float32)  # the oracle's OV into the identity: each head's residual write, per value feature
    got = ln_models.oracle(model, L, W_dec, eye)
    with torch.no_grad():
        ov = []
        for write in got["ov"]:
            zero = ln2(torch.zeros(1, d))
            sigma = torch.sqrt(write.var(-1, unbiased=False) + ln2.eps)[:, None]
            ov.append(((ln2(write) - zero) * sigma) @ torch.from_numpy(W_enc))
    for h in range(model.config.n_head):
        e = edges[(edges["head"] == h) & (edges["circuit"] == "QK")]
        want = got["qk"][h].numpy()[e["dst_index"].to_numpy(), e["src_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
        e = edges[(edges["head"] == h) & (edges["circuit"] == "OV")]
        assert len(e) == W_dec.shape[0] * W_enc.shape[1]
        want = ov[h].numpy()[e["src_index"].to_numpy(), e["dst_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
    assert run.manifest.sae_out["encoder_in_residual_units"].endswith("mean-centred (LayerNorm)")


def test_atlas_command_takes_a_transcoder_template(tmp_path):
    """`featgraph atlas --sae-template DIR/layer_{layer}.safetensors`: layer L reads layer L-1's transcoder and writes into
    layer L's; each layer's edges are extract's with that pair (the oracle tests above prove extract's)."""
    from helpers import fg as cli

    make_tiny("qwen3", tmp_path / "model", seed=4)
    folder, _ = write_circuit_tracer_transcoders(tmp_path / "tcs", CONFIGS["qwen3"]["hidden_size"], 9, 3, 13)
    r = cli("atlas", "--model", tmp_path / "model", "--layers", "1-2", "--sae-template", f"{folder}/layer_{{layer}}.safetensors",
            "--out", tmp_path / "atlas", "--top-k", "50", "--device", "cpu", "--no-labels")
    assert r.exit_code == 0, r.output
    run = fg.open_run(tmp_path / "atlas")
    e = run.edge_table
    for layer in (1, 2):
        part = e[e["layer"] == layer]
        assert part["src"].str.startswith(f"qwen3-4b/{layer - 1}-transcoder-hp/").all()
        assert part[part["circuit"] == "OV"]["dst"].str.startswith(f"qwen3-4b/{layer}-transcoder-hp/").all()
        one = fg.extract(model=tmp_path / "model", layer=layer, sae_in=folder / f"layer_{layer - 1}.safetensors",
                         sae_out=folder / f"layer_{layer}.safetensors", top_k=50, device="cpu", labels=False).edge_table
        key = ["head", "circuit", "src", "dst"]
        m = part.merge(one, on=key, suffixes=("", "_x"))
        assert len(m) == len(part) == len(one)
        np.testing.assert_allclose(m["weight"], m["weight_x"], rtol=1e-6)
