"""SAELens' own format: a folder with `cfg.json` and `sae_weights.safetensors` (e.g. gpt2-small-res-jb's
`blocks.8.hook_resid_pre/`), read as sae_lens.loading.pretrained_sae_loaders.sae_lens_huggingface_loader and
read_sae_components_from_disk do (sae-lens 6.54.12; docs/formats.md).

Weights (SAELens orientation = featgraph's): W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in],
and for JumpReLU SAEs threshold [d_sae] (or log_threshold, whose exp SAELens takes). cfg.json: d_in, d_sae,
hook_name (pre-6.0 files: hook_point), architecture, apply_b_dec_to_input, normalize_activations,
model_from_pretrained_kwargs. A `scaling_factor` of all ones is dropped, as SAELens does; any other is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import Loaded, checked_getter, expect, open_safetensors, pick, read_json

NAME = "saelens"
CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"


def detect(folder: Path) -> Path | None:
    return folder / WEIGHTS if (folder / WEIGHTS).is_file() and (folder / CFG).is_file() else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    cfg = read_json(weights.parent / CFG, CFG)
    hook = cfg.get("hook_name", cfg.get("hook_point"))
    arch = str(cfg.get("architecture", "standard"))
    try:
        d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{role} {text}: {CFG} lacks d_in / d_sae (not a SAELens cfg.json?)") from None
    if arch not in ("standard", "jumprelu", "topk", "batchtopk", "matryoshka_batchtopk"):
        raise BadInput(f"{role} {text}: SAELens architecture {arch!r}: featgraph reads standard, jumprelu and top-k SAEs")
    f, shapes = open_safetensors(weights, role, text)
    with f:
        expect(role, text, f"SAELens {WEIGHTS}", shapes, {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_dec": (d_in,)})
        if "scaling_factor" in shapes and not bool(torch.all(f.get_tensor("scaling_factor") == 1)):
            raise BadInput(f"{role} {text}: a scaling_factor other than 1 (finetuning_scaling_factor) is not supported")
        get = checked_getter(f.get_tensor, role, text, weights.name)
        has = set(shapes)
        apply_b_dec = bool(cfg.get("apply_b_dec_to_input", True))

        def b_enc():
            b = get("b_enc") if "b_enc" in has else torch.zeros(d_sae)
            # SAELens encodes (x − b_dec·apply_b_dec_to_input) @ W_enc + b_enc: fold the shift into b_enc
            return b - get("b_dec") @ get("W_enc") if apply_b_dec else b

        def threshold():
            if "threshold" in has:
                return get("threshold")
            if "log_threshold" in has:
                return get("log_threshold").exp()
            return torch.zeros(d_sae) if arch == "standard" else None  # ReLU = JumpReLU at 0; top-k has none

        arrays = pick(parts, {"W_enc": lambda: get("W_enc"), "W_dec": lambda: get("W_dec"), "b_dec": lambda: get("b_dec"),
                              "b_enc": b_enc, "threshold": threshold})
    norm = cfg.get("normalize_activations")
    meta = {"hook": hook, "hook_from": f"{CFG} hook_name" if hook else None, "architecture": arch,
            "model_name": cfg.get("model_name"), "apply_b_dec_to_input": apply_b_dec,
            "model_from_pretrained_kwargs": dict(cfg.get("model_from_pretrained_kwargs") or {}),
            "normalize_activations": norm, "cfg_neuronpedia_id": cfg.get("neuronpedia_id")}
    if norm == "expected_average_only_in" and norm_scaling_factor:
        s = float(norm_scaling_factor)  # SAE.fold_activation_norm_scaling_factor, with the registry's factor
        for k, op in (("W_enc", s), ("W_dec", 1 / s), ("b_dec", 1 / s)):
            if k in arrays:
                arrays[k] = arrays[k] * op
        # b_enc' above stays: (x − b_dec/s)·(s W_enc) + b_enc = x·(s W_enc) + b_enc − b_dec·W_enc
        meta["norm_scaling_factor"] = s
    return Loaded(d_in, d_sae, arrays, meta)
