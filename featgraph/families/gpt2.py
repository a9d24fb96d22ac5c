"""GPT-2 (`model_type` gpt2): LayerNorm (mean-centred, with bias) before attention, a fused `c_attn` Conv1D in
[in, out] layout, biases everywhere, learned absolute positions (no rotary), and the attention output added to the
residual without a norm (`ln_2` is the pre-MLP norm). Sources: transformers' models/gpt2 (modeling_gpt2.py,
configuration_gpt2.py); docs/maths.md "GPT-2 and GPT-NeoX"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featgraph.errors import BadInput
from featgraph.families.base import Family

# Tensors of one GPT-2 block (`transformer.h.L.` in a GPT2LMHeadModel checkpoint, `h.L.` in openai-community/gpt2's).
NAMES = {"c_attn": "attn.c_attn.weight", "c_attn_bias": "attn.c_attn.bias", "c_proj": "attn.c_proj.weight",
         "c_proj_bias": "attn.c_proj.bias", "ln_1": "ln_1.weight", "ln_1_bias": "ln_1.bias"}

# GPT2Config's defaults (configuration_gpt2.py) under featgraph's keys.
_DEFAULTS = {"n_embd": 768, "n_head": 12, "n_layer": 12, "layer_norm_epsilon": 1e-5, "scale_attn_weights": True}


def prepare(text: Mapping[str, Any], where: str) -> dict[str, Any]:
    """GPT-2's config.json under featgraph's keys; scale_attn_by_inverse_layer_idx is refused (one line)."""
    if text.get("scale_attn_by_inverse_layer_idx"):
        raise BadInput(f"{where}: config.json sets scale_attn_by_inverse_layer_idx (each layer's logits divided by "
                       "layer + 1, a Mistral-GPT-2 variant): featgraph reads GPT-2 without it")
    if text.get("add_cross_attention"):
        raise BadInput(f"{where}: config.json sets add_cross_attention: featgraph reads decoder-only GPT-2")

    def get(key: str) -> Any:
        v = text.get(key)
        return _DEFAULTS[key] if v is None else v

    out = dict(text)
    out |= {"hidden_size": get("n_embd"), "num_attention_heads": get("n_head"), "num_hidden_layers": get("n_layer"),
            "rms_norm_eps": get("layer_norm_epsilon")}
    heads = out["num_attention_heads"]
    d_head = out["hidden_size"] // heads if isinstance(heads, int) and isinstance(out["hidden_size"], int) and heads > 0 else None
    # scaling = head_dim^-0.5, or 1 when scale_attn_weights is false (GPT2Attention.__init__).
    out["query_pre_attn_scalar"] = (d_head if get("scale_attn_weights") else 1.0) if d_head else None
    return out


def unpack(t: Mapping[str, Any], cfg, where: str) -> dict[str, Any]:
    """AttentionWeights fields from one block's tensors: Conv1D keeps [in, out], so W = weightᵀ.

    c_attn [d_model, 3·d_model]: columns [0, d) are the queries, [d, 2d) the keys, [2d, 3d) the values, head h
    owning columns h·d_head … (h+1)·d_head of each (GPT2Attention.forward: split(d), view(…, -1, head_dim)).
    c_proj [d_model (the heads' outputs), d_model]."""
    d = cfg.d_model
    want = {"c_attn": (d, 3 * d), "c_attn_bias": (3 * d,), "c_proj": (d, d), "c_proj_bias": (d,), "ln_1": (d,),
            "ln_1_bias": (d,)}
    for key, shape in want.items():
        if t.get(key) is not None and tuple(t[key].shape) != shape:
            raise BadInput(f"{NAMES[key]} has shape {list(t[key].shape)}, {where} implies {list(shape)}")
    W, b = t["c_attn"], t.get("c_attn_bias")
    return {"W_Q": W[:, :d].T.contiguous(), "W_K": W[:, d : 2 * d].T.contiguous(), "W_V": W[:, 2 * d :].T.contiguous(),
            "W_O": t["c_proj"].T.contiguous(), "b_Q": None if b is None else b[:d], "b_K": None if b is None else b[d : 2 * d],
            "b_V": None if b is None else b[2 * d :], "b_O": t.get("c_proj_bias"), "ln_in": t["ln_1"],
            "ln_in_bias": t.get("ln_1_bias"), "ln_post": None}


GPT2 = Family(
    model_type="gpt2", name="GPT-2", prefixes=("transformer.",), qk_norm=False,
    defaults={"attn_logit_softcapping": None, "rope_theta": 10_000.0},  # no rotary: the base is never used
    gain_offset=0.0, norm="layer", post_attn_norm=False, rotary=False, layers_key="h", names=NAMES, mlp_norm="ln_2.weight", unpack=unpack,
    prepare=prepare, hf_module="transformers.models.gpt2.modeling_gpt2", hf_layers=("transformer", "h"),
    hf_attn="attn",
)
