"""Gemma Scope 2 transcoders (Gemma 3): `params.safetensors` + `config.json` per `transcoder[_all]/layer_L_width_W_l0_{size}
[_affine]/` in `google/gemma-scope-2-{size}-{pt|it}`, the Gemma Scope 2 SAE file (w_enc [d_model, d_sae], w_dec,
b_enc, b_dec, threshold; `affine_skip_connection` [d_model, d_model] in the `_affine` ones) read as a transcoder.

Where it reads and writes: config.json's `hf_hook_point_in` / `hf_hook_point_out`, which SAELens infers when the file is
absent as `model.layers.L.pre_feedforward_layernorm.output` → `model.layers.L.post_feedforward_layernorm.output`
(sae-lens 6.54.12, get_gemma_3_config_from_hf / the config inference beside it; circuit-tracer 0.5's
load_gemma_scope_2_transcoder reads the same keys, w_enc transposed to its nn.Linear layout, the skip connection as
W_skip). So the encoder reads what the MLP reads, the pre-MLP norm's output with its 1 + w gain (`reads`
"mlp_input"). The affine skip connection maps the MLP's input to its output directly: it is no feature, featgraph
records that it is there and does not read it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from featgraph.errors import BadInput
from featgraph.load.sae import gemma_scope_2
from featgraph.load.sae.common import Loaded, transcoder_meta, transcoder_reads

NAME = "gemma_scope_2_transcoder"
PARAMS = gemma_scope_2.PARAMS
_FOLDER = re.compile(r"(?:^|/)(?:transcoder|transcoder_all)/layer_(?P<layer>\d+)_width_\w+?_l0_\w+(?:/|$)")


def detect(folder: Path) -> Path | None:
    p = folder / PARAMS
    return p if p.is_file() and is_transcoder_path(str(folder.absolute()) + "/") else None


def is_transcoder_path(text: str) -> bool:
    return bool(_FOLDER.search(text.replace("\\", "/")))


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    loaded = gemma_scope_2.read(weights, parts, role, text)
    cfg = dict(loaded.meta.get("config") or {})
    m = _FOLDER.search(str(weights.parent.absolute()).replace("\\", "/") + "/")
    hook_in = cfg.get("hf_hook_point_in")
    layer = int(m["layer"]) if m else None
    if isinstance(hook_in, str) and (h := re.search(r"layers\.(\d+)\.", hook_in)):
        layer = int(h[1])
    if layer is None:
        raise BadInput(f"{role} {text}: a Gemma Scope 2 transcoder's folder is transcoder/layer_L_width_W_l0_SIZE (or its "
                       "config.json names hf_hook_point_in): this one names no layer")
    how = "config.json hf_hook_point_in" if hook_in else "SAELens' gemma_3 config inference for transcoder folders"
    hook_in = hook_in if isinstance(hook_in, str) else f"model.layers.{layer}.pre_feedforward_layernorm.output"
    hook_out = cfg.get("hf_hook_point_out") or f"model.layers.{layer}.post_feedforward_layernorm.output"
    reads = transcoder_reads(hook_in)
    if reads is None:
        raise BadInput(f"{role} {text}: config.json's hf_hook_point_in {hook_in!r} is not an MLP's input: not a transcoder "
                       "featgraph reads (expected model.layers.L.pre_feedforward_layernorm.output)")
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        skip = "affine_skip_connection" in f.keys()  # noqa: SIM118 (safe_open has no __iter__)
    meta = transcoder_meta(layer, hook_in, str(hook_out), reads, how, affine_skip=skip)
    if skip:
        meta["transcoder"]["affine_skip_note"] = "affine_skip_connection (MLP input -> output, no feature) is not read"
    return Loaded(loaded.d_in, loaded.d_sae, loaded.arrays,
                  loaded.meta | {"architecture": "jumprelu_skip_transcoder" if skip else "jumprelu_transcoder"} | meta)
