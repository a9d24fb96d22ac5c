"""The explorer page: what `featgraph serve` serves and what `run.show()` draws in a notebook (from prepared data).

The page (templates/explorer/: index.html, app.js, app.css) draws with sigma.js 3 and graphology, vendored in
templates/explorer/vendor/ with their licences (see its README), so it needs no network. Served, it loads the
assets from the server and asks its /api; static (`page(data)`), every asset and the graph are inlined.

The graph it draws travels as `graph_payload`: features by id (description, url, layer, feature_index, sae) and edges
(src, dst, layer, head, circuit, weight, rank, z).
"""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pandas as pd

from featgraph.core.schema import FEATURE_INDEX, NEURONPEDIA

# What the server may send, by URL path under /static/: name -> (file under templates/explorer, content type).
ASSETS = {
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "app.css": ("app.css", "text/css; charset=utf-8"),
    "layout.js": ("../layout.js", "text/javascript; charset=utf-8"),
    "vendor/sigma.min.js": ("vendor/sigma.min.js", "text/javascript; charset=utf-8"),
    "vendor/graphology.umd.min.js": ("vendor/graphology.umd.min.js", "text/javascript; charset=utf-8"),
    "vendor/graphology-library.min.js": ("vendor/graphology-library.min.js", "text/javascript; charset=utf-8"),
    "vendor/sigma.LICENSE.txt": ("vendor/sigma.LICENSE.txt", "text/plain; charset=utf-8"),
    "vendor/graphology.LICENSE.txt": ("vendor/graphology.LICENSE.txt", "text/plain; charset=utf-8"),
    "vendor/graphology-library.LICENSE.txt": ("vendor/graphology-library.LICENSE.txt", "text/plain; charset=utf-8"),
}
MAX_STATIC_EDGES = 5000  # edges a page drawn without a server holds (run.show)
SCRIPTS = ("vendor/graphology.umd.min.js", "vendor/graphology-library.min.js", "vendor/sigma.min.js", "layout.js", "app.js")


def asset(name: str) -> bytes:
    """One of ASSETS' files (a KeyError for anything else: nothing outside the list is ever read)."""
    path, _ = ASSETS[name]
    if path.startswith("../"):  # templates/layout.js, shared with the graph pages (render.viz)
        return resources.files("featgraph.render").joinpath("templates", *path[3:].split("/")).read_bytes()
    return _dir().joinpath(*path.split("/")).read_bytes()


def _dir():
    return resources.files("featgraph.render").joinpath("templates", "explorer")


def served_page() -> str:
    """The page as the server sends it: assets by URL (the server's CSP allows no inline script)."""
    head = '<link rel="stylesheet" href="/static/app.css">'
    scripts = "\n".join(f'<script src="/static/{s}"></script>' for s in SCRIPTS)
    return _template().replace("<!--{{HEAD}}-->", head).replace("<!--{{SCRIPTS}}-->", scripts)


def page(data: dict) -> str:
    """A self-contained page drawing `data` ({title, where, layout, centres, graph: graph_payload}) with no server."""
    payload = _inline_json(data)
    head = f"<style>{asset('app.css').decode()}</style>"
    scripts = "".join(f"<script>{_inline_js(asset(s).decode())}</script>\n" for s in SCRIPTS[:-1])
    scripts = f"<script>window.FEATGRAPH_DATA = {payload};</script>\n{scripts}<script>{_inline_js(asset('app.js').decode())}</script>"
    return _template().replace("<!--{{HEAD}}-->", head).replace("<!--{{SCRIPTS}}-->", scripts)


def _template() -> str:
    return _dir().joinpath("index.html").read_text(encoding="utf-8")


def _inline_json(data) -> str:
    # Inline JSON must not close the <script> element it sits in, nor open a comment.
    return json.dumps(data, allow_nan=False).replace("</", "<\\/").replace("<!--", "<\\!--")


def _inline_js(code: str) -> str:
    return code.replace("</script", "<\\/script")


