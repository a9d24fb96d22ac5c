"""Gemma Scope 2 (Gemma 3): `params.safetensors` + `config.json` per `{site}[_all]/layer_L_width_W_l0_{size}/`,
read as SAELens' gemma_3 loader does (sae-lens 6.54.12, gemma_3_sae_huggingface_loader, get_gemma_3_config_from_hf;
SAELens infers the config when config.json is absent, and so does featgraph).

Keys w_enc [d_in, d_sae], w_dec [d_sae, d_in], b_enc, b_dec, threshold: Gemma Scope's orientation, lower-case.
config.json: model_name, hf_hook_point_in (transformers module names), width, l0, architecture (jump_relu).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import KEYS, Loaded, checked_getter, pick, read_json
from featgraph.load.sae.gemma_scope import check

NAME = "gemma_scope_2"
PARAMS = "params.safetensors"
CONFIG = "config.json"
ST_KEYS = {k.lower(): k for k in KEYS}  # Gemma Scope 2's key names: w_enc, w_dec, b_enc, b_dec, threshold


def detect(folder: Path) -> Path | None:
    return folder / PARAMS if (folder / PARAMS).is_file() else None


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the tensors in a .safetensors file, read from its header only (Gemma Scope 2's keys mapped to ours)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {ST_KEYS.get(k, k): tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:
        raise BadInput(f"{path} is not a readable .safetensors file ({e.__class__.__name__}): re-download it") from None


def config(weights: Path) -> dict | None:
    """config.json beside params.safetensors, when there is one (SAELens does without it too)."""
    p = weights.parent / CONFIG
    if not p.is_file():
        return None
    cfg = read_json(p, CONFIG)
    if cfg.get("architecture", "jump_relu") != "jump_relu":
        raise BadInput(f"{p} says architecture {cfg.get('architecture')!r}: featgraph reads JumpReLU SAEs (jump_relu)")
    return cfg


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    from safetensors import safe_open

    d_in, d_sae = check(role, text, safetensors_shapes(weights), "Gemma Scope 2 params.safetensors", [k.lower() for k in KEYS])
    cfg = config(weights)
    names = {v: k for k, v in ST_KEYS.items()}
    try:
        with safe_open(str(weights), framework="pt") as f:
            present = set(f.keys())
            get_tensor = checked_getter(f.get_tensor, role, text, weights.name)

            def get(k: str):
                return lambda: get_tensor(names[k] if names[k] in present else k).to(torch.float32)
            arrays = pick(parts, {k: get(k) for k in KEYS})
    except (ValueError, OSError, RuntimeError) as e:
        raise BadInput(f"{role} {text}: cannot read {weights} ({e.__class__.__name__}); the file may be corrupt, re-download it") from None
    meta: dict = {"architecture": "jumprelu"}
    if cfg is not None:
        meta["config"] = {k: cfg[k] for k in ("model_name", "hf_hook_point_in", "hf_hook_point_out", "width", "l0", "type",
                                              "architecture", "affine_connection") if k in cfg}
        meta["hf_hook"] = cfg.get("hf_hook_point_in")
    return Loaded(d_in, d_sae, arrays, meta)
