"""Interactive per-head graph pages with pyvis, working offline.

pyvis's template pulls bootstrap from a CDN even with `cdn_resources="in_line"`;
those tags only style a card, so they are removed and vis-network is inlined:
the page needs no network. Arrows follow information flow (source → destination, docs/maths.md).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from featgraph.files import staged_file
from featgraph.schema import ROLES, caption

PHYSICS_LIMIT = 150  # above this many nodes: a precomputed layout, physics off
POS_COLOR, NEG_COLOR = "#2166ac", "#b2182b"
SAE_PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
_CDN = re.compile(r"<link[^>]*https?://[^>]*>|<script[^>]*src=\"https?://[^\"]*\"[^>]*>\s*</script>", re.S)


def build_html(edges: pd.DataFrame, features: pd.DataFrame, title: str) -> str:
    """The page for `edges` (one head and circuit), nodes described by `features`."""
    from pyvis.network import Network

    feats = features.set_index("id")
    ids = pd.unique(pd.concat([edges["src"], edges["dst"]]))
    saes = sorted({i.split("/")[1] for i in ids})
    colors = {s: SAE_PALETTE[i % len(SAE_PALETTE)] for i, s in enumerate(saes)}
    net = Network(height="780px", width="100%", directed=True, cdn_resources="in_line", heading="")
    big = len(ids) > PHYSICS_LIMIT
    pos = _layout(edges) if big else {}
    circuit = edges["circuit"].iloc[0]
    src_role, dst_role = ROLES[circuit]
    for fid in ids:
        sae, idx = fid.split("/")[1], int(fid.rsplit("/", 1)[1])
        desc = feats["description"].get(fid) if fid in feats.index else None
        url = feats["url"].get(fid) if fid in feats.index else f"https://www.neuronpedia.org/{fid}"
        label = caption(idx, desc)
        tip = (f"<b>{html.escape(label)}</b><br>{html.escape(sae)}<br>"
               f"<a href=\"{html.escape(str(url))}\" target=\"_blank\">Neuronpedia</a>")
        kw = {"x": pos[fid][0], "y": pos[fid][1], "physics": False} if big else {}
        net.add_node(fid, label=str(idx), title=tip, color=colors[sae], shape="dot", size=12, **kw)
    wmax = float(edges["weight"].abs().max()) or 1.0
    for s, d, w, r in zip(edges["src"], edges["dst"], edges["weight"], edges["rank"]):
        tip = f"{circuit} head {int(edges['head'].iloc[0])}: {src_role} → {dst_role}\nweight {float(w):.4g}, rank {int(r)}"
        net.add_edge(s, d, value=float(abs(w)) / wmax, width=1 + 7 * float(abs(w)) / wmax, title=tip,
                     color=POS_COLOR if w > 0 else NEG_COLOR, arrows="to")
    net.toggle_physics(not big)
    page = net.generate_html(notebook=False)
    page = _CDN.sub("", page)
    legend = (f"<div style='font-family:sans-serif;margin:8px'><b>{html.escape(title)}</b> — "
              f"arrows {src_role} → {dst_role}; <span style='color:{POS_COLOR}'>positive</span> / "
              f"<span style='color:{NEG_COLOR}'>negative</span> weights, width ∝ |weight|; node colour = SAE: "
              + ", ".join(f"<span style='color:{c}'>{html.escape(s)}</span>" for s, c in colors.items()) + "</div>")
    page = page.replace("<body>", "<body>\n" + legend, 1)
    page = page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)
    return page


def _layout(edges: pd.DataFrame) -> dict:
    import networkx as nx

    g = nx.Graph()
    g.add_edges_from(zip(edges["src"], edges["dst"]))
    pos = nx.spring_layout(g, seed=0, k=1.5 / np.sqrt(max(g.number_of_nodes(), 1)))
    return {n: (float(x) * 1500, float(y) * 1500) for n, (x, y) in pos.items()}


def write_page(page: str, out: Path) -> Path:
    with staged_file(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
