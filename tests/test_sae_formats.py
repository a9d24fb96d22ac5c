"""Each SAE format featgraph reads, from a file written as its publisher writes it (tests/sae_formats.py), checked
against the publisher's own forward pass written out from the raw tensors: featgraph's arrays (W_enc [d_in, d_sae],
W_dec [d_sae, d_in], b_enc, b_dec, threshold; f = pre·(pre > threshold), pre = x W_enc + b_enc, x̂ = f W_dec + b_dec)
must give the same feature activations and reconstructions. d_in ≠ d_sae everywhere: a transposition cannot pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featgraph.errors import BadInput
from featgraph.load import sae as sae_io

from helpers import write_gs2_sae, write_sae
from sae_formats import (
    write_circuit_tracer_transcoders,
    write_dictionary_learning,
    write_gemma_scope_2_transcoder,
    write_gemma_scope_transcoder,
    write_hook_z,
    write_linear_pair,
    write_llama_scope,
    write_llama_scope_r1,
    write_openai,
    write_qwen_scope,
    write_saelens,
)

D_IN, D_SAE = 24, 40


def _x(n: int = 7, d: int = D_IN, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 3


def _ours(s, x):
    pre = x @ s.W_enc + s.b_enc
    f = pre * (pre > s.threshold) if s.threshold is not None else pre
    return pre, f, f @ s.W_dec + s.b_dec


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("architecture", ["standard", "jumprelu"])
@pytest.mark.parametrize("pre_6", [False, True])
def test_saelens_format(tmp_path, architecture, pre_6):
    folder, raw = write_saelens(tmp_path / "blocks.8.hook_resid_pre", D_IN, D_SAE, 0, architecture=architecture,
                                pre_6=pre_6, log_threshold=pre_6)
    s = sae_io.load(str(folder))
    assert (s.d_in, s.d_sae, tuple(s.W_enc.shape), tuple(s.W_dec.shape)) == (D_IN, D_SAE, (D_IN, D_SAE), (D_SAE, D_IN))
    x = _x()
    # SAELens StandardSAE / JumpReLUSAE: hidden_pre = (x − b_dec·apply_b_dec_to_input) W_enc + b_enc
    pre = (x - raw["b_dec"]) @ raw["W_enc"] + raw["b_enc"]
    th = raw["log_threshold"].exp() if "log_threshold" in raw else raw.get("threshold", torch.zeros(D_SAE))
    f = torch.relu(pre) if architecture == "standard" else pre * (pre > th)
    _close(_ours(s, x)[1], f)
    _close(_ours(s, x)[2], f @ raw["W_dec"] + raw["b_dec"])
    assert s.source["hook"] == "blocks.8.hook_resid_pre" and s.source["input_of_layer"] == 8 and s.source["format"] == "saelens"


def test_saelens_folded_norm_scaling_factor(tmp_path):
    """normalize_activations expected_average_only_in with the registry's factor (gpt2-small-mlp-tm): folded as
    SAE.fold_activation_norm_scaling_factor does (W_enc·s, W_dec/s, b_dec/s)."""
    folder, raw = write_saelens(tmp_path / "models--tommmcgrath--gpt2-small-mlp-out-saes" / "snapshots" / "c" /
                                "sae_group_gpt2_blocks.0.hook_mlp_out_24576:v1", D_IN, D_SAE, 1,
                                hook="blocks.0.hook_mlp_out", extra_cfg={"normalize_activations": "expected_average_only_in"})
    s = sae_io.load(str(folder))
    k = 1.049317316132615  # the registry's norm_scaling_factor of gpt2-small-mlp-tm/blocks.0.hook_mlp_out
    assert s.source["release"] == "gpt2-small-mlp-tm" and s.source["norm_scaling_factor"] == k
    x = _x()
    pre = (k * x - raw["b_dec"]) @ raw["W_enc"] + raw["b_enc"]  # the SAE on scaled inputs
    _close(_ours(s, x)[1], torch.relu(pre))
    _close(_ours(s, x)[2], (torch.relu(pre) @ raw["W_dec"] + raw["b_dec"]) / k)


def test_llama_scope_format_and_dataset_norm(tmp_path):
    """nn.Linear weights transposed; inputs scaled by s = sqrt(d_model)/avg norm (the registry's factor when the SAE is
    a registry entry); threshold = jump_relu_threshold · s (hyperparams' s) for every feature, as SAELens reads it."""
    folder, raw = write_llama_scope(tmp_path / "Llama3_1-8B-Base-L15R-8x", D_IN, D_SAE, 2, avg_norm=3.7, threshold=0.3)
    s = sae_io.load(str(folder))
    sc = math.sqrt(D_IN) / 3.7
    x = _x()
    pre = (x * sc) @ raw["encoder.weight"].T + raw["encoder.bias"]
    f = pre * (pre > 0.3 * sc)
    _close(_ours(s, x)[1], f)
    _close(_ours(s, x)[2], (f @ raw["decoder.weight"].T + raw["decoder.bias"]) / sc)
    assert s.source["hook"] == "blocks.15.hook_resid_post" and s.source["norm_scaling_factor_from"] == "hyperparams.json"
    # in the HF cache it is llama_scope_lxr_8x/l15r_8x: the registry's factor 5.91907514450867 folds the weights
    cached, _ = write_llama_scope(tmp_path / "hub" / "models--fnlp--Llama3_1-8B-Base-LXR-8x" / "snapshots" / "c" /
                                  "Llama3_1-8B-Base-L15R-8x", D_IN, D_SAE, 2, avg_norm=3.7, threshold=0.3)
    s = sae_io.load(str(cached))
    assert (s.neuronpedia_id, s.source["norm_scaling_factor"]) == ("15-llamascope-res-32k", 5.91907514450867)
    _close(s.W_enc, raw["encoder.weight"].T * 5.91907514450867)
    _close(s.threshold, torch.full((D_SAE,), 0.3 * sc))


@pytest.mark.parametrize("cls", ["AutoEncoder", "JumpReluAutoEncoder", "BatchTopKSAE"])
def test_dictionary_learning_format(tmp_path, cls):
    folder, raw = write_dictionary_learning(tmp_path / "trainer_0", D_IN, D_SAE, 3, dict_class=cls)
    s = sae_io.load(str(folder))
    x = _x()
    if cls == "AutoEncoder":  # dictionary_learning AutoEncoder.encode: relu(encoder(x − bias)); decode: decoder(f) + bias
        f = torch.relu((x - raw["bias"]) @ raw["encoder.weight"].T + raw["encoder.bias"])
        x_hat = f @ raw["decoder.weight"].T + raw["bias"]
    else:
        shift = raw["b_dec"] if cls != "JumpReluAutoEncoder" else 0  # JumpReluAutoEncoder does not subtract b_dec
        pre = (x - shift) @ raw["W_enc"] + raw["b_enc"]
        f = pre * (pre > raw["threshold"])
        x_hat = f @ raw["W_dec"] + raw["b_dec"]
    _close(_ours(s, x)[1], f)
    _close(_ours(s, x)[2], x_hat)
    assert s.source["hook"] == "blocks.3.hook_resid_post" and s.source["architecture"] == cls


def test_hook_z_format_is_an_attention_output_destination(tmp_path):
    p, raw = write_hook_z(tmp_path, "gpt2-small_L5_Hcat_z_ds40", 64, D_SAE, 4)
    s = sae_io.load(str(p), expect_d_in=(D_IN, 64), d_attn=64)
    x = _x(d=64)
    f = torch.relu((x - raw["b_dec"]) @ raw["W_enc"] + raw["b_enc"])
    _close(_ours(s, x)[1], f)
    assert (s.source["site"], s.source["hook"], s.source["output_of_layer"]) == ("att", "blocks.5.attn.hook_z", 5)


@pytest.mark.parametrize("topk", [None, 8])
def test_openai_format(tmp_path, topk):
    """OpenAI's Autoencoder: latents = act(encoder(x' − pre_bias) + latent_bias), x' = LN(x) with TopK. featgraph's
    encoder columns are the centred ones, so pre-activations agree on mean-centred unit-variance inputs."""
    p, raw = write_openai(tmp_path / "resid_post_mlp_v5_32k" / "autoencoders" / "6.pt", D_IN, D_SAE, 5, topk)
    s = sae_io.load(str(p))
    x = _x()
    if topk:
        x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)  # OpenAI's LN with eps 0: x is its own LN
    pre = (x - raw["pre_bias"]) @ raw["encoder.weight"].T + raw["latent_bias"]
    _close(x @ s.W_enc + s.b_enc, pre)
    _close(s.W_dec, raw["decoder.weight"].T)
    assert s.source["hook"] == "blocks.6.hook_resid_post" and (s.threshold is None) == bool(topk)
    assert s.source["model_from_pretrained_kwargs"] == {"center_writing_weights": False}
    if topk:  # the input is mean-centred: an encoder column's mean is not part of what it reads
        torch.testing.assert_close(s.W_enc.sum(0), torch.zeros(D_SAE), atol=1e-4, rtol=0)


