"""Gemma 3 (`model_type` gemma3_text and the multimodal gemma3): per-head query/key RMSNorms, local and global
layers with their own RoPE bases. Sources: docs/gemma3.md."""

from __future__ import annotations

from dataclasses import replace

from featgraph.families.base import Family

# transformers' Gemma3TextConfig defaults (configuration_gemma3.py; the 4B+ checkpoints' text_config omits them).
_GEMMA3_DEFAULTS = {
    "hidden_size": 2304, "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
    "sliding_window_pattern": 6, "attn_logit_softcapping": None,
}

GEMMA3_TEXT = Family(
    model_type="gemma3_text", name="Gemma 3 (text, Gemma3ForCausalLM)", prefixes=("model.",), qk_norm=True,
    defaults=_GEMMA3_DEFAULTS, local_rope=True, hf_module="transformers.models.gemma3.modeling_gemma3",
)
# The multimodal checkpoints (4B, 12B, 27B): the language model's tensors under `language_model.model.` on
# disk (transformers' Gemma3ForConditionalGeneration writes the same names), its config under `text_config`.
GEMMA3 = replace(
    GEMMA3_TEXT, model_type="gemma3", name="Gemma 3 (multimodal, Gemma3ForConditionalGeneration)",
    prefixes=("language_model.model.",), nested="text_config",
    extra_prefixes=("model.language_model.", "language_model."), hf_layers=("model", "language_model", "layers"),
)
