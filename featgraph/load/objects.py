"""Weights a user already holds in memory, turned into featgraph's containers without files.

- a transformers module of a supported family (`Gemma2ForCausalLM`, `Gemma3ForCausalLM`, `GPT2LMHeadModel`,
  `Gemma3ForConditionalGeneration`, their base models, or one decoder layer with its config)
  or a state dict with transformers' names;
- SAE weights as tensors or arrays: a mapping with `W_dec` / `W_enc` (Gemma Scope
  orientation: W_dec [d_sae, d_in], W_enc [d_in, d_sae]), or any object with those
  attributes (a SAELens `SAE`, whose tensors have the same orientation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from featgraph import families
from featgraph.core.weights import SAE, AttentionWeights, ModelConfig, all_finite, float_array, float_weights
from featgraph.errors import BadInput
from featgraph.load.model import weights_of
from featgraph.load.sae import check_d_in, site_of_hook

SAE_KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
SAE_FIX = "pass the SAE's full-precision weights"


def _tensor(x: Any, what: str, fix: str = "pass the model's full-precision checkpoint") -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = float_weights(x, what, fix).detach().to("cpu", torch.float32)
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(float_array(x, what, fix), dtype=np.float32))
    else:
        raise BadInput(f"{what} is a {type(x).__name__}, not a tensor or array")
    if not all_finite(t):
        raise BadInput(f"{what} has NaN or infinite values")
    return t


def _config_dict(config: Any) -> dict:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise BadInput("pass the model's config (a transformers config or its config.json as a dict) with a state dict")


def attention_from_state_dict(state: Mapping[str, Any], layer: int, config: Any, where: str = "state dict") -> AttentionWeights:
    """Layer `layer`'s attention from tensors named as in transformers' checkpoints or modules of the config's family.

    The names may carry any of the family's prefixes (`model.`, Gemma 3 multimodal's `language_model.model.` or
    `model.language_model.`), none (`layers.L.…`), or be one decoder layer's (`self_attn.q_proj.weight`).
    """
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_json(_config_dict(config), where)
    fam = families.of(cfg.model_type, where)
    cfg = cfg.for_layer(layer, where)
    value_is_key = layer in cfg.value_is_key
    names = fam.tensor_names(layer, value_is_key=value_is_key, optional=True)
    tensors = {}
    required = set(fam.tensor_keys(value_is_key))
    for key, rel in fam.relative_names(value_is_key, optional=True).items():
        candidates = [f"{p}{fam.layers_key}.{layer}.{rel}" for p in fam.all_prefixes()] + [rel]
        found = [k for k in candidates if k in state]
        if not found:
            if key not in required:
                continue
            raise BadInput(f"{where} has no {names[key]}: pass a {fam.name} model, its state dict, or one decoder layer's")
        tensors[key] = _tensor(state[found[0]], names[key])
    return weights_of(cfg, layer, tensors, names, {"ref": None, "in_memory": where, "revision": None}, "the config")


def attention_from_module(module: torch.nn.Module, layer: int, config: Any = None) -> AttentionWeights:
    """From a transformers model of a supported family, or one decoder layer (its `.config` is used when there is one)."""
    config = config if config is not None else getattr(module, "config", None)
    if config is None:
        raise BadInput("this module has no .config: pass config= (the model's transformers config or config.json dict)")
    name = getattr(config, "_name_or_path", "") or type(module).__name__
    return attention_from_state_dict(module.state_dict(), layer, config, where=name)


def sae_from_object(obj: Any, parts: tuple[str, ...], role: str, expect_d_in: int | tuple[int, ...] | None = None) -> SAE:
    """An SAE from a mapping of arrays or an object with W_dec/W_enc attributes (a SAELens SAE)."""
    get = obj.get if isinstance(obj, Mapping) else (lambda k: getattr(obj, k, None))
    arrays = {}
    for k in parts:
        if get(k) is None:
            raise BadInput(f"{role} has no {k}: pass {', '.join(parts)} (W_dec [d_sae, d_in], W_enc [d_in, d_sae])")
        arrays[k] = _tensor(get(k), f"{role} {k}", SAE_FIX)
    if "W_dec" in arrays:
        d_sae, d_in = arrays["W_dec"].shape
    elif "W_enc" in arrays:
        d_in, d_sae = arrays["W_enc"].shape
    else:
        raise BadInput(f"{role} needs W_dec or W_enc")
    if "W_enc" in arrays and tuple(arrays["W_enc"].shape) != (d_in, d_sae):
        raise BadInput(f"{role} W_enc has shape {list(arrays['W_enc'].shape)}, expected [{d_in}, {d_sae}]")
    if "b_dec" in arrays and tuple(arrays["b_dec"].shape) != (d_in,):
        raise BadInput(f"{role} b_dec has shape {list(arrays['b_dec'].shape)}, expected [{d_in}]")
    check_d_in(role, "", d_in, expect_d_in)
    cfg = getattr(obj, "cfg", None)
    meta = getattr(cfg, "metadata", None) or cfg
    np_id = getattr(meta, "neuronpedia_id", None)  # SAELens: "gemma-2-2b/12-gemmascope-res-16k"
    source_id = np_id.split("/", 1)[1] if isinstance(np_id, str) and "/" in np_id else None
    hook = getattr(meta, "hook_name", None) or getattr(cfg, "hook_name", None)  # SAELens: blocks.13.attn.hook_z
    source = {"ref": None, "in_memory": type(obj).__name__, "revision": None, "sha256": None, "neuronpedia_id": source_id,
              "id_source": "SAELens cfg.neuronpedia_id" if source_id else None, "d_in": d_in, "d_sae": d_sae,
              "site": site_of_hook(hook) if isinstance(hook, str) else None}
    return SAE(d_in=d_in, d_sae=d_sae, source=source, **arrays)
