"""The post's per-head tables: rank, value, source and destination as `index: description`."""

from __future__ import annotations

import pandas as pd

from featgraph.analyse.filters import head_circuit, positive_top
from featgraph.errors import BadInput
from featgraph.schema import ROLES


def head_table(edges: pd.DataFrame, features: pd.DataFrame, head: int, circuit: str,
               distinct: bool = False, positive: bool = False, top: int | None = 30) -> pd.DataFrame:
    """Columns: rank, weight, then the two ends named for the circuit (QK: key, query; OV: value, output).

    `distinct` drops like-to-like edges (same feature at both ends); `positive` keeps weight > 0.
    """
    positive_top(top)
    e = head_circuit(edges, head, circuit)
    if distinct:
        e = e[e["src"] != e["dst"]]
    if positive:
        e = e[e["weight"] > 0]
    e = e.sort_values("rank", kind="stable")
    if top is not None:
        e = e.head(top)
    desc = features.set_index("id")["description"] if len(features) else pd.Series(dtype="string")
    src_role, dst_role = ROLES[circuit]

    def name(ids: pd.Series, idx: pd.Series) -> list[str]:
        d = ids.map(desc)
        return [f"{i}: {x}" if isinstance(x, str) and x else f"{i}" for i, x in zip(idx, d)]

    return pd.DataFrame({
        "rank": e["rank"].to_numpy(),
        "weight": e["weight"].to_numpy(),
        src_role: name(e["src"], e["src_index"]),
        dst_role: name(e["dst"], e["dst_index"]),
    })


def render(df: pd.DataFrame, fmt: str) -> str:
    """Text for md | csv | json."""
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2, force_ascii=False) + "\n"
    if fmt == "md":
        return markdown(df)
    raise BadInput(f"--format must be md, csv or json, got {fmt!r}")


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)

    def cell(v) -> str:
        if v is None or (not isinstance(v, str) and pd.api.types.is_scalar(v) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
