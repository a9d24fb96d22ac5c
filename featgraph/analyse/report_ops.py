"""Glue between the CLI and the analyses: read a run, analyse, write results into it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from featgraph import export
from featgraph.analyse import tetrads as tt
from featgraph.analyse.filters import head_circuit, positive_top
from featgraph.analyse.tables import markdown, render
from featgraph.errors import BadInput, FeatgraphError

TETRADS = "tetrads.parquet"


@dataclass
class CommandOutput:
    summary: str
    table: str
    warnings: list[str] = field(default_factory=list)


def compute_tetrads(run: export.Run, head: int | None = None, circuit: str | None = None,
                    min_strength: float = 0.0, explain: bool = True) -> tuple[pd.DataFrame, list[str]]:
    t = tt.find_tetrads(head_circuit(run.edges, head, circuit), min_strength)
    warnings = []
    if explain and len(t) and (run.manifest.get("model") or {}).get("ref"):
        from featgraph.extract import run_factors

        try:
            pairs = set(zip(t["head"].astype(int), t["circuit"].astype(str)))
            t = tt.cosines(t, run_factors(run.manifest, pairs))
        except FeatgraphError as e:
            warnings.append(f"cosines not computed: {e}")
    return t, warnings


def tetrads_command(run_path: Path, head, circuit, top, min_strength, explain, fmt) -> CommandOutput:
    positive_top(top)
    run = export.read_run(Path(run_path))
    t, warnings = compute_tetrads(run, head, circuit, min_strength, explain)
    if run.path is not None:
        with export.staged_file(run.path / TETRADS) as tmp:
            t.to_parquet(tmp, index=False)
    s = tt.summary(t)
    summary = (f"{len(t)} tetrads ({int(t['like_to_like'].sum()) if len(t) else 0} like-to-like)"
               + (f"; written to {run.path / TETRADS}" if run.path is not None else "") + "\n" + markdown(s))
    return CommandOutput(summary, render(t.head(top), fmt), warnings)


def _parse_pair(spec: str) -> tuple[str, str]:
    q, _, k = spec.partition(",")
    return q.strip(), (k.strip() or q.strip())


def positional_command(model: str, layer: int, sae_in: str | None, features: list[str], out: Path,
                       max_distance: int = 8192) -> tuple[Path, Path]:
    """The positional profile plot and its CSV (head, distance, score, query, key)."""
    import torch

    from featgraph.analyse import positional as pos
    from featgraph.extract import default_sae
    from featgraph.load import model as model_io
    from featgraph.load import sae as sae_io
    from featgraph.render.plots import positional_plot
    from featgraph.schema import parse_feature_id

    out = export.check_output_file(out, (".png",))
    if max_distance < 1:
        raise BadInput("--max-distance must be ≥ 1")
    if sae_in is None and layer == 0:
        raise BadInput("layer 0 has no residual SAE before it: pass --sae-in")
    attn = model_io.load_attention(model, layer)
    parts = ("W_dec", "b_dec") if features else ("b_dec",)
    sae = sae_io.load(sae_in or default_sae(layer - 1), parts, expect_d_in=attn.config.d_model, role="input SAE")
    curves = [("b_dec", "b_dec", sae.b_dec, sae.b_dec)]
    for spec in features:
        q_id, k_id = _parse_pair(spec)
        vecs = []
        for fid in (q_id, k_id):
            try:
                idx = parse_feature_id(fid)[2]
            except ValueError:
                raise BadInput(f"--feature {fid!r} is not MODEL/SOURCE/INDEX") from None
            if not 0 <= idx < sae.d_sae:
                raise BadInput(f"--feature {fid}: index {idx} is outside the input SAE's {sae.d_sae} features")
            vecs.append(sae.W_dec[idx])
        curves.append((q_id, k_id, vecs[0], vecs[1]))
    dist = pos.distances(max_distance)
    rows, lines, labels = [], [], []
    with torch.inference_mode():
        for q_id, k_id, qv, kv in curves:
            s = pos.profile(attn, qv, kv, dist)
            for h in range(s.shape[0]):
                lines.append(s[h])
                labels.append(f"head {h}" if q_id == "b_dec" else f"head {h}: {q_id.rsplit('/', 1)[-1]}→{k_id.rsplit('/', 1)[-1]}")
                rows.append(pd.DataFrame({"head": h, "distance": dist, "score": s[h], "query": q_id, "key": k_id}))
    csv = out.with_suffix(".csv")
    with export.staged_file(csv) as tmp:
        pd.concat(rows, ignore_index=True).to_csv(tmp, index=False)
    title = f"{model} layer {layer}: rotary profile of the input SAE's b_dec" + (" and features" if features else "")
    positional_plot(np.array(lines), dist, out, title, labels)
    return out, csv


def correlation_command(run_path: Path, out: Path, heads: tuple[int, ...] | None = None) -> tuple[Path, Path, dict]:
    """QK–OV sender correlation of an extracted run's heads: plot, CSV, Pearson r per head."""
    import torch

    from featgraph.analyse import positional as pos
    from featgraph.extract import run_factors
    from featgraph.render.plots import correlation_plot

    out = export.check_output_file(out, (".png",))
    run = export.read_run(Path(run_path))
    m = run.manifest
    if not (m.get("model") or {}).get("ref") or not (m.get("sae_out") or {}).get("ref"):
        raise BadInput("the correlation needs an extracted run with both circuits (it reloads the model and SAEs)")
    n = int(m["model"]["config"]["n_heads"])
    heads = heads if heads is not None else tuple(range(n))
    bad = [h for h in heads if not 0 <= h < n]
    if bad:
        raise BadInput(f"head {bad[0]} is out of range: the layer has heads 0..{n - 1}")
    # The run's own model, SAEs and conventions, reloaded as tetrad cosines are.
    factors = run_factors(m, {(h, c) for h in heads for c in ("QK", "OV")})
    stats = {}
    with torch.inference_mode():
        for h in heads:
            k, q = (torch.from_numpy(x) for x in factors[(h, "QK")])
            v, p = (torch.from_numpy(x) for x in factors[(h, "OV")])
            stats[h] = (pos.key_means(k, q), pos.sender_stats(v, p))
    frames, corr = [], {}
    for h, (x, y) in stats.items():
        frames.append(pd.DataFrame({"head": h, "feature_index": np.arange(len(x)), "mean_qk_as_key": x, "mean_abs_ov": y}))
        corr[h] = float(np.corrcoef(x, y)[0, 1])
    csv = out.with_suffix(".csv")
    with export.staged_file(csv) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
    correlation_plot(stats, out, f"layer {m['model']['layer']}: QK–OV sender correlation")
    return out, csv, corr