def _num(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def feature_payload(features, ids) -> dict[str, dict]:
    """{id: {description, url, layer, feature_index, sae}} for `ids` (`features` indexed by id, or a FeatureLookup over
    them; an id not there gets its parts)."""
    ids = [str(i) for i in ids]
    if isinstance(features, FeatureLookup):
        return features.payload(ids)
    f = features.reindex(ids)

    def column(name: str) -> list:
        return _pylist(f[name] if name in f.columns else pd.Series(None, index=f.index, dtype=object))

    return _feature_rows(ids, *(column(n) for n in ("description", "url", "layer", FEATURE_INDEX, "sae")))


class FeatureLookup:
    """`feature_payload` over one feature table (indexed by id) answered many times (the server): its index hashed
    and its columns made contiguous once, so a payload of k features reads k rows (reindexing the table costs
    ~10 ms at 3·10⁵ features, whatever k)."""

    def __init__(self, features: pd.DataFrame):
        import pyarrow as pa

        self.index = features.index
        self.index.get_indexer(self.index[:1])  # builds the index's hash table now
        self.columns: list = []
        for name in ("description", "url", "layer", FEATURE_INDEX, "sae"):
            if name not in features.columns:
                self.columns.append(None)
                continue
            arr = features[name].array
            chunks = getattr(arr, "_pa_array", None)
            if chunks is None:
                self.columns.append(features[name].to_numpy())
            else:  # one chunk: used as it is (no copy)
                self.columns.append(chunks.chunk(0) if chunks.num_chunks == 1 else pa.chunked_array(chunks).combine_chunks())

    def payload(self, ids: list[str]) -> dict[str, dict]:
        import pyarrow as pa

        pos = self.index.get_indexer(ids) if ids else np.zeros(0, dtype="int64")
        found = pos >= 0
        where = np.flatnonzero(found)
        cols = []
        for a in self.columns:
            vals: list = [None] * len(ids)
            if a is not None and len(where):
                rows = pos[where]
                got = a.take(pa.array(rows)).to_pylist() if isinstance(a, pa.Array) else a[rows].tolist()
                for i, v in zip(where, got):
                    vals[i] = None if _missing(v) else v
            cols.append(vals)
        return _feature_rows(ids, *cols)


def _missing(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _pylist(c: pd.Series) -> list:
    return c.astype(object).where(c.notna(), None).tolist()


def _feature_rows(ids, descriptions, urls, layers, indices, saes) -> dict[str, dict]:
    out = {}
    for fid, desc, url, layer, index, sae in zip(ids, descriptions, urls, layers, indices, saes):
        if index is None or sae is None:
            parts = fid.split("/")
            index = int(parts[-1]) if index is None and parts[-1].isdigit() else index
            sae = parts[1] if sae is None and len(parts) > 2 else sae
        out[fid] = {"description": None if desc is None else str(desc),
                    "url": url if isinstance(url, str) and url else f"{NEURONPEDIA}/{fid}",
                    "layer": None if layer is None else int(layer), FEATURE_INDEX: None if index is None else int(index),
                    "sae": None if sae is None else str(sae)}
    return out


def edge_payload(edges: pd.DataFrame) -> list[dict]:
    """Edges as the page takes them; columns src, dst, layer, head, circuit, weight and, if present, rank and z."""
    def column(name: str) -> list:
        if name not in edges.columns:
            return [None] * len(edges)
        return [None if _missing(v) else v for v in edges[name].tolist()]

    return [{"src": str(s), "dst": str(d), "layer": int(l), "head": int(h), "circuit": str(c), "weight": float(w),
             "rank": None if r is None else int(r), "z": _num(z)}
            for s, d, l, h, c, w, r, z in zip(*(column(n) for n in ("src", "dst", "layer", "head", "circuit", "weight", "rank", "z")))]


def graph_payload(edges: pd.DataFrame, features, extra=()) -> dict:
    """{features, edges} for `edges` (features indexed by id, or a FeatureLookup); `extra` ids are described too."""
    ids = list(dict.fromkeys([*edges["src"].astype(str), *edges["dst"].astype(str), *extra])) if len(edges) else list(extra)
    return {"features": feature_payload(features, ids), "edges": edge_payload(edges)}


_PAIRS = [  # console columns that name an edge: (src column, dst column, weight column, circuit)
    ("src", "dst", "weight", None), ("key", "query", "weight", "QK"), ("src", "mid", "w1", "OV"), ("mid", "dst", "w2", None),
    ("key_value", "query", "qk_weight", "QK"), ("key_value", "output", "ov_weight", "OV"),
    ("src_a", "dst_x", "w_ax", None), ("src_a", "dst_y", "w_ay", None), ("src_b", "dst_x", "w_bx", None), ("src_b", "dst_y", "w_by", None),
]


def result_edges(df: pd.DataFrame) -> pd.DataFrame | None:
    """The edges a console result names, where its columns say enough (ends, weight, layer and head)."""
    if "layer" not in df.columns or "head" not in df.columns:
        return None
    parts = []
    for s, d, w, circuit in _PAIRS:
        if not {s, d, w} <= set(df.columns):
            continue
        if circuit is None and "circuit" not in df.columns:
            continue
        part = pd.DataFrame({"src": df[s], "dst": df[d], "weight": df[w], "layer": df["layer"], "head": df["head"],
                             "circuit": df["circuit"] if circuit is None else circuit})
        if (s, d) == ("mid", "dst"):
            part["layer"] = df["layer"] + 1
            part["head"] = df["next_head"] if "next_head" in df.columns else df["head"]
        parts.append(part)
    if not parts:
        return None
    e = pd.concat(parts, ignore_index=True).dropna(subset=["src", "dst", "weight", "layer", "head"])
    return e.drop_duplicates(["src", "dst", "layer", "head", "circuit"])


def fixed_columns(df: pd.DataFrame, given: dict, layers: list[int]) -> pd.DataFrame:
    """A head query's rows with the layer, head and circuit its parameters fixed (`given`: the query's parameters
    with their defaults; layer -1 is the run's only layer), where the rows leave them out."""
    out = df.copy()
    for k in ("layer", "head", "circuit"):
        if k in out.columns or given.get(k) is None or not len(out):
            continue
        v = str(given[k])
        if k == "layer" and v == "-1":
            if len(layers) != 1:
                continue
            v = str(layers[0])
        out[k] = v.upper() if k == "circuit" else int(v)
    return out


class View:
    """The explorer page drawing one graph, for Jupyter: `_repr_html_` shows it inline in an iframe (every asset
    inlined, no server, no widget extension); `save(path)` writes the page."""

    def __init__(self, page: str, height: int = 640):
        self.page, self.height = page, int(height)

    def _repr_html_(self) -> str:
        import html

        return (f'<iframe srcdoc="{html.escape(self.page, quote=True)}" style="width:100%;height:{self.height}px;'
                'border:1px solid #ddd" sandbox="allow-scripts allow-popups allow-popups-to-escape-sandbox"></iframe>')

    def save(self, path) -> None:
        from pathlib import Path

        from featgraph.runs.files import staged_file

        with staged_file(Path(path)) as tmp:
            tmp.write_text(self.page, encoding="utf-8")
