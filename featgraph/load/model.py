"""Read one attention layer's tensors (every family of `featgraph.families`), and nothing else.

A model REF is a local directory (config.json + safetensors, sharded with
`model.safetensors.index.json` or a single `model.safetensors`) or a Hub repo id
`owner/name[@revision]`; from the Hub only the config, the index and the
shard(s) holding the layer are downloaded. config.json's `model_type` picks the
family (`featgraph.families`): the tensor names, their prefix (the multimodal
Gemma 3 checkpoints keep the language model under `language_model.model.`) and
whether the layer has query/key norms.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import torch

from featgraph import families
from featgraph.core.weights import AttentionWeights, ModelConfig, all_finite, float_weights
from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import hub

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def infer_model_id(ref: str) -> tuple[str | None, str]:
    """Neuronpedia's model id for a Hub id or local directory, and how it was found (docs/ids.md).

    A Hub id gives its repo name; a local directory the `models--OWNER--NAME` folder of the HF cache it
    lies in, else config.json's `_name_or_path` when that is a Hub id, else its own name (unless that is a
    commit hash). None when nothing names it.
    """
    path = Path(ref).expanduser()
    if not path.exists():
        if ref.startswith((".", "/", "~")) or ref.split("@")[0].count("/") != 1:
            return None, "invented"
        try:
            repo = hub.HubRef.parse(ref).repo_id
        except BadInput:
            return None, "invented"
        return _neuronpedia_name(repo.split("/")[1], f"Hub repo id {repo}")
    for parts in (path.absolute().parts, path.resolve().parts):
        for part in reversed(parts):
            if part.startswith("models--") and "--" in part[len("models--"):]:
                return _neuronpedia_name(part[len("models--"):].split("--", 1)[1], f"HF cache folder name {part}")
    try:
        named = json.loads((path / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        named = None  # the loader reports a bad config.json; here it just names nothing
    if isinstance(named, str) and _HUB_ID_RE.match(named):
        return _neuronpedia_name(named.split("/")[1], f"config.json _name_or_path {named}")
    name = path.absolute().name
    if name and not _COMMIT_RE.match(name):
        return _neuronpedia_name(name, "directory name")
    return None, "invented"


# Neuronpedia names the pretrained Gemma 3 models without the Hub's "-pt" (SAELens pretrained_saes.yaml:
# google/gemma-3-1b-pt's sources are gemma-3-1b/…; google/gemma-3-270m has no suffix on the Hub either).
_GEMMA3_PT_RE = re.compile(r"^(gemma-3-\w+?)-pt$")


def _neuronpedia_name(name: str, how: str) -> tuple[str, str]:
    m = _GEMMA3_PT_RE.match(name)
    if m:
        return m[1], f"{how}; Neuronpedia names Gemma 3 pt models without -pt"
    return name, how


def model_short_id(ref: str) -> str:
    """Neuronpedia's model id as `infer_model_id` finds it (`google/gemma-2-2b` -> `gemma-2-2b`), or the name given."""
    return infer_model_id(ref)[0] or Path(ref.split("@")[0].rstrip("/")).name


def tensor_names(layer: int, family: families.Family = families.GEMMA2, prefix: str | None = None) -> dict[str, str]:
    """Layer `layer`'s attention tensors as a checkpoint of `family` names them (Gemma 2's six by default)."""
    return family.tensor_names(layer, prefix)


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
        if not _plain_relative(name):
            raise BadInput(f"{self.ref}: {name!r} is not a file name inside the model directory")
        if self.local is not None:
            path = self.local / name
            if not path.is_file():
                raise BadInput(f"{path} is missing: the model directory needs config.json and safetensors weights")
            if not _inside(path, self.local):
                raise BadInput(f"{path} leads outside the model directory {self.local}: refusing to read it")
            return path
        path = hub.download(self.hub, name, "pass a local model directory (--model PATH; model= in Python)")
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
    fam = families.of(cfg.model_type, ref)
    cfg = cfg.for_layer(layer, ref)
    value_is_key = layer in cfg.value_is_key
    if files.has(INDEX_FILE):
        weight_map = _read_json(files.get(INDEX_FILE)).get("weight_map", {})
        if not isinstance(weight_map, dict):
            raise BadInput(f"{ref}: {INDEX_FILE} has no weight_map object; the index is corrupt")
        names = _names_in(fam, layer, weight_map, ref, INDEX_FILE, value_is_key)
        shard_of = {k: weight_map[n] for k, n in names.items()}
        for key, shard in shard_of.items():
            if not isinstance(shard, str) or not _plain_relative(shard):
                raise BadInput(f"{ref}: {INDEX_FILE} maps {names[key]} to {shard!r}, which is not a file inside the model "
                               "directory; the index is corrupt or was tampered with")
    elif files.has(SINGLE_FILE):
        try:
            with safe_open(str(files.get(SINGLE_FILE)), framework="pt") as f:
                present = set(f.keys())
        except Exception as e:
            raise BadInput(f"cannot read {files.get(SINGLE_FILE)}: {e.__class__.__name__}; the file may be corrupt") from None
        names = _names_in(fam, layer, present, ref, SINGLE_FILE, value_is_key)
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
                        tensors[key] = float_weights(f.get_tensor(name), f"{name} in {path}").to(torch.float32)
                        if not all_finite(tensors[key]):
                            raise BadInput(f"{name} in {path} has NaN or infinite values: the checkpoint is corrupt; "
                                           "re-download it")
        except FeatgraphError:
            raise
        except Exception as e:
            raise BadInput(f"cannot read {path}: {e.__class__.__name__}; the shard may be corrupt or incomplete") from None

    return weights_of(cfg, layer, tensors, names, {"ref": ref, "revision": files.revision, "local": files.local is not None},
                      "config.json")


