"""OpenAI's GPT-2 small SAEs (openai/sparse_autoencoder, az://openaipublic/sparse-autoencoder/gpt2-small/
{location}_v5_{32k,128k}/autoencoders/{layer}.pt), read as sparse_autoencoder/model.py's Autoencoder.from_state_dict
does (checked at commit 764586a).

The state dict: pre_bias [n_inputs], encoder.weight [n_latents, n_inputs] and decoder.weight [n_inputs, n_latents]
(nn.Linear, transposed here), latent_bias [n_latents], stats buffers, and `activation` ("ReLU" or "TopK", with
activation_state_dict {k, postact_fn}). latents = act(encoder(x − pre_bias) + latent_bias); with TopK the input is
first layer-normed (normalize=True: x → (x − mean)/std), so the encoder reads the mean-centred input: featgraph's
W_enc columns are centred (C·w, C = I − 11ᵀ/d), the direction the SAE responds to (per-token 1/std aside).
The location in the path names the hook: resid_post_mlp → hook_resid_post, resid_post_attn → hook_resid_mid,
resid_delta_attn → hook_attn_out, resid_delta_mlp → hook_mlp_out; the file name is the layer. OpenAI ran GPT-2
through TransformerLens with center_writing_weights=False (the README's example): the raw basis.
The registry's gpt2-small-*-v5-* releases are jbloom's SAELens-format conversions of these (read by saelens.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import Loaded, expect, pick, shapes_of, torch_load

NAME = "openai"
LOCATIONS = {"resid_post_mlp": "hook_resid_post", "resid_post_attn": "hook_resid_mid", "resid_delta_attn": "hook_attn_out",
             "resid_delta_mlp": "hook_mlp_out"}
_PATH_RE = re.compile(r"(?P<loc>resid_post_mlp|resid_post_attn|resid_delta_attn|resid_delta_mlp)[^/]*/autoencoders/(?P<layer>\d+)\.pt$")


def is_openai(sd: dict) -> bool:
    return "pre_bias" in sd and "latent_bias" in sd and "encoder.weight" in sd


def hook_of(text: str) -> str | None:
    m = _PATH_RE.search(text.replace("\\", "/"))
    return f"blocks.{m['layer']}.{LOCATIONS[m['loc']]}" if m else None


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    sd = torch_load(weights, role, text)
    if not is_openai(sd):
        raise BadInput(f"{role} {text}: {weights.name} is not an OpenAI sparse_autoencoder state dict (pre_bias, "
                       "encoder.weight, latent_bias, decoder.weight)")
    d_sae, d_in = tuple(sd["encoder.weight"].shape)
    expect(role, text, f"OpenAI {weights.name}", shapes_of(sd),
           {"pre_bias": (d_in,), "latent_bias": (d_sae,), "decoder.weight": (d_in, d_sae)})
    act = sd.get("activation", "ReLU")
    normalize = act == "TopK"
    if act not in ("ReLU", "TopK"):
        raise BadInput(f"{role} {text}: activation {act!r}: featgraph reads OpenAI SAEs with ReLU or TopK")
    raw = sd["encoder.weight"].to(torch.float32).T  # [d_in, d_sae]
    enc = raw - raw.mean(dim=0, keepdim=True) if normalize else raw
    arrays = pick(parts, {"W_enc": lambda: enc, "W_dec": lambda: sd["decoder.weight"].T, "b_dec": lambda: sd["pre_bias"],
                          "b_enc": lambda: sd["latent_bias"].to(torch.float32) - sd["pre_bias"].to(torch.float32) @ raw,
                          "threshold": lambda: None if normalize else torch.zeros(d_sae)})
    k = (sd.get("activation_state_dict") or {}).get("k") if normalize else None
    hook = hook_of(text) or hook_of(str(weights))
    meta = {"hook": hook, "hook_from": "OpenAI path {location}_v5_*/autoencoders/{layer}.pt" if hook else None,
            "architecture": f"topk (k={k}, input layer-normed)" if normalize else "relu", "model_name": "gpt2-small",
            "apply_b_dec_to_input": True, "input_layer_norm": normalize,
            "model_from_pretrained_kwargs": {"center_writing_weights": False}}
    return Loaded(d_in, d_sae, arrays, meta)
