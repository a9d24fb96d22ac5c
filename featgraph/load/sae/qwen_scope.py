"""Qwen Scope residual SAEs (Qwen/SAE-Res-{model}-W{N}K-L0_{K}: one `layer{L}.sae.pt` per layer, no config file), read
as SAELens' qwen_scope_sae_huggingface_loader and get_qwen_scope_config_from_hf do (sae-lens 6.54.12).

The checkpoint is a plain dict: W_enc [d_sae, d_in] and W_dec [d_in, d_sae] (both transposed here, as SAELens does),
b_enc [d_sae], b_dec [d_in]. TopK SAEs (k = the repo's L0_{K}) with apply_b_dec_to_input False: pre = x W_enc + b_enc,
the k largest kept; no threshold. The hook is blocks.{L}.hook_resid_post (model.layers.{L}'s output), the input of
layer L+1. d_in and d_sae come from the tensors (SAELens takes them from the repo name and model).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from featgraph.load.sae.common import Loaded, linear_pair, pick, torch_load

NAME = "qwen_scope"
_FILE_RE = re.compile(r"^layer(\d+)\.sae\.pt$")
_REPO_RE = re.compile(r"SAE-Res-(?P<model>.+)-W\d+K-L0_(?P<k>\d+)")


def detect(path: Path) -> Path | None:
    return path if path.is_file() and _FILE_RE.match(path.name) else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    sd = torch_load(weights, role, text)
    # The checkpoint's W_enc is [d_sae, d_in] and W_dec [d_in, d_sae]: the nn.Linear orientation under SAELens' names.
    d_in, d_sae, W_enc, W_dec, b_enc, b_dec = linear_pair(sd, ("W_enc", "W_dec", "b_enc", "b_dec"), role, text,
                                                          f"Qwen Scope {weights.name}")
    arrays = pick(parts, {"W_enc": lambda: W_enc, "W_dec": lambda: W_dec, "b_enc": lambda: b_enc, "b_dec": lambda: b_dec,
                          "threshold": lambda: None})
    m = _FILE_RE.match(weights.name)
    repo = _REPO_RE.search(str(weights).replace("\\", "/") + " " + text)
    meta = {"hook": f"blocks.{m[1]}.hook_resid_post" if m else None,
            "hook_from": "file name layer{L}.sae.pt (SAELens' qwen_scope loader: model.layers.L's output)" if m else None,
            "architecture": f"topk (k={repo['k']})" if repo else "topk", "model_name": repo["model"] if repo else None,
            "apply_b_dec_to_input": False}
    return Loaded(d_in, d_sae, arrays, meta)