def test_format_errors_are_one_line(tmp_path):
    folder, _ = write_saelens(tmp_path / "a", D_IN, D_SAE, 0)
    (folder / "cfg.json").write_text('{"d_in": 40, "d_sae": 24, "hook_name": "blocks.1.hook_resid_pre"}')
    with pytest.raises(BadInput, match=r"W_enc has shape \[24, 40\], expected \[40, 24\]"):
        sae_io.load(str(folder))
    lf, _ = write_llama_scope(tmp_path / "b", D_IN, D_SAE, 0)
    (lf / "hyperparams.json").write_text('{"d_model": 24}')
    with pytest.raises(BadInput, match="hyperparams.json lacks"):
        sae_io.load(str(lf))
    p = tmp_path / "evil.pt"
    torch.save({"W_enc": torch.zeros(2, 3), "f": torch.nn.ReLU()}, p)  # a module: not weights-only
    with pytest.raises(BadInput, match="weights-only torch checkpoint"):
        sae_io.load(str(p))


def test_llama_scope_r1_format(tmp_path):
    """In the HF cache as llama_scope_r1_distill/l0r_800m_slimpajama: the registry's factor folds W_enc·s, W_dec/s,
    b_dec/s; threshold exp(log_jumprelu_threshold); b_dec not subtracted before encoding."""
    from featgraph.load import registry

    e = registry.get().lookup("llama_scope_r1_distill", "l0r_800m_slimpajama")
    folder, raw = write_llama_scope_r1(tmp_path / "models--fnlp--Llama-Scope-R1-Distill" / "snapshots" / "c" / e.path, D_IN, 2, 6)
    s = sae_io.load(str(folder))
    k = e.norm_scaling_factor
    assert s.source["release"] == "llama_scope_r1_distill" and s.source["norm_scaling_factor"] == k and s.d_sae == 2 * D_IN
    x = _x()
    pre = (x * k) @ raw["encoder.weight"].T + raw["encoder.bias"]
    f = pre * (pre > raw["log_jumprelu_threshold"].exp())
    _close(_ours(s, x)[1], f)
    _close(_ours(s, x)[2], (f @ raw["decoder.weight"].T + raw["decoder.bias"]) / k)
    assert s.source["hook"] == "blocks.0.hook_resid_post" and s.neuronpedia_id == e.neuronpedia.split("/")[1]


