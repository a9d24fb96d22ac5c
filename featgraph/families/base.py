"""What a model family description is (`Family`) and how a config.json is read through one.

Each family lives in its own module beside this one; `featgraph.families` chooses it by config.json's
`model_type` (`FAMILIES`). A description says where the decoder layers' tensors sit in a
checkpoint, the RMSNorm gain convention, whether queries and keys have their own RMSNorm (Gemma 3's
`q_norm`/`k_norm`), the config fields and their defaults (transformers' config class defaults, since real
configs omit fields that equal them), which layers rotate with which RoPE base, and where transformers keeps
the attention modules (for `featgraph validate`). Pure: no I/O, no heavy imports. Sources: docs/gemma3.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from featgraph.errors import BadInput

SLIDING, FULL = "sliding_attention", "full_attention"  # transformers' layer type names
ROPE_TYPES = ("default", "linear")  # the RoPE variants featgraph rotates with (transformers' rope_type)


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

    # -- tensors

    def tensor_keys(self) -> tuple[str, ...]:
        base = ("q_proj", "k_proj", "v_proj", "o_proj", "input_layernorm", "post_attention_layernorm")
        return base + (("q_norm", "k_norm") if self.qk_norm else ())

    def relative_names(self) -> dict[str, str]:
        """Each tensor's name inside one decoder layer (`self_attn.q_proj.weight`, …)."""
        return {k: (f"{k}.weight" if k.endswith("layernorm") else f"self_attn.{k}.weight") for k in self.tensor_keys()}

    def tensor_names(self, layer: int, prefix: str | None = None) -> dict[str, str]:
        """Layer `layer`'s tensors as a checkpoint names them (with `prefix`, default the family's first)."""
        p = self.prefixes[0] if prefix is None else prefix
        return {k: f"{p}layers.{layer}.{rel}" for k, rel in self.relative_names().items()}

    def all_prefixes(self) -> tuple[str, ...]:
        """Every prefix layer tensors may carry: on disk, then in-memory module classes, then none."""
        return tuple(dict.fromkeys(self.prefixes + self.extra_prefixes + ("",)))

    def gain(self, w):
        """The RMSNorm gain of stored weight `w`."""
        return self.gain_offset + w

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

    def describe(self) -> dict:
        return {"family": self.model_type, "name": self.name, "norm_gain": f"{self.gain_offset:g} + weight",
                "qk_norm": self.qk_norm, "tensor_prefix": self.prefixes[0]}


def fields_of(fam: Family, cfg: Mapping[str, Any], where: str) -> dict[str, Any]:
    """ModelConfig's fields from family `fam`'s config.json (a dict); every bad field is a one-line BadInput naming it."""
    text = fam.text_config(cfg, where)

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
    softcap = raw("attn_logit_softcapping")
    rope, layer_types = _rope(fam, text, n_layers, where)
    out = {
        "d_model": d_model, "n_heads": n_heads, "n_kv_heads": get("num_key_value_heads", int, n_heads), "d_head": d_head,
        "n_layers": n_layers, "query_pre_attn_scalar": get("query_pre_attn_scalar", float, d_head),
        "rms_norm_eps": get("rms_norm_eps", float, positive=False),
        "rope_theta": rope[FULL]["theta"],
        "attn_logit_softcapping": None if softcap is None else _number(softcap, "attn_logit_softcapping", float, True, where),
        "model_type": fam.model_type,
    }
    if fam.local_rope:
        out |= {"rope": rope, "layer_types": layer_types}
    elif rope[FULL] != {"theta": out["rope_theta"], "type": "default", "factor": 1.0}:
        out["rope"] = {FULL: rope[FULL]}
    if out["n_heads"] % out["n_kv_heads"]:
        raise BadInput(f"{where}: {out['n_heads']} heads is not a multiple of {out['n_kv_heads']} key/value heads")
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
    return {"theta": _number(p.get("rope_theta"), "rope_theta", float, True, where), "type": kind,
            "factor": _number(factor if factor is not None else 1.0, "factor", float, True, where)}
