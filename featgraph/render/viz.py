"""Interactive graph pages: pyvis builds the network, our template draws it, offline.

pyvis (0.3.2) holds the nodes, edges and vis-network options; the page itself comes from
`templates/graph.html` rather than pyvis's template, whose custom popup assumes every hovered
item is a node and throws a TypeError on edges (so edge weights never showed), and which pulls
bootstrap from a CDN. vis-network, shipped inside pyvis, is inlined: the page needs no network.

What the page shows: nodes captioned `index: short label`, coloured *and* shaped by SAE; edges
from source to destination (key → query, value → output), coloured by sign, width ∝ |weight|;
hover for the full label or the weight, z and rank; click for a side panel with the Neuronpedia
link and the feature's edges; a search box over labels; a legend. The layout is the explorer's
(templates/layout.js, run in the page): a page of one layer's edges in two columns, keys → queries
or values → outputs, ordered to reduce crossings (a like-to-like edge joins a feature's two sides);
a page spanning layers (an atlas) with layers as rows. The first view is fitted to every node and
its label.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from featgraph.core.schema import NEURONPEDIA, ROLES, caption, source_layer
from featgraph.errors import BadValue
from featgraph.render.html import short_caption
from featgraph.runs.files import staged_file

MAX_EDGES = 1000  # a bigger page is a hairball and slow to open; neighbourhoods are the way in
POS_COLOR, NEG_COLOR = "#2166ac", "#b2182b"
SAE_PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
SAE_SHAPES = ["dot", "square", "diamond", "triangle", "star", "hexagon", "triangleDown", "ellipse"]
_GLYPH = {"dot": "●", "square": "■", "diamond": "◆", "triangle": "▲", "star": "★", "hexagon": "⬢",
          "triangleDown": "▼", "ellipse": "⬮"}
CAPTION = 30  # characters of a node caption


def check_size(n_edges: int) -> None:
    if n_edges > MAX_EDGES:
        raise BadValue("top", n_edges, f"asks for more edges than a page can show legibly ({MAX_EDGES:,}): lower it, or centre "
                       "the page on a feature (--feature ID or --match TEXT, with --hops; in Python feature=, match=, hops=)", value_first=False)


def build_html(edges: pd.DataFrame, features: pd.DataFrame, title: str, centres: Sequence[str] = ()) -> str:
    """The page for `edges` (one circuit; any heads), nodes described by `features`; `centres` (the
    features a neighbourhood is drawn around) are drawn larger with a heavy border."""
    from pyvis.network import Network

    check_size(len(edges))
    feats = features.drop_duplicates("id").set_index("id")
    ids = list(pd.unique(pd.concat([edges["src"], edges["dst"]], ignore_index=True)))
    saes = list(dict.fromkeys(sorted({i.split("/")[1] for i in edges["src"]}) + sorted({i.split("/")[1] for i in edges["dst"]})))
    style = {s: (SAE_PALETTE[i % len(SAE_PALETTE)], SAE_SHAPES[i % len(SAE_SHAPES)]) for i, s in enumerate(saes)}
    circuit = str(edges["circuit"].iloc[0])
    src_role, dst_role = ROLES[circuit]

    net = Network(height="100%", width="100%", directed=True, cdn_resources="in_line")
    meta = {}
    for fid in ids:
        sae, idx = fid.split("/")[1], int(fid.rsplit("/", 1)[1])
        desc = feats["description"].get(fid) if fid in feats.index else None
        url = feats["url"].get(fid) if fid in feats.index else None
        color, shape = style[sae]
        big = fid in centres
        net.add_node(fid, label=short_caption(idx, desc, CAPTION), shape=shape, color=color, size=16 if big else 10,
                     borderWidth=4 if big else 1, font={"size": 15, "bold": True} if big else {})
        layer = feats["layer"].get(fid) if fid in feats.index and "layer" in feats.columns else None
        if layer is None or pd.isna(layer):
            layer = source_layer(sae)
        meta[fid] = {"caption": caption(idx, desc), "sae": sae, "feature_index": idx, "layer": None if layer is None else int(layer),
                     "url": url if isinstance(url, str) and url else f"{NEURONPEDIA}/{fid}"}
    wmax = float(edges["weight"].abs().max()) or 1.0
    z = edges["z"] if "z" in edges.columns else pd.Series(np.nan, index=edges.index)
    rows = []
    for i, (s, d, w, r, h, zz) in enumerate(zip(edges["src"], edges["dst"], edges["weight"], edges["rank"], edges["head"], z)):
        w = float(w)
        net.add_edge(s, d, id=f"e{i}", width=0.6 + 6 * abs(w) / wmax, color=POS_COLOR if w > 0 else NEG_COLOR, arrows="to")
        rows.append({"id": f"e{i}", "src": str(s), "dst": str(d), "head": int(h), "weight": w, "rank": int(r),
                     "z": None if pd.isna(zz) else float(zz)})
    net.set_options(json.dumps(_options()))
    nodes, vis_edges, _, _, _, options = net.get_network_data()
    legend = [{"sae": s, "color": c, "glyph": _GLYPH[sh], "role": _sae_role(s, edges, src_role, dst_role)}
              for s, (c, sh) in style.items()]
    data = {"nodes": nodes, "edges": vis_edges, "options": json.loads(options), "meta": meta, "edgeInfo": rows,
            "title": title, "circuit": circuit, "roles": [src_role, dst_role], "legend": legend, "layout": page_layout(edges),
            "colors": {"pos": POS_COLOR, "neg": NEG_COLOR}}
    return _render(title, data)


def page_layout(edges: pd.DataFrame) -> str:
    """The layout a page draws: layers as rows when its edges span layers (an atlas), else two columns (as
    `run.show` chooses)."""
    return "layers" if edges["layer"].nunique() > 1 else "columns"


def _sae_role(sae: str, edges: pd.DataFrame, src_role: str, dst_role: str) -> str:
    as_src = edges["src"].str.split("/").str[1].eq(sae).any()
    as_dst = edges["dst"].str.split("/").str[1].eq(sae).any()
    return f"{src_role} & {dst_role}" if as_src and as_dst else (src_role if as_src else dst_role)


def _options() -> dict:
    return {
        "physics": {"enabled": False},
        "interaction": {"hover": True, "tooltipDelay": 80, "navigationButtons": False, "keyboard": False},
        "nodes": {"font": {"size": 13, "face": "system-ui, sans-serif", "strokeWidth": 3, "strokeColor": "#ffffff"},
                  "borderWidth": 1},
        "edges": {"smooth": {"enabled": True, "type": "curvedCW", "roundness": 0.12},
                  "arrows": {"to": {"enabled": True, "scaleFactor": 0.55}},
                  "selfReference": {"size": 22, "angle": 0.785, "renderBehindTheNode": False},
                  "hoverWidth": 1.5, "selectionWidth": 2},
    }


def _render(title: str, data: dict) -> str:
    from importlib import resources

    import pyvis

    lib = Path(pyvis.__file__).parent / "templates" / "lib" / "vis-9.1.2"
    template = resources.files("featgraph.render").joinpath("templates", "graph.html").read_text(encoding="utf-8")
    layout_js = resources.files("featgraph.render").joinpath("templates", "layout.js").read_text(encoding="utf-8")
    # Inline JSON must not close the <script> element it sits in.
    payload = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    return (template.replace("{{TITLE}}", _esc(title))
            .replace("/*{{VIS_CSS}}*/", (lib / "vis-network.css").read_text(encoding="utf-8"))
            .replace("/*{{VIS_JS}}*/", (lib / "vis-network.min.js").read_text(encoding="utf-8"))
            .replace("/*{{LAYOUT_JS}}*/", layout_js.replace("</script", "<\\/script"))
            .replace("/*{{DATA}}*/null", payload))


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def write_page(page: str, out: Path) -> Path:
    with staged_file(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