def test_qwen_scope_format_in_the_hub_cache(tmp_path):
    """Qwen Scope (SAELens' qwen_scope loader): W_enc [d_sae, d_in] and W_dec [d_in, d_sae] transposed; TopK with
    apply_b_dec_to_input False, so pre = x W_enc + b_enc and no threshold; layer{L}.sae.pt is blocks.L.hook_resid_post,
    layer L+1's input; in the HF cache the registry entry is found by repo and file."""
    p, raw = write_qwen_scope(tmp_path / "models--Qwen--SAE-Res-Qwen3-1.7B-Base-W32K-L0_50" / "snapshots" / "c" / "layer3.sae.pt",
                              D_IN, D_SAE, 7)
    s = sae_io.load(str(p))
    x = _x()
    _close(_ours(s, x)[0], x @ raw["W_enc"].T + raw["b_enc"])
    _close(s.W_dec, raw["W_dec"].T)
    _close(_ours(s, x)[0] @ s.W_dec + s.b_dec, (x @ raw["W_enc"].T + raw["b_enc"]) @ raw["W_dec"].T + raw["b_dec"])
    assert s.threshold is None and s.source["format"] == "qwen_scope"
    assert (s.source["hook"], s.source["input_of_layer"], s.source["release"], s.source["sae_id"]) == \
        ("blocks.3.hook_resid_post", 4, "qwen-scope-3-1.7b-base-w32k-l50", "layer3")
    assert s.source["architecture"] == "topk (k=50)"


