"""Qwen2 / Qwen2.5 (`model_type` qwen2): Llama's attention (RMSNorm gain w, `post_attention_layernorm` before
the MLP, scale d_head^-1/2) whose q/k/v projections always have biases (left out of edges: a bias is not a
feature's term). Source: transformers' modeling_qwen2.py; docs/maths.md.
"""

from __future__ import annotations

from dataclasses import replace

from featgraph.families.llama import LLAMA

QWEN2 = replace(LLAMA, model_type="qwen2", name="Qwen2", hf_module="transformers.models.qwen2.modeling_qwen2")
