"""Read one Gemma 2 attention layer's six tensors, and nothing else.

A model REF is a local directory (config.json + safetensors, sharded with
`model.safetensors.index.json` or a single `model.safetensors`) or a Hub repo id
`owner/name[@revision]`; from the Hub only the config, the index and the
shard(s) holding the layer are downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import hub

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


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
    def from_json(cls, cfg: dict, where: str) -> "ModelConfig":
        mt = cfg.get("model_type", "")
        if mt != "gemma2":
            raise BadInput(f"{where}: model_type is {mt!r}, featgraph reads Gemma 2 ('gemma2') models")
        try:
            n_heads = int(cfg["num_attention_heads"])
            d_model = int(cfg["hidden_size"])
            # Gemma 2 2B has 8×256 ≠ 2304: never derive head_dim from hidden_size when it is given.
            d_head = int(cfg.get("head_dim") or d_model // n_heads)
            out = cls(
                d_model=d_model,
                n_heads=n_heads,
                n_kv_heads=int(cfg.get("num_key_value_heads", n_heads)),
                d_head=d_head,
                n_layers=int(cfg["num_hidden_layers"]),
                query_pre_attn_scalar=float(cfg.get("query_pre_attn_scalar", d_head)),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope_theta=float(cfg.get("rope_theta", 10000.0)),
                attn_logit_softcapping=cfg.get("attn_logit_softcapping"),
                model_type=mt,
            )
        except KeyError as e:
            raise BadInput(f"{where}: config.json lacks {e.args[0]!r}; is this a transformers model directory?") from None
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


def tensor_names(layer: int) -> dict[str, str]:
    p = f"model.layers.{layer}"
    return {
        "q_proj": f"{p}.self_attn.q_proj.weight",
        "k_proj": f"{p}.self_attn.k_proj.weight",
        "v_proj": f"{p}.self_attn.v_proj.weight",
        "o_proj": f"{p}.self_attn.o_proj.weight",
        "input_layernorm": f"{p}.input_layernorm.weight",
        "post_attention_layernorm": f"{p}.post_attention_layernorm.weight",
    }


class _Files:
    """Where config/index/shards come from: a local directory or the Hub."""

    def __init__(self, ref: str):
        self.ref = ref
        p = Path(ref).expanduser()
        self.local = p if p.exists() else None
        if self.local is None and (ref.startswith((".", "/", "~")) or ref.count("/") != 1):
            raise BadInput(f"model {ref!r} not found: pass a directory with config.json and safetensors, or a Hub id like google/gemma-2-2b")
        if self.local is not None and not self.local.is_dir():
            raise BadInput(f"model {ref!r} is not a directory: pass the folder holding config.json")
        self.hub = None if self.local is not None else hub.HubRef.parse(ref)
        self.revision: str | None = None

    def has(self, name: str) -> bool:
        if self.local is not None:
            return (self.local / name).is_file()
        try:
            self.get(name)
            return True
        except BadInput:
            return False

    def get(self, name: str) -> Path:
        if self.local is not None:
            path = self.local / name
            if not path.is_file():
                raise BadInput(f"{path} is missing: the model directory needs config.json and safetensors weights")
            return path
        path = hub.download(self.hub, name)
        self.revision = self.revision or hub.snapshot_revision(path)
        return path


def load_config(ref: str) -> ModelConfig:
    files = _Files(ref)
    return ModelConfig.from_json(_read_json(files.get("config.json")), ref)


def load_attention(ref: str, layer: int) -> AttentionWeights:
    """Read layer `layer`'s attention tensors from `ref`, checking every shape."""
    from safetensors import safe_open

    files = _Files(ref)
    cfg = ModelConfig.from_json(_read_json(files.get("config.json")), ref)
    if not 0 <= layer < cfg.n_layers:
        raise BadInput(f"layer {layer} is out of range: {ref} has layers 0..{cfg.n_layers - 1}")
    names = tensor_names(layer)
    if files.has(INDEX_FILE):
        weight_map = _read_json(files.get(INDEX_FILE)).get("weight_map", {})
        missing = [n for n in names.values() if n not in weight_map]
        if missing:
            raise BadInput(f"{ref}: {INDEX_FILE} has no {missing[0]}; is this a Gemma 2 checkpoint?")
        shard_of = {k: weight_map[n] for k, n in names.items()}
    elif files.has(SINGLE_FILE):
        shard_of = {k: SINGLE_FILE for k in names}
    else:
        raise BadInput(f"{ref}: no {INDEX_FILE} or {SINGLE_FILE}: featgraph reads safetensors checkpoints")

    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(shard_of.values())):
        path = files.get(shard)
        try:
            with safe_open(str(path), framework="pt") as f:
                for key, name in names.items():
                    if shard_of[key] == shard:
                        tensors[key] = f.get_tensor(name).to(torch.float32)
        except FeatgraphError:
            raise
        except Exception as e:
            raise BadInput(f"cannot read {path}: {e.__class__.__name__}; the shard may be corrupt or incomplete") from None

    weights = AttentionWeights(
        config=cfg,
        layer=layer,
        W_Q=tensors["q_proj"],
        W_K=tensors["k_proj"],
        W_V=tensors["v_proj"],
        W_O=tensors["o_proj"],
        ln_in=tensors["input_layernorm"],
        ln_post=tensors["post_attention_layernorm"],
        source={"ref": ref, "revision": files.revision, "local": files.local is not None},
    )
    for key, shape in weights.tensor_shapes().items():
        got = tuple(tensors[key].shape)
        if got != shape:
            raise BadInput(f"{names[key]} has shape {list(got)}, config.json implies {list(shape)}")
    return weights


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {path}: {e.__class__.__name__}: is it valid JSON?") from None
