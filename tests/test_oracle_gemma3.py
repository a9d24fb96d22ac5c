"""Every QK and OV value featgraph writes for Gemma 3 equals what transformers' own Gemma 3 modules compute.

The oracle (`helpers.oracle_layer`) runs the real input_layernorm, rotary embedding (the layer's own: local
layers rotate with `rope_local_base_freq`, global ones with `rope_theta` and the linear scaling), q/k/v
projections, q_norm/k_norm, attention, o_proj and post_attention_layernorm of tiny random Gemma 3 models saved
by save_pretrained — the text-only Gemma3ForCausalLM and the multimodal Gemma3ForConditionalGeneration —
capturing q, k and the attention output through AttentionInterface and the tensor o_proj receives through a
hook. SAEs are Gemma Scope 2 files (params.safetensors + config.json) in Gemma Scope 2's folder layout.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import featgraph as fg
from featgraph.analyse import positional as pos
from featgraph.core.weights import Rope
from featgraph.errors import BadInput
from featgraph.load import model as model_io

from helpers import TINY3, make_tiny_gemma3, oracle_layer, read_gs2, write_gs2_sae
from helpers import fg as cli

D_MODEL, N_HEADS, D_HEAD = TINY3["hidden_size"], TINY3["num_attention_heads"], TINY3["head_dim"]
GS2 = "gemma-scope-2-1b-pt"


def _gs2(root, folder: str, layer: int, d_in: int, d_sae: int, seed: int, hook: str):
    sub = f"layer_{layer}_width_16k_l0_small"
    cfg = {"width": d_sae, "model_name": "google/gemma-3-1b-pt", "architecture": "jump_relu", "l0": 20,
           "affine_connection": False, "hf_hook_point_in": hook, "hf_hook_point_out": hook, "type": "sae"}
    return write_gs2_sae(root / GS2 / folder / sub, d_in, d_sae, seed, cfg)


@pytest.fixture(scope="module")
def g3(tmp_path_factory):
    """(model_dir, model, saes) with, per layer L, the residual SAE of L−1 and L and the attention SAE of L."""
    root = tmp_path_factory.mktemp("g3")
    model = make_tiny_gemma3(root / "model")
    saes = {}
    for layer in range(TINY3["num_hidden_layers"]):
        saes[("res", layer)] = _gs2(root, "resid_post_all", layer, D_MODEL, 40 - layer, 10 + layer, f"model.layers.{layer}.output")
        saes[("att", layer)] = _gs2(root, "attn_out_all", layer, N_HEADS * D_HEAD, 30 + layer, 20 + layer,
                                    f"model.layers.{layer}.self_attn.o_proj.input")
    return root / "model", model, saes


def _extract(tmp_path, model_dir, layer, sae_in, sae_out, name, **kw):
    with pytest.warns(fg.FeatgraphWarning, match="Neuronpedia has no source"):
        run = fg.extract(model=model_dir, layer=layer, sae_in=sae_in, sae_out=sae_out, top_k=10**6, device="cpu",
                         out=tmp_path / name, labels=False, **kw)
    return run, pd.read_parquet(run.path / "edges.parquet")


def _check(edges, qk, ov, n_in, n_out, kv_of=lambda h: h // 2):
    for h in range(N_HEADS):
        e = edges[(edges["head"] == h) & (edges["circuit"] == "QK")]
        assert len(e) == n_in * n_in and (e["kv_head"] == kv_of(h)).all()
        want = qk[h].numpy()[e["dst_index"].to_numpy(), e["src_index"].to_numpy()]  # edge src = key, dst = query
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
        e = edges[(edges["head"] == h) & (edges["circuit"] == "OV")]
        assert len(e) == n_in * n_out
        want = ov[h].numpy()[e["src_index"].to_numpy(), e["dst_index"].to_numpy()]
        np.testing.assert_allclose(e["weight"].to_numpy(), want, rtol=2e-4, atol=2e-4 * np.abs(want).max())


def test_layers_rotate_as_transformers_says(g3):
    """Local and global layers have their own RoPE; the config is read as transformers reads it."""
    model_dir, model, _ = g3
    cfg = model_io.load_config(str(model_dir))
    hf = model.config
    assert cfg.layer_types == tuple(hf.layer_types) == ("sliding_attention", "full_attention") * 2
    for layer in range(4):
        p = hf.rope_parameters[hf.layer_types[layer]]
        assert cfg.layer_rope(layer) == Rope(p["rope_theta"], p["rope_type"], p.get("factor", 1.0))
    assert cfg.layer_rope(1) == Rope(20000.0, "linear", 4.0) and cfg.layer_rope(2) == Rope(500.0)
    inv = model.model.rotary_emb
    for layer_type in ("sliding_attention", "full_attention"):
        layer = hf.layer_types.index(layer_type)
        torch.testing.assert_close(cfg.layer_rope(layer).inv_freq(D_HEAD).float(), getattr(inv, f"{layer_type}_inv_freq"))


@pytest.mark.parametrize(("layer", "rope_offset"), [(1, 0), (1, 7), (2, 0), (2, 7), (3, 300)])
def test_every_edge_matches_transformers(tmp_path, g3, layer, rope_offset):
    """Residual destinations: every QK and OV edge of a global (1, 3) and a local (2) layer, with rope offsets."""
    model_dir, model, saes = g3
    sae_in, sae_out = saes[("res", layer - 1)], saes[("res", layer)]
    run, edges = _extract(tmp_path, model_dir, layer, sae_in, sae_out, "r", rope_offset=rope_offset)
    d_in, W_enc = read_gs2(sae_in)["W_dec"], read_gs2(sae_out)["W_enc"]
    want = oracle_layer(model, layer, d_in, W_enc, rope_offset=rope_offset)
    _check(edges, want["qk"], want["ov"], d_in.shape[0], W_enc.shape[1])
    conv = run.manifest.conventions
    assert conv["ov_target"] == "resid" and "rms(u_i)" in conv["qk_norm"]
    assert conv["rope"]["layer_type"] == ("full_attention" if layer % 2 else "sliding_attention")
    assert conv["rope"]["theta"] == (20000.0 if layer % 2 else 500.0)


@pytest.mark.parametrize("ov_target", ["auto", "attn"])
def test_attention_output_sae_matches_the_tensor_o_proj_receives(tmp_path, g3, ov_target):
    """Attention-output destinations: OV(j, k) = v_j · W_enc[h·d_head:(h+1)·d_head, k], against the captured input of o_proj."""
    model_dir, model, saes = g3
    sae_in, sae_att = saes[("res", 1)], saes[("att", 2)]
    run, edges = _extract(tmp_path, model_dir, 2, sae_in, sae_att, "a", ov_target=ov_target)
    d_in, W_att = read_gs2(sae_in)["W_dec"], read_gs2(sae_att)["W_enc"]
    want = oracle_layer(model, 2, d_in, W_enc_att=W_att, rope_offset=0)
    want_qk = oracle_layer(model, 2, d_in, rope_offset=0)["qk"]
    _check(edges, want_qk, want["ov_att"], d_in.shape[0], W_att.shape[1])
    m = run.manifest
    assert m.conventions["ov_target"] == "attn" and "before o_proj" in m.conventions["ov"]
    assert m.sae_out["reads"] == "attn" and m.sae_out["site"] == "att"
    assert m.sae_out["neuronpedia_id"] == "2-gemmascope-2-attn_out_all-16k-l0_small"
    assert m.sae_in["neuronpedia_id"] == "1-gemmascope-2-resid_post_all-16k-l0_small"


def test_residual_target_refuses_an_attention_sae(tmp_path, g3):
    model_dir, _, saes = g3
    with pytest.raises(BadInput, match="reads vectors of size 64, but ov_target resid needs 48"):
        fg.extract(model=model_dir, layer=2, sae_in=saes[("res", 1)], sae_out=saes[("att", 2)], ov_target="resid",
                   device="cpu", labels=False)
    with pytest.raises(BadInput, match="ov_target must be auto, resid or attn"):
        fg.extract(model=model_dir, layer=2, sae_in=saes[("res", 1)], sae_out=saes[("att", 2)], ov_target="heads",
                   device="cpu", labels=False)


def test_multimodal_checkpoint_matches_transformers(tmp_path):
    """Gemma3ForConditionalGeneration saved by transformers: the language model's tensors under language_model.model."""
    model_dir = tmp_path / "mm"
    model = make_tiny_gemma3(model_dir, seed=4, multimodal=True)
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "gemma3" and cfg["text_config"]["model_type"] == "gemma3_text"
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    # The names the real google/gemma-3-4b-pt index uses (docs/gemma3.md).
    assert "language_model.model.layers.1.self_attn.q_norm.weight" in index
    sae_in = write_gs2_sae(tmp_path / "in", D_MODEL, 24, seed=5)
    sae_out = write_gs2_sae(tmp_path / "out", D_MODEL, 22, seed=6)
    with pytest.warns(fg.FeatgraphWarning):
        run = fg.extract(model=model_dir, layer=1, sae_in=sae_in, sae_out=sae_out, rope_offset=5, top_k=10**6,
                         device="cpu", out=tmp_path / "run", labels=False)
    edges = pd.read_parquet(run.path / "edges.parquet")
    d_in, W_enc = read_gs2(sae_in)["W_dec"], read_gs2(sae_out)["W_enc"]
    want = oracle_layer(model, 1, d_in, W_enc, rope_offset=5)
    _check(edges, want["qk"], want["ov"], 24, 22)
    assert run.manifest.model["config"]["model_type"] == "gemma3"
    # The module itself, in memory, gives the same edges.
    with pytest.warns(fg.FeatgraphWarning):
        mem = fg.extract(model=model, layer=1, sae_in={"W_dec": d_in, "b_dec": read_gs2(sae_in)["b_dec"]},
                         sae_out={"W_enc": W_enc}, rope_offset=5, top_k=10**6, device="cpu")
    key = ["head", "circuit", "src_index", "dst_index"]
    both = edges.merge(mem.edge_table, on=key, suffixes=("", "_mem"))
    assert len(both) == len(edges)
    np.testing.assert_allclose(both["weight"], both["weight_mem"], rtol=1e-6)


