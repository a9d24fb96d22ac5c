"""The exact feature decomposition of one attention layer on real text (pure maths: tensors in, tensors and DataFrames out).

docs/maths.md, "Validation on prompts". For one prompt, x_t is the residual stream entering the layer at
position t, r_t = rms(x_t), a_t the input SAE's JumpReLU activations, ε_t = x_t − (a_t W_dec + b_dec).
Head h's logit before soft-capping and masking is

    ℓ_h(t, s) = scale / (ρ_t σ_s) · (R(t) Q x_t) · (R(s) K x_s),   Q x = g_q ⊙ W_Q[h] (g_in ⊙ x), K likewise,

with ρ_t = σ_t = r_t for Gemma 2 (g_q = g_k = 1), and for Gemma 3's query/key norms the per-head
ρ_t = r_t · sqrt(mean((W_Q[h] n_t)²) + eps), n_t = g_in ⊙ x_t / r_t (σ_s likewise with W_K). Q, K are linear,
so the logit splits exactly into features (u_t = Σ_i a_ti q_i, w_s = Σ_j a_sj k_j with q_i = Q d_i), the
decoder bias b_dec and the error ε. Features are summed per position before pairs are formed, query positions
are walked in blocks, and nothing of shape [T, T, d_sae] (let alone d_sae²) is built. Everything is float64;
rotations are the model's own cos/sin at positions 0..T−1 (rotate_half pairing).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

Tensor = torch.Tensor

# The predictions scored against the real values, in the order the docs and tables give them.
PREDICTIONS = ("selected", "active_d0", "active", "active_bias", "exact")


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """R(pos) x for x [..., T, d_head] with the model's cos, sin [T, r] (half-split, rotate_half over the first r
    dimensions; r < d_head: GPT-NeoX's partial rotary, the rest unrotated)."""
    r = cos.shape[-1]
    xr = x[..., :r]
    x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]
    out = xr * cos + torch.cat([-x2, x1], dim=-1) * sin
    return out if r == x.shape[-1] else torch.cat([out, x[..., r:]], dim=-1)


