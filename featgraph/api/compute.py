"""`featgraph.api.compute`: load → circuits → select → a run.

Inputs are references (Hub ids, local files) or objects already in memory
(transformers modules, state dicts, SAE tensors); the maths (`circuits`) and the
selection (`select`) are pure; the run is written through `rundir`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from featgraph import families
from featgraph.api.reload import check_default_sae_fits, check_heads, default_sae
from featgraph.core import circuits, select
from featgraph.core.circuits import OV_TARGETS, Conventions, residual_basis
from featgraph.core.circuits import ov_target as _resolve_ov_target
from featgraph.core.progress import ProgressFactory
from featgraph.core.schema import CIRCUITS, EDGE_COLUMNS, feature_id, normalise_circuit
from featgraph.core.select import Selection
from featgraph.core.weights import SAE, AttentionWeights
from featgraph.errors import BadInput, BadValue, FeatgraphError, FeatgraphWarning
from featgraph.load import model as model_io
from featgraph.runs.files import holds_output
from featgraph.runs.manifest import ConventionsRecord, Manifest, SelectionRecord

DEFAULT_MODEL = "google/gemma-2-2b"
DEFAULT_LAYER = 13


@dataclass(frozen=True)
class ExtractConfig:
    """What to compute and how; validated once here. Model and SAEs are references (str) here.

    An SAE reference None means the canonical 16k residual SAE of layer-1 (input) or the layer (output; the
    attention-output SAE with ov_target "attn") — Gemma Scope's, so for Gemma 2 2B only.
    """

    model: str = DEFAULT_MODEL
    layer: int = DEFAULT_LAYER
    sae_in: str | None = None
    sae_out: str | None = None
    heads: tuple[int, ...] | None = None
    circuits: tuple[str, ...] = CIRCUITS
    selection: Selection = field(default_factory=Selection)
    conventions: Conventions = field(default_factory=Conventions)
    device: str = "auto"
    model_id: str | None = None
    sae_in_id: str | None = None
    sae_out_id: str | None = None
    ov_target: str = "auto"

    def __post_init__(self):
        if self.layer < 0:
            raise BadValue("layer", self.layer, "must be ≥ 0")
        if self.sae_in is None:
            default_sae(self.layer - 1)  # layer 0 has none: fail before loading anything
        if not self.circuits or any(c not in CIRCUITS for c in self.circuits):
            raise BadValue("circuits", ",".join(self.circuits), "must be a subset of qk,ov")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BadValue("device", self.device, "must be auto, cpu or cuda")
        if self.heads is not None and (not self.heads or min(self.heads) < 0):
            raise BadValue("heads", ",".join(map(str, self.heads)), "must list head indices ≥ 0, e.g. 0,7")
        if self.ov_target not in ("auto", *OV_TARGETS):
            raise BadValue("ov_target", self.ov_target, "must be auto, resid or attn")

    @property
    def sae_in_ref(self) -> str:
        return self.sae_in or default_sae(self.layer - 1)

    @property
    def sae_out_ref(self) -> str:
        return self.sae_out or default_sae(self.layer, "att" if self.ov_target == "attn" else "res")


@dataclass(frozen=True)
class CircuitEdges:
    """The selected edges of one (head, circuit), and the exact moments of its whole matrix."""

    head: int
    kv_head: int
    circuit: str
    selected: select.Selected
    mean: float
    std: float
    n_src: int
    n_dst: int

    @property
    def z(self) -> np.ndarray:
        w = self.selected.weight.astype(np.float64)
        return (w - self.mean) / self.std if self.std > 0 else np.zeros_like(w)

    def stats(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n_src": self.n_src, "n_dst": self.n_dst}


def weights_digest(attn: AttentionWeights) -> str:
    """sha256 over the layer's attention tensors as featgraph computes with them (bytes, shapes, dtypes): what the
    manifest records, so a resumed atlas can tell a model changed on disk since a layer was made."""
    from featgraph.runs.resume import fingerprint

    return fingerprint([v for v in vars(attn).values() if isinstance(v, torch.Tensor)], {})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadValue("device", name, "needs a visible CUDA GPU: use auto or cpu")
    return torch.device(name)


def compute_edges(
    attn: AttentionWeights,
    W_dec_in: torch.Tensor,
    W_enc_out: torch.Tensor | None,
    heads: Sequence[int],
    which: Sequence[str],
    sel: Selection,
    conv: Conventions,
    device: torch.device,
    progress: ProgressFactory | None = None,
    done: dict[tuple[int, str], CircuitEdges] | None = None,
    on_part: Callable[[CircuitEdges], None] | None = None,
) -> list[CircuitEdges]:
    """The selected edges of every (head, circuit) in `heads` × `which`.

    W_dec_in: [d_sae_in, d_model]; W_enc_out: [d_model, d_sae_out] (OV only). `done` holds matrices an
    interrupted run already finished (they are not computed again); `on_part` is called with each new one.
    """
    done = done or {}
    todo = [(h, c) for h in heads for c in which]
    overall = progress("all matrices", len([t for t in todo if t not in done])) if progress else None
    parts = []
    shared: dict[tuple[str, int], torch.Tensor] = {}  # a key/value head's factors, for the query heads sharing it
    # A source factor is a key/value head's keys (QK) or values (OV), shared by its query heads: its moments' mean
    # and Gram matrix and its row norms too, kept beside it while `shared` keeps it (QK and OV sources alternate).
    src_stats: dict[str, tuple[torch.Tensor, tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]] = {}
    for head, circ in todo:
        if (head, circ) in done:
            parts.append(done[(head, circ)])
            continue
        f = circuits.circuit_factors(attn, W_dec_in, W_enc_out, head, circ, conv, shared)
        src, dst = f.src.to(device), f.dst.to(device)
        if circ not in src_stats or src_stats[circ][0] is not f.src:
            src_stats[circ] = (f.src, (circuits.mean_and_gram(src), select.row_norms(src)))
        (src_m, src_norms), dst_m, dst_norms = src_stats[circ][1], circuits.mean_and_gram(dst), select.row_norms(dst)
        mean, std = circuits.moments(src, dst, src_m, dst_m)
        tick = progress(f"head {head} {circ}", src.shape[0]) if progress else None
        chosen = select.select(src, dst, sel, tick, norms=(src_norms, dst_norms))
        part = CircuitEdges(head, f.kv_head, circ, chosen, mean, std, int(src.shape[0]), int(dst.shape[0]))
        if on_part is not None:
            on_part(part)
        parts.append(part)
        if overall is not None:
            overall(1)
    return parts


def edge_table(parts: Iterable[CircuitEdges], layer: int, model_id: str, in_id: str, out_id: str | None) -> pd.DataFrame:
    """The edges.parquet rows of `parts` (ids `model/source/index`, QK destinations in the input SAE)."""
    frames = []
    for p in parts:
        s = p.selected
        n = len(s)
        dst_sae = in_id if p.circuit == "QK" else (out_id or in_id)
        frames.append(pd.DataFrame({
            "layer": np.full(n, layer, np.int32),
            "head": np.full(n, p.head, np.int32),
            "kv_head": np.full(n, p.kv_head, np.int32),
            "circuit": p.circuit,
            "src": [feature_id(model_id, in_id, i) for i in s.src_idx],
            "src_index": s.src_idx,
            "dst": [feature_id(model_id, dst_sae, i) for i in s.dst_idx],
            "dst_index": s.dst_idx,
            "weight": s.weight,
            "rank": np.arange(1, n + 1),
            "z": p.z.astype(np.float32),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(EDGE_COLUMNS))


# ---------------------------------------------------------------- the API call

def _load_model(model: Any, layer: int) -> AttentionWeights:
    from featgraph.load import objects

    if isinstance(model, AttentionWeights):
        return model
    if isinstance(model, (str, Path)):
        return model_io.load_attention(str(model), layer)
    if isinstance(model, torch.nn.Module):
        return objects.attention_from_module(model, layer)
    if isinstance(model, tuple) and len(model) == 2:  # (state_dict, config)
        return objects.attention_from_state_dict(model[0], layer, model[1])
    raise BadInput(f"model is a {type(model).__name__}: pass a Hub id, a local directory, a transformers model "
                   "(Gemma 2/3, GPT-2, GPT-NeoX), or (state_dict, config)")


def _load_sae(sae: Any, default_ref: str, parts: tuple[str, ...], d_in: int | tuple[int, ...], role: str,
              d_attn: int | None = None) -> SAE:
    """An SAE from a reference or an object; d_in: the input sizes it may have (d_model first)."""
    from featgraph.load import objects
    from featgraph.load import sae as sae_io

    if sae is None or isinstance(sae, (str, Path)):
        return sae_io.load(str(sae) if sae is not None else default_ref, parts, expect_d_in=d_in, role=role, d_attn=d_attn)
    if isinstance(sae, SAE):
        sae_io.check_d_in(role, "", sae.d_in, d_in)
        return sae
    return objects.sae_from_object(sae, parts, role, expect_d_in=d_in)


def _mlp_norm(model: Any, layer: int, fam: families.Family) -> torch.Tensor:
    """Layer `layer`'s pre-MLP norm weight (fam.mlp_norm_name()) from the model as extract was given it."""
    name = fam.mlp_norm_name()
    assert name is not None
    if isinstance(model, (str, Path)):
        return model_io.load_layer_tensor(str(model), layer, name)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else \
        model[0] if isinstance(model, tuple) and len(model) == 2 else None
    if state is None:
        raise BadInput("a transcoder as the output SAE reads through its layer's pre-MLP norm, which AttentionWeights do not "
                       "hold: pass the model as a reference, a transformers module or (state_dict, config)")
    for prefix in fam.all_prefixes():
        key = f"{prefix}{fam.layers_key}.{layer}.{name}"
        if key in state:
            return model_io.float_weights(torch.as_tensor(state[key]).detach(), key).to(torch.float32)
    raise BadInput(f"the model has no {fam.prefixes[0]}{fam.layers_key}.{layer}.{name}: the output transcoder's layer "
                   f"{layer} is not one of its layers, or this is not a {fam.name} model")


