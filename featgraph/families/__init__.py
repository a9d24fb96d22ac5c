"""One description per model family, chosen by config.json's `model_type`.

A new family is a module here (its `Family` description) and one entry in `FAMILIES`; base.py says what a
description holds. Pure: no I/O, no heavy imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featgraph.errors import BadInput
from featgraph.families.base import FULL, ROPE_TYPES, SLIDING, Family, fields_of
from featgraph.families.gemma2 import GEMMA2
from featgraph.families.gemma3 import GEMMA3, GEMMA3_TEXT
from featgraph.families.gemma4 import GEMMA4, GEMMA4_TEXT
from featgraph.families.gpt2 import GPT2
from featgraph.families.gpt_neox import GPT_NEOX
from featgraph.families.llama import LLAMA
from featgraph.families.mistral import MISTRAL
from featgraph.families.qwen2 import QWEN2
from featgraph.families.qwen3 import QWEN3
from featgraph.families.qwen3_moe import QWEN3_MOE

FAMILIES: dict[str, Family] = {f.model_type: f for f in (GEMMA2, GEMMA3_TEXT, GEMMA3, GEMMA4_TEXT, GEMMA4, LLAMA, MISTRAL,
                                                          QWEN2, QWEN3, QWEN3_MOE, GPT2, GPT_NEOX)}

__all__ = ["FAMILIES", "FULL", "GEMMA2", "GEMMA3", "GEMMA3_TEXT", "GEMMA4", "GEMMA4_TEXT", "GPT2", "GPT_NEOX", "LLAMA",
           "MISTRAL", "QWEN2", "QWEN3", "QWEN3_MOE", "ROPE_TYPES", "SLIDING", "Family", "config_fields", "of"]


def of(model_type: object, where: str = "the model") -> Family:
    """The family of config.json's `model_type`; anything else is a one-line BadInput naming the supported ones."""
    fam = FAMILIES.get(model_type) if isinstance(model_type, str) else None
    if fam is None:
        raise BadInput(f"{where}: model_type is {model_type!r}; featgraph reads "
                       + ", ".join(f"{k!r} ({f.name})" for k, f in FAMILIES.items()))
    return fam


def config_fields(cfg: object, where: str) -> dict[str, Any]:
    """ModelConfig's fields from a config.json (a dict); every bad field is a one-line BadInput naming it."""
    if not isinstance(cfg, Mapping):
        raise BadInput(f"{where}: config.json is not a JSON object; is this a transformers model directory?")
    return fields_of(of(cfg.get("model_type", ""), where), cfg, where)
