"""The post's QK and OV circuits as low-rank factors (pure maths, no I/O).

Every (head, circuit) matrix is `S = src @ dst.T` with rows = source features
(docs/maths.md: key for QK, value for OV) and columns = destination features (query
for QK, output for OV), both factors [n, d_head]. Nothing here builds an
n_src × n_dst matrix; `featgraph.core.select` walks S in blocks.

Definitions (docs/maths.md), with g_in the input RMSNorm's gain (1 + w in Gemma 2/3, w in Llama, Mistral,
Qwen, Gemma 4) and g_post the post-attention norm's (families that have one on the attention output):
    q_i = W_Q[h] (g_in ⊙ d_i),  k_j, v_j likewise with kv head h // (n_heads / n_kv_heads)
    q_norm, k_norm (Gemma 3, Qwen3, Gemma 4): q_i = g_q ⊙ u_i / rms(u_i) with u_i = W_Q[h] (g_in ⊙ d_i), k_j likewise
    v_norm (Gemma 4): v_j = w_j / rms(w_j), w_j = W_V[kv] (g_in ⊙ d_j)  (W_V = W_K on layers without v_proj)
    p_k = s · W_O[:, h]ᵀ (g_post ⊙ e_k)                (residual output SAE; no g_post in Llama/Mistral/Qwen,
                                                         s = Gemma 4's layer_scalar, 1 elsewhere)
    p_k = W_enc[h·d_head:(h+1)·d_head, k]              (attention-output SAE: reads before o_proj)
    QK_h(i, j) = q_i · k_j       OV_h(j, k) = v_j · p_k
Raw values by default: no attention scale, no softcap, no 1/RMS factors, no biases, RoPE offset 0
(with the layer's own RoPE when it is not).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from featgraph import families
from featgraph.core import select
from featgraph.core.weights import AttentionWeights, ModelConfig, Rope
from featgraph.errors import BadInput, BadValue

OV_TARGETS = ("resid", "attn")  # what the OV destination SAE reads: the residual stream, or the heads' outputs
BASES = ("raw", "centred")  # the residual basis an SAE reads: transformers' own, or TransformerLens' centred one
OV_DEFINITIONS = {
    "resid_centred": "OV(value j, output k) = v_j · p_k, p_k = W_O[:, h]ᵀ C e_k, C = I − 11ᵀ/d_model (residual output "
                     "SAE reading TransformerLens' centred residual, center_writing_weights: the head's write is C W_O o)",
    "resid": "OV(value j, output k) = v_j · p_k, p_k = W_O[:, h]ᵀ (g_post ⊙ e_k) (residual output SAE)",
    "resid_raw": "OV(value j, output k) = v_j · p_k, p_k = W_O[:, h]ᵀ e_k (residual output SAE; the attention output "
                 "joins the residual stream without a norm: this family's post_attention_layernorm is the MLP's input norm)",
    "attn": "OV(value j, output k) = v_j · W_enc[h·d_head:(h+1)·d_head, k] (attention-output SAE reading the "
            "per-head outputs before o_proj: no o_proj, no post-attention norm)",
}
TRANSCODER_OV = ("OV(value j, output k) = v_j · p_k, p_k = W_O[:, h]ᵀ (g_post ⊙ e_k) as for a residual output SAE, with "
                 "e_k the transcoder's encoder column in residual units: the layer-l pre-MLP norm's linear part applied to "
                 "W_enc[:, k] (docs/maths.md, Transcoder features)")


def transcoder_encoder(W_enc: torch.Tensor, reads: str, fam: families.Family, mlp_norm: torch.Tensor | None = None) -> torch.Tensor:
    """A transcoder's encoder columns as residual-stream directions e_k, [d_model, d_sae] (docs/maths.md, "Transcoder
    features"): what the transcoder of layer l reads is R(x) for x = resid_mid_l, and W_enc[:, k]·R(x) = e_k·x / ρ(x):

    reads "mlp_input" (the pre-MLP norm's output): e_k = g ⊙ W_enc[:, k], g the norm's gain (fam.gain(mlp_norm));
    "normalised" (x / ρ(x), no gain): e_k = W_enc[:, k]; "resid_mid" (x itself): e_k = W_enc[:, k], ρ = 1.
    A LayerNorm family centres first, so its e_k (but for resid_mid) is centred: C (g ⊙ W_enc[:, k]), C = I − 11ᵀ/d.
    ρ(x), the stream's RMS (LayerNorm: standard deviation), is a residual factor left out like the others.
    """
    E = W_enc
    if reads == "mlp_input":
        if mlp_norm is None:
            raise BadInput("a transcoder reading the MLP's input needs its layer's pre-MLP norm weight")
        E = E * fam.gain(mlp_norm.to(E.dtype))[:, None]
    elif reads not in ("normalised", "resid_mid"):
        raise BadValue("reads", reads, "must be mlp_input, normalised or resid_mid")
    if fam.norm == "layer" and reads != "resid_mid":
        E = E - E.mean(0, keepdim=True)
    return E.contiguous()


def qk_norm_text(fam: families.Family) -> str:
    return ("q_i = g_q ⊙ u_i / rms(u_i), u_i = W_Q[h] (g_in ⊙ d_i), rms(u) = sqrt(mean(u²)) over d_head, "
            f"g_q = {fam.norm_gain().replace('weight', 'q_norm.weight')} (k_j likewise with k_norm): the norms' eps is "
            "omitted, so a feature's query does not depend on its scale")


V_NORM = ("v_j = w_j / rms(w_j), w_j = W_V[kv] (g_in ⊙ d_j), rms over d_head, no gain (v_norm), eps omitted; "
          "on a layer without v_proj W_V is k_proj's weight (values are the keys' projection before k_norm and RoPE)")


@dataclass(frozen=True)
class Conventions:
    """How the raw circuit values are defined; every field goes into the manifest."""

    attn_scale: bool = False
    rope_offset: int = 0
    ov_target: str = "resid"
    out_basis: str = "raw"

    def __post_init__(self) -> None:
        if self.ov_target not in OV_TARGETS:
            raise BadValue("ov_target", self.ov_target, "must be resid or attn")
        if self.out_basis not in BASES:
            raise BadValue("out_basis", self.out_basis, "must be raw or centred")

    def describe(self, config: ModelConfig, layer: int) -> dict:
        fam = families.of(config.model_type)
        rope = config.layer_rope(layer)
        rotation: dict[str, Any] = {"convention": "half-split rotate_half", "theta": rope.theta, "offset": self.rope_offset}
        if config.layer_types or rope != Rope(config.rope_theta):
            rotation |= rope.describe() | {"layer_type": config.layer_type(layer)}
        if rope.rotary_dims:
            rotation["convention"] = ("half-split rotate_half over the first rotary_dims dimensions of each head; the rest "
                                      "unrotated (GPT-NeoX partial rotary)")
        ov = OV_DEFINITIONS["resid" if fam.post_attn_norm else "resid_raw"] if self.ov_target == "resid" else OV_DEFINITIONS["attn"]
        if self.ov_target == "resid" and self.out_basis == "centred":
            ov = OV_DEFINITIONS["resid_centred"]
        if fam.norm == "layer":
            norm = (f"LayerNorm: the direction read is g ⊙ C d (C = I − 11ᵀ/d_model, the mean-centring; g = "
                    f"{fam.norm_gain()}); the norm's bias and the projections' biases are not features' terms")
        else:
            norm = f"{fam.norm_gain()} (RMSNorm)"
        out: dict[str, Any] = {
            "norm_gain": norm,
            "rms_factors": "omitted (weights-only: 1/RMS of the residual is not applied)",
            "gqa": "query head h uses key/value head h // (n_heads / n_kv_heads)",
            "qk": "QK(query i, key j) = (R(rope_offset) q_i) · k_j" if fam.rotary else
                  "QK(query i, key j) = q_i · k_j (no rotary: positions are learned vectors in the residual stream)",
            "ov": ov,
            "ov_target": self.ov_target,
            "attn_scale": (1 / math.sqrt(config.query_pre_attn_scalar)) if self.attn_scale else None,
            "softcap": None,
            "rope": rotation if fam.rotary else None,
            "edge_direction": "QK: key -> query; OV: value -> output",
        }
        if self.out_basis != "raw":
            out["out_basis"] = self.out_basis
        if fam.qk_norm:
            out["qk_norm"] = qk_norm_text(fam)
        if fam.v_norm:
            out["v_norm"] = V_NORM
        if fam.layer_scalar and self.ov_target == "resid":
            out["layer_scalar"] = "p_k is multiplied by the layer's layer_scalar, which scales everything the layer writes"
        if not fam.post_attn_norm:
            out["biases"] = "projection biases are left out (not a feature's term)"
        return out


@dataclass(frozen=True)
class Factors:
    """One head's circuit as `S = src @ dst.T`; src: [n_src, d_head], dst: [n_dst, d_head]."""

    circuit: str
    head: int
    kv_head: int
    src: torch.Tensor
    dst: torch.Tensor


def rope_rotate(x: torch.Tensor, offset: float, rope: float | Rope) -> torch.Tensor:
    """R(offset) x for x [..., d_head], half-split pairing (dimension i with i + r/2, r the rotating dimensions: all
    of d_head, or GPT-NeoX's first rotary_dims, the rest passing unrotated).

    rope: the layer's `Rope` (its base, scaling, partial rotary), or a base θ.
    """
    rope = rope if isinstance(rope, Rope) else Rope(float(rope))
    r = rope.dims(x.shape[-1])
    inv_freq = rope.inv_freq(x.shape[-1])
    ang = torch.cat([inv_freq, inv_freq]) * float(offset)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    xr = x[..., :r]
    x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]
    rotated = xr * cos + torch.cat([-x2, x1], dim=-1) * sin
    return rotated if r == x.shape[-1] else torch.cat([rotated, x[..., r:]], dim=-1)


