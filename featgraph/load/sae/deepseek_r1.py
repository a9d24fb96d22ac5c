"""qresearch's DeepSeek-R1-Distill-Llama-8B SAE (qresearch/DeepSeek-R1-Distill-Llama-8B-SAE-l19, one
`DeepSeek-R1-Distill-Llama-8B-SAE-l19.pt` state dict, no config file), read as SAELens'
deepseek_r1_sae_huggingface_loader and get_deepseek_r1_config_from_hf do (sae-lens 6.54.12).

encoder (nn.Linear d_in → d_sae) and decoder (nn.Linear d_sae → d_in), weights [out, in] transposed here; a ReLU SAE
with apply_b_dec_to_input False (threshold 0, b_enc as stored), stored in bfloat16. The hook is
blocks.{L}.hook_resid_post, L the file name's `-l{L}`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from featgraph.load.sae.common import Loaded, read_relu_linear_pair

NAME = "deepseek_r1"
KEYS = ("encoder.weight", "decoder.weight", "encoder.bias", "decoder.bias")
_LAYER_RE = re.compile(r"-l(\d+)\.pth?$")


def is_deepseek_r1(sd: dict, name: str) -> bool:
    """The key set is any pair of nn.Linear layers: the publisher's file name decides."""
    return all(k in sd for k in KEYS) and "pre_bias" not in sd and "DeepSeek-R1" in name


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    return read_relu_linear_pair(weights, parts, role, text, KEYS, f"DeepSeek-R1 SAE {weights.name}", _LAYER_RE, NAME,
                                 model_name="DeepSeek-R1-Distill-Llama-8B")
