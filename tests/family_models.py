"""Tiny random models of the rotary RMSNorm families (Llama, Mistral, Qwen2, Qwen3, Gemma 4) saved by
save_pretrained, and transformers' own decoder layer as the oracle of every QK and OV value.

The oracle runs the real decoder layer (input norm, projections, biases, query/key/value norms, RoPE, attention,
o_proj, whatever follows the attention in that family, Gemma 4's layer_scalar) with the MLP switched off, so it
knows nothing of featgraph's description: a head's contribution to the residual stream is the layer's output with
only that head kept minus its output with no head kept. The weights-only definitions leave out what depends on
the residual's size and the biases (docs/maths.md), which are multiplied back or subtracted here.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from pathlib import Path

import numpy as np
import torch

from helpers import _capture_interface

# One config per family: 4 heads over 2 kv heads of 16 (4·16 = 64 ≠ d_model 48), non-trivial RoPE, large eps
# where a norm's eps would show, random norm weights and biases (see _randomise).
BASE = dict(vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=256, rms_norm_eps=1e-5)
CONFIGS = {
    # Llama 3.1's rope scaling, at sizes where all three bands occur for d_head 16; biases on (attention_bias).
    "llama": BASE | dict(attention_bias=True, rope_parameters={
        "rope_type": "llama3", "rope_theta": 5000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}),
    "mistral": BASE | dict(sliding_window=6, rope_parameters={"rope_type": "default", "rope_theta": 300.0}),
    "qwen2": BASE | dict(rope_parameters={"rope_type": "default", "rope_theta": 1000.0}),
    "qwen3": BASE | dict(rms_norm_eps=0.1, rope_parameters={"rope_type": "default", "rope_theta": 1000.0}),
    # two experts of which one is used per token (the MLP is off in the oracle); head_dim given, as the checkpoints do;
    # every layer sliding over 6 positions (use_sliding_window), as Mistral's
    "qwen3_moe": BASE | dict(rms_norm_eps=0.1, num_experts=2, num_experts_per_tok=1, moe_intermediate_size=16,
                             use_sliding_window=True, sliding_window=6,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000.0}),
    # Sliding layers 0, 2, 4 (d_head 16, 2 kv heads), full 1, 3, 5 (d_head 32, 1 kv head, no v_proj, proportional
    # RoPE over a quarter of the pairs); layers 4 and 5 reuse layers 2 and 3's keys and values.
    "gemma4_text": BASE | dict(num_hidden_layers=6, rms_norm_eps=0.1, layer_types=["sliding_attention", "full_attention"] * 3,
                               sliding_window=6, global_head_dim=32, num_global_key_value_heads=1, attention_k_eq_v=True,
                               num_kv_shared_layers=2, hidden_size_per_layer_input=0, rope_parameters={
                                   "sliding_attention": {"rope_type": "default", "rope_theta": 500.0},
                                   "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.5,
                                                      "rope_theta": 20000.0}}),
}
CLASSES = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "mistral": ("MistralConfig", "MistralForCausalLM"),
           "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"), "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
           "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
           "gemma4_text": ("Gemma4TextConfig", "Gemma4ForCausalLM")}
# Where the attention output meets a norm before joining the residual stream (the oracle multiplies its RMS back).
POST_NORM = {"gemma2", "gemma3_text", "gemma3", "gemma4_text", "gemma4"}


def _randomise(model, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + torch.randn_like(p) * 0.5)  # gain w: around 1, each entry different
            else:
                p.copy_(torch.randn_like(p) * 0.2)  # weights and biases
        for i, layer in enumerate(_layers(model)):
            if hasattr(layer, "layer_scalar"):
                layer.layer_scalar.fill_(0.5 + 0.25 * i)  # Gemma 4: a different scalar per layer, not 1
    return model


def make_tiny(family: str, path: Path, seed: int = 0, **overrides):
    """A tiny random model of `family` (a key of CONFIGS, or "gemma4": Gemma4ForConditionalGeneration around the
    gemma4_text config, no vision or audio tower) saved sharded by save_pretrained; returns the model."""
    import transformers

    if family == "gemma4":
        cfg = transformers.Gemma4Config(text_config=CONFIGS["gemma4_text"] | overrides, vision_config=None, audio_config=None)
        cfg.text_config._attn_implementation = "eager"
        model = _randomise(transformers.Gemma4ForConditionalGeneration(cfg).eval(), seed)
        model.save_pretrained(path, max_shard_size="20KB", safe_serialization=True)
        return model
    config_cls, model_cls = (getattr(transformers, n) for n in CLASSES[family])
    cfg = config_cls(**(CONFIGS[family] | overrides))
    cfg._attn_implementation = "eager"
    model = _randomise(model_cls(cfg).eval(), seed)
    model.save_pretrained(path, max_shard_size="20KB", safe_serialization=True)
    return model


def _lm(model):
    return model.model.language_model if hasattr(model.model, "language_model") else model.model


def _layers(model):
    return _lm(model).layers


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(x.pow(2).mean(-1) + eps)


@contextlib.contextmanager
def _no_mlp(dec):
    """The decoder layer without its MLP (its output replaced by zeros), so it adds only the attention's part."""
    mlp = dec.mlp
    before = mlp.forward
    mlp.forward = lambda x, *a, **k: torch.zeros_like(x)
    try:
        yield
    finally:
        mlp.forward = before