@pytest.mark.parametrize("publisher", ["goodfire", "deepseek_r1"])
def test_goodfire_and_deepseek_r1_formats(tmp_path, publisher):
    """Goodfire's SparseAutoEncoder (f = relu(encoder_linear(x)), x̂ = decoder_linear(f)) and qresearch's DeepSeek-R1 SAE
    (encoder / decoder, stored in bfloat16): nn.Linear weights transposed, ReLU with b_dec not subtracted. The file
    names give the layer; in the HF cache, the registry's Neuronpedia id."""
    if publisher == "goodfire":
        repo, name, keys = "models--Goodfire--Llama-3.1-8B-Instruct-SAE-l19", "Llama-3.1-8B-Instruct-SAE-l19.pth", \
            ("encoder_linear", "decoder_linear")
        np_id, dtype = "19-resid-post-gf", torch.float32
    else:
        repo, name, keys = "models--qresearch--DeepSeek-R1-Distill-Llama-8B-SAE-l19", "DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt", \
            ("encoder", "decoder")
        np_id, dtype = "19-qresearch-res-65k", torch.bfloat16
    p, raw = write_linear_pair(tmp_path / repo / "snapshots" / "c" / name, D_IN, D_SAE, 8, *keys, dtype=dtype)
    s = sae_io.load(str(p))
    x = _x()
    enc, dec = keys
    f = torch.relu(x @ raw[f"{enc}.weight"].T + raw[f"{enc}.bias"])
    _close(_ours(s, x)[1], f)
    _close(_ours(s, x)[2], f @ raw[f"{dec}.weight"].T + raw[f"{dec}.bias"])
    assert (s.source["format"], s.source["hook"], s.source["input_of_layer"], s.neuronpedia_id) == \
        (publisher, "blocks.19.hook_resid_post", 20, np_id)
    # outside the cache the keys (and the publisher's file name) still choose the reader
    q, _ = write_linear_pair(tmp_path / "loose" / name, D_IN, D_SAE, 8, *keys, dtype=dtype)
    assert sae_io.load(str(q)).source["format"] == publisher
    bad = tmp_path / "bad" / name
    bad.parent.mkdir()
    sd = torch.load(q)
    sd[f"{dec}.weight"] = sd[f"{dec}.weight"][:, :-1]
    torch.save(sd, bad)
    with pytest.raises(BadInput, match=rf"{dec}.weight has shape \[{D_IN}, {D_SAE - 1}\], expected \[{D_IN}, {D_SAE}\]"):
        sae_io.load(str(bad))


