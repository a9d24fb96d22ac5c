"""The post's per-head tables: rank, value, source and destination as `index: description`."""

from __future__ import annotations

import pandas as pd

from featgraph.analyse.filters import check_top, head_circuit
from featgraph.core.schema import ROLES, caption


def head_table(edges: pd.DataFrame, features: pd.DataFrame, head: int, circuit: str,
               distinct: bool = False, positive: bool = False, top: int | None = 30, layer: int | None = None) -> pd.DataFrame:
    """Columns: layer, head, circuit, rank, weight, z (when the edges carry it), the two ends as the post shows them
    (`index: label`, named for the circuit — QK: key, query; OV: value, output), then each end's id, index and
    description (`src`, `src_index`, `src_description`, `dst`, …) to join back to the edges and features.

    `distinct` drops like-to-like edges (same feature at both ends); `positive` keeps weight > 0; `layer` picks the
    layer of a multi-layer table (the caller checks that one is given).
    """
    check_top(top)
    e = head_circuit(edges, head, circuit, layer)
    if distinct:
        e = e[e["src"] != e["dst"]]
    if positive:
        e = e[e["weight"] > 0]
    e = e.sort_values("rank", kind="stable")
    if top is not None:
        e = e.head(top)
    desc = features.drop_duplicates("id").set_index("id")["description"] if len(features) else pd.Series(dtype="string")
    src_role, dst_role = ROLES[circuit]

    def name(ids: pd.Series, idx: pd.Series) -> list[str]:
        return [caption(i, d) for i, d in zip(idx, ids.map(desc))]

    cols = {"layer": e["layer"].to_numpy(), "head": e["head"].to_numpy(), "circuit": e["circuit"].to_numpy(),
            "rank": e["rank"].to_numpy(), "weight": e["weight"].to_numpy()}
    if "z" in e.columns:
        cols["z"] = e["z"].to_numpy()
    cols |= {src_role: name(e["src"], e["src_index"]), dst_role: name(e["dst"], e["dst_index"])}
    for end in ("src", "dst"):
        cols |= {end: e[end].to_numpy(), f"{end}_index": e[f"{end}_index"].to_numpy(),
                 f"{end}_description": e[end].map(desc).astype("string").to_numpy()}
    out = pd.DataFrame(cols)
    return out.astype({c: "string" for c in ("circuit", "src", "src_description", "dst", "dst_description", src_role, dst_role)})


def post_view(table: pd.DataFrame) -> pd.DataFrame:
    """The post's columns of a `head_table`: rank, weight, z and the two ends as `index: label` (what markdown shows)."""
    keep = [c for c in table.columns if c not in ("layer", "head", "circuit", "src", "src_index", "src_description",
                                                 "dst", "dst_index", "dst_description")]
    return table[keep]
