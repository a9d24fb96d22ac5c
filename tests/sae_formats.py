"""SAE files in each published format, written the way each publisher's code writes them (and SAELens' loader
reads them: sae-lens 6.54.12, sae_lens/loading/pretrained_sae_loaders.py), non-square (d_in ≠ d_sae) so a
transposition cannot pass. Each writer returns (the path to hand featgraph, the raw tensors as written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def write_saelens(folder: Path, d_in: int, d_sae: int, seed: int, *, hook: str = "blocks.8.hook_resid_pre",
                  architecture: str = "standard", pre_6: bool = False, log_threshold: bool = False,
                  extra_cfg: dict | None = None) -> tuple[Path, dict]:
    """SAELens' own format (SAE.save_model): cfg.json + sae_weights.safetensors, W_enc [d_in, d_sae]."""
    from safetensors.torch import save_file

    r = _rng(seed)
    raw = {"W_enc": _t(r.normal(size=(d_in, d_sae))), "W_dec": _t(r.normal(size=(d_sae, d_in))),
           "b_enc": _t(r.normal(size=d_sae)), "b_dec": _t(r.normal(size=d_in))}
    if architecture == "jumprelu":
        th = _t(np.abs(r.normal(size=d_sae)))
        raw["log_threshold" if log_threshold else "threshold"] = th.log() if log_threshold else th
    cfg = {"d_in": d_in, "d_sae": d_sae, "architecture": architecture, "apply_b_dec_to_input": True,
           "model_name": "gpt2-small", "normalize_activations": "none", "dtype": "float32",
           ("hook_point" if pre_6 else "hook_name"): hook, "neuronpedia_id": "gpt2-small/8-res-jb"} | (extra_cfg or {})
    if not pre_6:
        cfg["metadata"] = {"sae_lens_version": "6.0.0"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(raw, str(folder / "sae_weights.safetensors"))
    return folder, raw


def write_llama_scope(folder: Path, d_model: int, d_sae: int, seed: int, *, hook: str = "blocks.15.hook_resid_post",
                      avg_norm: float = 3.7, threshold: float = 0.3) -> tuple[Path, dict]:
    """Llama Scope (OpenMOSS lm_saes): hyperparams.json + checkpoints/final.safetensors, nn.Linear orientation."""
    from safetensors.torch import save_file

    r = _rng(seed)
    raw = {"encoder.weight": _t(r.normal(size=(d_sae, d_model))), "encoder.bias": _t(r.normal(size=d_sae)),
           "decoder.weight": _t(r.normal(size=(d_model, d_sae))), "decoder.bias": _t(r.normal(size=d_model))}
    hp = {"d_model": d_model, "d_sae": d_sae, "hook_point_in": hook, "hook_point_out": hook, "act_fn": "jumprelu",
          "jump_relu_threshold": threshold, "dataset_average_activation_norm": {"in": avg_norm, "out": avg_norm},
          "norm_activation": "dataset-wise"}
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.json").write_text(json.dumps(hp))
    save_file(raw, str(folder / "checkpoints" / "final.safetensors"))
    return folder, raw | {"hp": hp}


def write_dictionary_learning(folder: Path, d_in: int, d_sae: int, seed: int, *, dict_class: str = "AutoEncoder",
                              layer: int = 3, lm: str = "EleutherAI/pythia-70m-deduped") -> tuple[Path, dict]:
    """dictionary_learning (torch.save of the module's state_dict) + config.json ({"trainer": …, "buffer": …})."""
    r = _rng(seed)
    if dict_class in ("JumpReluAutoEncoder", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        raw = {"W_enc": _t(r.normal(size=(d_in, d_sae))), "W_dec": _t(r.normal(size=(d_sae, d_in))),
               "b_enc": _t(r.normal(size=d_sae)), "b_dec": _t(r.normal(size=d_in))}
        raw["threshold"] = _t(np.abs(r.normal(size=d_sae))) if dict_class == "JumpReluAutoEncoder" else torch.tensor(0.25)
    else:  # AutoEncoder: encoder = nn.Linear(d_in, d_sae), decoder = nn.Linear(d_sae, d_in, bias=False), bias [d_in]
        raw = {"encoder.weight": _t(r.normal(size=(d_sae, d_in))), "encoder.bias": _t(r.normal(size=d_sae)),
               "decoder.weight": _t(r.normal(size=(d_in, d_sae))), "bias": _t(r.normal(size=d_in))}
    cfg = {"trainer": {"dict_class": dict_class, "activation_dim": d_in, "dict_size": d_sae, "layer": layer, "lm_name": lm,
                       "submodule_name": f"resid_post_layer_{layer}", "trainer_class": "StandardTrainer"},
           "buffer": {"d_submodule": d_in, "ctx_len": 128}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save(raw, folder / "ae.pt")
    return folder, raw


def write_hook_z(folder: Path, name: str, d_in: int, d_sae: int, seed: int, layer: int = 5) -> tuple[Path, dict]:
    """Kissane & Krzyzanowski's hook_z SAEs: NAME.pt (state dict, SAELens' orientation) + NAME_cfg.json."""
    r = _rng(seed)
    raw = {"W_enc": _t(r.normal(size=(d_in, d_sae))), "W_dec": _t(r.normal(size=(d_sae, d_in))),
           "b_enc": _t(r.normal(size=d_sae)), "b_dec": _t(r.normal(size=d_in))}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(raw, folder / f"{name}.pt")
    (folder / f"{name}_cfg.json").write_text(json.dumps({"act_size": d_in, "dict_size": d_sae, "layer": layer,
                                                         "act_name": f"blocks.{layer}.attn.hook_z", "model_name": "gpt2-small"}))
    return folder / f"{name}.pt", raw


def write_openai(path: Path, d_in: int, d_sae: int, seed: int, topk: int | None = 8) -> tuple[Path, dict]:
    """OpenAI's sparse_autoencoder Autoencoder.state_dict(): nn.Linear weights, pre_bias, latent_bias, stats buffers,
    and the activation's name and state (TopK: k, postact_fn)."""
    r = _rng(seed)
    raw = {"pre_bias": _t(r.normal(size=d_in)), "latent_bias": _t(r.normal(size=d_sae)),
           "encoder.weight": _t(r.normal(size=(d_sae, d_in))), "decoder.weight": _t(r.normal(size=(d_in, d_sae))),
           "stats_last_nonzero": torch.zeros(d_sae, dtype=torch.long),
           "latents_activation_frequency": torch.ones(d_sae), "latents_mean_square": torch.zeros(d_sae)}
    sd: dict = dict(raw)
    sd["activation"] = "TopK" if topk else "ReLU"
    if topk:
        sd["activation_state_dict"] = {"k": topk, "postact_fn": "ReLU"}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path, raw


def write_llama_scope_r1(folder: Path, d_model: int, expansion: int, seed: int, hook: str = "blocks.0.hook_resid_post") -> tuple[Path, dict]:
    """Llama Scope R1 Distill (lm_saes' newer layout): config.json + sae_weights.safetensors, nn.Linear orientation,
    log_jumprelu_threshold."""
    from safetensors.torch import save_file

    r = _rng(seed)
    d_sae = d_model * expansion
    raw = {"encoder.weight": _t(r.normal(size=(d_sae, d_model))), "encoder.bias": _t(r.normal(size=d_sae)),
           "decoder.weight": _t(r.normal(size=(d_model, d_sae))), "decoder.bias": _t(r.normal(size=d_model)),
           "log_jumprelu_threshold": _t(r.normal(size=d_sae) * 0.3)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"d_model": d_model, "expansion_factor": expansion, "hook_point_in": hook,
                                                    "hook_point_out": hook, "act_fn": "jumprelu"}))
    save_file(raw, str(folder / "sae_weights.safetensors"))
    return folder, raw


def write_qwen_scope(path: Path, d_in: int, d_sae: int, seed: int) -> tuple[Path, dict]:
    """Qwen Scope's layer{L}.sae.pt: a plain dict, W_enc [d_sae, d_in], W_dec [d_in, d_sae], b_enc, b_dec (SAELens'
    qwen_scope loader transposes both)."""
    r = _rng(seed)
    raw = {"W_enc": _t(r.normal(size=(d_sae, d_in))), "W_dec": _t(r.normal(size=(d_in, d_sae))),
           "b_enc": _t(r.normal(size=d_sae)), "b_dec": _t(r.normal(size=d_in))}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(raw, path)
    return path, raw


def write_linear_pair(path: Path, d_in: int, d_sae: int, seed: int, prefix: str = "encoder_linear",
                      dec_prefix: str = "decoder_linear", dtype: torch.dtype = torch.float32) -> tuple[Path, dict]:
    """A state dict of two nn.Linear modules as torch.save(module.state_dict()) writes it: Goodfire's SparseAutoEncoder
    (encoder_linear / decoder_linear) or qresearch's DeepSeek-R1 SAE (encoder / decoder, bfloat16)."""
    enc, dec = torch.nn.Linear(d_in, d_sae), torch.nn.Linear(d_sae, d_in)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (*enc.parameters(), *dec.parameters()):
            p.copy_(torch.randn(p.shape, generator=g))
    sd = {f"{prefix}.{k}": v.to(dtype) for k, v in enc.state_dict().items()}
    sd |= {f"{dec_prefix}.{k}": v.to(dtype) for k, v in dec.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path, {k: v.to(torch.float32) for k, v in sd.items()}


# ---------------------------------------------------------------- transcoders

def write_gemma_scope_transcoder(folder: Path, d_model: int, d_sae: int, seed: int, *, W_dec: np.ndarray | None = None,
                                 W_enc: np.ndarray | None = None) -> tuple[Path, dict]:
    """Gemma Scope's transcoder file (google/gemma-scope-2b-pt-transcoders/layer_L/width_W/average_l0_N/params.npz):
    the Gemma Scope SAE keys, W_enc [d_model, d_sae]. W_dec / W_enc: given rows/columns instead of random ones."""
    r = _rng(seed)
    raw = {"W_enc": r.normal(size=(d_model, d_sae)) if W_enc is None else W_enc,
           "W_dec": r.normal(size=(d_sae, d_model)) if W_dec is None else W_dec,
           "b_enc": r.normal(size=d_sae), "b_dec": r.normal(size=d_model), "threshold": np.abs(r.normal(size=d_sae))}
    raw = {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "params.npz", **raw)
    return folder, {k: _t(v) for k, v in raw.items()}


def write_gemma_scope_2_transcoder(folder: Path, d_model: int, d_sae: int, seed: int, *, layer: int, affine: bool = False,
                                   config: bool = True) -> tuple[Path, dict]:
    """Gemma Scope 2's transcoder file (google/gemma-scope-2-SIZE-pt/transcoder/layer_L_width_W_l0_SIZE[_affine]/):
    params.safetensors with w_enc [d_model, d_sae], w_dec, b_enc, b_dec, threshold (affine_skip_connection
    [d_model, d_model] for _affine), and config.json with the transformers hook points."""
    from safetensors.torch import save_file

    r = _rng(seed)
    raw = {"w_enc": _t(r.normal(size=(d_model, d_sae))), "w_dec": _t(r.normal(size=(d_sae, d_model))),
           "b_enc": _t(r.normal(size=d_sae)), "b_dec": _t(r.normal(size=d_model)), "threshold": _t(np.abs(r.normal(size=d_sae)))}
    if affine:
        raw["affine_skip_connection"] = _t(r.normal(size=(d_model, d_model)) * 0.1)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(raw, str(folder / "params.safetensors"))
    if config:
        (folder / "config.json").write_text(json.dumps({
            "architecture": "jump_relu", "model_name": "google/gemma-3-1b-pt", "type": "transcoder", "affine_connection": affine,
            "hf_hook_point_in": f"model.layers.{layer}.pre_feedforward_layernorm.output",
            "hf_hook_point_out": f"model.layers.{layer}.post_feedforward_layernorm.output"}))
    return folder, raw


def write_circuit_tracer_transcoders(folder: Path, d_model: int, d_sae: int, layers: int, seed: int, *, jumprelu: bool = True,
                                     input_hook: str = "mlp.hook_in", output_hook: str = "mlp.hook_out",
                                     model_name: str = "Qwen/Qwen3-4B") -> tuple[Path, dict]:
    """A circuit-tracer transcoder set written by circuit-tracer's own TranscoderSet.to_safetensors (layer_L.safetensors:
    W_enc [d_sae, d_model], W_dec, b_enc, b_dec, activation_function.threshold) and the config.yaml its hub loader reads."""
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet

    g = torch.Generator().manual_seed(seed)
    tcs = {}
    for layer in range(layers):
        act = JumpReLU(torch.rand(d_sae, generator=g), 0.1) if jumprelu else torch.nn.functional.relu
        tc = SingleLayerTranscoder(d_model, d_sae, act, layer, device=torch.device("cpu"), dtype=torch.float32)
        with torch.no_grad():
            for p in (tc.W_enc, tc.W_dec, tc.b_enc, tc.b_dec):
                p.copy_(torch.randn(p.shape, generator=g))
        tcs[layer] = tc
    TranscoderSet(tcs, feature_input_hook=input_hook, feature_output_hook=output_hook, scan="test").to_safetensors(str(folder))
    (folder / "config.yaml").write_text(f"model_name: {model_name}\nmodel_kind: transcoder_set\n"
                                        f"feature_input_hook: {input_hook}\nfeature_output_hook: {output_hook}\n")
    return folder, {"transcoders": tcs}
