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

FAMILIES: dict[str, Family] = {f.model_type: f for f in (GEMMA2, GEMMA3_TEXT, GEMMA3)}

__all__ = ["FAMILIES", "FULL", "GEMMA2", "GEMMA3", "GEMMA3_TEXT", "ROPE_TYPES", "SLIDING", "Family", "config_fields", "of"]


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
