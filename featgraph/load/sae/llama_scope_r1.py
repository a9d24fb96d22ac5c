"""Llama Scope R1 Distill (fnlp/Llama-Scope-R1-Distill, OpenMOSS's newer lm_saes layout): a folder with `config.json`
(d_model, expansion_factor, hook_point_in) and `sae_weights.safetensors` (nn.Linear weights encoder.weight
[d_sae, d_in], decoder.weight [d_in, d_sae], encoder.bias, decoder.bias, log_jumprelu_threshold [d_sae]), read as
SAELens' llama_scope_r1_distill loader does (sae-lens 6.54.12, get_llama_scope_r1_distill_config_from_hf,
llama_scope_r1_distill_sae_huggingface_loader, then SAE.fold_activation_norm_scaling_factor with the registry's
norm_scaling_factor s: W_enc·s, W_dec/s, b_dec/s; the threshold, exp(log_jumprelu_threshold), is not rescaled).
b_dec is not subtracted before encoding (apply_b_dec_to_input False).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import Loaded, checked_getter, expect, open_safetensors, pick, read_json

NAME = "llama_scope_r1"
CONFIG = "config.json"
WEIGHTS = "sae_weights.safetensors"


def detect(folder: Path) -> Path | None:
    ok = (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file() and not (folder / "cfg.json").is_file()
    return folder / WEIGHTS if ok else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    cfg = read_json(weights.parent / CONFIG, CONFIG)
    try:
        d_in = int(cfg["d_model"])
        d_sae = d_in * int(cfg["expansion_factor"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{role} {text}: {CONFIG} lacks d_model / expansion_factor (not a Llama Scope R1 config.json?)") from None
    s = float(norm_scaling_factor) if norm_scaling_factor else 1.0
    f, shapes = open_safetensors(weights, role, text)
    with f:
        expect(role, text, f"Llama Scope R1 {WEIGHTS}", shapes, {
            "encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,), "decoder.weight": (d_in, d_sae), "decoder.bias": (d_in,),
            "log_jumprelu_threshold": (d_sae,)})
        get = checked_getter(f.get_tensor, role, text, weights.name)
        arrays = pick(parts, {
            "W_enc": lambda: get("encoder.weight").to(torch.float32).T * s,
            "W_dec": lambda: get("decoder.weight").to(torch.float32).T / s,
            "b_enc": lambda: get("encoder.bias"),
            "b_dec": lambda: get("decoder.bias").to(torch.float32) / s,
            "threshold": lambda: get("log_jumprelu_threshold").to(torch.float32).exp(),
        })
    hook = cfg.get("hook_point_in")
    meta = {"hook": hook, "hook_from": f"{CONFIG} hook_point_in" if hook else None, "architecture": "jumprelu",
            "model_name": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "apply_b_dec_to_input": False}
    if norm_scaling_factor:
        meta["norm_scaling_factor"] = s
    return Loaded(d_in, d_sae, arrays, meta)
