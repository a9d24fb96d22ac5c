"""Qwen3-MoE (`model_type` qwen3_moe: Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention — per-head query/key
RMSNorms (gain w) before RoPE, scale d_head^-1/2, no post-attention norm on the attention output — with a
mixture-of-experts MLP that no attention edge reads. Two differences from Qwen3's description, both from
transformers' modeling_qwen3_moe.py / configuration_qwen3_moe.py: head_dim defaults to hidden_size /
num_attention_heads (Qwen3Config's default is 128; the released checkpoints state it), and a sliding window, when
`use_sliding_window` is set, applies to every layer (the attention module reads config.sliding_window, which the
config sets to None otherwise), as Mistral's does. docs/maths.md.
"""

from __future__ import annotations

from dataclasses import replace

from featgraph.families.llama import LLAMA_DEFAULTS
from featgraph.families.qwen3 import QWEN3

QWEN3_MOE = replace(QWEN3, model_type="qwen3_moe", name="Qwen3-MoE", defaults=LLAMA_DEFAULTS, window_from_config=True,
                    hf_module="transformers.models.qwen3_moe.modeling_qwen3_moe")