def _llama_scope_r1(tmp_path):
    from featgraph.load import registry

    e = registry.get().lookup("llama_scope_r1_distill", "l0r_800m_slimpajama")
    return write_llama_scope_r1(tmp_path / "models--fnlp--Llama-Scope-R1-Distill" / "snapshots" / "c" / e.path, D_IN, 2, 6)[0]


# (reader, write the SAE and return what sae_io.load takes, its weights file relative to that, the tensor to quantize)
QUANTIZABLE = [
    ("gemma_scope", lambda t: write_sae(t / "gs", D_IN, D_SAE, 0), None, "W_dec"),
    ("gemma_scope_2", lambda t: write_gs2_sae(t / "gs2", D_IN, D_SAE, 0), None, "w_dec"),
    ("saelens", lambda t: write_saelens(t / "blocks.8.hook_resid_pre", D_IN, D_SAE, 0, architecture="jumprelu")[0],
     "sae_weights.safetensors", "threshold"),
    ("llama_scope", lambda t: write_llama_scope(t / "Llama3_1-8B-Base-L15R-8x", D_IN, D_SAE, 2)[0],
     "checkpoints/final.safetensors", "decoder.weight"),
    ("llama_scope_r1", _llama_scope_r1, "sae_weights.safetensors", "encoder.bias"),
    ("dictionary_learning", lambda t: write_dictionary_learning(t / "trainer_0", D_IN, D_SAE, 3)[0], "ae.pt", "decoder.weight"),
    ("hook_z", lambda t: write_hook_z(t, "gpt2-small_L5_Hcat_z_ds40", D_IN, D_SAE, 4)[0], None, "W_enc"),
    ("openai", lambda t: write_openai(t / "resid_post_mlp_v5_32k" / "autoencoders" / "6.pt", D_IN, D_SAE, 5)[0], None, "pre_bias"),
    ("qwen_scope", lambda t: write_qwen_scope(t / "models--Qwen--SAE-Res-Qwen3-1.7B-Base-W32K-L0_50" / "snapshots" / "c" /
                                              "layer3.sae.pt", D_IN, D_SAE, 7)[0], None, "W_dec"),
    ("goodfire", lambda t: write_linear_pair(t / "Llama-3.1-8B-Instruct-SAE-l19.pth", D_IN, D_SAE, 8)[0], None,
     "decoder_linear.weight"),
    ("deepseek_r1", lambda t: write_linear_pair(t / "DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt", D_IN, D_SAE, 8, "encoder",
                                                "decoder", dtype=torch.bfloat16)[0], None, "encoder.bias"),
    ("gemma_scope_transcoder", lambda t: write_gemma_scope_transcoder(t / "gemma-scope-2b-pt-transcoders" / "layer_3" / "width_16k" /
                                                                      "average_l0_54", D_IN, D_SAE, 7)[0], "params.npz", "W_dec"),
    ("gemma_scope_2_transcoder", lambda t: write_gemma_scope_2_transcoder(t / "transcoder" / "layer_7_width_16k_l0_small", D_IN,
                                                                          D_SAE, 8, layer=7)[0], "params.safetensors", "w_enc"),
    ("circuit_tracer", lambda t: write_circuit_tracer_transcoders(t / "tcs", D_IN, D_SAE, 2, 9)[0] / "layer_1.safetensors", None,
     "W_enc"),
]


def _quantize(path, key: str, dtype: str) -> None:
    """Rewrite weights file `path` with tensor `key` cast to `dtype`, as a quantized checkpoint stores it."""
    if path.suffix == ".npz":
        with np.load(path) as z:
            arrays = dict(z)
        arrays[key] = arrays[key].astype(np.int8 if dtype == "int8" else bool)
        np.savez(path, **arrays)
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(path))
        tensors[key] = tensors[key].to(getattr(torch, dtype))
        save_file(tensors, str(path))
    else:
        sd = torch.load(path, weights_only=True)
        sd[key] = sd[key].to(getattr(torch, dtype))
        torch.save(sd, path)


