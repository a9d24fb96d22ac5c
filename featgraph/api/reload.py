"""Reloading weights for analyses that need more than the edges: cosines, profiles, correlations.

A run records its model, SAEs, revisions and conventions in its manifest; these
functions reload exactly those (through the loaders' caches) and hand tensors to
the pure analyses. The positional profile also works from references alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from featgraph import families
from featgraph.core import circuits
from featgraph.core.circuits import Conventions
from featgraph.core.schema import FEATURE_INDEX, parse_feature_id
from featgraph.core.weights import SAE, AttentionWeights
from featgraph.errors import BadInput, BadValue
from featgraph.load import model as model_io
from featgraph.load import sae as sae_io
from featgraph.runs.manifest import ConventionsRecord, Manifest

DEFAULT_SAE_MODEL = ("gemma-2-2b", "gemma2", 2304, 26)  # Neuronpedia id, model_type, d_model, layers of Gemma Scope's model


def check_default_sae_fits(config, ref: object, what: str = "--sae-in/--sae-out") -> None:
    """Gemma Scope's default SAEs were trained on Gemma 2 2B: refuse them, in one line, for any other model.

    The model must be a Gemma 2 of Gemma 2 2B's width and depth, and when its reference names it (a Hub id, an HF
    cache folder, config.json's _name_or_path — not a directory's own name) that name must be gemma-2-2b."""
    name, model_type, d_model, n_layers = DEFAULT_SAE_MODEL
    named = None
    if isinstance(ref, (str, Path)) and str(ref):
        found, how = model_io.infer_model_id(str(ref))
        named = found if found and not how.startswith("directory name") else None
    shape = (config.model_type, config.d_model, config.n_layers)
    if shape == (model_type, d_model, n_layers) and named in (None, name):
        return
    this = f"{named or ref if isinstance(ref, (str, Path)) else 'this model'} ({config.model_type}, d_model {config.d_model}, " \
           f"{config.n_layers} layers)"
    raise BadInput(f"no default SAE for {this}: featgraph's defaults are Gemma Scope's, trained on google/gemma-2-2b "
                   f"(d_model {d_model}); pass {what}")


def default_sae(layer: int, kind: str = "res") -> str:
    """The post's choice: Gemma Scope's canonical 16k residual SAE of `layer` (the input of attention layer L is
    SAE L−1); kind "att": the attention-output SAE of `layer` (Gemma 2 2B)."""
    if layer < 0:
        raise BadInput("layer 0 has no residual SAE before it: pass sae_in")
    return f"gemma-scope-2b-pt-{kind}-canonical/layer_{layer}/width_16k/canonical"


def _model_ref(manifest: Manifest) -> str:
    m = manifest.model or {}
    if not manifest.has_weights:
        raise BadInput("the run does not record its model and SAEs (imported?): this needs a run made by `featgraph extract`")
    ref = str(m["ref"])
    pinned = m.get("revision") and "@" not in ref and not Path(ref).exists()
    return ref + (f"@{m['revision']}" if pinned else "")


def conventions(manifest: Manifest) -> Conventions:
    """The conventions a run was computed with (read back from its manifest)."""
    conv = manifest.conventions if manifest.conventions is not None else ConventionsRecord()
    return Conventions(attn_scale=conv.attn_scale is not None, rope_offset=conv.rope_offset,
                       ov_target=conv.ov_target, out_basis=str(conv.get("out_basis") or "raw"))


def run_weights(manifest: Manifest, need_out: bool) -> tuple[AttentionWeights, SAE, SAE | None]:
    """The attention layer, input SAE (W_dec, b_dec) and, if asked, output SAE (W_enc) of a run."""
    attn = model_io.load_attention(_model_ref(manifest), int(manifest.layer or 0))
    c = attn.config
    sae_in = sae_io.load(str((manifest.sae_in or {})["ref"]), ("W_dec", "b_dec"), expect_d_in=c.d_model, role="input SAE")
    sae_out = None
    if need_out:
        if not (manifest.sae_out or {}).get("ref"):
            raise BadInput("the run has no output SAE (it was extracted without OV): this needs both circuits")
        d_out = c.d_attn if conventions(manifest).ov_target == "attn" else c.d_model
        sae_out = sae_io.load(str((manifest.sae_out or {})["ref"]), ("W_enc",), expect_d_in=d_out, role="output SAE")
    return attn, sae_in, sae_out


def check_heads(heads: Sequence[int] | None, n_heads: int, layer: int | None) -> tuple[int, ...]:
    """The heads asked for (None: all of the layer's), each checked against the layer."""
    if heads is None:
        return tuple(range(n_heads))
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise BadValue("heads", bad[0], f"is out of range: layer {layer} has heads 0..{n_heads - 1}")
    return tuple(heads)


def run_factors(manifest: Manifest, pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """Each (head, circuit)'s factors (src [n_src, d_head], dst [n_dst, d_head]) as the run computed them."""
    pairs = sorted(set(pairs))
    attn, sae_in, sae_out = run_weights(manifest, need_out=any(c == "OV" for _, c in pairs))
    cv = conventions(manifest)
    out = {}
    with torch.inference_mode():
        for head, circ in pairs:
            f = circuits.circuit_factors(attn, sae_in.part("W_dec"), sae_out.part("W_enc") if sae_out else None, head, circ, cv)
            out[(head, circ)] = (f.src.numpy(), f.dst.numpy())
    return out


def correlation_frame(manifest: Manifest, heads: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Per head and key/value feature: mean QK as a key, mean |OV| (columns head, feature_index, mean_qk_as_key, mean_abs_ov)."""
    from featgraph.analyse import correlation as corr

    if not manifest.has_weights or not (manifest.sae_out or {}).get("ref"):
        raise BadInput("the correlation needs an extracted run with both circuits (it reloads the model and SAEs)")
    n = int((manifest.model or {}).get("config", {}).get("n_heads", 0))
    heads = check_heads(heads, n, manifest.layer)
    factors = run_factors(manifest, {(h, c) for h in heads for c in ("QK", "OV")})
    frames = []
    with torch.inference_mode():
        for h in heads:
            k, q = (torch.from_numpy(x) for x in factors[(h, "QK")])
            v, p = (torch.from_numpy(x) for x in factors[(h, "OV")])
            x, y = corr.key_means(k, q), corr.sender_stats(v, p)
            frames.append(pd.DataFrame({"head": h, FEATURE_INDEX: np.arange(len(x)), "mean_qk_as_key": x, "mean_abs_ov": y}))
    return pd.concat(frames, ignore_index=True)


def positional_frame(model: str, layer: int, sae_in: str | None = None, features: Iterable[str] = (),
                     max_distance: int = 8192, attn: AttentionWeights | None = None) -> pd.DataFrame:
    """Rotary profile per head: columns head, distance, score, query, key (query/key = `b_dec` or feature ids).

    `features`: ids (a feature against itself) or `QUERY_ID,KEY_ID` pairs, indices into the input SAE. The
    rotation is the layer's own (Gemma 3: local layers' base, or global layers' base and scaling).
    """
    from featgraph.analyse import positional as pos

    if max_distance < 1:
        raise BadValue("max_distance", max_distance, "must be ≥ 1")
    if sae_in is None:
        default_sae(layer - 1)  # layer 0 has none: fail before loading anything
    attn = attn or model_io.load_attention(model, layer)
    fam = families.of(attn.config.model_type)
    if not fam.rotary:
        raise BadInput(f"{fam.name} has no rotary embedding (its positions are learned vectors in the residual stream): "
                       "the rotary positional profile does not apply")
    if sae_in is None:
        check_default_sae_fits(attn.config, model, "--sae-in (sae_in=)")
    sae_ref = sae_in or default_sae(layer - 1)
    features = list(features)
    parts = ("W_dec", "b_dec") if features else ("b_dec",)
    sae = sae_io.load(sae_ref, parts, expect_d_in=attn.config.d_model, role="input SAE")
    b_dec = sae.part("b_dec")
    curves = [("b_dec", "b_dec", b_dec, b_dec)]
    for spec in features:
        q_id, _, k_id = spec.partition(",")
        q_id, k_id = q_id.strip(), (k_id.strip() or q_id.strip())
        vecs = []
        for fid in (q_id, k_id):
            try:
                idx = parse_feature_id(fid)[2]
            except ValueError:
                raise BadValue("feature", fid, "must be MODEL/SOURCE/INDEX") from None
            if not 0 <= idx < sae.d_sae:
                raise BadValue("feature", fid, f"has index {idx}, outside the input SAE's {sae.d_sae} features")
            vecs.append(sae.part("W_dec")[idx])
        curves.append((q_id, k_id, vecs[0], vecs[1]))
    dist = pos.distances(max_distance)
    rows = []
    with torch.inference_mode():
        for q_id, k_id, qv, kv in curves:
            s = pos.profile(attn, qv, kv, dist)
            for h in range(s.shape[0]):
                rows.append(pd.DataFrame({"head": h, "distance": dist, "score": s[h], "query": q_id, "key": k_id}))
    return pd.concat(rows, ignore_index=True)
