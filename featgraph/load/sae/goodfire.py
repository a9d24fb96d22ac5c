"""Goodfire's Llama SAEs (Goodfire/Llama-3.1-8B-Instruct-SAE-l19 `….pth`, Goodfire/Llama-3.3-70B-Instruct-SAE-l50
`….pt`: one torch state dict, no config file), read as SAELens' get_goodfire_huggingface_loader does (sae-lens 6.54.12).

The state dict is Goodfire's SparseAutoEncoder module: encoder_linear (nn.Linear d_in → d_sae) and decoder_linear
(nn.Linear d_sae → d_in), weights [out, in] transposed here; f = relu(encoder_linear(x)), x̂ = decoder_linear(f): a
ReLU SAE with apply_b_dec_to_input False (threshold 0, b_enc as stored). The hook is blocks.{L}.hook_resid_post, L the
file name's `-l{L}`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.load.sae.common import Loaded, linear_pair, pick, torch_load

NAME = "goodfire"
KEYS = ("encoder_linear.weight", "decoder_linear.weight", "encoder_linear.bias", "decoder_linear.bias")
_LAYER_RE = re.compile(r"-l(\d+)\.pth?$")


def is_goodfire(sd: dict) -> bool:
    return KEYS[0] in sd and KEYS[1] in sd


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    sd = torch_load(weights, role, text)
    d_in, d_sae, W_enc, W_dec, b_enc, b_dec = linear_pair(sd, KEYS, role, text, f"Goodfire {weights.name}")
    arrays = pick(parts, {"W_enc": lambda: W_enc, "W_dec": lambda: W_dec, "b_enc": lambda: b_enc, "b_dec": lambda: b_dec,
                          "threshold": lambda: torch.zeros(d_sae)})
    m = _LAYER_RE.search(weights.name)
    meta = {"hook": f"blocks.{m[1]}.hook_resid_post" if m else None,
            "hook_from": "file name -l{L} (SAELens' goodfire config: blocks.L.hook_resid_post)" if m else None,
            "architecture": "relu", "apply_b_dec_to_input": False}
    return Loaded(d_in, d_sae, arrays, meta)