def head_rows(W: torch.Tensor, head: int, d_head: int) -> torch.Tensor:
    return W[head * d_head : (head + 1) * d_head]


def qk_normalise(u: torch.Tensor, w: torch.Tensor | None, fam: families.Family) -> torch.Tensor:
    """g ⊙ u / rms(u) over the last dimension (a zero row stays zero), g = the norm's gain of stored weight w
    (None: a norm without gain, Gemma 4's v_norm)."""
    rms = u.pow(2).mean(-1, keepdim=True).sqrt()
    unit = u / torch.where(rms > 0, rms, torch.ones_like(rms))
    return unit if w is None else unit * fam.gain(w)


def circuit_factors(
    attn: AttentionWeights,
    W_dec_in: torch.Tensor,
    W_enc_out: torch.Tensor | None,
    head: int,
    circuit: str,
    conv: Conventions = Conventions(),
    shared: dict[tuple[str, int], torch.Tensor] | None = None,
) -> Factors:
    """Factors of head `head`'s QK or OV matrix.

    W_dec_in: [n_in, d_model] input SAE decoder rows; W_enc_out: the output SAE's encoder (OV only),
    [d_model, n_out] for a residual SAE, [n_heads·d_head, n_out] for an attention-output SAE
    (`conv.ov_target` "attn"). shared: a dict the caller keeps across the heads of one layer and these same
    SAE tensors: a key/value head's keys and values are then computed once for the query heads sharing it (GQA),
    the same tensors as computed each time; it holds one key/value head's at a time.
    """
    c = attn.config
    fam = families.of(c.model_type)
    kv = c.kv_head(head)
    # Fold the gains (and a LayerNorm's centring) into the (small) weight slices rather than copying the
    # (large) SAE matrices: W (g ⊙ d) = (W ⊙ g) d, W (g ⊙ C d) = ((W ⊙ g) C) d.
    if circuit == "QK":
        if conv.rope_offset and not fam.rotary:
            raise BadInput(f"{fam.name} has no rotary embedding (its positions are learned vectors in the residual "
                           "stream): a rope offset does not apply; use 0")
        if fam.qk_norm and (attn.q_norm is None or attn.k_norm is None):
            raise BadInput(f"{fam.name} layer {attn.layer} needs q_norm and k_norm weights")
        q = W_dec_in @ fam.fold_in(head_rows(attn.W_Q, head, c.d_head), attn.ln_in).T
        if fam.qk_norm:
            q = qk_normalise(q, attn.q_norm, fam)

        def keys() -> torch.Tensor:
            k = W_dec_in @ fam.fold_in(head_rows(attn.W_K, kv, c.d_head), attn.ln_in).T
            return qk_normalise(k, attn.k_norm, fam) if fam.qk_norm else k

        k = _once(shared, ("K", kv), keys)
        if conv.rope_offset:
            q = rope_rotate(q, conv.rope_offset, attn.rope)
        if conv.attn_scale:
            q = q / math.sqrt(c.query_pre_attn_scalar)
        return Factors("QK", head, kv, src=k, dst=q)
    if circuit == "OV":
        if W_enc_out is None:
            raise ValueError("OV factors need the output SAE's encoder")
        def values() -> torch.Tensor:
            v = W_dec_in @ fam.fold_in(head_rows(attn.W_V, kv, c.d_head), attn.ln_in).T
            return qk_normalise(v, None, fam) if fam.v_norm else v

        v = _once(shared, ("V", kv), values)
        if conv.ov_target == "attn":
            p = head_rows(W_enc_out, head, c.d_head).T  # [n_out, d_head]: the head's slice of what the SAE reads
        else:
            w_o = head_rows(attn.W_O.T, head, c.d_head)  # [d_head, d_model]
            if fam.post_attn_norm:
                if attn.ln_post is None:
                    raise BadInput(f"{fam.name} layer {attn.layer} needs post_attention_layernorm weights")
                w_o = w_o * fam.gain(attn.ln_post)
            if attn.layer_scalar is not None:
                w_o = w_o * attn.layer_scalar
            if conv.out_basis == "centred":  # e_k · C W_O o = (C W_O)ᵀ e_k · o: centre the head's write
                w_o = w_o - w_o.mean(-1, keepdim=True)
            p = W_enc_out.T @ w_o.T  # [n_out, d_head]
        return Factors("OV", head, kv, src=v, dst=p)
    raise ValueError(circuit)


