"""Gemma Scope transcoders (Gemma 2): `params.npz` per `layer_L/width_W/average_l0_N/` in
`google/gemma-scope-{2b,9b,…}-pt-transcoders`, the Gemma Scope SAE file (keys W_enc [d_model, d_sae], W_dec [d_sae,
d_model], b_enc, b_dec, threshold: featgraph's orientation already) read as a transcoder.

Where it reads and writes, as its publishers' loaders say: SAELens (sae-lens 6.54.12,
get_gemma_2_transcoder_config_from_hf) names hook `blocks.L.ln2.hook_normalized` in and `blocks.L.hook_mlp_out` out;
circuit-tracer 0.5 loads these same files (load_gemma_scope_transcoder, W_enc transposed to its nn.Linear layout)
with TransformerLens' fold_ln=False, and maps `ln2.hook_normalized` to transformers' `pre_feedforward_layernorm`'s
`_norm(x)` (x / rms(x), before the 1 + w gain) and `hook_mlp_out` to `post_feedforward_layernorm`'s output
(circuit_tracer/utils/tl_nnsight_mapping.py, Gemma2ForCausalLM). So the encoder reads the pre-MLP residual divided
by its RMS, without the gain (`reads` "normalised"), and the decoder writes what the MLP adds to the residual stream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from featgraph.errors import BadInput
from featgraph.load.sae import gemma_scope
from featgraph.load.sae.common import Loaded, transcoder_meta

NAME = "gemma_scope_transcoder"
PARAMS = gemma_scope.PARAMS
_LAYER = re.compile(r"(?:^|/)layer_(\d+)/width_\w+/")


def detect(folder: Path) -> Path | None:
    """A Gemma Scope transcoder folder: params.npz under a path naming a `-transcoders` repo."""
    p = folder / PARAMS
    return p if p.is_file() and is_transcoder_path(str(folder.absolute())) else None


def is_transcoder_path(text: str) -> bool:
    return bool(re.search(r"gemma-scope-[\w.]+-transcoders(?:/|$)", text.replace("\\", "/")))


def layer_of(text: str) -> int | None:
    m = _LAYER.search(text.replace("\\", "/") + "/")
    return int(m[1]) if m else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    layer = layer_of(str(weights.parent.absolute())) if layer_of(text) is None else layer_of(text)
    if layer is None:
        raise BadInput(f"{role} {text}: a Gemma Scope transcoder's folder is layer_L/width_W/average_l0_N (the layer it "
                       "replaces the MLP of); this path names none")
    loaded = gemma_scope.read(weights, parts, role, text)
    meta = transcoder_meta(layer, f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out", "normalised",
                           "SAELens' gemma_2_transcoder loader and circuit-tracer's Gemma config (ln2.hook_normalized)")
    return Loaded(loaded.d_in, loaded.d_sae, loaded.arrays, {"architecture": "jumprelu_transcoder"} | meta)
