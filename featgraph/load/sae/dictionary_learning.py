"""dictionary_learning SAEs (saprmarks/dictionary_learning; SAE Bench, andyrdt, canrager/lm_sae): a folder with
`ae.pt` (a torch state dict) and `config.json` ({"trainer": {...}, "buffer": {...}}), read as SAELens'
dictionary_learning_sae_huggingface_loader_1 and get_dictionary_learning_config_1_from_hf do (sae-lens 6.54.12).

ae.pt keys: either W_enc [d_in, d_sae] / W_dec [d_sae, d_in] (JumpReLU, BatchTopK, Matryoshka) or nn.Linear
encoder.weight [d_sae, d_in] / decoder.weight [d_in, d_sae] (AutoEncoder, TopK, Gated), transposed; b_dec as
b_dec, bias or decoder_bias; b_enc as b_enc or encoder.bias; threshold (a scalar is broadcast) for the
architectures SAELens reads as JumpReLU. config.json: trainer.layer, dict_class, activation_dim, dict_size,
lm_name. Every class but JumpReluAutoEncoder subtracts b_dec before encoding; featgraph folds that into b_enc.
The file is read with torch.load(weights_only=True): no code runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import Loaded, expect, pick, read_json, shapes_of, torch_load

NAME = "dictionary_learning"
CONFIG = "config.json"
WEIGHTS = "ae.pt"
_JUMPRELU = ("MatryoshkaBatchTopKSAE", "BatchTopKSAE", "JumpReluAutoEncoder")


def detect(folder: Path) -> Path | None:
    return folder / WEIGHTS if (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file() else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    cfg = read_json(weights.parent / CONFIG, CONFIG)
    tr = cfg.get("trainer")
    if not isinstance(tr, dict):
        raise BadInput(f"{role} {text}: {CONFIG} has no trainer section (not a dictionary_learning config.json?)")
    try:
        d_in, d_sae = int(tr["activation_dim"]), int(tr["dict_size"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{role} {text}: {CONFIG} trainer lacks activation_dim / dict_size") from None
    cls = str(tr.get("dict_class", ""))
    sd = torch_load(weights, role, text)
    sh = shapes_of(sd)
    fmt = f"dictionary_learning {WEIGHTS}"
    if "W_enc" in sd:
        expect(role, text, fmt, sh, {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in)})
        W_enc, W_dec = sd["W_enc"], sd["W_dec"]
    else:
        expect(role, text, fmt, sh, {"encoder.weight": (d_sae, d_in), "decoder.weight": (d_in, d_sae)})
        W_enc, W_dec = sd["encoder.weight"].T, sd["decoder.weight"].T
    b_dec_key = next((k for k in ("b_dec", "bias", "decoder_bias") if k in sd), None)
    if b_dec_key is None:
        raise BadInput(f"{role} {text}: {fmt} has no decoder bias (b_dec, bias or decoder_bias)")
    expect(role, text, fmt, sh, {b_dec_key: (d_in,)})
    b_dec = sd[b_dec_key]
    b_enc_key = next((k for k in ("b_enc", "encoder.bias") if k in sd), None)
    jumprelu = cls in _JUMPRELU
    apply_b_dec = cls != "JumpReluAutoEncoder"

    def b_enc():
        b = sd[b_enc_key].to(torch.float32) if b_enc_key else torch.zeros(d_sae)
        return b - b_dec.to(torch.float32) @ W_enc.to(torch.float32) if apply_b_dec else b

    def threshold():
        if jumprelu and "threshold" in sd:
            t = sd["threshold"].to(torch.float32)
            return torch.full((d_sae,), float(t)) if t.ndim == 0 else t
        return torch.zeros(d_sae) if cls in ("AutoEncoder", "") else None  # ReLU; top-k and gated have none

    arrays = pick(parts, {"W_enc": lambda: W_enc, "W_dec": lambda: W_dec, "b_dec": lambda: b_dec,
                          "b_enc": b_enc, "threshold": threshold})
    layer = tr.get("layer")
    meta = {"hook": f"blocks.{int(layer)}.hook_resid_post" if isinstance(layer, int) else None,
            "hook_from": f"{CONFIG} trainer.layer (SAELens reads these as hook_resid_post)" if isinstance(layer, int) else None,
            "architecture": cls or "AutoEncoder", "model_name": str(tr.get("lm_name", "")).split("/")[-1] or None,
            "apply_b_dec_to_input": apply_b_dec, "submodule_name": tr.get("submodule_name")}
    return Loaded(d_in, d_sae, arrays, meta)