def _once(shared: dict[tuple[str, int], torch.Tensor] | None, key: tuple[str, int],
          make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """make(), kept in `shared` under key (what, kv head) while the caller stays on that key/value head."""
    if shared is None:
        return make()
    if key not in shared:
        for other in [k for k in shared if k[1] != key[1]]:
            del shared[other]
        shared[key] = make()
    return shared[key]


def residual_basis(source: Mapping[str, Any] | None) -> str:
    """The residual basis an SAE reads, from its description: "centred" when SAELens would load its model with
    TransformerLens' center_writing_weights (`model_from_pretrained_kwargs`, from the SAE's cfg.json and the
    registry's config_overrides; SAELens loads HookedTransformer.from_pretrained_no_processing, so absent = "raw").
    An explicit `basis` in the description wins. docs/maths.md, "TransformerLens' centred basis"."""
    src = source or {}
    if src.get("basis") in BASES:
        return str(src["basis"])
    kwargs = src.get("model_from_pretrained_kwargs") or {}
    return "centred" if isinstance(kwargs, Mapping) and kwargs.get("center_writing_weights") is True else "raw"


def ov_target(requested: str, d_in: int, config: ModelConfig, site: str | None = None) -> tuple[str, str]:
    """What an output SAE of input size `d_in` reads, and why: "resid" (d_model) or "attn" (n_heads·d_head).

    requested: "auto", "resid" or "attn". auto decides by d_in, and when both sizes are equal by `site`
    (what the SAE's own files say it reads: res, att, …). Anything that does not fit is a BadInput.
    """
    if requested not in ("auto", *OV_TARGETS):
        raise BadValue("ov_target", requested, "must be auto, resid or attn")
    sizes = {"resid": config.d_model, "attn": config.d_attn}
    fits = [t for t in OV_TARGETS if sizes[t] == d_in]
    what = (f"this model's residual stream has {config.d_model} dimensions (a residual SAE) and its heads' "
            f"concatenated outputs {config.d_attn} (an attention-output SAE)")
    if requested != "auto":
        if requested not in fits:
            raise BadInput(f"the output SAE reads vectors of size {d_in}, but ov_target {requested} needs "
                           f"{sizes[requested]}: {what}")
        return requested, "given (ov_target=, --ov-target)"
    if not fits:
        raise BadInput(f"the output SAE reads vectors of size {d_in}, but {what}: pick an SAE of this model")
    if len(fits) == 1:
        return fits[0], f"d_in {d_in} = {'d_model' if fits[0] == 'resid' else 'n_heads·d_head'}"
    by_site = {"res": "resid", "att": "attn", "attn_out": "resid"}.get(site or "")  # attn_out: o_proj's output
    if by_site is None:
        raise BadInput(f"the output SAE reads vectors of size {d_in}, which is both d_model and n_heads·d_head here: "
                       "say what it reads with ov_target resid or attn (--ov-target)")
    return by_site, ("the SAE's files say it reads " + {"res": "the residual stream", "att": "attention outputs",
                                                         "attn_out": "o_proj's output (residual units)"}[str(site)])


MOMENT_ROWS = 1 << 12  # rows per float32 Gram product (docs/maths.md, "Selection")


def moments(src: torch.Tensor, dst: torch.Tensor,
            src_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
            dst_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[float, float]:
    """Mean and standard deviation of all n_src·n_dst entries of src @ dst.T, from closed forms of the factors.

    mean = s̄·d̄ and Σ_ij (s_i·d_j − mean)² = ⟨G_S, G_D⟩ + n_src·s̄ᵀG_D s̄ + n_dst·d̄ᵀG_S d̄ with G the centred Gram
    matrices (docs/maths.md, "Selection": three non-negative terms, no cancellation). src_stats, dst_stats:
    mean_and_gram(src) and mean_and_gram(dst), when the caller has them already (a key/value head's factor shared by
    its query heads).
    """
    n_s, n_d = src.shape[0], dst.shape[0]
    s_mean, s_gram = src_stats if src_stats is not None else mean_and_gram(src)
    d_mean, d_gram = dst_stats if dst_stats is not None else mean_and_gram(dst)
    mean = float(s_mean @ d_mean)
    sq = float((s_gram * d_gram).sum()) + n_s * float(s_mean @ d_gram @ s_mean) + n_d * float(d_mean @ s_gram @ d_mean)
    return mean, math.sqrt(max(sq, 0.0) / max(n_s * n_d, 1))


def mean_and_gram(x: torch.Tensor, rows: int = MOMENT_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """x's mean row x̄ [d] and centred Gram matrix Σ_i (x_i − x̄)(x_i − x̄)ᵀ [d, d], both float64.

    float32 products of chunks of rows (a float64 product costs twice as much and more), summed in float64. Each
    chunk is centred at m, a float32 estimate of x̄; the centred rows' sum gives δ = x̄ − m to the precision of the
    rows' spread (not of their size), then x̄ = m + δ and Σ (x − x̄)(x − x̄)ᵀ = Σ (x − m)(x − m)ᵀ − n·δδᵀ. No float64
    copy of the factor is made.
    """
    n, d = x.shape
    total = torch.zeros(d, dtype=torch.float64, device=x.device)
    for r0 in range(0, n, rows):
        total += x[r0 : r0 + rows].sum(0).double()
    m = (total / max(n, 1)).float()
    gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    off = torch.zeros(d, dtype=torch.float64, device=x.device)
    # float32 products, not TF32's 10-bit ones, whatever the caller's global setting
    with select.cuda_matmul("fp32") if x.is_cuda else contextlib.nullcontext():
        for r0 in range(0, n, rows):
            c = x[r0 : r0 + rows] - m
            gram += (c.T @ c).double()
            off += c.sum(0).double()
    delta = off / max(n, 1)
    return m.double() + delta, gram - n * torch.outer(delta, delta)