def transcoder_output(sae_o: SAE, model: Any, fam: families.Family, ov_target: str = "auto") -> SAE:
    """An output transcoder with its encoder columns as residual-stream directions (circuits.transcoder_encoder: the
    pre-MLP norm of the transcoder's layer folded in), a residual-units OV destination (docs/maths.md)."""
    tc = sae_o.source["transcoder"]
    if ov_target == "attn":
        raise BadValue("ov_target", ov_target, "must be auto or resid for a transcoder output (it reads the residual stream "
                       "through the pre-MLP norm, not the heads' outputs)")
    if fam.mlp_norm_name() is None:
        raise BadInput(f"{fam.name} runs attention and MLP in parallel: no attention output of a layer reaches that "
                       "layer's MLP through a pre-MLP norm, so featgraph does not take its transcoders as OV outputs")
    reads, layer = tc["reads"], int(tc["layer"])
    norm = _mlp_norm(model, layer, fam) if reads == "mlp_input" else None
    W = circuits.transcoder_encoder(sae_o.part("W_enc"), reads, fam, norm)
    g = f"{fam.gain_offset:g} + " if fam.gain_offset else ""
    how = {"mlp_input": f"e_k = g ⊙ W_enc[:, k], g = {g}layer {layer}'s {fam.mlp_norm_name()} (the norm's output is what the "
                        "transcoder reads)",
           "normalised": f"e_k = W_enc[:, k]: the transcoder reads layer {layer}'s pre-MLP stream divided by its RMS, "
                         "without the norm's gain",
           "resid_mid": f"e_k = W_enc[:, k]: the transcoder reads layer {layer}'s pre-MLP stream itself"}[reads]
    if fam.norm == "layer" and reads != "resid_mid":
        how += ", mean-centred (LayerNorm)"
    src = sae_o.source | {"reads": "resid", "reads_how": f"a transcoder reading the pre-MLP stream of layer {layer}",
                          "basis": "raw", "encoder_in_residual_units": how, "ov_definition": circuits.TRANSCODER_OV}
    return dataclasses.replace(sae_o, W_enc=W, source=src)


