"""`featgraph extract`: load → circuits → select → run directory.

The I/O (loading weights and SAEs, writing the run) happens here and in the
modules it calls; the maths (`circuits`) and the selection (`select`) are pure.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from featgraph import circuits, export, select
from featgraph.circuits import Conventions
from featgraph.errors import BadInput
from featgraph.load import model as model_io
from featgraph.load import sae as sae_io
from featgraph.schema import CIRCUITS, feature_id
from featgraph.select import Selection

log = logging.getLogger(__name__)

DEFAULT_MODEL = "google/gemma-2-2b"
DEFAULT_LAYER = 13

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def default_sae(layer: int) -> str:
    """The post's choice: the canonical 16k residual SAE of `layer`."""
    return f"gemma-scope-2b-pt-res-canonical/layer_{layer}/width_16k/canonical"


@dataclass(frozen=True)
class ExtractConfig:
    """Everything `extract` needs; validated once here."""

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

    def __post_init__(self):
        if self.layer < 0:
            raise BadInput(f"--layer must be ≥ 0, got {self.layer}")
        if self.sae_in is None and self.layer == 0:
            raise BadInput("layer 0 has no residual SAE before it: pass --sae-in")
        if not self.circuits or any(c not in CIRCUITS for c in self.circuits):
            raise BadInput(f"--circuits must be a subset of qk,ov, got {','.join(self.circuits) or 'nothing'}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BadInput(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.heads is not None and (not self.heads or min(self.heads) < 0):
            raise BadInput("--heads must list head indices ≥ 0, e.g. 0,7")

    @property
    def sae_in_ref(self) -> str:
        return self.sae_in or default_sae(self.layer - 1)

    @property
    def sae_out_ref(self) -> str:
        return self.sae_out or default_sae(self.layer)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda but no CUDA GPU is visible: use --device auto or cpu")
    return torch.device(name)


def model_short_id(ref: str) -> str:
    """Neuronpedia's model id: the repo name (`google/gemma-2-2b` -> `gemma-2-2b`)."""
    base = ref.split("@")[0].rstrip("/")
    return Path(base).name


def compute_edges(
    attn: model_io.AttentionWeights,
    W_dec_in: torch.Tensor,
    W_enc_out: torch.Tensor | None,
    heads: tuple[int, ...],
    which: tuple[str, ...],
    sel: Selection,
    conv: Conventions,
    device: torch.device,
    progress: ProgressFactory | None = None,
) -> tuple[list[dict], dict]:
    """Selected edges of every (head, circuit) as column dicts, plus their moments."""
    parts, stats = [], {}
    for head in heads:
        for circ in which:
            f = circuits.circuit_factors(attn, W_dec_in, W_enc_out, head, circ, conv)
            src, dst = f.src.to(device), f.dst.to(device)
            mean, std = circuits.moments(src, dst)
            tick = progress(f"head {head} {circ}", src.shape[0]) if progress else None
            r, c, w = select.select(src, dst, sel, tick)
            stats[f"{head}/{circ}"] = {"mean": mean, "std": std, "n_src": int(src.shape[0]), "n_dst": int(dst.shape[0])}
            parts.append({
                "head": head, "kv_head": f.kv_head, "circuit": circ,
                "src_index": r, "dst_index": c, "weight": w,
                "z": ((w.astype(np.float64) - mean) / std if std > 0 else np.zeros_like(w, dtype=np.float64)),
            })
    return parts, stats


def run_extract(cfg: ExtractConfig, out: Path, force: bool = False, csv: bool = False,
                progress: ProgressFactory | None = None) -> Path:
    """Compute a run directory at `out` (atomically)."""
    out = Path(out)
    export.check_target(out, force)
    device = resolve_device(cfg.device)
    attn = model_io.load_attention(cfg.model, cfg.layer)
    mc = attn.config
    heads = cfg.heads if cfg.heads is not None else tuple(range(mc.n_heads))
    bad = [h for h in heads if h >= mc.n_heads]
    if bad:
        raise BadInput(f"head {bad[0]} is out of range: layer {cfg.layer} has heads 0..{mc.n_heads - 1}")
    sae_in = sae_io.load(cfg.sae_in_ref, ("W_dec", "b_dec"), expect_d_in=mc.d_model, role="input SAE")
    sae_out = None
    if "OV" in cfg.circuits:
        sae_out = sae_io.load(cfg.sae_out_ref, ("W_enc",), expect_d_in=mc.d_model, role="output SAE")

    model_id = cfg.model_id or model_short_id(cfg.model)
    in_id = cfg.sae_in_id or sae_in.neuronpedia_id or f"{cfg.layer - 1}-sae-in-{sae_in.d_sae}"
    out_id = None
    if sae_out is not None:
        out_id = cfg.sae_out_id or sae_out.neuronpedia_id or f"{cfg.layer}-sae-out-{sae_out.d_sae}"

    with torch.inference_mode():
        parts, stats = compute_edges(attn, sae_in.W_dec, sae_out.W_enc if sae_out else None,
                                     heads, cfg.circuits, cfg.selection, cfg.conventions, device, progress)
    edges = _edge_table(parts, cfg.layer, model_id, in_id, out_id)
    features = export.features_from_edges(edges)
    manifest = {
        "command": "extract",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"ref": cfg.model, "revision": attn.source.get("revision"), "neuronpedia_id": model_id,
                  "layer": cfg.layer, "config": mc.__dict__},
        "sae_in": sae_in.source | {"neuronpedia_id": in_id},
        "sae_out": (sae_out.source | {"neuronpedia_id": out_id}) if sae_out else None,
        "heads": list(heads),
        "circuits": list(cfg.circuits),
        "conventions": cfg.conventions.describe(mc.query_pre_attn_scalar, mc.rope_theta),
        "selection": cfg.selection.describe(),
        "device": str(device),
        "stats": stats,
        "labels": None,
    }
    return export.write_run(out, edges, features, manifest, force=force, csv=csv)


