"""Mistral (`model_type` mistral): Llama's attention (RMSNorm gain w, no post-attention norm on the attention
output, scale d_head^-1/2, no biases), every layer sliding over config.json's `sliding_window` (transformers'
modeling_mistral.py passes it to each layer). docs/maths.md.
"""

from __future__ import annotations

from dataclasses import replace

from featgraph.families.llama import LLAMA

MISTRAL = replace(LLAMA, model_type="mistral", name="Mistral", window_from_config=True,
                  hf_module="transformers.models.mistral.modeling_mistral")
