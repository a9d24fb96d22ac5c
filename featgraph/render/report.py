"""The run report's HTML page, built from tables and figures the caller prepared (no analysis here)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

import pandas as pd

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f3f3f3}h2{border-bottom:2px solid #444;margin-top:2em}code{background:#f5f5f5;padding:1px 3px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}.note{color:#666}img{max-width:100%}"""


@dataclass(frozen=True)
class HeadSection:
    """One (head, circuit): its statistics row, tables, strongest tetrads and the file name of its graph page."""

    head: int
    circuit: str
    page: str
    stats: pd.DataFrame
    top: pd.DataFrame
    distinct: pd.DataFrame
    tetrads: pd.DataFrame


@dataclass(frozen=True)
class Figure:
    title: str
    image: str
    data: str


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class='note'>none</p>"
    return df.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


VALIDATION_NOTE = ("Per head, Spearman ρ (rho_) and variance share (r2_ = 1 − Var(real − predicted) / Var(real)) of the "
                   "real values predicted from the run's edges (selected), all active feature pairs at the stored distance "
                   "(active_d0), with the true distance (active), plus the b_dec terms (active_bias), and the exact sum "
                   "with the SAE's error (exact). See docs/maths.md.")


def build_page(name: str, n_edges: int, n_features: int, n_tetrads: int, tetrad_summary: pd.DataFrame,
               sections: list[HeadSection], figures: list[Figure], meta: dict, top: int,
               validation: tuple[pd.DataFrame, Figure] | None = None) -> str:
    parts = []
    for s in sections:
        anchor = f"h{s.head}{s.circuit}"
        parts.append(
            f"<h2 id='{anchor}'>Head {s.head} · {s.circuit}</h2>"
            f"<p><a href='{html.escape(s.page)}'>interactive graph (top 100 edges)</a></p>{_table(s.stats)}"
            f"<div class='grid'><div><h3>Top {top}</h3>{_table(s.top)}</div>"
            f"<div><h3>Top {top} without like-to-like</h3>{_table(s.distinct)}</div></div>"
            f"<h3>Strongest tetrads</h3>{_table(s.tetrads)}"
        )
    figs = "".join(f"<h3>{html.escape(f.title)}</h3><img src='{html.escape(f.image)}' alt='{html.escape(f.title)}'>"
                   f"<p><a href='{html.escape(f.data)}'>data (CSV)</a></p>" for f in figures)
    if not figures:
        figs = "<p class='note'>Positional and correlation plots need the run's model and SAEs (an extracted run).</p>"
    if validation is not None:
        table, fig = validation
        figs += (f"<h2>Validation on prompts</h2><p class='note'>{html.escape(VALIDATION_NOTE)}</p>{_table(table)}"
                 f"<img src='{html.escape(fig.image)}' alt='{html.escape(fig.title)}'>")
    toc = " · ".join(f"<a href='#h{s.head}{s.circuit}'>{s.head} {s.circuit}</a>" for s in sections)
    title = html.escape(name)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>featgraph report: {title}</title>"
            f"<style>{CSS}</style></head><body><h1>featgraph report: {title}</h1>"
            f"<p>{n_edges} edges between {n_features} features; {n_tetrads} tetrads. Heads: {toc}</p>"
            f"<h2>Tetrads per head</h2>{_table(tetrad_summary)}<h2>Figures</h2>{figs}{''.join(parts)}"
            f"<h2>Manifest</h2><pre>{html.escape(json.dumps(meta, indent=2, default=str))}</pre></body></html>")
