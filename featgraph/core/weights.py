"""The weights featgraph computes with, as plain containers (no I/O).

`featgraph.load` fills them from files; a user with tensors in memory (SAELens,
TransformerLens, a transformers module) builds them directly. Shapes use one
vocabulary: d_model, d_head, d_sae, n_heads, n_kv_heads; HF `[out, in]` layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from featgraph.errors import BadInput


@dataclass(frozen=True)
class Rope:
    """One layer's rotary embedding: base `theta`, transformers' `rope_type` and its `factor`.

    featgraph rotates the half-split (`rotate_half`) convention with `inv_freq_i = θ^(-2i/d_head)`, divided
    by `factor` for the "linear" type (Gemma 3's full-attention layers from 4B up), as
    transformers' `_compute_linear_scaling_rope_parameters` does; other types are refused when used.
    """

    theta: float
    type: str = "default"
    factor: float = 1.0

    def inv_freq(self, d_head: int) -> torch.Tensor:
        """[d_head/2] inverse frequencies in float64."""
        if self.type not in ("default", "linear"):
            raise BadInput(f"RoPE type {self.type!r} is not supported: featgraph rotates 'default' and 'linear' RoPE; "
                           "use rope offset 0")
        inv = 1.0 / (self.theta ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head))
        return inv / (self.factor if self.type == "linear" else 1.0)

    def describe(self) -> dict:
        return {"theta": self.theta, "type": self.type, "factor": self.factor}


@dataclass(frozen=True)
class ModelConfig:
    """The attention-relevant part of a config.json (Gemma 2, Gemma 3; `featgraph.families` parses it).

    rope_theta: the RoPE base of full-attention layers (every layer in Gemma 2). rope: per layer type
    (`full_attention`, `sliding_attention`) {theta, type, factor}, when some layer rotates otherwise than
    `rope_theta` alone says; layer_types: each layer's type, when the types rotate differently (Gemma 3).
    """

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
    rope: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    layer_types: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, cfg: object, where: str) -> ModelConfig:
        """Parse a config.json (a dict) of a supported family; every bad field is a one-line BadInput naming it."""
        from featgraph.families import config_fields

        return cls(**config_fields(cfg, where))

    @property
    def d_attn(self) -> int:
        """Size of the concatenated per-head outputs before o_proj (what an attention-output SAE reads)."""
        return self.n_heads * self.d_head

    def kv_head(self, head: int) -> int:
        """Key/value head used by query head `head` (transformers' repeat_kv)."""
        return head // (self.n_heads // self.n_kv_heads)

    def layer_type(self, layer: int) -> str:
        return self.layer_types[layer] if 0 <= layer < len(self.layer_types) else "full_attention"

    def layer_rope(self, layer: int) -> Rope:
        """The rotary embedding layer `layer` uses."""
        r = self.rope.get(self.layer_type(layer))
        return Rope(float(r["theta"]), str(r["type"]), float(r["factor"])) if r else Rope(self.rope_theta)


@dataclass(frozen=True)
class AttentionWeights:
    """One attention layer, HF `[out, in]` layout, float32.

    W_Q: [n_heads·d_head, d_model]; W_K, W_V: [n_kv_heads·d_head, d_model];
    W_O: [d_model, n_heads·d_head]; ln_in, ln_post: [d_model] (the stored w; gain is 1 + w);
    q_norm, k_norm: [d_head], the query/key RMSNorms' stored w (Gemma 3), None for a family without them.
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
    q_norm: torch.Tensor | None = None
    k_norm: torch.Tensor | None = None

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        shapes = {
            "q_proj": (c.n_heads * c.d_head, c.d_model),
            "k_proj": (c.n_kv_heads * c.d_head, c.d_model),
            "v_proj": (c.n_kv_heads * c.d_head, c.d_model),
            "o_proj": (c.d_model, c.n_heads * c.d_head),
            "input_layernorm": (c.d_model,),
            "post_attention_layernorm": (c.d_model,),
        }
        if self.q_norm is not None or self.k_norm is not None:
            shapes |= {"q_norm": (c.d_head,), "k_norm": (c.d_head,)}
        return shapes

    @property
    def rope(self) -> Rope:
        """This layer's rotary embedding."""
        return self.config.layer_rope(self.layer)


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


def all_finite(t: torch.Tensor, chunk: int = 1 << 24) -> bool:
    """True when every value of `t` is finite, checked a chunk at a time: `torch.isfinite` on a whole
    262k-wide SAE makes float and bool temporaries larger than the SAE itself."""
    flat = t.reshape(-1)
    return all(bool(torch.isfinite(flat[i : i + chunk]).all()) for i in range(0, flat.numel(), chunk))
