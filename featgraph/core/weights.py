"""The weights featgraph computes with, as plain containers (no I/O).

`featgraph.load` fills them from files; a user with tensors in memory (SAELens,
TransformerLens, a transformers module) builds them directly. Shapes use one
vocabulary: d_model, d_head, d_sae, n_heads, n_kv_heads; HF `[out, in]` layout.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from featgraph.errors import BadInput
from featgraph.families.base import ROPE_TYPES as ROTATED


@dataclass(frozen=True)
class Rope:
    """One layer's rotary embedding: base `theta`, transformers' `rope_type` and its parameters.

    featgraph rotates the half-split (`rotate_half`) convention over all d_head dimensions with
    `inv_freq_i = θ^(-2i/d_head)`, changed per type as transformers' modeling_rope_utils.py does:
    "linear" divides every frequency by `factor` (Gemma 3's full-attention layers from 4B up); "llama3"
    (Llama 3.1+) divides the low frequencies (wavelength > original_max_position_embeddings / low_freq_factor)
    by `factor`, keeps the high ones (wavelength < original_max / high_freq_factor) and interpolates between
    (`_compute_llama3_parameters`); "proportional" (Gemma 4's full-attention layers) keeps the first
    int(partial_rotary_factor·d_head // 2) frequencies, sets the rest to 0 (those dimension pairs are not
    rotated) and divides by `factor` (`_compute_proportional_rope_parameters`). Other types are refused when used.
    rotary_dims: GPT-NeoX's partial rotary — only the first rotary_dims dimensions of a head rotate, dimension i
    paired with i + rotary_dims/2, `inv_freq_i = θ^(-2i/rotary_dims)`; the rest pass unrotated (0: all of d_head).
    """

    theta: float
    type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: float = 8192.0
    partial_rotary_factor: float = 1.0
    rotary_dims: int = 0

    def dims(self, d_head: int) -> int:
        """How many of a head's d_head dimensions rotate (GPT-NeoX: rotary_dims; otherwise all)."""
        return int(self.rotary_dims) or d_head

    def inv_freq(self, d_head: int) -> torch.Tensor:
        """[dims(d_head)/2] inverse frequencies in float64."""
        if self.type not in ROTATED:
            raise BadInput(f"RoPE type {self.type!r} is not supported: featgraph rotates {', '.join(map(repr, ROTATED))} "
                           "RoPE; use rope offset 0")
        d_head = self.dims(d_head)
        inv = 1.0 / (self.theta ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head))
        if self.type == "linear":
            return inv / self.factor
        if self.type == "llama3":
            low_wavelen = self.original_max_position_embeddings / self.low_freq_factor
            high_wavelen = self.original_max_position_embeddings / self.high_freq_factor
            wavelen = 2 * math.pi / inv
            scaled = torch.where(wavelen > low_wavelen, inv / self.factor, inv)
            smooth = (self.original_max_position_embeddings / wavelen - self.low_freq_factor) / (
                self.high_freq_factor - self.low_freq_factor)
            mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
            return torch.where(mid, (1 - smooth) * scaled / self.factor + smooth * scaled, scaled)
        if self.type == "proportional":
            inv[int(self.partial_rotary_factor * d_head // 2):] = 0.0
            return inv / self.factor
        return inv

    def describe(self) -> dict:
        out: dict[str, Any] = {"theta": self.theta, "type": self.type, "factor": self.factor}
        if self.type == "llama3":
            out |= {"low_freq_factor": self.low_freq_factor, "high_freq_factor": self.high_freq_factor,
                    "original_max_position_embeddings": self.original_max_position_embeddings}
        if self.type == "proportional":
            out["partial_rotary_factor"] = self.partial_rotary_factor
        if self.rotary_dims:
            out["rotary_dims"] = int(self.rotary_dims)
        return out


@dataclass(frozen=True)
class ModelConfig:
    """The attention-relevant part of a config.json (`featgraph.families` parses it, one family per `model_type`).

    rope_theta: the RoPE base of full-attention layers (every layer in Gemma 2). rope: per layer type
    (`full_attention`, `sliding_attention`) {theta, type, factor, …} (`Rope`'s fields), when some layer rotates
    otherwise than `rope_theta` alone says; layer_types: each layer's type, when the types rotate differently
    (Gemma 3, Gemma 4). layer_shapes: layers whose attention has its own {d_head, n_kv_heads} (Gemma 4's
    full-attention layers); `at_layer(L)` is the config as layer L sees it. value_is_key: layers without v_proj
    whose values are the key projection's output (Gemma 4's full-attention layers with attention_k_eq_v).
    kv_shared: {layer: the earlier layer whose keys and values it reuses} (Gemma 4's num_kv_shared_layers).
    scaling: where the attention scale comes from ("config": query_pre_attn_scalar^-1/2 as read; the field
    already holds d_head or 1 for the families whose modules fix it).
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
    layer_shapes: Mapping[int, Mapping[str, int]] = field(default_factory=dict)
    value_is_key: tuple[int, ...] = ()
    kv_shared: Mapping[int, int] = field(default_factory=dict)
    scale_by_head_dim: bool = False

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
        if not r:
            return Rope(self.rope_theta)
        extra: dict[str, Any] = {k: (int(v) if k == "rotary_dims" else float(v)) for k, v in r.items()
                                 if k not in ("theta", "type", "factor")}
        return Rope(float(r["theta"]), str(r["type"]), float(r["factor"]), **extra)

    def for_layer(self, layer: int, where: str) -> ModelConfig:
        """`at_layer(layer)`, refusing a layer whose keys and values come from another layer (one line, BadInput)."""
        if not 0 <= layer < self.n_layers:
            raise BadInput(f"layer {layer} is out of range: {where} has layers 0..{self.n_layers - 1}")
        if layer in self.kv_shared:
            src = self.kv_shared[layer]
            raise BadInput(f"{where}: layer {layer} reuses layer {src}'s keys and values (num_kv_shared_layers), computed "
                           f"from layer {src}'s residual stream, which an input SAE of layer {layer} does not read: featgraph "
                           f"refuses such layers; extract layer {src} or another of layers 0..{min(self.kv_shared) - 1}")
        return self.at_layer(layer)

    def at_layer(self, layer: int) -> ModelConfig:
        """This config as layer `layer`'s attention sees it: its own d_head and n_kv_heads where it has them
        (and the attention scale d_head^-1/2 of its own d_head when the family scales by head size)."""
        shape = self.layer_shapes.get(layer) or self.layer_shapes.get(str(layer)) or {}  # type: ignore[call-overload]
        if not shape:
            return self
        d_head = int(shape.get("d_head", self.d_head))
        scalar = float(d_head) if self.scale_by_head_dim else self.query_pre_attn_scalar
        return dataclasses.replace(self, d_head=d_head, n_kv_heads=int(shape.get("n_kv_heads", self.n_kv_heads)),
                                   query_pre_attn_scalar=scalar)


@dataclass(frozen=True)
class AttentionWeights:
    """One attention layer, HF `[out, in]` layout, float32.

    W_Q: [n_heads·d_head, d_model]; W_K, W_V: [n_kv_heads·d_head, d_model] (W_V is W_K itself on a layer whose
    values are its keys' projection: Gemma 4's full-attention layers with attention_k_eq_v);
    W_O: [d_model, n_heads·d_head]; ln_in: [d_model], the input norm's stored w (gain 1 + w or w, by family);
    ln_post: [d_model], the post-attention norm's, None for a family where the attention output joins the residual
    stream un-normed (Llama, Mistral, Qwen); q_norm, k_norm: [d_head], the query/key RMSNorms' stored w (Gemma 3,
    Qwen3, Gemma 4), None for a family without them; layer_scalar: [1], what the whole layer's output is
    multiplied by (Gemma 4), None elsewhere. b_Q: [n_heads·d_head], b_K, b_V: [n_kv_heads·d_head], b_O: [d_model]:
    the projections' biases where the checkpoint has them (Qwen2, Llama with attention_bias; None = zero) — never
    a feature's term, read for `featgraph validate`. ln_in_bias: [d_model], a LayerNorm's bias (GPT-2, GPT-NeoX),
    likewise never a feature's term. `config` is the config as this layer sees it
    (`ModelConfig.at_layer`).
    """

    config: ModelConfig
    layer: int
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    ln_in: torch.Tensor
    ln_post: torch.Tensor | None
    source: dict = field(default_factory=dict)
    q_norm: torch.Tensor | None = None
    k_norm: torch.Tensor | None = None
    layer_scalar: torch.Tensor | None = None
    b_Q: torch.Tensor | None = None
    b_K: torch.Tensor | None = None
    b_V: torch.Tensor | None = None
    b_O: torch.Tensor | None = None
    ln_in_bias: torch.Tensor | None = None

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.config
        shapes = {
            "q_proj": (c.n_heads * c.d_head, c.d_model),
            "k_proj": (c.n_kv_heads * c.d_head, c.d_model),
            "v_proj": (c.n_kv_heads * c.d_head, c.d_model),
            "o_proj": (c.d_model, c.n_heads * c.d_head),
            "input_layernorm": (c.d_model,),
        }
        if self.ln_post is not None:
            shapes["post_attention_layernorm"] = (c.d_model,)
        if self.q_norm is not None or self.k_norm is not None:
            shapes |= {"q_norm": (c.d_head,), "k_norm": (c.d_head,)}
        if self.layer_scalar is not None:
            shapes["layer_scalar"] = (1,)
        for key, b, n in (("q_bias", self.b_Q, c.n_heads * c.d_head), ("k_bias", self.b_K, c.n_kv_heads * c.d_head),
                          ("v_bias", self.b_V, c.n_kv_heads * c.d_head), ("o_bias", self.b_O, c.d_model)):
            if b is not None:
                shapes[key] = (n,)
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
    """True when every value of `t` is finite. First its sum (one read, no temporary): a NaN or an infinity makes
    any sum non-finite, so a finite sum proves every value finite. A sum that overflowed decides nothing, and the
    values are then checked a chunk at a time: `torch.isfinite` on a whole 262k-wide SAE makes float and bool
    temporaries larger than the SAE itself."""
    flat = t.reshape(-1)
    if flat.is_floating_point() and bool(torch.isfinite(flat.sum())):
        return True
    return all(bool(torch.isfinite(flat[i : i + chunk]).all()) for i in range(0, flat.numel(), chunk))


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
UNQUANTIZED = "not float32/float16/bfloat16: featgraph reads unquantized weights"


def float_weights(t: torch.Tensor, what: str, fix: str = "pass the model's full-precision checkpoint") -> torch.Tensor:
    """`t` if it holds plain float weights; BadInput naming `what` for integer, bool or float8 ones (a quantized
    checkpoint: cast to float they are not the weights, and would give wrong edges). Model and SAE loaders share it."""
    if t.dtype not in FLOAT_DTYPES:
        raise BadInput(f"{what} is {str(t.dtype).removeprefix('torch.')}, {UNQUANTIZED}; {fix}")
    return t


def float_array(a: Any, what: str, fix: str = "pass the model's full-precision checkpoint") -> Any:
    """float_weights for a numpy array (float16, float32, float64 pass)."""
    if a.dtype.kind != "f" or a.dtype.itemsize < 2:
        raise BadInput(f"{what} is {a.dtype}, {UNQUANTIZED}; {fix}")
    return a
