"""GPT-NeoX (`model_type` gpt_neox: Pythia): LayerNorm (mean-centred, with bias) before attention, a fused
`query_key_value` whose rows interleave each head's query, key and value, biases, partial rotary (the first
`partial_rotary_factor`·head_dim dimensions of each head rotate), and attention and MLP in parallel: the attention
output joins the residual without a norm (`post_attention_layernorm` is the MLP's). Sources: transformers'
models/gpt_neox (modeling_gpt_neox.py, configuration_gpt_neox.py); docs/maths.md "GPT-2 and GPT-NeoX"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featgraph.errors import BadInput
from featgraph.families.base import Family

NAMES = {"query_key_value": "attention.query_key_value.weight", "query_key_value_bias": "attention.query_key_value.bias",
         "dense": "attention.dense.weight", "dense_bias": "attention.dense.bias",
         "input_layernorm": "input_layernorm.weight", "input_layernorm_bias": "input_layernorm.bias"}


def prepare(text: Mapping[str, Any], where: str) -> dict[str, Any]:
    """GPT-NeoX's config.json under featgraph's keys: layer_norm_eps; the RoPE base and partial factor from
    rope_parameters (transformers ≥ 5) or the older rotary_emb_base / rotary_pct (Pythia's config.json), with
    GPTNeoXConfig's defaults 10000 and 0.25 (convert_rope_params_to_dict)."""
    out = dict(text)
    params = text.get("rope_parameters") or text.get("rope_scaling") or {}
    if not isinstance(params, Mapping):
        raise BadInput(f"{where}: config.json field 'rope_parameters' is not an object; fix config.json")
    theta = params.get("rope_theta", text.get("rotary_emb_base", text.get("rope_theta", 10_000.0)))
    factor = params.get("partial_rotary_factor", text.get("rotary_pct", 0.25))
    out |= {"rms_norm_eps": text.get("layer_norm_eps", 1e-5), "rope_theta": theta, "partial_rotary_factor": factor}
    if text.get("head_dim") is not None:
        out.pop("head_dim")  # GPTNeoXAttention uses hidden_size // num_attention_heads whatever head_dim says
    return out


def unpack(t: Mapping[str, Any], cfg, where: str) -> dict[str, Any]:
    """AttentionWeights fields from one layer's tensors (nn.Linear: [out, in]).

    query_key_value [3·d_model, d_model]: GPTNeoXAttention views its output as (…, n_heads, 3·head_dim) and
    chunks the last axis, so head h's query, key and value are rows h·3·dh + [0, dh), [dh, 2dh), [2dh, 3dh).
    dense [d_model, d_model] is W_O (its input is the heads' outputs, head-major)."""
    d, nh, dh = cfg.d_model, cfg.n_heads, cfg.d_head
    want = {"query_key_value": (3 * nh * dh, d), "query_key_value_bias": (3 * nh * dh,), "dense": (d, nh * dh),
            "dense_bias": (d,), "input_layernorm": (d,), "input_layernorm_bias": (d,)}
    for key, shape in want.items():
        if t.get(key) is not None and tuple(t[key].shape) != shape:
            raise BadInput(f"{NAMES[key]} has shape {list(t[key].shape)}, {where} implies {list(shape)}")
    W = t["query_key_value"].reshape(nh, 3, dh, d)
    q, k, v = (W[:, i].reshape(nh * dh, d).contiguous() for i in range(3))
    bq = bk = bv = None
    if t.get("query_key_value_bias") is not None:  # attention_bias false: none
        b = t["query_key_value_bias"].reshape(nh, 3, dh)
        bq, bk, bv = (b[:, i].reshape(nh * dh).contiguous() for i in range(3))
    return {"W_Q": q, "W_K": k, "W_V": v, "W_O": t["dense"], "b_Q": bq, "b_K": bk, "b_V": bv, "b_O": t.get("dense_bias"),
            "ln_in": t["input_layernorm"], "ln_in_bias": t.get("input_layernorm_bias"), "ln_post": None}


GPT_NEOX = Family(
    model_type="gpt_neox", name="GPT-NeoX (Pythia)", prefixes=("gpt_neox.",), qk_norm=False,
    defaults={"attn_logit_softcapping": None}, gain_offset=0.0, norm="layer", post_attn_norm=False,
    partial_rotary=True, names=NAMES, mlp_norm="", unpack=unpack, prepare=prepare,
    hf_module="transformers.models.gpt_neox.modeling_gpt_neox", hf_layers=("gpt_neox", "layers"), hf_attn="attention",
)
