"""The weights featgraph computes with, as plain containers (no I/O).

`featgraph.load` fills them from files; a user with tensors in memory (SAELens,
TransformerLens, a transformers module) builds them directly. Shapes use one
vocabulary: d_model, d_head, d_sae, n_heads, n_kv_heads; HF `[out, in]` layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from featgraph.errors import BadInput


@dataclass(frozen=True)
class ModelConfig:
    """The attention-relevant part of a Gemma 2 config.json."""

    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    n_layers: int
    query_pre_attn_scalar: float
    rms_norm_eps: float
    rope_theta: float
    attn_logit_softcapping: float | None
    model_type: str

    @classmethod
    def from_json(cls, cfg: object, where: str) -> ModelConfig:
        """Parse a Gemma 2 config.json (a dict); every bad field is a one-line BadInput naming it."""
        if not isinstance(cfg, dict):
            raise BadInput(f"{where}: config.json is not a JSON object; is this a transformers model directory?")
        mt = cfg.get("model_type", "")
        if mt != "gemma2":
            raise BadInput(f"{where}: model_type is {mt!r}, featgraph reads Gemma 2 ('gemma2') models")

        def get(key: str, kind: type, default: object = None, positive: bool = True) -> Any:
            raw = cfg.get(key, default)
            if raw is None:
                raise BadInput(f"{where}: config.json lacks {key!r}; is this a transformers model directory?")
            try:
                if isinstance(raw, bool) or (kind is int and isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                value = kind(raw)
            except (TypeError, ValueError):
                raise BadInput(f"{where}: config.json field {key!r} = {raw!r} is not a number; fix config.json") from None
            if positive and not value > 0:
                raise BadInput(f"{where}: config.json field {key!r} = {raw!r} must be > 0; fix config.json")
            return value

        n_heads = get("num_attention_heads", int)
        d_model = get("hidden_size", int)
        # Gemma 2 2B has 8×256 ≠ 2304: never derive head_dim from hidden_size when it is given.
        d_head = get("head_dim", int, cfg.get("head_dim") or d_model // n_heads)
        softcap = cfg.get("attn_logit_softcapping")
        out = cls(
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=get("num_key_value_heads", int, n_heads),
            d_head=d_head,
            n_layers=get("num_hidden_layers", int),
            query_pre_attn_scalar=get("query_pre_attn_scalar", float, d_head),
            rms_norm_eps=get("rms_norm_eps", float, 1e-6, positive=False),
            rope_theta=get("rope_theta", float, 10000.0),
            attn_logit_softcapping=None if softcap is None else get("attn_logit_softcapping", float),
            model_type=mt,
        )
        if out.n_heads % out.n_kv_heads:
            raise BadInput(f"{where}: {out.n_heads} heads is not a multiple of {out.n_kv_heads} key/value heads")
        return out

    def kv_head(self, head: int) -> int:
        """Key/value head used by query head `head` (transformers' repeat_kv)."""
        return head // (self.n_heads // self.n_kv_heads)


@dataclass(frozen=True)
class AttentionWeights:
    """One attention layer, HF `[out, in]` layout, float32.

    W_Q: [n_heads·d_head, d_model]; W_K, W_V: [n_kv_heads·d_head, d_model];
    W_O: [d_model, n_heads·d_head]; ln_in, ln_post: [d_model] (the stored w; gain is 1 + w).
    """

    config: ModelConfig
    layer: int
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    ln_in: torch.Tensor
    ln_post: torch.Tensor
    source: dict = field(default_factory=dict)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        return {
            "q_proj": (c.n_heads * c.d_head, c.d_model),
            "k_proj": (c.n_kv_heads * c.d_head, c.d_model),
            "v_proj": (c.n_kv_heads * c.d_head, c.d_model),
            "o_proj": (c.d_model, c.n_heads * c.d_head),
            "input_layernorm": (c.d_model,),
            "post_attention_layernorm": (c.d_model,),
        }


@dataclass(frozen=True)
class SAE:
    """Arrays (float32 tensors) of one SAE; absent ones are None.

    W_enc: [d_in, d_sae]; W_dec: [d_sae, d_in]; b_enc, threshold: [d_sae]; b_dec: [d_in].
    """

    d_in: int
    d_sae: int
    W_enc: torch.Tensor | None = None
    W_dec: torch.Tensor | None = None
    b_enc: torch.Tensor | None = None
    b_dec: torch.Tensor | None = None
    threshold: torch.Tensor | None = None
    source: dict = field(default_factory=dict)

    def part(self, name: str) -> torch.Tensor:
        """Array `name` (W_enc, W_dec, …), which the loader must have been asked for."""
        value = getattr(self, name)
        if value is None:
            raise BadInput(f"this SAE was loaded without {name}")
        return value

    @property
    def neuronpedia_id(self) -> str | None:
        return self.source.get("neuronpedia_id")

    @property
    def layer(self) -> int | None:
        return self.source.get("layer")
