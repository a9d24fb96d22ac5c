"""Gemma 2 (`model_type` gemma2): RMSNorm gain 1 + w, no query/key norms, one RoPE base, logit soft-capping."""

from __future__ import annotations

from featgraph.families.base import Family

GEMMA2 = Family(
    model_type="gemma2", name="Gemma 2", prefixes=("model.",), qk_norm=False,
    # What featgraph has always assumed for a Gemma 2 config.json lacking a field (real ones have them all).
    defaults={"rms_norm_eps": 1e-6, "rope_theta": 10_000.0, "attn_logit_softcapping": None},
    required=("hidden_size", "num_attention_heads", "num_hidden_layers"),
    hf_module="transformers.models.gemma2.modeling_gemma2",
)
