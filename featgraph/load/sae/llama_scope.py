"""Llama Scope (fnlp/Llama3_1-8B-Base-LX{R,A,M}-{8,32}x): a folder `Llama3_1-8B-Base-L{L}{R|A|M}-{8|32}x/` with
`hyperparams.json` and `checkpoints/final.safetensors`, read as SAELens' llama_scope loader does (sae-lens 6.54.12,
get_llama_scope_config_from_hf + llama_scope_sae_huggingface_loader + SAE.fold_activation_norm_scaling_factor).

final.safetensors holds nn.Linear weights: encoder.weight [d_sae, d_in], encoder.bias [d_sae], decoder.weight
[d_in, d_sae], decoder.bias [d_in]; featgraph transposes both weights. The SAEs were trained on inputs scaled
by s = sqrt(d_model) / dataset_average_activation_norm.in; as SAELens does, featgraph folds s in:
threshold = hyperparams' scalar jump_relu_threshold · s for every feature, W_enc · s, W_dec / s, b_dec / s
(s is the registry's norm_scaling_factor when the SAE is a registry entry, else the hyperparams' formula).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import Loaded, checked_getter, expect, open_safetensors, pick, read_json

NAME = "llama_scope"
HYPER = "hyperparams.json"
WEIGHTS = "checkpoints/final.safetensors"


def detect(folder: Path) -> Path | None:
    return folder / WEIGHTS if (folder / WEIGHTS).is_file() and (folder / HYPER).is_file() else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    folder = weights.parent.parent
    hp = read_json(folder / HYPER, HYPER)
    try:
        d_in, d_sae = int(hp["d_model"]), int(hp["d_sae"])
        theta = float(hp["jump_relu_threshold"])
        avg_in = float(hp["dataset_average_activation_norm"]["in"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadInput(f"{role} {text}: {HYPER} lacks {e} (d_model, d_sae, jump_relu_threshold, "
                       "dataset_average_activation_norm.in): not a Llama Scope SAE?") from None
    if not avg_in > 0:
        raise BadInput(f"{role} {text}: {HYPER} dataset_average_activation_norm.in must be > 0")
    s_hp = math.sqrt(d_in) / avg_in
    s = float(norm_scaling_factor) if norm_scaling_factor else s_hp
    f, shapes = open_safetensors(weights, role, text)
    with f:
        expect(role, text, f"Llama Scope {WEIGHTS}", shapes, {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,),
                                                              "decoder.weight": (d_in, d_sae), "decoder.bias": (d_in,)})
        get = checked_getter(f.get_tensor, role, text, weights.name)
        arrays = pick(parts, {
            "W_enc": lambda: get("encoder.weight").to(torch.float32).T * s,
            "W_dec": lambda: get("decoder.weight").to(torch.float32).T / s,
            "b_enc": lambda: get("encoder.bias"),
            "b_dec": lambda: get("decoder.bias").to(torch.float32) / s,
            "threshold": lambda: torch.full((d_sae,), theta * s_hp),
        })
    meta = {"hook": hp.get("hook_point_in"), "hook_from": f"{HYPER} hook_point_in" if hp.get("hook_point_in") else None,
            "architecture": "jumprelu", "model_name": "meta-llama/Llama-3.1-8B",
            "norm_scaling_factor": s, "norm_scaling_factor_from": "registry" if norm_scaling_factor else HYPER}
    return Loaded(d_in, d_sae, arrays, meta)
