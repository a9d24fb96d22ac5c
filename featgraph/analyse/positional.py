"""The rotary positional profile (pure maths over the layer's weights).

Positional profile (the post's "decoder bias vs rotary embedding" plot, with the
correct half-split RoPE): per head, s_h(Δ) = (R(Δ) q)·k for the query of one
vector and the key of another (by default both the input SAE's b_dec), in the
raw units of QK edge weights. R is the layer's own rotation: Gemma 3's local
(sliding-window) and global layers have different bases.
"""

from __future__ import annotations

import numpy as np
import torch

from featgraph.core.circuits import circuit_factors, rope_rotate
from featgraph.core.weights import AttentionWeights


def distances(max_distance: int = 8192, n: int = 64) -> np.ndarray:
    """0 and ~n log-spaced integer distances from 1 to max_distance (unique, sorted)."""
    d = np.unique(np.round(np.logspace(0, np.log10(max_distance), n)).astype(np.int64))
    return np.concatenate([[0], d])


def profile(attn: AttentionWeights, query_vec: torch.Tensor, key_vec: torch.Tensor, dist: np.ndarray) -> np.ndarray:
    """[n_heads, len(dist)]: (R(Δ) q_h)·k_h for residual directions query_vec, key_vec [d_model], R the layer's rotation."""
    c = attn.config
    out = np.zeros((c.n_heads, len(dist)))
    for h in range(c.n_heads):
        f_k = circuit_factors(attn, key_vec[None, :].float(), None, h, "QK")
        f_q = circuit_factors(attn, query_vec[None, :].float(), None, h, "QK")
        q = f_q.dst.double()[0]
        k = f_k.src.double()[0]
        qs = torch.stack([rope_rotate(q, float(x), attn.rope) for x in dist])
        out[h] = (qs @ k).numpy()
    return out