def _half(x: Tensor, r: int) -> Tensor:
    """rotate_half over the first r dimensions of x [..., d], zeros on the rest."""
    x1, x2 = x[..., : r // 2], x[..., r // 2 : r]
    return torch.cat([-x2, x1, torch.zeros_like(x[..., r:])], dim=-1)


@dataclass(frozen=True)
class JumpReLU:
    """The input SAE: W_enc [d_model, d_sae], b_enc, threshold [d_sae], W_dec [d_sae, d_model], b_dec [d_model]."""

    W_enc: Tensor
    b_enc: Tensor
    threshold: Tensor
    W_dec: Tensor
    b_dec: Tensor

    def encode(self, x: Tensor) -> Tensor:
        pre = x @ self.W_enc + self.b_enc
        return torch.relu(pre) * (pre > self.threshold)

    def decode(self, a: Tensor) -> Tensor:
        return a @ self.W_dec + self.b_dec


@dataclass(frozen=True)
class Stream:
    """One prompt's residual stream entering the layer, through the input SAE.

    x, err: [T, d_model]; a: [T, d_sae]; rms: [T]; cos, sin: [T, d_head], the rotation at positions 0..T−1;
    window: the layer's sliding window (a query at t sees keys t − window < s ≤ t), None for full attention.
    rms: what the input norm divides by (RMSNorm: the RMS of x; LayerNorm: σ_t, the RMS of the centred x).
    """

    x: Tensor
    a: Tensor
    err: Tensor
    rms: Tensor
    cos: Tensor
    sin: Tensor
    window: int | None = None

    @property
    def T(self) -> int:
        return int(self.x.shape[0])

    def attended(self, t0: int, t1: int) -> Tensor:
        """[t1 − t0, t1] bool: which keys s < t1 the queries t0 ≤ t < t1 attend (transformers' causal mask and
        sliding_window_overlay: s ≤ t and s > t − window)."""
        pos = torch.arange(t1, device=self.x.device)
        dist = pos[t0:t1, None] - pos[None, :]
        keep = dist >= 0
        return keep & (dist < self.window) if self.window else keep


def stream(x: Tensor, sae: JumpReLU, eps: float, cos: Tensor, sin: Tensor, window: int | None = None,
           layer_norm: bool = False, centred: bool = False) -> Stream:
    """Encode `x` [T, d_model] (float64) with the SAE; keep its error and the RMS the input norm divides by.

    layer_norm: the input norm is a LayerNorm (it divides by σ_t = sqrt(mean((C x_t)²) + eps), C the mean-centring).
    centred: the SAE reads TransformerLens' centred residual C x_t (docs/maths.md), so C x_t is what is encoded and
    split; the LayerNorm reads C x_t as it reads x_t."""
    x = x.double()
    c = x - x.mean(-1, keepdim=True)
    if centred:
        x = c
    a = sae.encode(x)
    rms = torch.sqrt((c if layer_norm else x).pow(2).mean(-1) + eps)
    return Stream(x, a, x - sae.decode(a), rms, cos.double(), sin.double(), window)


@dataclass(frozen=True)
class QKNorm:
    """Gemma 3's per-head query/key RMSNorms, for the logit's denominators.

    Nq, Nk: [d_head, d_model], the projections the norms read (x ↦ W_Q[h] (g_in ⊙ x), without the norms' gain);
    eps: the norms' eps (config rms_norm_eps), used exactly as transformers uses it.
    """

    Nq: Tensor
    Nk: Tensor
    eps: float


@dataclass(frozen=True)
class QKHead:
    """One head's query/key side, float64.

    Wq, Wk: [d_head, d_model], gains folded in (x ↦ g_q ⊙ W_Q[h] (g_in ⊙ x); g_q = 1 without query norms);
    q_feat, k_feat: [d_sae, d_head], the features through them, Wq d_i and Wk d_j at offset 0 (Gemma 2: the
    run's factors; Gemma 3: the run's normalised factors times rms(W_Q[h] (g_in ⊙ d_i))); q_run: q_feat at the
    run's rope offset (q_feat itself when 0); q_bias, k_bias: [d_head], b_dec through Wq, Wk; scale:
    query_pre_attn_scalar^-1/2. Selected edges: sel_q (query index), sel_k (key index), sel_w [n_edges], their
    weights in the same raw bilinear form (q_run[i]·k_feat[j], no scale). norm: the query/key norms (Gemma 3).
    q_shift, k_shift: [d_head], the part of the head's query/key that does not scale with the residual (the
    projection biases b_Q[h], b_K[kv]: q_t = Q x_t / ρ_t + q_shift), None for none; the bias term at t carries
    ρ_t·q_shift (Q b_dec + ρ_t q_shift is the numerator's non-feature, non-error part).
    """

    head: int
    Wq: Tensor
    Wk: Tensor
    q_feat: Tensor
    k_feat: Tensor
    q_run: Tensor
    q_bias: Tensor
    k_bias: Tensor
    scale: float
    sel_q: Tensor
    sel_k: Tensor
    sel_w: Tensor
    norm: QKNorm | None = None
    q_shift: Tensor | None = None
    k_shift: Tensor | None = None


def qk_denominators(st: Stream, hd: QKHead) -> tuple[Tensor, Tensor]:
    """ρ_t, σ_s [T]: the logit is scale · (R(t) Q x_t)·(R(s) K x_s) / (ρ_t σ_s).

    Without query/key norms both are the input norm's r_t. With them (Gemma 3), transformers divides
    W_Q[h] n_t (n_t = g_in ⊙ x_t / r_t) by sqrt(mean((W_Q[h] n_t)²) + eps) after the input norm's r_t, so
    ρ_t = r_t · sqrt(mean((W_Q[h] n_t)²) + eps); σ_s likewise with W_K.
    """
    if hd.norm is None:
        return st.rms, st.rms
    n = hd.norm

    def den(N: Tensor) -> Tensor:
        u = (st.x @ N.T) / st.rms[:, None]
        return st.rms * torch.sqrt(u.pow(2).mean(-1) + n.eps)

    return den(n.Nq), den(n.Nk)


@dataclass(frozen=True)
class OVHead:
    """One head's value/output side, float64.

    Wv: [d_head, d_model], gain folded in; v_feat: [d_sae, d_head] the run's value factors; v_bias: [d_head];
    p: [n_scored, d_head], the pre-output vectors p_k of the output features scored (a residual SAE:
    W_O[:, h]ᵀ (g_post ⊙ e_k); an attention-output SAE: its encoder's slice W_enc[h·d_head:(h+1)·d_head, k]);
    sel_v (value index), sel_k (row of p), sel_w (raw OV), [n_edges]. v_shift: [d_head], the part of the value
    that does not scale with the residual (the projection bias b_V[kv]), None for none. norm: Gemma 4's gainless
    value RMSNorm ([d_head, d_model] projection it reads, and its eps): values are Wv x_s / σ_s with the
    per-position σ_s of `value_denominators` instead of the input norm's r_s.
    """

    head: int
    Wv: Tensor
    v_feat: Tensor
    v_bias: Tensor
    p: Tensor
    sel_v: Tensor
    sel_k: Tensor
    sel_w: Tensor
    v_shift: Tensor | None = None
    norm: tuple[Tensor, float] | None = None


def value_denominators(st: Stream, hd: OVHead) -> Tensor:
    """σ_s [T]: the head's value at s is Wv x_s / σ_s. Without a value norm σ_s = r_s (the input norm's RMS); with
    Gemma 4's v_norm, transformers divides Nv n_s (n_s = g_in ⊙ x_s / r_s) by sqrt(mean((Nv n_s)²) + eps), so
    σ_s = r_s · sqrt(mean((Nv n_s)²) + eps)."""
    if hd.norm is None:
        return st.rms
    Nv, eps = hd.norm
    u = (st.x @ Nv.T) / st.rms[:, None]
    return st.rms * torch.sqrt(u.pow(2).mean(-1) + eps)


def _selected_map(rows: Tensor, cols: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The selected edges as a sparse [rows used, columns used] matrix, with the indices of both."""
    r_used, r = torch.unique(rows, return_inverse=True)
    c_used, c = torch.unique(cols, return_inverse=True)
    m = torch.sparse_coo_tensor(torch.stack([r, c]), w, (len(r_used), len(c_used)), check_invariants=False).coalesce()
    return m, r_used, c_used


def _times_sparse(a: Tensor, m: Tensor) -> Tensor:
    """a @ mᵀ for dense a [T, n] and sparse m [k, n], as (m aᵀ)ᵀ (torch multiplies sparse on the left)."""
    return torch.sparse.mm(m, a.T).T


def _blocks(T: int, block: int) -> Iterator[tuple[int, int]]:
    for t0 in range(0, T, max(1, block)):
        yield t0, min(T, t0 + max(1, block))


def qk_blocks(st: Stream, hd: QKHead, q: Tensor, k: Tensor, block: int = 256) -> Iterator[dict[str, Tensor]]:
    """The real logits and their parts over causal pairs s ≤ t, one block of query positions at a time.

    q, k: [T, d_head], the head's rotated query and key states as the model computed them. Yields flat
    tensors over the block's attended pairs (t-major; st.attended): t, s, target (scale·q_t·k_s), selected
    (run's edges at its offset), active_d0 (all active pairs at the run's offset), active (all active pairs,
    true rotation), bias, error; active + bias + error is the target up to rounding.
    """
    a = st.a
    dq, dk = qk_denominators(st, hd)
    u, w = a @ hd.q_feat, a @ hd.k_feat
    u_run = u if hd.q_run is hd.q_feat else a @ hd.q_run
    qe, ke = st.err @ hd.Wq.T, st.err @ hd.Wk.T
    ones = torch.ones(st.T, 1, dtype=a.dtype, device=a.device)
    Ru, Rw = rotate(u, st.cos, st.sin), rotate(w, st.cos, st.sin)
    q_b = ones * hd.q_bias + (0 if hd.q_shift is None else dq[:, None] * hd.q_shift)
    k_b = ones * hd.k_bias + (0 if hd.k_shift is None else dk[:, None] * hd.k_shift)
    Rqb, Rkb = rotate(q_b, st.cos, st.sin), rotate(k_b, st.cos, st.sin)
    Rqe, Rke = rotate(qe, st.cos, st.sin), rotate(ke, st.cos, st.sin)
    key_full = Rw + Rkb + Rke
    sel, kcols, qcols = _selected_map(hd.sel_k, hd.sel_q, hd.sel_w)
    aW, a_k = _times_sparse(a[:, qcols], sel), a[:, kcols]  # aW[t, j] = Σ_i a_ti w_ij over the keys used
    for t0, t1 in _blocks(st.T, block):
        causal = st.attended(t0, t1)
        f = hd.scale / (dq[t0:t1, None] * dk[None, :t1])
        parts = {
            "target": hd.scale * (q[t0:t1].double() @ k[:t1].double().T),
            "selected": f * (aW[t0:t1] @ a_k[:t1].T),
            "active_d0": f * (u_run[t0:t1] @ w[:t1].T),
            "active": f * (Ru[t0:t1] @ Rw[:t1].T),
            "bias": f * (Ru[t0:t1] @ Rkb[:t1].T + Rqb[t0:t1] @ (Rw + Rkb)[:t1].T),
            "error": f * (Rqe[t0:t1] @ key_full[:t1].T + (Ru + Rqb)[t0:t1] @ Rke[:t1].T),
        }
        tt, ss = torch.nonzero(causal, as_tuple=True)
        yield {"t": tt + t0, "s": ss} | {name: m[causal] for name, m in parts.items()}


def output_rms(out: Tensor, W_O: Tensor, eps: float) -> Tensor:
    """RMS of the whole attention output o_proj(out) at each position: out [T, n_heads, d_head], W_O [d_model, n_heads·d_head].

    What the post-attention norm divides by before a residual SAE reads the layer's output; an attention-output
    SAE reads `out` itself (no norm), for which ov_blocks and ov_edge_usage take ones instead."""
    y = out.double().reshape(out.shape[0], -1) @ W_O.double().T
    return torch.sqrt(y.pow(2).mean(-1) + eps)


def ov_blocks(st: Stream, hd: OVHead, A: Tensor, o: Tensor, rms_o: Tensor, block: int = 256) -> Iterator[dict[str, Tensor]]:
    """The head's real contribution to each scored output feature's pre-activation, and its parts.

    A: [T, T] the head's attention pattern; o: [T, d_head] its output before o_proj; rms_o: [T] (output_rms for a
    residual SAE, ones for an attention-output SAE). Yields flat tensors over (t, scored feature) pairs: t,
    k (row of hd.p), target (p_k·o_t / rms_o,t),
    selected, active_d0 = active (values carry no position), bias, error.
    """
    a = st.a
    P = hd.p.T
    feat = (a @ hd.v_feat) @ P
    err = (st.err @ hd.Wv.T) @ P
    bias = hd.v_bias @ P
    sel, kcols, vcols = _selected_map(hd.sel_k, hd.sel_v, hd.sel_w)
    sel_k = torch.zeros(st.T, hd.p.shape[0], dtype=a.dtype, device=a.device)
    sel_k[:, kcols] = _times_sparse(a[:, vcols], sel)  # [T, n_scored]
    n_k = hd.p.shape[0]
    den = value_denominators(st, hd)
    shift = None if hd.v_shift is None else hd.v_shift @ P  # [n_scored]
    for t0, t1 in _blocks(st.T, block):
        Ar = A[t0:t1, :t1].double() / rms_o[t0:t1, None]
        At = Ar / den[None, :t1]
        active = At @ feat[:t1]
        parts = {
            "target": (o[t0:t1].double() @ P) / rms_o[t0:t1, None],
            "selected": At @ sel_k[:t1],
            "active_d0": active,
            "active": active,
            "bias": At.sum(1, keepdim=True) * bias[None, :] + (0 if shift is None else Ar.sum(1, keepdim=True) * shift[None, :]),
            "error": At @ err[:t1],
        }
        tt = torch.arange(t0, t1, device=a.device).repeat_interleave(n_k)
        kk = torch.arange(n_k, device=a.device).repeat(t1 - t0)
        yield {"t": tt, "k": kk} | {name: m.reshape(-1) for name, m in parts.items()}


# ---------------------------------------------------------------- edge usage

def qk_edge_usage(st: Stream, hd: QKHead, budget: int = 1 << 22) -> tuple[Tensor, Tensor, Tensor]:
    """Per selected edge: attended pairs s ≤ t where both features are active, and the sum and sum of |·| of its
    contribution scale · a_ti a_sj (R(t−s) q_i)·k_j / (ρ_t σ_s) to the logit over those pairs (q_i, k_j: the
    head's q_feat, k_feat; ρ, σ: qk_denominators).

    budget: elements of one [query block, keys, edges] slab.
    """
    E = int(hd.sel_q.shape[0])
    dev, T = st.a.device, st.T
    count = torch.zeros(E, dtype=torch.float64, device=dev)
    total, total_abs = count.clone(), count.clone()
    if E == 0:
        return count, total, total_abs
    dq, dk = qk_denominators(st, hd)
    Qe, Ke = st.a[:, hd.sel_q] / dq[:, None], st.a[:, hd.sel_k] / dk[:, None]  # [T, E]
    # count: Σ_t [a_ti > 0] · #{s attended from t : a_sj > 0}, from running counts of active keys
    seen = torch.cumsum((Ke != 0).double(), 0)
    if st.window and st.window < T:
        seen[st.window :] -= seen[: T - st.window].clone()
    count = ((Qe != 0).double() * seen).sum(0)
    # (R(Δ) q)·k = cos(Δ)·(q ⊙ k) + sin(Δ)·(rotate_half(q) ⊙ k), at every distance Δ = 0..T−1.
    qs, ks = hd.q_feat[hd.sel_q], hd.k_feat[hd.sel_k]
    r = st.cos.shape[-1]  # rotating dimensions; the rest (GPT-NeoX's partial rotary) count at every distance
    table = hd.scale * (st.cos @ (qs[:, :r] * ks[:, :r]).T + st.sin @ (_half(qs, r)[:, :r] * ks[:, :r]).T
                        + (qs[:, r:] * ks[:, r:]).sum(-1)[None, :])  # [T (Δ), E]
    live = torch.nonzero((Qe != 0).any(0) & (Ke != 0).any(0)).flatten()
    chunk = max(1, min(len(live), 256))
    for c0 in range(0, len(live), chunk):
        e = live[c0 : c0 + chunk]
        q_e, k_e, tab_e = Qe[:, e], Ke[:, e], table[:, e]
        for t0, t1 in _blocks(T, budget // (T * len(e))):
            pos = torch.arange(t1, device=dev)
            dist = pos[t0:t1, None] - pos[None, :]
            keep = st.attended(t0, t1).double()
            c = q_e[t0:t1, None, :] * k_e[None, :t1, :] * tab_e[dist.clamp(min=0)] * keep[..., None]
            total[e] += c.sum((0, 1))
            total_abs[e] += c.abs().sum((0, 1))
    return count, total, total_abs


def ov_edge_usage(st: Stream, hd: OVHead, A: Tensor, rms_o: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per selected edge j → k: pairs s ≤ t with A(t, s) > 0 and a_sj > 0, and the sum and sum of |·| of
    its contribution A(t, s) a_sj OV(j, k) / (r_s rms_o,t) to feature k's pre-activation (rms_o: as ov_blocks).

    Activations, attention and RMS are ≥ 0, so each edge's contributions share the sign of its weight.
    """
    A = A.double()
    V = st.a[:, hd.sel_v]  # [T, E]
    weight_to_key = (A / rms_o[:, None]).sum(0) / value_denominators(st, hd)  # Σ_t A(t, s) / (rms_o,t σ_s), per key position s
    total = hd.sel_w * (weight_to_key @ V)
    count = (A > 0).double().sum(0) @ (V != 0).double()
    return count, total, total.abs()


def usage_frame(rank: np.ndarray, count: np.ndarray, total: np.ndarray, total_abs: np.ndarray) -> pd.DataFrame:
    """Edge usage beside the weight rank: pairs_active, mean_contribution (over active pairs), totals,
    realised_rank (1 = largest total |contribution|; ties and unused edges by weight rank)."""
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
    order = np.lexsort((np.asarray(rank), -np.asarray(total_abs)))
    realised = np.empty(len(order), dtype=np.int64)
    realised[order] = np.arange(1, len(order) + 1)
    return pd.DataFrame({"pairs_active": count.astype(np.int64), "mean_contribution": mean, "total_contribution": total,
                         "total_abs_contribution": total_abs, "realised_rank": realised})


# ---------------------------------------------------------------- scores over all pairs of all prompts

class _Moments:
    """Count, mean and sum of squared deviations, merged block by block (Chan et al.), in float64."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: Tensor) -> None:
        n = int(x.numel())
        if n == 0:
            return
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        delta, tot = mean - self.mean, self.n + n
        self.mean += delta * n / tot
        self.m2 += m2 + delta * delta * self.n * n / tot
        self.n = tot

    @property
    def var(self) -> float:
        return self.m2 / self.n if self.n else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ: Pearson's r of the ranks, ties at their average rank; NaN when either side is constant."""
    rx = pd.Series(x).rank(method="average").to_numpy()
    ry = pd.Series(y).rank(method="average").to_numpy()
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


class Scores:
    """One (head, circuit)'s real values and predictions over all pairs seen, for ρ and variance shares.

    The variance share of a prediction p is 1 − Var(target − p) / Var(target) over all pairs; the moments are
    accumulated in float64, the values kept for the ranks in float32 (ranks need them all).
    """

    def __init__(self) -> None:
        self.target = _Moments()
        self.resid = {p: _Moments() for p in PREDICTIONS}
        self.max_abs_error = 0.0
        self._values: dict[str, list[np.ndarray]] = {k: [] for k in ("target", *PREDICTIONS[:-1])}

    def add(self, parts: dict[str, Tensor]) -> None:
        y = parts["target"]
        preds = {"selected": parts["selected"], "active_d0": parts["active_d0"], "active": parts["active"],
                 "active_bias": parts["active"] + parts["bias"]}
        preds["exact"] = preds["active_bias"] + parts["error"]
        self.target.add(y)
        for name, p in preds.items():
            self.resid[name].add(y - p)
        if y.numel():
            self.max_abs_error = max(self.max_abs_error, float((y - preds["exact"]).abs().max()))
        for name in self._values:
            self._values[name].append((y if name == "target" else preds[name]).float().cpu().numpy())

    def values(self, name: str) -> np.ndarray:
        return np.concatenate(self._values[name]) if self._values[name] else np.zeros(0, np.float32)

    def summary(self) -> dict[str, float]:
        y = self.values("target")
        out: dict[str, float] = {"pairs": self.target.n, "target_std": float(np.sqrt(self.target.var))}
        for name in PREDICTIONS[:-1]:
            out[f"rho_{name}"] = spearman(self.values(name), y)
        for name in PREDICTIONS:
            v = self.target.var
            out[f"r2_{name}"] = 1.0 - self.resid[name].var / v if v > 0 else float("nan")
        out["max_abs_error"] = self.max_abs_error
        return out


# ---------------------------------------------------------------- one logit over feature pairs (QK attribution)

@dataclass(frozen=True)
class QKPairs:
    """Head hd's logit ℓ(t, s) at one query position t and key position s, split over feature pairs.

    q_index [n_q], k_index [n_k]: the features active at t and at s; pair [n_q, n_k]: scale · a_ti a_sj
    (R(t) q_i)·(R(s) k_j) / (ρ_t σ_s); q_marginal [n_q]: each query feature against the whole key state,
    scale · a_ti (R(t) q_i)·k_s / (ρ_t σ_s); k_marginal [n_k] likewise against the whole query state; rest: the
    parts with the decoder bias or the SAE error on either side (`bias`, `error`, as in qk_blocks). The pairs
    and the rest add up to `target`, the logit the model computed (scale · q_t·k_s from its own states).
    """

    q_index: Tensor
    k_index: Tensor
    pair: Tensor
    q_marginal: Tensor
    k_marginal: Tensor
    bias: float
    error: float
    target: float


def qk_pairs(st: Stream, hd: QKHead, q: Tensor, k: Tensor, t: int, s: int) -> QKPairs:
    """The QK attribution of head hd's logit at (t, s) (docs/maths.md, "QK attribution"); q, k [T, d_head]: the
    head's rotated query and key states as the model computed them (for `target` only)."""
    dq, dk = qk_denominators(st, hd)
    f = hd.scale / (dq[t] * dk[s])

    def at(x: Tensor, p: int) -> Tensor:  # R(p) x for rows x [n, d_head]
        return rotate(x, st.cos[p], st.sin[p])

    qi = torch.nonzero(st.a[t]).flatten()
    kj = torch.nonzero(st.a[s]).flatten()
    u = at(st.a[t, qi, None] * hd.q_feat[qi], t)  # [n_q, d_head]
    w = at(st.a[s, kj, None] * hd.k_feat[kj], s)  # [n_k, d_head]
    qb, kb = at(hd.q_bias[None], t)[0], at(hd.k_bias[None], s)[0]
    qe, ke = at((st.err[t] @ hd.Wq.T)[None], t)[0], at((st.err[s] @ hd.Wk.T)[None], s)[0]
    key, query = w.sum(0) + kb + ke, u.sum(0) + qb + qe
    pair = f * (u @ w.T)
    bias = f * (u.sum(0) @ kb + qb @ (w.sum(0) + kb))
    error = f * (qe @ key + (u.sum(0) + qb) @ ke)
    return QKPairs(qi, kj, pair, f * (u @ key), f * (w @ query), float(bias), float(error),
                   float(hd.scale * (q[t].double() @ k[s].double())))