def load_layer_tensor(ref: str, layer: int, relative: str) -> torch.Tensor:
    """One tensor of decoder layer `layer` by its name inside the layer (`pre_feedforward_layernorm.weight`), float32,
    under the first of the family's prefixes that holds it."""
    from safetensors import safe_open

    files = _Files(ref)
    cfg = ModelConfig.from_json(_read_json(files.get("config.json")), ref)
    fam = families.of(cfg.model_type, ref)
    if not 0 <= layer < cfg.n_layers:
        raise BadInput(f"{ref} has layers 0-{cfg.n_layers - 1}: it has no layer {layer}")
    candidates = [f"{p}{fam.layers_key}.{layer}.{relative}" for p in fam.all_prefixes()]
    if files.has(INDEX_FILE):
        weight_map = _read_json(files.get(INDEX_FILE)).get("weight_map", {})
        found = [(n, weight_map[n]) for n in candidates if isinstance(weight_map, dict) and n in weight_map]
    else:
        with safe_open(str(files.get(SINGLE_FILE)), framework="pt") as f:
            present = set(f.keys())
        found = [(n, SINGLE_FILE) for n in candidates if n in present]
    if not found:
        raise BadInput(f"{ref} has no {candidates[0]}; is this a {fam.name} checkpoint?")
    name, shard = found[0]
    if not isinstance(shard, str) or not _plain_relative(shard):
        raise BadInput(f"{ref}: {INDEX_FILE} maps {name} to {shard!r}, which is not a file inside the model directory")
    path = files.get(shard)
    with safe_open(str(path), framework="pt") as f:
        t = float_weights(f.get_tensor(name), f"{name} in {path}").to(torch.float32)
    if not all_finite(t):
        raise BadInput(f"{name} in {path} has NaN or infinite values: the checkpoint is corrupt; re-download it")
    return t


def weights_of(cfg: ModelConfig, layer: int, tensors: dict[str, torch.Tensor], names: dict[str, str], source: dict,
               what: str) -> AttentionWeights:
    """AttentionWeights from one layer's tensors by key (q_proj, …), every shape checked against `cfg` (the layer's
    view). A layer whose values are its keys' projection (no v_proj) gets W_V = W_K. A family with its own
    layout (GPT-2's Conv1D, GPT-NeoX's fused query_key_value) unpacks its tensors and checks their shapes itself."""
    fam = families.of(cfg.model_type)
    if fam.unpack is not None:
        return AttentionWeights(config=cfg, layer=layer, source=source, **fam.unpack(tensors, cfg, what))
    weights = AttentionWeights(
        config=cfg, layer=layer, W_Q=tensors["q_proj"], W_K=tensors["k_proj"],
        W_V=tensors["v_proj"] if "v_proj" in tensors else tensors["k_proj"], W_O=tensors["o_proj"],
        ln_in=tensors["input_layernorm"], ln_post=tensors.get("post_attention_layernorm"),
        q_norm=tensors.get("q_norm"), k_norm=tensors.get("k_norm"), layer_scalar=tensors.get("layer_scalar"), source=source,
        b_Q=tensors.get("q_bias"), b_K=tensors.get("k_bias"), b_O=tensors.get("o_bias"),
        b_V=tensors.get("v_bias") if "v_proj" in tensors else tensors.get("k_bias"),
    )
    for key, shape in weights.tensor_shapes().items():
        if key not in tensors:
            continue
        got = tuple(tensors[key].shape)
        if got != shape:
            raise BadInput(f"{names[key]} has shape {list(got)}, {what} implies {list(shape)}")
    return weights


def _names_in(fam: families.Family, layer: int, present, ref: str, where: str, value_is_key: bool = False) -> dict[str, str]:
    """The layer's tensor names under the first of the family's prefixes that holds its first tensor (q_proj;
    optional ones, such as Gemma 4's layer_scalar or a bias, only where present)."""
    first = fam.tensor_keys()[0]
    required = set(fam.tensor_keys(value_is_key))
    for prefix in fam.all_prefixes():
        names = fam.tensor_names(layer, prefix, value_is_key, optional=True)
        if names[first] in present:
            missing = [n for k, n in names.items() if n not in present and k in required]
            if missing:
                raise BadInput(f"{ref}: {where} has no {missing[0]}; is this a {fam.name} checkpoint?")
            return {k: n for k, n in names.items() if n in present}
    raise BadInput(f"{ref}: {where} has no {fam.tensor_names(layer)[first]}; is this a {fam.name} checkpoint?")


def _plain_relative(name: str) -> bool:
    """A relative file name that stays inside its directory: not absolute, no `..`, no backslash or drive."""
    p = PurePosixPath(name)
    return bool(name.strip()) and "\\" not in name and ":" not in name and not p.is_absolute() and ".." not in p.parts


def _inside(path: Path, root: Path) -> bool:
    """Whether `path` resolves inside `root`; in the HF cache, inside the repo's folder (snapshot files are
    symlinks into `models--OWNER--NAME/blobs`)."""
    root = root.resolve()
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        root = root.parent.parent
    return path.resolve().is_relative_to(root)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {path}: {e.__class__.__name__}: is it valid JSON?") from None