def oracle(model, layer: int, sae_in: np.ndarray, W_enc: np.ndarray | None = None, W_enc_att: np.ndarray | None = None,
           rope_offset: int = 0, transcoder: tuple[int, np.ndarray, str] | None = None) -> dict:
    """qk[h]: [n_query, n_key]; ov[h]: [n_value, n_out] into a residual SAE (W_enc [d_model, n]); ov_att[h]: into an
    attention-output SAE (W_enc_att [n_heads·d_head, n]) reading the tensor o_proj receives.

    QK: the layer's own q and k (after biases, norms and RoPE) for a residual equal to d_i, queries at position Δ,
    keys at 0, minus those of a zero residual (what the biases alone give). OV: one-token sequences, so a head's
    output is its value; a head's contribution is the layer's output with only that head kept minus with none.
    Multiplied back: the input norm's RMS (no query/key/value norm), the norms' eps (q_norm/k_norm/v_norm: the
    factor sqrt((mean(u²) + eps) / mean(u²)) with u the head's projection of the normalised input), and the
    attention output's RMS where a norm follows it (POST_NORM). ov_tc[h]: into the transcoder `transcoder` = (its layer,
    W_enc, reads), the head's write read through that layer's pre-MLP norm module (helpers.transcoder_read).
    """
    from helpers import transcoder_read

    lm = _lm(model)
    dec = lm.layers[layer]
    attn = dec.self_attn
    family = lm.config.model_type
    captured = _capture_interface(sys.modules[type(attn).__module__].eager_attention_forward)
    before = attn.config._attn_implementation
    attn.config._attn_implementation = "featgraph_capture"
    eps = attn.config.rms_norm_eps
    n_heads, d_head = attn.config.num_attention_heads, attn.head_dim
    extra = {"shared_kv_states": {}} if "shared_kv_states" in inspect.signature(attn.forward).parameters else {}

    def rotation(h, pos):
        if "layer_type" in inspect.signature(lm.rotary_emb.forward).parameters:
            return lm.rotary_emb(h, pos, lm.config.layer_types[layer])
        return lm.rotary_emb(h, pos)

    def norm_fix(proj, X):
        """[heads, n]: sqrt((mean(u²) + eps) / mean(u²)), u = proj(input_layernorm(X)) per head."""
        ms = proj(dec.input_layernorm(X)).view(X.shape[0], -1, d_head).pow(2).mean(-1)
        return torch.sqrt((ms + eps) / ms).T

    X = torch.from_numpy(sae_in)
    n = X.shape[0]
    r_in = _rms(X, eps)
    out: dict = {}
    try:
        with torch.no_grad():
            def qk_states(R):
                h = dec.input_layernorm(R.expand(2, n, -1).contiguous())
                attn(h, position_embeddings=rotation(h, torch.tensor([[rope_offset] * n, [0] * n])), attention_mask=None, **extra)
                return captured["q"][0], captured["k"][1]

            q, k = qk_states(X)
            q0, k0 = qk_states(torch.zeros_like(X))
            q, k = q - q0, k - k0  # the biases' part is not a feature's
            groups = q.shape[0] // k.shape[0]
            if hasattr(attn, "q_norm"):
                cq, ck = norm_fix(attn.q_proj, X), norm_fix(attn.k_proj, X)
            else:
                cq, ck = r_in.expand(n_heads, n), r_in.expand(k.shape[0], n)
            out["qk"] = [(q[hh] @ k[hh // groups].T) * cq[hh][:, None] * ck[hh // groups][None, :] for hh in range(n_heads)]

            if hasattr(attn, "v_norm"):
                cv = norm_fix(attn.v_proj if getattr(attn, "v_proj", None) is not None else attn.k_proj, X)
            else:
                cv = r_in.expand(k.shape[0], n)
            cos_sin = rotation(X[:, None, :], torch.zeros(n, 1, dtype=torch.long))
            seen: dict = {}
            hook_in = attn.o_proj.register_forward_pre_hook(lambda mod, args: seen.update(z=args[0].detach()))
            hook_out = attn.o_proj.register_forward_hook(lambda mod, args, res: seen.update(o=res.detach()))

            def layer_out(R, keep):
                captured["keep"] = keep  # only head `keep`'s output reaches o_proj (-1: none)
                with _no_mlp(dec):
                    y = dec(R[:, None, :], position_embeddings=cos_sin, attention_mask=None, **extra)
                y = y[0] if isinstance(y, tuple) else y
                return y[:, 0], seen["z"][:, 0], seen["o"][:, 0]

            try:
                none_x, _, _ = layer_out(X, -1)
                none_0, _, _ = layer_out(torch.zeros_like(X), -1)
                ov, ov_att, ov_tc = [], [], []
                for hh in range(n_heads):
                    y, z, o = layer_out(X, hh)
                    y0, z0, _ = layer_out(torch.zeros_like(X), hh)
                    c = cv[hh // groups][:, None]
                    if family in POST_NORM:  # a norm of the head's output: no bias in these families, its RMS back
                        contrib = (y - none_x) * _rms(o, eps)[:, None]
                    else:  # linear after the head: subtract what a zero residual gives (the value bias's part)
                        contrib = (y - none_x) - (y0 - none_0)
                    if W_enc is not None:
                        ov.append((contrib @ torch.from_numpy(W_enc)) * c)
                    if transcoder is not None:
                        ov_tc.append(transcoder_read(model, transcoder[0], contrib, transcoder[1], transcoder[2]) * c)
                    if W_enc_att is not None:
                        ov_att.append(((z - z0) @ torch.from_numpy(W_enc_att)) * c)
            finally:
                captured["keep"] = None
                hook_in.remove()
                hook_out.remove()
            if W_enc is not None:
                out["ov"] = ov
            if transcoder is not None:
                out["ov_tc"] = ov_tc
            if W_enc_att is not None:
                out["ov_att"] = ov_att
    finally:
        attn.config._attn_implementation = before
    return out