@pytest.mark.parametrize("dtype", ["int8", "bool"])
@pytest.mark.parametrize(("fmt", "write", "file", "key"), QUANTIZABLE, ids=[q[0] for q in QUANTIZABLE])
def test_quantized_sae_tensors_are_refused_by_every_reader(tmp_path, fmt, write, file, key, dtype):
    """Issue 21.9: an integer or bool SAE tensor (a quantized checkpoint) is one line naming the file and the tensor,
    not cast to float (which gave wrong edges with exit 0). The same file unquantized reads."""
    ref = write(tmp_path)
    assert sae_io.load(str(ref)).source["format"] == fmt
    weights = ref / file if file else ref
    _quantize(weights, key, dtype)
    with pytest.raises(BadInput) as e:
        sae_io.load(str(ref))
    msg = str(e.value)
    assert "\n" not in msg and f"{key} in {weights.name}" in msg and dtype in msg and "full-precision" in msg, msg


# ---------------------------------------------------------------- transcoders, against circuit-tracer's own loaders

def _against_circuit_tracer(s, tc, x):
    """featgraph's arrays give circuit-tracer's SingleLayerTranscoder's pre-activations, activations and output."""
    with torch.no_grad():
        _close(_ours(s, x)[0], tc.encode(x, apply_activation_function=False))
        _close(_ours(s, x)[1], tc.encode(x))
        acts = tc.encode(x)
        _close(_ours(s, x)[1] @ s.W_dec + s.b_dec, acts @ tc.W_dec + tc.b_dec)


def test_gemma_scope_transcoder_format(tmp_path):
    """google/gemma-scope-2b-pt-transcoders' params.npz: the registry entry (Neuronpedia gemma-2-2b/L-gemmascope-
    transcoder-16k), what it reads and writes, and the arrays against circuit-tracer's load_gemma_scope_transcoder."""
    from circuit_tracer.transcoder.single_layer_transcoder import load_gemma_scope_transcoder

    folder, _ = write_gemma_scope_transcoder(tmp_path / "gemma-scope-2b-pt-transcoders" / "layer_3" / "width_16k" /
                                               "average_l0_54", D_IN, D_SAE, 7)
    s = sae_io.load(str(folder))
    assert s.source["format"] == "gemma_scope_transcoder" and s.source["site"] == "transcoder"
    assert (s.neuronpedia_id, s.source["neuronpedia_model"], s.layer) == ("3-gemmascope-transcoder-16k", "gemma-2-2b", 3)
    assert (s.source["input_of_layer"], s.source["output_of_layer"]) == (4, 3)
    t = s.source["transcoder"]
    assert (t["reads"], t["reads_hook"], t["writes_hook"]) == ("normalised", "blocks.3.ln2.hook_normalized", "blocks.3.hook_mlp_out")
    tc = load_gemma_scope_transcoder(str(folder / "params.npz"), 3, device=torch.device("cpu"))
    _against_circuit_tracer(s, tc, _x())
    # the same by SAELens' release/sae_id, described from the registry alone
    # a layer's folder names the release's one transcoder of that layer (what atlas' --sae-template needs: the L0 differs)
    assert sae_io.resolve("gemma-scope-2b-pt-transcoders/layer_3").entry.sae_id == "layer_3/width_16k/average_l0_54"
    with pytest.raises(BadInput, match="is not in SAELens' release gemma-scope-2b-pt-res"):  # several SAEs there: no guess
        sae_io.resolve("gemma-scope-2b-pt-res/layer_3")
    d = sae_io.info("gemma-scope-2b-pt-transcoders/layer_3/width_16k/average_l0_54")
    assert (d["format"], d["site"], d["input_of_layer"], d["output_of_layer"]) == ("gemma_scope_transcoder", "transcoder", 4, 3)
    assert d["neuronpedia_id"] == "3-gemmascope-transcoder-16k"
    from helpers import fg

    r = fg("sae", "gemma-scope-2b-pt-transcoders/layer_3")
    assert r.exit_code == 0 and "decoder rows a source for layers 4+, encoder an OV output of layers ≤ 3" in r.stdout, r.output


