"""Gemma 4 (`model_type` gemma4_text, and the multimodal gemma4 with its `text_config`).

From transformers' modeling_gemma4.py / configuration_gemma4.py: every RMSNorm's gain is w (not Gemma 2/3's
1 + w); queries and keys pass through q_norm / k_norm (gain w) and values through a gainless v_norm, all over
d_head; the attention scale is 1; sliding layers rotate with θ = 1e4 over all of d_head, full-attention layers
with "proportional" RoPE (θ = 1e6, a quarter of the angle pairs rotated, frequencies from the full head size)
and have their own head size and kv-head count (`per_layer_config`, or `global_head_dim` /
`num_global_key_value_heads`); with `attention_k_eq_v` full-attention layers have no v_proj and take the key
projection (before k_norm and RoPE) as values; `post_attention_layernorm` normalises the attention output; each
layer's `layer_scalar` multiplies everything the layer writes; the last `num_kv_shared_layers` layers reuse an
earlier layer's keys and values (featgraph refuses them). docs/maths.md "Gemma 4".
"""

from __future__ import annotations

from dataclasses import replace

from featgraph.families.base import FULL, SLIDING, Family

# transformers' Gemma4TextConfig defaults.
_GEMMA4_DEFAULTS = {
    "hidden_size": 2304, "num_hidden_layers": 30, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "rms_norm_eps": 1e-6, "sliding_window_pattern": 6,
    "rope_parameters": {SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
                        FULL: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0}},
}

GEMMA4_TEXT = Family(
    model_type="gemma4_text", name="Gemma 4 (text, Gemma4ForCausalLM)", prefixes=("model.",), qk_norm=True,
    defaults=_GEMMA4_DEFAULTS, gain_offset=0.0, local_rope=True, v_norm=True, layer_scalar=True, scaling="one",
    kv_sharing=True, value_is_key=True, per_layer_shapes=True, hf_module="transformers.models.gemma4.modeling_gemma4",
)
# Gemma4ForConditionalGeneration: the language model under `model.language_model.`, its config under text_config.
GEMMA4 = replace(
    GEMMA4_TEXT, model_type="gemma4", name="Gemma 4 (multimodal, Gemma4ForConditionalGeneration)",
    prefixes=("model.language_model.",), nested="text_config", extra_prefixes=("language_model.model.", "language_model."),
    hf_layers=("model", "language_model", "layers"),
)
