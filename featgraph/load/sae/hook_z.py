"""Attention SAEs on TransformerLens' hook_z (Kissane & Krzyzanowski's GPT-2 small SAEs, ckkissane/attn-saes-gpt2-small-
all-layers): one torch file `NAME.pt` (state dict W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec
[d_in]: SAELens' orientation, loaded as is) beside `NAME_cfg.json` (act_size = d_in = n_heads·d_head, dict_size,
act_name = blocks.L.attn.hook_z), read as SAELens' connor_rob_hook_z loader does (sae-lens 6.54.12).

hook_z is the heads' outputs before o_proj, concatenated head-major ((n_heads d_head), einops as SAELens
reshapes it): the layout of featgraph's attention-output destination (ov_target attn), like Gemma Scope's
attention SAEs. The SAE subtracts b_dec before encoding (apply_b_dec_to_input); featgraph folds that into b_enc.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import Loaded, expect, pick, read_json, shapes_of, torch_load

NAME = "hook_z"


def config_path(weights: Path) -> Path:
    return weights.with_name(weights.name.split(".pt")[0] + "_cfg.json")


def detect(path: Path) -> Path | None:
    return path if path.suffix == ".pt" and path.is_file() and config_path(path).is_file() else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    cfg = read_json(config_path(weights), config_path(weights).name)
    try:
        d_in, d_sae = int(cfg["act_size"]), int(cfg["dict_size"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{role} {text}: {config_path(weights).name} lacks act_size / dict_size") from None
    sd = torch_load(weights, role, text)
    expect(role, text, f"hook_z {weights.name}", shapes_of(sd),
           {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)})
    arrays = pick(parts, {"W_enc": lambda: sd["W_enc"], "W_dec": lambda: sd["W_dec"], "b_dec": lambda: sd["b_dec"],
                          "b_enc": lambda: sd["b_enc"].to(torch.float32) - sd["b_dec"].to(torch.float32) @ sd["W_enc"].to(torch.float32),
                          "threshold": lambda: torch.zeros(d_sae)})
    hook = cfg.get("act_name")
    if isinstance(hook, str) and not hook.endswith("hook_z"):
        raise BadInput(f"{role} {text}: {config_path(weights).name} says act_name {hook!r}: featgraph reads hook_z SAEs in this format")
    meta = {"hook": hook, "hook_from": "_cfg.json act_name" if hook else None, "architecture": "standard",
            "model_name": cfg.get("model_name", "gpt2-small"), "apply_b_dec_to_input": True}
    return Loaded(d_in, d_sae, arrays, meta)
