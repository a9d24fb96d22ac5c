"""Llama (`model_type` llama: Llama 2, Llama 3.x with its `llama3` RoPE scaling).

RMSNorm gain w (not 1 + w); the module named `post_attention_layernorm` is the norm *before the MLP*, so the
attention output joins the residual stream as o_proj writes it (no post-attention gain on OV); attention scale
d_head^-1/2, no soft-capping; q/k/v/o biases when config.json says `attention_bias` (left out of edges).
Sources: transformers' modeling_llama.py, modeling_rope_utils.py (`_compute_llama3_parameters`); docs/maths.md.
"""

from __future__ import annotations

from featgraph.families.base import Family

# transformers' LlamaConfig defaults (configuration_llama.py; PreTrainedConfig's default RoPE base).
LLAMA_DEFAULTS = {"rms_norm_eps": 1e-6, "rope_theta": 10_000.0}

LLAMA = Family(
    model_type="llama", name="Llama", prefixes=("model.",), qk_norm=False, defaults=LLAMA_DEFAULTS,
    required=("hidden_size", "num_attention_heads", "num_hidden_layers"), gain_offset=0.0, post_attn_norm=False,
    scaling="head_dim", hf_module="transformers.models.llama.modeling_llama",
)
