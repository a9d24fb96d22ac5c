"""The post's QK and OV circuits as low-rank factors (pure maths, no I/O).

Every (head, circuit) matrix is `S = src @ dst.T` with rows = source features
(docs/maths.md: key for QK, value for OV) and columns = destination features (query
for QK, output for OV), both factors [n, d_head]. Nothing here builds an
n_src × n_dst matrix; `featgraph.select` walks S in blocks.

Definitions (docs/maths.md), with g_in = 1 + input_layernorm.weight and
g_post = 1 + post_attention_layernorm.weight:
    q_i = W_Q[h] (g_in ⊙ d_i),  k_j, v_j likewise with kv head h // (n_heads / n_kv_heads)
    p_k = W_O[:, h]ᵀ (g_post ⊙ e_k)
    QK_h(i, j) = q_i · k_j       OV_h(j, k) = v_j · p_k
Raw values by default: no 1/√query_pre_attn_scalar, no softcap, no 1/RMS factors, RoPE offset 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from featgraph.weights import AttentionWeights


@dataclass(frozen=True)
class Conventions:
    """How the raw circuit values are defined; every field goes into the manifest."""

    attn_scale: bool = False
    rope_offset: int = 0

    def describe(self, query_pre_attn_scalar: float, rope_theta: float) -> dict:
        return {
            "norm_gain": "1 + weight (Gemma RMSNorm)",
            "rms_factors": "omitted (weights-only: 1/RMS of the residual is not applied)",
            "gqa": "query head h uses key/value head h // (n_heads / n_kv_heads)",
            "qk": "QK(query i, key j) = (R(rope_offset) q_i) · k_j",
            "ov": "OV(value j, output k) = v_j · p_k",
            "attn_scale": (1 / math.sqrt(query_pre_attn_scalar)) if self.attn_scale else None,
            "softcap": None,
            "rope": {"convention": "half-split rotate_half", "theta": rope_theta, "offset": self.rope_offset},
            "edge_direction": "QK: key -> query; OV: value -> output",
        }


@dataclass(frozen=True)
class Factors:
    """One head's circuit as `S = src @ dst.T`; src: [n_src, d_head], dst: [n_dst, d_head]."""

    circuit: str
    head: int
    kv_head: int
    src: torch.Tensor
    dst: torch.Tensor


def rope_rotate(x: torch.Tensor, offset: float, theta: float) -> torch.Tensor:
    """R(offset) x for x [..., d_head], half-split pairing (dimension i with i + d_head/2)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.cat([inv_freq, inv_freq]) * float(offset)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def head_rows(W: torch.Tensor, head: int, d_head: int) -> torch.Tensor:
    return W[head * d_head : (head + 1) * d_head]


def circuit_factors(
    attn: AttentionWeights,
    W_dec_in: torch.Tensor,
    W_enc_out: torch.Tensor | None,
    head: int,
    circuit: str,
    conv: Conventions = Conventions(),
) -> Factors:
    """Factors of head `head`'s QK or OV matrix.

    W_dec_in: [n_in, d_model] input SAE decoder rows; W_enc_out: [d_model, n_out]
    output SAE encoder (needed for OV only).
    """
    c = attn.config
    kv = c.kv_head(head)
    # Fold the gains into the (small) weight slices rather than copying the
    # (large) SAE matrices: W (g ⊙ d) = (W ⊙ g) d.
    g_in = 1.0 + attn.ln_in
    if circuit == "QK":
        q = W_dec_in @ (head_rows(attn.W_Q, head, c.d_head) * g_in).T
        k = W_dec_in @ (head_rows(attn.W_K, kv, c.d_head) * g_in).T
        if conv.rope_offset:
            q = rope_rotate(q, conv.rope_offset, c.rope_theta)
        if conv.attn_scale:
            q = q / math.sqrt(c.query_pre_attn_scalar)
        return Factors("QK", head, kv, src=k, dst=q)
    if circuit == "OV":
        if W_enc_out is None:
            raise ValueError("OV factors need the output SAE's encoder")
        v = W_dec_in @ (head_rows(attn.W_V, kv, c.d_head) * g_in).T
        w_o = head_rows(attn.W_O.T, head, c.d_head) * (1.0 + attn.ln_post)  # [d_head, d_model]
        p = W_enc_out.T @ w_o.T  # [n_out, d_head]
        return Factors("OV", head, kv, src=v, dst=p)
    raise ValueError(circuit)


def moments(src: torch.Tensor, dst: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of all n_src·n_dst entries of src @ dst.T, exactly.

    Σ_ij s_i·d_j = (Σ s_i)·(Σ d_j) and Σ_ij (s_i·d_j)² = ⟨SᵀS, DᵀD⟩_F, in float64.
    """
    s, d = src.double(), dst.double()
    n = s.shape[0] * d.shape[0]
    mean = float(s.sum(0) @ d.sum(0)) / n
    sq = float(((s.T @ s) * (d.T @ d)).sum()) / n
    return mean, math.sqrt(max(sq - mean * mean, 0.0))