def _edge_table(parts: list[dict], layer: int, model_id: str, in_id: str, out_id: str | None) -> pd.DataFrame:
    frames = []
    for p in parts:
        n = len(p["weight"])
        dst_sae = in_id if p["circuit"] == "QK" else out_id
        frames.append(pd.DataFrame({
            "layer": np.full(n, layer, np.int32),
            "head": np.full(n, p["head"], np.int32),
            "kv_head": np.full(n, p["kv_head"], np.int32),
            "circuit": p["circuit"],
            "src": [feature_id(model_id, in_id, i) for i in p["src_index"]],
            "src_index": p["src_index"],
            "dst": [feature_id(model_id, dst_sae, i) for i in p["dst_index"]],
            "dst_index": p["dst_index"],
            "weight": p["weight"],
            "rank": np.arange(1, n + 1),
            "z": p["z"].astype(np.float32),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(export.EDGE_COLUMNS))


def run_factors(manifest: dict, pairs: set[tuple[int, str]]) -> dict:
    """Reload a run's model and SAEs (from its manifest) and return each (head, circuit)'s factors as numpy."""
    m, si, so = manifest.get("model") or {}, manifest.get("sae_in") or {}, manifest.get("sae_out") or {}
    if not m.get("ref") or not si.get("ref"):
        raise BadInput("the run does not record its model and SAEs (imported?): cosines need an extracted run")
    ref = m["ref"] + (f"@{m['revision']}" if m.get("revision") and "@" not in m["ref"] and not Path(m["ref"]).exists() else "")
    attn = model_io.load_attention(ref, int(m["layer"]))
    W_dec = sae_io.load(si["ref"], ("W_dec",), expect_d_in=attn.config.d_model).W_dec
    W_enc = None
    if any(c == "OV" for _, c in pairs):
        W_enc = sae_io.load(so["ref"], ("W_enc",), expect_d_in=attn.config.d_model).W_enc
    conv = manifest.get("conventions") or {}
    rope = (conv.get("rope") or {}).get("offset", 0) or 0
    cv = Conventions(attn_scale=conv.get("attn_scale") is not None, rope_offset=int(rope))
    out = {}
    with torch.inference_mode():
        for head, circ in sorted(pairs):
            f = circuits.circuit_factors(attn, W_dec, W_enc, head, circ, cv)
            out[(head, circ)] = (f.src.numpy(), f.dst.numpy())
    return out