def _warn_unpaired(sae_i: SAE, sae_o: SAE | None, layer: int) -> None:
    """One warning per SAE whose hook point (from its files or SAELens' registry) is not where layer `layer` reads
    (its input: resid_pre L = resid_post L−1) or writes (its attention output: resid_post, resid_mid, attn_out or
    hook_z of L); docs/formats.md, "Pairing by hook point". SAEs that say no hook are not checked."""
    checks = ((sae_i, "input SAE", "input_of_layer", "the input of layer {}",
               f"layer {layer} reads resid_pre {layer} (= resid_post {layer - 1})"),
              (sae_o, "output SAE", "output_of_layer", "layer {}'s attention output",
               f"layer {layer} writes resid_post, resid_mid, attn_out or hook_z of {layer}"))
    for sae, role, key, where, want in checks:
        if sae is not None and sae.source.get("site") == "transcoder":  # read by every later layer; reads every earlier one
            tl = int(sae.source["transcoder"]["layer"])
            msg = None
            if key == "input_of_layer" and tl >= layer:
                msg = (f"the input SAE is layer {tl}'s transcoder, written after layer {tl}'s attention: layer {layer}'s "
                       f"attention does not read it (an input transcoder must be of a layer before {layer})")
            elif key == "output_of_layer" and tl < layer:
                msg = (f"the output SAE is layer {tl}'s transcoder, which reads before layer {layer}'s attention writes "
                       f"(an output transcoder must be of layer {layer} or later)")
            if msg:
                warnings.warn(msg + ": its edges pair features the model does not connect there", FeatgraphWarning, stacklevel=4)
            continue
        hook = sae.source.get("hook") if sae is not None else None
        if sae is None or not hook or sae.source.get(key) == layer:
            continue
        got = sae.source.get(key)
        says = where.format(got) if got is not None else f"not a point where an attention layer {'reads' if key == 'input_of_layer' else 'writes'}"
        warnings.warn(f"the {role} reads {hook}, {says}, but {want}: its edges pair features of other points of the model "
                      "(`featgraph sae REF` shows where an SAE reads)", FeatgraphWarning, stacklevel=4)


