"""What a model family description is (`Family`) and how a config.json is read through one.

Each family lives in its own module beside this one; `featgraph.families` chooses it by config.json's
`model_type` (`FAMILIES`). A description says where the decoder layers' tensors sit in a
checkpoint, the RMSNorm gain convention, whether queries and keys have their own RMSNorm (Gemma 3's
`q_norm`/`k_norm`), the config fields and their defaults (transformers' config class defaults, since real
configs omit fields that equal them), which layers rotate with which RoPE base, and where transformers keeps
the attention modules (for `featgraph validate`). Pure: no I/O, no heavy imports. Sources: docs/gemma3.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from featgraph.errors import BadInput

SLIDING, FULL = "sliding_attention", "full_attention"  # transformers' layer type names
ROPE_TYPES = ("default", "linear", "llama3", "proportional")  # the RoPE variants featgraph rotates (transformers' rope_type)


@dataclass(frozen=True)
class Family:
    """How one model family stores and computes attention.

    model_type: config.json's `model_type`. nested: the config key holding the language model's config
    (`text_config` for the multimodal Gemma 3 checkpoints), or None. prefixes: where layer L's tensors
    start in a checkpoint (`model.` + `layers.L.…`), the first the one written to disk; in-memory state
    dicts of other module classes are tried as well. qk_norm: queries and keys pass through their own
    RMSNorm over d_head (gain `gain_offset + w`) before RoPE. gain_offset: an RMSNorm's gain is
    `gain_offset + w`. defaults: config fields transformers fills in when config.json omits them.
    required: fields without a default. local_rope: sliding-window layers have their own RoPE base.
    hf_module, hf_layers: transformers' modelling module (its `eager_attention_forward`) and the attribute
    path from the loaded model to its decoder layers.
    post_attn_norm: `post_attention_layernorm` normalises the attention's output before it joins the residual
    stream (Gemma 2/3/4). False where the module of that name is the norm before the MLP (Llama, Mistral, Qwen):
    it is not read, and the attention output joins the residual stream as o_proj writes it.
    v_norm: values pass through a gainless RMSNorm over d_head (Gemma 4). layer_scalar: each layer's stored
    `layer_scalar` multiplies everything the layer writes, the attention's part included (Gemma 4).
    scaling: the attention scale — "config" (query_pre_attn_scalar^-1/2, Gemma 2/3), "head_dim" (d_head^-1/2
    whatever the config says: Llama, Mistral, Qwen), "one" (1: Gemma 4, whose query/key norms fix the scale).
    window_from_config: every layer slides over config.json's `sliding_window` (Mistral), rather than the
    layers the attention module marks (Gemma, Qwen). kv_sharing: config.json's num_kv_shared_layers (Gemma 4).
    value_is_key: config.json's attention_k_eq_v makes full-attention layers use the key projection as values.
    per_layer_shapes: full-attention layers have their own head size and kv-head count (Gemma 4).
    hf_attn: the decoder layer's attention attribute in transformers (`self_attn`; GPT-2 `attn`, GPT-NeoX
    `attention`). norm: the input norm, "rms" (RMSNorm) or "layer" (LayerNorm: mean-centred, with a bias; GPT-2,
    GPT-NeoX; docs/maths.md). rotary: queries and keys rotate (False: GPT-2's learned absolute positions live in
    the residual stream). partial_rotary: config.json's partial_rotary_factor (rotary_pct) rotates only the first
    dimensions of each head, pairs within them (GPT-NeoX). layers_key: the decoder layers' name in a checkpoint
    (`layers`; GPT-2 `h`). names: each tensor's name inside a decoder layer when not the q_proj/… defaults (keys
    ending in `_bias` may be absent); unpack: (tensors by those keys, ModelConfig, where) -> AttentionWeights
    fields, for fused or transposed layouts (it checks the shapes). prepare: (config.json's text config, where) ->
    the same under featgraph's keys (hidden_size, num_attention_heads, rms_norm_eps, …) for a family naming them
    otherwise.
    mlp_norm: the norm before the MLP, inside a decoder layer (a transcoder's encoder reads through it; docs/maths.md,
    "Transcoder features"): "auto" is `pre_feedforward_layernorm.weight` where the family normalises the attention
    output (Gemma 2/3/4), else `post_attention_layernorm.weight` (Llama, Mistral, Qwen: that module is the MLP's input
    norm); "" where no attention output of the same layer reaches the MLP (GPT-NeoX's parallel attention and MLP).
    """

    model_type: str
    name: str
    prefixes: tuple[str, ...]
    qk_norm: bool
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = ()
    nested: str | None = None
    gain_offset: float = 1.0
    local_rope: bool = False
    hf_module: str = ""
    hf_layers: tuple[str, ...] = ("model", "layers")
    extra_prefixes: tuple[str, ...] = field(default=())
    post_attn_norm: bool = True
    v_norm: bool = False
    layer_scalar: bool = False
    scaling: str = "config"
    window_from_config: bool = False
    kv_sharing: bool = False
    value_is_key: bool = False
    per_layer_shapes: bool = False
    hf_attn: str = "self_attn"
    norm: str = "rms"
    rotary: bool = True
    partial_rotary: bool = False
    layers_key: str = "layers"
    names: Mapping[str, str] | None = None
    unpack: Callable[..., dict[str, Any]] | None = None
    prepare: Callable[[Mapping[str, Any], str], Mapping[str, Any]] | None = None
    mlp_norm: str = "auto"

    # -- tensors

    # Read when the checkpoint has them: Gemma 4's layer_scalar (transformers' default otherwise: 1), the
    # projections' biases (Qwen2; Llama with attention_bias) — validate's non-feature terms, never an edge's.
    OPTIONAL = ("layer_scalar", "q_bias", "k_bias", "v_bias", "o_bias")

    def tensor_keys(self, value_is_key: bool = False, optional: bool = False) -> tuple[str, ...]:
        """The layer's tensors featgraph reads; `value_is_key`: the layer has no v_proj (Gemma 4 full attention);
        `optional`: with the OPTIONAL ones a checkpoint may lack."""
        if self.names is not None:  # a family naming its own tensors: its `_bias` ones are optional
            return tuple(k for k in self.names if optional or not k.endswith("_bias"))
        base = ("q_proj", "k_proj") + (() if value_is_key else ("v_proj",)) + ("o_proj", "input_layernorm")
        keys = (base + (("post_attention_layernorm",) if self.post_attn_norm else ())
                + (("q_norm", "k_norm") if self.qk_norm else ()))
        if not optional:
            return keys
        return (keys + (("layer_scalar",) if self.layer_scalar else ())
                + ("q_bias", "k_bias") + (() if value_is_key else ("v_bias",)) + ("o_bias",))

    def relative_names(self, value_is_key: bool = False, optional: bool = False) -> dict[str, str]:
        """Each tensor's name inside one decoder layer (`self_attn.q_proj.weight`, …)."""
        if self.names is not None:
            return {k: self.names[k] for k in self.tensor_keys(value_is_key, optional)}

        def name(k: str) -> str:
            if k == "layer_scalar":
                return k
            if k.endswith("_bias"):
                return f"self_attn.{k[0]}_proj.bias"
            return f"{k}.weight" if k.endswith("layernorm") else f"self_attn.{k}.weight"

        return {k: name(k) for k in self.tensor_keys(value_is_key, optional)}

    def tensor_names(self, layer: int, prefix: str | None = None, value_is_key: bool = False,
                     optional: bool = False) -> dict[str, str]:
        """Layer `layer`'s tensors as a checkpoint names them (with `prefix`, default the family's first)."""
        p = self.prefixes[0] if prefix is None else prefix
        return {k: f"{p}{self.layers_key}.{layer}.{rel}" for k, rel in self.relative_names(value_is_key, optional).items()}

    def all_prefixes(self) -> tuple[str, ...]:
        """Every prefix layer tensors may carry: on disk, then in-memory module classes, then none."""
        return tuple(dict.fromkeys(self.prefixes + self.extra_prefixes + ("",)))

    def gain(self, w):
        """The input norm's gain of stored weight `w`."""
        return self.gain_offset + w

    def fold_in(self, W, ln_in):
        """W·N for the input norm's linear part N: W (g ⊙ x), and for a LayerNorm W (g ⊙ C x) with C = I − 11ᵀ/d
        the mean-centring, folded into the weight rows: (W ⊙ g) minus each row's mean. W: [rows, d_model]."""
        Wg = W * self.gain(ln_in)
        return Wg - Wg.mean(-1, keepdim=True) if self.norm == "layer" else Wg

    def mlp_norm_name(self) -> str | None:
        """The pre-MLP norm's weight inside a decoder layer (`pre_feedforward_layernorm.weight`, …), None if none applies."""
        if self.mlp_norm != "auto":
            return self.mlp_norm or None
        return "pre_feedforward_layernorm.weight" if self.post_attn_norm else "post_attention_layernorm.weight"

    # -- config.json

    def text_config(self, cfg: Mapping[str, Any], where: str) -> Mapping[str, Any]:
        if self.nested is None:
            return cfg
        sub = cfg.get(self.nested)
        if sub is None:
            sub = {}  # transformers builds the sub-config from its defaults
        if not isinstance(sub, Mapping):
            raise BadInput(f"{where}: config.json field {self.nested!r} is not an object; fix config.json")
        return sub

    def norm_gain(self) -> str:
        return f"{self.gain_offset:g} + weight" if self.gain_offset else "weight"

    def describe(self) -> dict:
        out = {"family": self.model_type, "name": self.name, "norm_gain": self.norm_gain(),
               "qk_norm": self.qk_norm, "tensor_prefix": self.prefixes[0], "post_attn_norm": self.post_attn_norm}
        if self.norm != "rms":
            out["norm"] = "LayerNorm (mean-centred, with bias)"
        if not self.rotary:
            out["positions"] = "learned absolute (no rotary)"
        return out


def fields_of(fam: Family, cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    """ModelConfig's fields from family `fam`'s config.json (a dict); every bad field is a one-line BadInput naming it."""
    text = fam.text_config(cfg, where)
    if fam.prepare is not None:
        text = fam.prepare(text, where)

    def raw(key: str) -> Any:
        value = text.get(key)
        return fam.defaults.get(key) if value is None else value

    def get(key: str, kind: type, default: object = None, positive: bool = True) -> Any:
        value = raw(key)
        if value is None:
            value = default
        if value is None:
            raise BadInput(f"{where}: config.json lacks {key!r}; is this a transformers model directory?")
        return _number(value, key, kind, positive, where)

    missing = [k for k in fam.required if text.get(k) is None]
    if missing:
        raise BadInput(f"{where}: config.json lacks {missing[0]!r}; is this a transformers model directory?")
    n_heads = get("num_attention_heads", int)
    d_model = get("hidden_size", int)
    # Gemma 2 2B has 8×256 ≠ 2304: never derive head_dim from hidden_size when it is given.
    d_head = get("head_dim", int, d_model // n_heads)
    n_layers = get("num_hidden_layers", int)
    softcap = raw("attn_logit_softcapping") if fam.scaling == "config" else None
    rope, layer_types = _rope(fam, text, n_layers, where)
    scalar = {"config": lambda: get("query_pre_attn_scalar", float, d_head), "head_dim": lambda: float(d_head),
              "one": lambda: 1.0}[fam.scaling]()
    out = {
        "d_model": d_model, "n_heads": n_heads, "n_kv_heads": get("num_key_value_heads", int, n_heads), "d_head": d_head,
        "n_layers": n_layers, "query_pre_attn_scalar": scalar,
        "rms_norm_eps": get("rms_norm_eps", float, positive=False),
        "rope_theta": rope[FULL]["theta"],
        "attn_logit_softcapping": None if softcap is None else _number(softcap, "attn_logit_softcapping", float, True, where),
        "model_type": fam.model_type,
    }
    if fam.partial_rotary:
        factor = _number(raw("partial_rotary_factor") if raw("partial_rotary_factor") is not None else 1.0,
                         "partial_rotary_factor", float, True, where)
        dims = int(d_head * factor)
        if factor > 1 or dims % 2:
            raise BadInput(f"{where}: config.json's partial_rotary_factor {factor:g} gives {dims} rotary dimensions of "
                           f"{d_head}: it must give an even number no larger than head_dim; fix config.json")
        if dims != d_head:
            rope = {k: v | {"rotary_dims": dims} for k, v in rope.items()}
    if fam.local_rope:
        out |= {"rope": rope, "layer_types": layer_types}
    elif rope[FULL] != {"theta": out["rope_theta"], "type": "default", "factor": 1.0}:
        out["rope"] = {FULL: rope[FULL]}
    if fam.scaling == "head_dim":
        out["scale_by_head_dim"] = True
    if fam.per_layer_shapes:
        out["layer_shapes"] = _layer_shapes(text, layer_types, n_layers, where)
    if fam.value_is_key and text.get("attention_k_eq_v"):
        out["value_is_key"] = tuple(i for i, t in enumerate(layer_types) if t == FULL)
    if fam.kv_sharing:
        out["kv_shared"] = _kv_shared(text, layer_types, n_layers, where)
    for layer, shape in {-1: {"n_kv_heads": out["n_kv_heads"]}, **out.get("layer_shapes", {})}.items():
        n_kv = shape.get("n_kv_heads", out["n_kv_heads"])
        if out["n_heads"] % n_kv:
            at = "" if layer < 0 else f" (layer {layer})"
            raise BadInput(f"{where}: {out['n_heads']} heads is not a multiple of {n_kv} key/value heads{at}")
    return out


def _layer_shapes(text: Mapping[str, Any], layer_types: tuple[str, ...], n_layers: int, where: str) -> dict[int, dict[str, int]]:
    """Gemma 4's per-layer {d_head, n_kv_heads}, as Gemma4TextConfig reads them: `per_layer_config` (what
    transformers ≥ 5.2x writes: {"L": {"head_dim", "num_key_value_heads"}}), else `global_head_dim` (default 512)
    and, when attention_k_eq_v, `num_global_key_value_heads` for every full-attention layer."""
    per = text.get("per_layer_config")
    if per is None:
        over: dict[str, Any] = {"head_dim": text.get("global_head_dim", 512)}
        if text.get("attention_k_eq_v", True) and text.get("num_global_key_value_heads") is not None:
            over["num_key_value_heads"] = text["num_global_key_value_heads"]
        per = {str(i): over for i, t in enumerate(layer_types) if t == FULL}
    if not isinstance(per, Mapping):
        raise BadInput(f"{where}: config.json field 'per_layer_config' is not an object; fix config.json")
    out: dict[int, dict[str, int]] = {}
    for key, o in per.items():
        if not str(key).isdigit() or not 0 <= int(key) < n_layers or not isinstance(o, Mapping):
            raise BadInput(f"{where}: config.json field 'per_layer_config' has an entry {key!r} that is not a layer "
                           f"0..{n_layers - 1} with an object; fix config.json")
        shape = {}
        if o.get("head_dim") is not None:
            shape["d_head"] = _number(o["head_dim"], "head_dim", int, True, where)
        if o.get("num_key_value_heads") is not None:
            shape["n_kv_heads"] = _number(o["num_key_value_heads"], "num_key_value_heads", int, True, where)
        if shape:
            out[int(key)] = shape
    return out


def _kv_shared(text: Mapping[str, Any], layer_types: tuple[str, ...], n_layers: int, where: str) -> dict[int, int]:
    """{layer: the layer whose keys and values it reuses}: Gemma4TextConfig.kv_sharing_modes — the last
    num_kv_shared_layers layers reuse those of the last earlier layer of their own type."""
    n = _number(text.get("num_kv_shared_layers") or 0, "num_kv_shared_layers", int, False, where)
    first = n_layers - n
    out = {}
    for layer in range(max(first, 0), n_layers):
        kind = layer_types[layer] if layer_types else FULL
        earlier = [i for i in range(first) if (layer_types[i] if layer_types else FULL) == kind]
        out[layer] = earlier[-1] if earlier else -1
    return out


def _number(value: Any, key: str, kind: type, positive: bool, where: str) -> Any:
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        out = kind(value)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: config.json field {key!r} = {value!r} is not a number; fix config.json") from None
    if positive and not out > 0:
        raise BadInput(f"{where}: config.json field {key!r} = {value!r} must be > 0; fix config.json")
    return out


def _rope(fam: Family, text: Mapping[str, Any], n_layers: int, where: str) -> tuple[dict, tuple[str, ...]]:
    """Each layer type's RoPE {theta, type, factor}, and the layers' types, as transformers reads them.

    transformers ≥ 5 writes `rope_parameters` (one dict, or one per layer type) and `layer_types`; earlier
    versions wrote `rope_theta`, Gemma 3's `rope_local_base_freq` (sliding layers, never scaled) and
    `rope_scaling` (full-attention layers only), and `sliding_window_pattern` (layer i slides unless
    (i + 1) is a multiple of it). configuration_gemma3.py's `convert_rope_params_to_dict` maps the old to the new.
    """
    theta = text.get("rope_theta") if text.get("rope_theta") is not None else fam.defaults.get("rope_theta")
    local = text.get("rope_local_base_freq")
    local = local if local is not None else fam.defaults.get("rope_local_base_freq", theta)
    params = text.get("rope_parameters")
    params = params if params is not None else fam.defaults.get("rope_parameters")
    if params is not None and not isinstance(params, Mapping):
        raise BadInput(f"{where}: config.json field 'rope_parameters' is not an object; fix config.json")
    if params and set(params) <= {SLIDING, FULL}:
        full, slide = dict(params.get(FULL) or {}), dict(params.get(SLIDING) or {})
    elif params:
        full, slide = dict(params), dict(params)
    else:
        scaling = text.get("rope_scaling") or {}
        if not isinstance(scaling, Mapping):
            raise BadInput(f"{where}: config.json field 'rope_scaling' is not an object; fix config.json")
        full = dict(scaling)
        slide = {} if fam.local_rope else dict(scaling)
    full.setdefault("rope_theta", theta)
    slide.setdefault("rope_theta", local if fam.local_rope else theta)
    rope = {FULL: _rope_entry(full, where), SLIDING: _rope_entry(slide, where)}
    if not fam.local_rope:
        return rope, ()
    types = text.get("layer_types")
    if types is None:
        pattern = text.get("sliding_window_pattern")
        pattern = _number(pattern if pattern is not None else fam.defaults.get("sliding_window_pattern", 1),
                          "sliding_window_pattern", int, True, where)
        types = [SLIDING if (i + 1) % pattern else FULL for i in range(n_layers)]
    if not isinstance(types, list) or len(types) != n_layers or any(t not in (SLIDING, FULL) for t in types):
        raise BadInput(f"{where}: config.json field 'layer_types' must list {n_layers} entries, each "
                       f"{SLIDING!r} or {FULL!r}; fix config.json")
    return rope, tuple(types)


def _rope_entry(p: Mapping[str, Any], where: str) -> dict:
    kind = p.get("rope_type", p.get("type", "default")) or "default"
    if not isinstance(kind, str):
        raise BadInput(f"{where}: config.json RoPE type {kind!r} is not a name; fix config.json")
    factor = p.get("factor", 1.0) if kind != "default" else 1.0
    out = {"theta": _number(p.get("rope_theta"), "rope_theta", float, True, where), "type": kind,
           "factor": _number(factor if factor is not None else 1.0, "factor", float, True, where)}
    # The parameters of the types featgraph rotates beyond default/linear (transformers' modeling_rope_utils.py).
    extra = {"llama3": ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
             "proportional": ("partial_rotary_factor",)}.get(kind, ())
    for key in extra:
        if p.get(key) is not None:
            out[key] = _number(p[key], key, float, True, where)
        elif kind == "llama3":
            raise BadInput(f"{where}: config.json's llama3 RoPE lacks {key!r}; fix config.json")
    return out
