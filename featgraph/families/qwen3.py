"""Qwen3 (`model_type` qwen3): Llama's attention plus per-head query/key RMSNorms over d_head before RoPE
(`q_norm`, `k_norm`; Qwen3RMSNorm's gain is w, not Gemma's 1 + w). Source: transformers' modeling_qwen3.py;
docs/maths.md.
"""

from __future__ import annotations

from dataclasses import replace

from featgraph.families.llama import LLAMA, LLAMA_DEFAULTS

# Qwen3Config's head_dim default is 128, not hidden_size / heads.
QWEN3 = replace(LLAMA, model_type="qwen3", name="Qwen3", qk_norm=True, defaults=LLAMA_DEFAULTS | {"head_dim": 128},
                hf_module="transformers.models.qwen3.modeling_qwen3")