def default_series(model: Any, model_id: str | None, n_layers: int, source: dict | None = None) -> Any:
    """The model's residual SAE series in SAELens' registry (featgraph.load.registry.atlas_default), found by the
    model's names (model_id, the Hub id or HF cache folder, config.json's _name_or_path), or None."""
    from featgraph.load import registry

    names: list[Any] = [model_id]
    if isinstance(model, (str, Path)):
        names += [model_io.infer_model_id(str(model))[0], str(model).split("@")[0]]
    names += [getattr(getattr(model, "config", None), "_name_or_path", None), _name_from_source(source or {})]
    for name in dict.fromkeys(str(n) for n in names if n):
        series = registry.atlas_default(name, n_layers)
        if series is not None:
            return series
    return None


def _check_default_saes(attn: AttentionWeights, sae_in: Any, sae_out: Any, which: Sequence[str], layer: int,
                        model: Any = None) -> None:
    """Only Gemma 2 2B has default SAEs (Gemma Scope's canonical ones); other models must name theirs."""
    if sae_in is not None and (sae_out is not None or "OV" not in which):
        return
    check_default_sae_fits(attn.config, model, "--sae-in and --sae-out (sae_in=, sae_out=)")


@holds_output  # one process at a time per output: a second one stops with one line (runs.files.output_lock)
def extract(
    model: Any = DEFAULT_MODEL,
    layer: int = DEFAULT_LAYER,
    sae_in: Any = None,
    sae_out: Any = None,
    heads: Sequence[int] | None = None,
    circuits: Sequence[str] = CIRCUITS,
    top_k: int | None = 1000,
    min_abs: float | None = None,
    per_source_k: int | None = None,
    precision: str = "auto",
    attn_scale: bool = False,
    rope_offset: int = 0,
    device: str = "auto",
    block_mb: int | None = None,
    model_id: str | None = None,
    sae_in_id: str | None = None,
    sae_out_id: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    csv: bool = False,
    labels: bool = True,
    label_sources: Sequence[str | Path] = (),
    restart: bool = False,
    ov_target: str = "auto",
    progress: ProgressFactory | None = None,
):
    """Compute the strongest QK and OV edges of `layer`'s heads between SAE features; returns a `Run`.

    model: Hub id[@revision], local directory, transformers module of a supported family (Gemma 2/3, GPT-2, GPT-NeoX), `(state_dict, config)` or
    `AttentionWeights`. sae_in / sae_out: path, Hub path or SAELens-style id (None: Gemma 2 2B's canonical 16k
    residual SAEs of layer-1 and the layer), or tensors (a mapping or object with W_dec / W_enc, e.g. a SAELens SAE).
    ov_target: what sae_out reads — "resid" (the residual stream), "attn" (the heads' outputs before o_proj,
    an attention-output SAE), or "auto" (by its input size).
    With `out`, the run is written there (atomically) and labels are attached from `label_sources` or
    Neuronpedia (offline: a warning); without, the run lives in memory. With `out`, each finished
    (head, circuit) is kept until the run is written, so an interrupted extract resumes (`restart`: start over).
    """
    from featgraph.api.run import Run
    from featgraph.load import neuronpedia
    from featgraph.runs import rundir
    from featgraph.runs.files import check_target

    if block_mb is not None and block_mb < 1:
        raise BadValue("block_mb", block_mb, "must be ≥ 1")
    sel = Selection(top_k=top_k, min_abs=min_abs, per_source_k=per_source_k, precision=precision,
                    block_bytes=None if block_mb is None else int(block_mb) << 20)
    try:
        which = tuple(dict.fromkeys(normalise_circuit(c) for c in circuits))
    except ValueError as e:
        raise BadValue("circuits", e.args[0], "must be qk or ov") from None
    cfg = ExtractConfig(model=str(model) if isinstance(model, (str, Path)) else DEFAULT_MODEL, layer=layer,
                        sae_in=str(sae_in) if isinstance(sae_in, (str, Path)) else ("<object>" if sae_in is not None else None),
                        sae_out=str(sae_out) if isinstance(sae_out, (str, Path)) else None,
                        heads=tuple(heads) if heads is not None else None, circuits=which, selection=sel,
                        conventions=Conventions(attn_scale=attn_scale, rope_offset=rope_offset), device=device,
                        model_id=model_id, sae_in_id=sae_in_id, sae_out_id=sae_out_id, ov_target=ov_target)
    # Everything that can be checked before the computation is checked now.
    if out is not None:
        check_target(Path(out), force, kind="run")
    label_table = neuronpedia.read_labels([Path(s) for s in label_sources]) if (out is not None and labels and label_sources) else None
    dev = resolve_device(cfg.device)
    requested, sel = sel, sel.resolve(dev)

    attn = _load_model(model, layer)
    mc = attn.config
    head_list = check_heads(cfg.heads, mc.n_heads, layer)
    if attn_scale and not mc.query_pre_attn_scalar > 0:
        raise BadInput("attn_scale needs query_pre_attn_scalar > 0 in the model's config")
    if sae_in is None or (sae_out is None and "OV" in which):  # SAELens' registry's series, paired by hook point
        series = default_series(model, model_id, mc.n_layers, attn.source) if layer >= 1 else None
        if series is not None and series.release != "gemma-scope-2b-pt-res-canonical":  # Gemma 2 2B: the post's defaults
            sae_in = series.sae(layer - 1) if sae_in is None else sae_in
            sae_out = series.sae(layer) if sae_out is None and "OV" in which else sae_out
            cfg = dataclasses.replace(cfg, sae_in=str(sae_in) if isinstance(sae_in, (str, Path)) else cfg.sae_in,
                                      sae_out=str(sae_out) if isinstance(sae_out, (str, Path)) else cfg.sae_out)
    _check_default_saes(attn, sae_in, sae_out, which, layer, model)
    fam = families.of(mc.model_type)
    if rope_offset and not fam.rotary:
        raise BadInput(f"{fam.name} has no rotary embedding (its positions are learned vectors in the residual stream): "
                       "rope_offset (--rope-offset) does not apply; leave it 0")
    sae_i = _load_sae(sae_in, cfg.sae_in_ref, ("W_dec", "b_dec"), mc.d_model, "input SAE")
    sae_o = _load_sae(sae_out, cfg.sae_out_ref, ("W_enc",), (mc.d_model, mc.d_attn), "output SAE", mc.d_attn) \
        if "OV" in which else None
    if sae_o is not None and sae_o.source.get("site") == "transcoder":  # its encoder, read through the pre-MLP norm
        sae_o = transcoder_output(sae_o, model, fam, cfg.ov_target)
        cfg = dataclasses.replace(cfg, conventions=dataclasses.replace(cfg.conventions, ov_target="resid", out_basis="raw"))
    elif sae_o is not None:
        target, target_how = _resolve_ov_target(cfg.ov_target, sae_o.d_in, mc, sae_o.source.get("site"))
        # TransformerLens centres only LayerNorm models' residual (docs/maths.md): elsewhere the basis is raw.
        basis = residual_basis(sae_o.source) if fam.norm == "layer" and target == "resid" else "raw"
        cfg = dataclasses.replace(cfg, conventions=dataclasses.replace(cfg.conventions, ov_target=target, out_basis=basis))
        sae_o = dataclasses.replace(sae_o, source=sae_o.source | {"reads": target, "reads_how": target_how, "basis": basis})
    if fam.norm == "layer":
        sae_i = dataclasses.replace(sae_i, source=sae_i.source | {"basis": residual_basis(sae_i.source)})
    _warn_unpaired(sae_i, sae_o, layer)

    m_id, m_how = _model_id(model, model_id, attn.source, (sae_i, sae_o))
    in_id, in_how = _source_id(sae_i, sae_in_id, "sae_in_id", f"{layer - 1}-sae-in-{sae_i.d_sae}", "input SAE")
    out_id, out_how = _source_id(sae_o, sae_out_id, "sae_out_id", f"{layer}-sae-out-{sae_o.d_sae}", "output SAE") \
        if sae_o is not None else (None, None)

    if label_table is not None:  # labels that can name none of the run's features: say so before computing
        sources = {in_id} | ({out_id} if out_id else set())
        fits = label_table["sae"].astype(str).isin(sources) & (label_table["model"].isna() | (label_table["model"] == m_id))
        if not fits.any():
            held = ", ".join(sorted({f"{m}/{s}" for m, s in zip(label_table["model"], label_table["sae"])})[:4]) or "no labels"
            raise BadInput(f"the label files {', '.join(map(str, label_sources))} hold labels for {held}, none for this run's "
                           f"features ({', '.join(f'{m_id}/{x}' for x in sorted(sources))}): pass the exports of these SAEs "
                           "(--label-source), or name the SAEs (--sae-in-id / --sae-out-id); nothing was computed")
    W_dec, W_enc = sae_i.part("W_dec"), (sae_o.part("W_enc") if sae_o else None)
    done: dict[tuple[int, str], CircuitEdges] = {}
    store = None
    if out is not None:  # finished matrices are kept beside the output until the run is written (featgraph.runs.resume)
        from featgraph.runs import resume

        weights = [v for v in vars(attn).values() if isinstance(v, torch.Tensor)] + [W_dec, W_enc]
        # everything the edges depend on: the tensors, every config value (rope_theta, query_pre_attn_scalar, …),
        # the conventions as resolved for this layer, the selection
        settings = {"layer": layer, "config": dataclasses.asdict(mc), "conventions": cfg.conventions.__dict__,
                    "described": cfg.conventions.describe(mc, layer),
                    "selection": {k: v for k, v in sel.describe().items() if k in ("top_k", "min_abs", "per_source_k")}}
        store = resume.Parts(Path(out), resume.fingerprint(weights, settings))
        found = store.load(restart)
        done = {k: CircuitEdges(k[0], int(d["kv_head"]), k[1], d["selected"], float(d["mean"]), float(d["std"]),
                                int(d["n_src"]), int(d["n_dst"])) for k, d in found.items() if k[0] in head_list and k[1] in which}
        if done:
            warnings.warn(f"resuming: {len(done)} of {len(head_list) * len(which)} (head, circuit) matrices were finished by an "
                          "interrupted run with the same inputs (restart=True / --restart computes them again)",
                          FeatgraphWarning, stacklevel=2)
    with torch.inference_mode():
        parts = compute_edges(attn, W_dec, W_enc, head_list, which, sel, cfg.conventions, dev, progress, done,
                              on_part=(lambda p: store.save(p.head, p.circuit, p.kv_head, p.selected, p.stats())) if store else None)
    for p in parts:
        if not np.isfinite(p.selected.weight).all() or not np.isfinite([p.mean, p.std]).all():
            raise BadInput(f"head {p.head} {p.circuit} has non-finite values: the model or SAE weights contain NaN or inf")
    edges = edge_table(parts, layer, m_id, in_id, out_id)
    from featgraph.core.schema import features_from_edges

    features = features_from_edges(edges)
    manifest = Manifest(
        command="extract",
        model={"ref": attn.source.get("ref"), "revision": attn.source.get("revision"), "neuronpedia_id": m_id,
               "id_source": m_how, "layer": layer, "config": mc.__dict__, "weights_sha256": weights_digest(attn)}
        | ({"in_memory": attn.source["in_memory"]} if "in_memory" in attn.source else {}),
        sae_in=sae_i.source | {"neuronpedia_id": in_id, "id_source": in_how},
        sae_out=(sae_o.source | {"neuronpedia_id": out_id, "id_source": out_how}) if sae_o else None,
        heads=tuple(head_list),
        circuits=which,
        conventions=ConventionsRecord(cfg.conventions.describe(mc, layer)),
        selection=SelectionRecord(sel.describe(requested)),
        device=str(dev),
        stats={f"{p.head}/{p.circuit}": p.stats() for p in parts},
    )
    if out is None:
        from featgraph.core.schema import edges_frame, features_frame

        return Run(None, manifest.replace(run_id=f"in-memory-{id(edges):x}"), edges_frame(edges), features_frame(features))
    rundir.write_run(Path(out), edges, features, manifest, force=force, csv=csv)
    if store is not None:
        store.discard()
    run = Run.open(Path(out))
    if labels:
        try:
            run = run.label(label_table=label_table) if label_table is not None else run.label(progress=progress)
        except FeatgraphError as e:
            if isinstance(e, BadInput):
                raise
            msg = str(e).replace("(featgraph labels RUN --source FILE_OR_DIR)", "(--label-source FILE_OR_DIR)")
            warnings.warn(f"labels not attached ({msg}); run `featgraph labels {out}` later", FeatgraphWarning, stacklevel=2)
    return run


