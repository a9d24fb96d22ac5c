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

from featgraph.load.sae.common import Loaded, read_relu_linear_pair

NAME = "goodfire"
KEYS = ("encoder_linear.weight", "decoder_linear.weight", "encoder_linear.bias", "decoder_linear.bias")
_LAYER_RE = re.compile(r"-l(\d+)\.pth?$")


def is_goodfire(sd: dict) -> bool:
    return KEYS[0] in sd and KEYS[1] in sd


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    return read_relu_linear_pair(weights, parts, role, text, KEYS, f"Goodfire {weights.name}", _LAYER_RE, NAME)
