"""`featgraph report`: one offline HTML page per run — the post, regenerated for any layer or SAE pair."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from featgraph.analyse.tables import head_table
from featgraph.analyse.tetrads import summary as tetrad_summary
from featgraph.errors import FeatgraphError
from featgraph.export import Run, read_run, staged_dir
from featgraph.render.viz import write_viz

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f3f3f3}h2{border-bottom:2px solid #444;margin-top:2em}code{background:#f5f5f5;padding:1px 3px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}.note{color:#666}img{max-width:100%}"""


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class='note'>none</p>"
    return df.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def write_report(run_path: Path, out: Path, top: int = 15, force: bool = True, plots: bool = True) -> tuple[Path, list[str]]:
    """Write DIR/index.html plus per-head viz pages and plots; returns (index path, warnings)."""
    from featgraph.analyse.report_ops import compute_tetrads, correlation_command, positional_command

    run = read_run(Path(run_path))
    warnings: list[str] = []
    out = Path(out)
    with staged_dir(out, force) as tmp:
        tet, w = compute_tetrads(run, explain=False)
        warnings += w
        tsum = tetrad_summary(tet)
        figures = []
        m = run.manifest
        if plots and (m.get("model") or {}).get("ref"):
            try:
                positional_command(m["model"]["ref"], int(m["model"]["layer"]), (m.get("sae_in") or {}).get("ref"), [], tmp / "positional.png")
                figures.append(("Rotary positional profile of the input SAE's b_dec", "positional.png", "positional.csv"))
                if (m.get("sae_out") or {}).get("ref"):
                    correlation_command(run.path, tmp / "correlation.png")
                    figures.append(("QK–OV sender correlation", "correlation.png", "correlation.csv"))
            except FeatgraphError as e:
                warnings.append(f"plots skipped: {e}")
        sections = []
        for (head, circ), e in run.edges.groupby(["head", "circuit"], sort=True):
            page = f"head{head}_{circ.lower()}.html"
            write_viz(run, int(head), circ, tmp / page, top=100)
            st = (m.get("stats") or {}).get(f"{head}/{circ}", {})
            stats = pd.DataFrame([{
                "edges": len(e), "like-to-like": int((e["src"] == e["dst"]).sum()),
                "max |w|": float(e["weight"].abs().max()), "min |w| kept": float(e["weight"].abs().min()),
                "positive": int((e["weight"] > 0).sum()),
                "matrix mean": st.get("mean"), "matrix std": st.get("std"),
                "tetrads": int(len(tet[(tet["head"] == head) & (tet["circuit"] == circ)])),
            }])
            tt = tet[(tet["head"] == head) & (tet["circuit"] == circ)].head(5)
            sections.append(
                f"<h2 id='h{head}{circ}'>Head {head} · {circ}</h2>"
                f"<p><a href='{page}'>interactive graph (top 100 edges)</a></p>{_table(stats)}"
                f"<div class='grid'><div><h3>Top {top}</h3>{_table(head_table(run.edges, run.features, int(head), circ, top=top))}</div>"
                f"<div><h3>Top {top} without like-to-like</h3>{_table(head_table(run.edges, run.features, int(head), circ, distinct=True, top=top))}</div></div>"
                f"<h3>Strongest tetrads</h3>{_table(tt[['src_a', 'src_b', 'dst_x', 'dst_y', 'w_ax', 'w_ay', 'w_bx', 'w_by', 'strength', 'like_to_like']] if len(tt) else tt)}"
            )
        figs = "".join(f"<h3>{html.escape(t)}</h3><img src='{p}' alt='{html.escape(t)}'><p><a href='{c}'>data (CSV)</a></p>" for t, p, c in figures)
        if not figures:
            figs = "<p class='note'>Positional and correlation plots need the run's model and SAEs (an extracted run).</p>"
        toc = " · ".join(f"<a href='#h{h}{c}'>{h} {c}</a>" for h, c in run.edges.groupby(["head", "circuit"], sort=True).groups)
        meta = {k: m.get(k) for k in ("model", "sae_in", "sae_out", "conventions", "selection") if m.get(k) is not None}
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>featgraph report: {html.escape(run.path.name if run.path else 'edges')}</title>"
                f"<style>{CSS}</style></head><body><h1>featgraph report: {html.escape(run.path.name if run.path else 'edges')}</h1>"
                f"<p>{len(run.edges)} edges between {len(run.features)} features; {len(tet)} tetrads. Heads: {toc}</p>"
                f"<h2>Tetrads per head</h2>{_table(tsum)}<h2>Figures</h2>{figs}{''.join(sections)}"
                f"<h2>Manifest</h2><pre>{html.escape(json.dumps(meta, indent=2, default=str))}</pre></body></html>")
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html", warnings