# How the Neuronpedia ids naming a run's features are found: docs/ids.md.

def _model_id(model: Any, given: str | None, source: dict, saes: Sequence[SAE | None] = ()) -> tuple[str, str]:
    """The model's Neuronpedia id and how it was found: given, the SAEs' registry entries' model, inferred from the
    reference, or invented (a warning)."""
    if given:
        return given, _given("model_id")
    ref = str(model) if isinstance(model, (str, Path)) else _name_from_source(source)
    found, how = model_io.infer_model_id(ref) if ref else (None, "invented")
    named = {str(s.source["neuronpedia_model"]) for s in saes if s is not None and s.source.get("neuronpedia_model")}
    if len(named) == 1:  # Neuronpedia's name for the model the SAEs were trained on (llama3.1-8b, gpt2-small, …)
        np_model = named.pop()
        return np_model, f"SAELens registry: the SAEs' Neuronpedia model {np_model}" + (
            f" (the model reference alone says {found})" if found and found != np_model else "")
    if found:
        return found, how if isinstance(model, (str, Path)) else f"{how} (named by the object)"
    return _invented("model", "model_id", "the model"), "invented"


def _name_from_source(source: dict) -> str:
    """What an in-memory model calls itself: its config's `_name_or_path` (a Hub id or a directory), if any."""
    return str(source.get("ref") or source.get("in_memory") or "")


def _source_id(sae: SAE, given: str | None, param: str, fallback: str, role: str) -> tuple[str, str]:
    if given:
        return given, _given(param)
    if sae.neuronpedia_id:
        return sae.neuronpedia_id, str(sae.source.get("id_source") or "the SAE's own record")
    if sae.source.get("fallback_id"):  # a Gemma Scope 2 SAE Neuronpedia does not host: named after its files
        name = str(sae.source["fallback_id"])
        warnings.warn(f"{sae.source.get('id_note')}: the {role}'s features are named {name!r} and get no labels; pass "
                      f"--{param.replace('_', '-')} ({param}= in Python) if Neuronpedia hosts it under another id",
                      FeatgraphWarning, stacklevel=3)
        return name, str(sae.source.get("fallback_how"))
    return _invented(fallback, param, f"the {role}"), "invented"


def _given(param: str) -> str:
    return f"given ({param}=, --{param.replace('_', '-')})"


def _invented(name: str, param: str, what: str) -> str:
    warnings.warn(f"no Neuronpedia id is known for {what}; it is named {name!r} and its features get no labels: "
                  f"pass --{param.replace('_', '-')} ({param}= in Python) to name it", FeatgraphWarning, stacklevel=4)
    return name