def test_a_features_query_does_not_depend_on_its_scale(g3):
    """With q_norm/k_norm a feature's query and key are a normalised direction times the gain: scaling d_i changes nothing."""
    model_dir, _, saes = g3
    W = read_gs2(saes[("res", 0)])
    scaled = W["W_dec"].copy()
    scaled[3] *= 7.0
    runs = []
    for dec in (W["W_dec"], scaled):
        with pytest.warns(fg.FeatgraphWarning):
            runs.append(fg.extract(model=model_dir, layer=1, sae_in={"W_dec": dec, "b_dec": W["b_dec"]},
                                   circuits=["qk"], top_k=10**6, device="cpu"))
    a, b = (r.edge_table.sort_values(["head", "src_index", "dst_index"]).reset_index(drop=True) for r in runs)
    np.testing.assert_allclose(a["weight"], b["weight"], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("delta", [0, 3, 300])
def test_positional_profile_uses_the_layers_own_rotation(g3, layer, delta):
    model_dir, model, saes = g3
    b_dec = read_gs2(saes[("res", layer - 1)])["b_dec"][None, :]
    want = oracle_layer(model, layer, b_dec, rope_offset=delta)["qk"]
    attn = model_io.load_attention(str(model_dir), layer)
    got = pos.profile(attn, torch.from_numpy(b_dec[0]), torch.from_numpy(b_dec[0]), np.array([delta]))
    np.testing.assert_allclose(got[:, 0], [q[0, 0].item() for q in want], rtol=1e-4, atol=1e-5 * max(abs(q[0, 0].item()) for q in want))


def test_cli_extract_and_positional_on_gemma3(tmp_path, g3):
    model_dir, _, saes = g3
    r = cli("extract", "--model", model_dir, "--layer", 2, "--sae-in", saes[("res", 1)], "--sae-out", saes[("att", 2)],
            "--ov-target", "attn", "--top-k", 5, "--no-labels", "--device", "cpu", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "Neuronpedia has no source" in r.stderr
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["conventions"]["ov_target"] == "attn" and m["sae_out"]["reads"] == "attn"
    r = cli("extract", "--model", model_dir, "--layer", 2, "--sae-in", saes[("res", 1)], "--sae-out", saes[("att", 2)],
            "--ov-target", "mlp", "--no-labels", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "--ov-target must be auto, resid or attn" in r.stderr and not (tmp_path / "bad").exists()
    r = cli("extract", "--model", model_dir, "--layer", 2, "--no-labels", "--out", tmp_path / "nosae")
    assert r.exit_code == 2 and "no default SAE for" in r.stderr and "--sae-in and --sae-out" in r.stderr
    r = cli("positional", "--model", model_dir, "--layer", 2, "--sae-in", saes[("res", 1)], "--out", tmp_path / "p.png")
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "p.csv")["head"].nunique() == N_HEADS


def test_labels_attach_to_the_hosted_sae_and_skip_the_unhosted_one(tmp_path, g3, monkeypatch):
    """A run pairing a Gemma Scope 2 SAE Neuronpedia hosts with one it does not: the first gets its labels from
    the (local) export, the second is not asked for and keeps none."""
    import http.server
    import threading

    from test_labels import _S3, _write_jsonl_gz

    model_dir, _, saes = g3
    out_sae = _gs2(tmp_path, "resid_post", 13, D_MODEL, 12, 7, "model.layers.13.output").parent
    out_sae = out_sae.rename(tmp_path / GS2 / "resid_post" / "layer_13_width_16k_l0_medium") / "params.safetensors"
    rows = [{"modelId": "gemma-3-1b", "layer": "13-gemmascope-2-res-16k", "index": str(i), "description": f"feature {i}",
             "explanationModelName": "m"} for i in (0, 5)]
    _write_jsonl_gz(tmp_path / "b.jsonl.gz", rows)
    _S3.objects = {"v1/gemma-3-1b/13-gemmascope-2-res-16k/explanations/batch-0.jsonl.gz": (tmp_path / "b.jsonl.gz").read_bytes()}
    _S3.requests = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _S3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("FEATGRAPH_NEURONPEDIA_S3", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("FEATGRAPH_CACHE", str(tmp_path / "cache"))
    try:
        with pytest.warns(fg.FeatgraphWarning, match="Neuronpedia has no source"):
            run = fg.extract(model=model_dir, layer=1, sae_in=saes[("res", 0)], sae_out=out_sae, model_id="gemma-3-1b",
                             top_k=10**6, device="cpu", out=tmp_path / "run")
    finally:
        srv.shutdown()
    assert run.manifest.sae_out["neuronpedia_id"] == "13-gemmascope-2-res-16k"
    f = run.features.set_index("id")["description"]
    assert str(f["gemma-3-1b/13-gemmascope-2-res-16k/5"]) == "feature 5"
    assert f[f.index.str.contains("resid_post_all")].isna().all()
    assert not any("resid_post_all" in r for r in _S3.requests)
    with pytest.raises(fg.FeatgraphError, match="Neuronpedia hosts none of this run's SAEs"):
        run_in, _ = _extract(tmp_path, model_dir, 1, saes[("res", 0)], saes[("res", 1)], "unhosted")
        run_in.label()
