"""Tiny random GPT-2 and GPT-NeoX models saved by transformers, and transformers' own attention as the oracle of
their QK and OV edges (docs/maths.md, "GPT-2 and GPT-NeoX: LayerNorm families")."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

# GPT-2: 4 heads of 12 (d_model 48); an eps large enough that leaving σ's eps out of a feature would show.
TINY_GPT2 = dict(vocab_size=64, n_embd=48, n_layer=3, n_head=4, n_positions=64, layer_norm_epsilon=0.1,
                 bos_token_id=0, eos_token_id=1, tie_word_embeddings=False)
# GPT-NeoX (Pythia's layout): 4 heads of 12, partial rotary over the first 6 dimensions, parallel residual.
TINY_NEOX = dict(vocab_size=64, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                 rotary_pct=0.5, rotary_emb_base=100, layer_norm_eps=0.1, max_position_embeddings=512,
                 use_parallel_residual=True, bos_token_id=0, eos_token_id=1)
FAMILIES = ("gpt2", "gpt_neox")


def randomise(model, seed: int):
    """Every parameter random; norms' weights around 1, every bias (norms' and projections') non-zero."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm = ".ln_" in name or "layernorm" in name or "layer_norm" in name or name.startswith("transformer.ln_f")
            p.copy_(torch.randn_like(p) * (0.5 if norm else 0.2) + (1.0 if norm and name.endswith("weight") else 0.0))
    return model


def make_tiny(family: str, path: Path, seed: int = 0, **over):
    """A tiny random GPT2LMHeadModel or GPTNeoXForCausalLM saved by save_pretrained (GPT-2 sharded)."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    if family == "gpt2":
        cfg = GPT2Config(**(TINY_GPT2 | over))
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = GPTNeoXConfig(**(TINY_NEOX | over))
        model = GPTNeoXForCausalLM(cfg)
    cfg._attn_implementation = "eager"
    randomise(model.eval(), seed)
    model.save_pretrained(path, max_shard_size="20KB" if family == "gpt2" else "1GB", safe_serialization=True)
    return model


def parts(model):
    """(decoder layers, attention attribute name, rotary embedding or None)."""
    if hasattr(model, "transformer"):
        return model.transformer.h, "attn", None
    return model.gpt_neox.layers, "attention", model.gpt_neox.rotary_emb


def centre_writing_weights(model):
    """A copy processed as TransformerLens' center_writing_weights does (weight_processing.py): the token and
    position embeddings and every matrix and bias writing into the residual (attention c_proj, MLP c_proj) centred
    along d_model. GPT-2 only (Conv1D keeps [in, out]: d_model is the last axis)."""
    c = copy.deepcopy(model)
    t = c.transformer
    with torch.no_grad():
        for w in (t.wte.weight, t.wpe.weight):
            w.sub_(w.mean(-1, keepdim=True))
        for block in t.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.sub_(proj.weight.mean(-1, keepdim=True))
                proj.bias.sub_(proj.bias.mean())
    return c


def oracle(model, layer: int, X: np.ndarray, W_enc: np.ndarray | None = None, rope_offset: int = 0) -> dict:
    """Every QK and OV value of `layer` from transformers' own LayerNorm, attention (projections with their biases,
    rotary, eager attention) and output projection.

    qk[h]: [n_query, n_key]; ov[h]: [n_value, n_out] into a residual SAE W_enc [d_model, n_out]. A feature's part
    of a query is transformers' query of the residual d_i minus its query of a zero residual (LayerNorm maps 0 to
    its bias, so that is the norm's and the projection's biases, at the same position), times σ(d_i) =
    sqrt(var(d_i) + eps), the LayerNorm's denominator; likewise keys, values and the head's write through c_proj /
    dense (whose bias cancels). Nothing here centres anything: the centring is transformers' LayerNorm's.
    """
    from transformers import AttentionInterface

    layers, attr, rotary = parts(model)
    block = layers[layer]
    attn = getattr(block, attr)
    ln = block.ln_1 if hasattr(block, "ln_1") else block.input_layernorm
    eager = sys.modules[type(attn).__module__].eager_attention_forward
    got: dict = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        out, weights = eager(module, query, key, value, attention_mask, **kwargs)
        if got.get("keep") is not None:
            mask = torch.zeros(out.shape[2], dtype=out.dtype)
            mask[got["keep"]] = 1
            out = out * mask[:, None]
        got.update(q=query.detach(), k=key.detach())
        return out, weights

    AttentionInterface.register("featgraph_ln_oracle", capture)
    before = attn.config._attn_implementation
    attn.config._attn_implementation = "featgraph_ln_oracle"
    D = torch.from_numpy(X).float()
    X0 = torch.cat([D, torch.zeros(1, D.shape[1])])  # the last row: a zero residual
    n = X0.shape[0]
    sigma = torch.sqrt(D.var(-1, unbiased=False) + ln.eps)
    heads = attn.config.num_attention_heads
    out: dict = {}
    try:
        with torch.no_grad():
            h = ln(X0.expand(2, n, -1).contiguous())
            kw = {}
            if rotary is not None:  # queries at position Δ (batch 0), keys at 0 (batch 1)
                kw["position_embeddings"] = rotary(h, torch.tensor([[rope_offset] * n, [0] * n]))
            elif rope_offset:
                raise ValueError("GPT-2 has no rotary embedding")
            attn(h, attention_mask=None, **kw)
            q = (got["q"][0, :, :-1] - got["q"][0, :, -1:]) * sigma[None, :, None]
            k = (got["k"][1, :, :-1] - got["k"][1, :, -1:]) * sigma[None, :, None]
            out["qk"] = [q[hh] @ k[hh].T for hh in range(heads)]
            if W_enc is not None:
                enc = torch.from_numpy(W_enc).float()
                h1 = ln(X0[:, None, :])  # one-token sequences: each head's output is its value
                kw = {} if rotary is None else {"position_embeddings": rotary(h1, torch.zeros(n, 1, dtype=torch.long))}
                ov = []
                for hh in range(heads):
                    got["keep"] = hh
                    y = attn(h1, attention_mask=None, **kw)[0][:, 0]  # [n, d_model]: head hh through c_proj, + bias
                    ov.append(((y[:-1] - y[-1:]) * sigma[:, None]) @ enc)
                got["keep"] = None
                out["ov"] = ov
    finally:
        attn.config._attn_implementation = before
    return out
