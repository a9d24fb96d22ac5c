"""Read one Gemma 2 attention layer's six tensors, and nothing else.

A model REF is a local directory (config.json + safetensors, sharded with
`model.safetensors.index.json` or a single `model.safetensors`) or a Hub repo id
`owner/name[@revision]`; from the Hub only the config, the index and the
shard(s) holding the layer are downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import hub
from featgraph.weights import AttentionWeights, ModelConfig

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def model_short_id(ref: str) -> str:
    """Neuronpedia's model id: the repo name (`google/gemma-2-2b` -> `gemma-2-2b`)."""
    base = ref.split("@")[0].rstrip("/")
    return Path(base).name


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