@pytest.mark.parametrize("affine", [False, True])
def test_gemma_scope_2_transcoder_format(tmp_path, affine):
    from circuit_tracer.transcoder.single_layer_transcoder import load_gemma_scope_2_transcoder

    name = "layer_7_width_16k_l0_small" + ("_affine" if affine else "")
    folder, _ = write_gemma_scope_2_transcoder(tmp_path / "transcoder_all" / name, D_IN, D_SAE, 8, layer=7, affine=affine)
    s = sae_io.load(str(folder))
    assert s.source["format"] == "gemma_scope_2_transcoder" and s.layer == 7
    t = s.source["transcoder"]
    assert (t["reads"], t["reads_hook"]) == ("mlp_input", "model.layers.7.pre_feedforward_layernorm.output")
    assert t["affine_skip"] is affine and s.source["architecture"] == ("jumprelu_skip_transcoder" if affine else "jumprelu_transcoder")
    tc = load_gemma_scope_2_transcoder(str(folder / "params.safetensors"), 7, device=torch.device("cpu"))
    x = _x()
    with torch.no_grad():  # the skip connection is no feature: featgraph's features and their decoder rows only
        _close(_ours(s, x)[1], tc.encode(x))
        _close(_ours(s, x)[1] @ s.W_dec + s.b_dec, tc.decode(tc.encode(x), x) - (tc.compute_skip(x) if affine else 0))
    # without config.json: SAELens' inference (the same hooks)
    (folder / "config.json").unlink()
    assert sae_io.load(str(folder)).source["transcoder"]["reads_hook"] == "model.layers.7.pre_feedforward_layernorm.output"
    d = sae_io.info("gemma-scope-2-1b-pt-transcoders/transcoder/layer_13_width_16k_l0_big")
    assert (d["format"], d["site"], d["input_of_layer"]) == ("gemma_scope_2_transcoder", "transcoder", 14)


@pytest.mark.parametrize("jumprelu", [True, False])
def test_circuit_tracer_transcoder_format(tmp_path, jumprelu):
    """A transcoder set written by circuit-tracer itself (TranscoderSet.to_safetensors + config.yaml): one layer's file,
    W_enc transposed from nn.Linear's layout, against circuit-tracer's load_relu_transcoder."""
    from circuit_tracer.transcoder.single_layer_transcoder import load_relu_transcoder

    folder, _ = write_circuit_tracer_transcoders(tmp_path / "qwen3-tcs", D_IN, D_SAE, 3, 9, jumprelu=jumprelu)
    s = sae_io.load(str(folder / "layer_2.safetensors"))
    assert s.source["format"] == "circuit_tracer" and s.layer == 2 and s.source["model_name"] == "Qwen/Qwen3-4B"
    t = s.source["transcoder"]
    assert (t["reads"], t["reads_hook"], t["writes_hook"]) == ("mlp_input", "blocks.2.mlp.hook_in", "blocks.2.mlp.hook_out")
    tc = load_relu_transcoder(str(folder / "layer_2.safetensors"), 2, device=torch.device("cpu"), lazy_encoder=False,
                              lazy_decoder=False)
    _against_circuit_tracer(s, tc, _x())
    with pytest.raises(BadInput, match="one per layer: pass one of them"):
        sae_io.load(str(folder))
    d = sae_io.info("mwhanna-qwen3-4b-transcoders/layer_5")
    assert (d["format"], d["readable"], d["site"], d["neuronpedia_id"]) == ("circuit_tracer", True, "transcoder", "5-transcoder-hp")
