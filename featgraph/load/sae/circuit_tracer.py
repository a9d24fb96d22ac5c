"""circuit-tracer's per-layer transcoders: `layer_{L}.safetensors` beside a `config.yaml`, the layout of the repos its
configs name (mwhanna/qwen3-{0.6b,1.7b,4b,8b,14b}-transcoders — SAELens' `mwhanna_transcoder` releases — and
circuit-tracer's own `TranscoderSet.to_safetensors`), read as circuit-tracer 0.5's load_relu_transcoder and SAELens'
mwhanna_transcoder_huggingface_loader (sae-lens 6.54.12) read them.

Keys (nn.Linear orientation for the encoder): W_enc [d_sae, d_model] (transposed on reading, as both loaders do),
W_dec [d_sae, d_model], b_enc [d_sae], b_dec [d_model]; optional `activation_function.threshold` [d_sae] (JumpReLU;
absent: ReLU, read as threshold 0) and W_skip [d_model, d_model] (a skip connection, no feature: not read).
config.yaml (circuit-tracer's load_transcoder_from_hub): model_kind `transcoder_set`, `feature_input_hook` and
`feature_output_hook` (TransformerLens hook names without `blocks.L.`: `mlp.hook_in` → `mlp.hook_out` for the Qwen3
sets, `ln2.hook_normalized` → `hook_mlp_out` for Gemma, `hook_resid_mid` for some), `model_name`. Without it (the
14B set), SAELens' rule: `blocks.L.mlp.hook_in` → `blocks.L.hook_mlp_out`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import Loaded, checked_getter, expect, open_safetensors, pick, transcoder_meta, transcoder_reads

NAME = "circuit_tracer"
CONFIG = "config.yaml"
_FILE = re.compile(r"^layer_(\d+)\.safetensors$")
THRESHOLD = "activation_function.threshold"


def detect_file(p: Path) -> bool:
    """A `layer_L.safetensors` whose tensors are circuit-tracer's (W_enc, W_dec, b_enc, b_dec; capitalised)."""
    if not _FILE.match(p.name) or not p.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            keys = set(f.keys())
    except Exception:
        return False
    return {"W_enc", "W_dec", "b_enc", "b_dec"} <= keys


def layer_of(p: Path | str) -> int | None:
    m = _FILE.match(Path(str(p)).name)
    return int(m[1]) if m else None


def config(folder: Path, role: str, text: str) -> dict[str, Any] | None:
    path = folder / CONFIG
    if not path.is_file():
        return None
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise BadInput(f"{role} {text}: {path} is not readable YAML ({e.__class__.__name__}): re-download it") from None
    if not isinstance(cfg, dict):
        raise BadInput(f"{role} {text}: {path} is not a YAML mapping: re-download it")
    kind = cfg.get("model_kind", "transcoder_set")
    if kind != "transcoder_set":
        raise BadInput(f"{role} {text}: {path} says model_kind {kind!r}; featgraph reads per-layer transcoders "
                       "(transcoder_set), not cross-layer ones")
    return cfg


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    layer = layer_of(weights)
    if layer is None:
        raise BadInput(f"{role} {text}: circuit-tracer's transcoders are named layer_L.safetensors; {weights.name} is not")
    cfg = config(weights.parent, role, text) or {}
    f, shapes = open_safetensors(weights, role, text)
    with f:
        if "b_enc" not in shapes or "b_dec" not in shapes or len(shapes["b_enc"]) != 1 or len(shapes["b_dec"]) != 1:
            raise BadInput(f"{role} {text}: {weights.name} lacks b_enc / b_dec vectors (circuit-tracer transcoders have W_enc, "
                           f"W_dec, b_enc, b_dec; it has {', '.join(sorted(shapes)) or 'nothing'})")
        d_sae, d_in = shapes["b_enc"][0], shapes["b_dec"][0]
        want = {"W_enc": (d_sae, d_in), "W_dec": (d_sae, d_in)} | ({THRESHOLD: (d_sae,)} if THRESHOLD in shapes else {})
        expect(role, text, f"circuit-tracer {weights.name}", shapes, want)
        get = checked_getter(f.get_tensor, role, text, weights.name)  # a quantized tensor is refused, not cast
        arrays = pick(parts, {
            "W_enc": lambda: get("W_enc").to(torch.float32).T,
            "W_dec": lambda: get("W_dec"),
            "b_enc": lambda: get("b_enc"),
            "b_dec": lambda: get("b_dec"),
            "threshold": lambda: get(THRESHOLD) if THRESHOLD in shapes else torch.zeros(d_sae),
        })
    inp, out = cfg.get("feature_input_hook"), cfg.get("feature_output_hook")
    how = f"{CONFIG} feature_input_hook" if inp else "SAELens' mwhanna_transcoder rule (no config.yaml)"
    hook_in = f"blocks.{layer}.{inp or 'mlp.hook_in'}"
    hook_out = f"blocks.{layer}.{out or 'hook_mlp_out'}"
    reads = transcoder_reads(hook_in)
    if reads is None:
        raise BadInput(f"{role} {text}: {CONFIG}'s feature_input_hook {inp!r} is not an MLP's input featgraph knows "
                       "(mlp.hook_in, ln2.hook_normalized or hook_resid_mid)")
    meta = {"architecture": "jumprelu_transcoder" if THRESHOLD in shapes else "relu_transcoder"}
    if cfg.get("model_name"):
        meta["model_name"] = str(cfg["model_name"])
    meta |= transcoder_meta(layer, hook_in, hook_out, reads, how, skip_connection="W_skip" in shapes)
    return Loaded(int(d_in), int(d_sae), arrays, meta)
