"""Selecting edges to show — one head's / circuit's, a neighbourhood — with the errors every command shares."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from featgraph.core.schema import normalise_circuit
from featgraph.errors import BadInput, BadValue


def head_circuit(edges: pd.DataFrame, head: int | None = None, circuit: str | None = None,
                 layer: int | None = None) -> pd.DataFrame:
    """The edges of `layer`, `head` and/or `circuit` (None: all); a clear error when there are none."""
    e = edges
    in_layer = ""
    if layer is not None:
        layers = sorted(int(x) for x in e["layer"].unique())
        if layer not in layers:
            raise BadInput(f"layer {layer} has no edges in this run: layers present are {', '.join(map(str, layers))}")
        e = e[e["layer"] == layer]
        in_layer = f" of layer {layer}" if len(layers) > 1 else ""
    if head is not None:
        heads = sorted(e["head"].unique().tolist())
        if head not in heads:
            raise BadInput(f"head {head}{in_layer} has no edges in this run: heads present are {', '.join(map(str, heads))}")
        e = e[e["head"] == head]
    if circuit is not None:
        present = sorted(e["circuit"].unique())
        e = e[e["circuit"] == circuit]
        if e.empty:
            where = "" if head is None else f" for head {head}{in_layer}"
            raise BadInput(f"the run has no {circuit} edges{where}: circuits present are {', '.join(present)}")
    return e


def check_top(top: int | None, param: str = "top") -> None:
    """A row count must be ≥ 1 (None: no limit)."""
    if top is not None and top < 1:
        raise BadValue(param, top, "must be ≥ 1")


def subgraph(edges: pd.DataFrame, head: int | None, circuit: str, top: int = 100, feature: str | Sequence[str] | None = None,
             hops: int = 1, layer: int | None = None) -> pd.DataFrame:
    """The edges to draw: the strongest `top` of `head` (None: all heads) of `layer` (None: all layers), or of
    those within `hops` of `feature` (one id or several: the union of their neighbourhoods)."""
    check_top(top)
    e = head_circuit(edges, head, circuit, layer)
    if feature is not None:
        centres = [feature] if isinstance(feature, str) else list(feature)
        if hops < 1:
            raise BadValue("hops", hops, "must be ≥ 1")
        present = set(e["src"]) | set(e["dst"])
        where = (f"head {head}" if head is not None else "any head") + (f" of layer {layer}" if layer is not None else "")
        missing = [f for f in centres if f not in present]
        if missing and len(missing) == len(centres):
            raise BadInput(f"feature {missing[0]!r} has no {circuit} edge in {where}: check the id (MODEL/SOURCE/INDEX)")
        import networkx as nx

        g = nx.Graph()
        g.add_edges_from(zip(e["src"], e["dst"]))
        near: set[str] = set()
        for c in centres:
            if c in present:
                near |= set(nx.single_source_shortest_path_length(g, c, cutoff=hops))
        e = e[e["src"].isin(near) & e["dst"].isin(near)]
    return e.sort_values(["rank", "layer", "head"], kind="stable").head(top)


def circuit_param(circuit: str | None) -> str | None:
    """`qk`/`QK` -> `QK` (None stays None); anything else is a BadValue."""
    if circuit is None:
        return None
    try:
        return normalise_circuit(circuit)
    except ValueError:
        raise BadValue("circuit", circuit, "must be qk or ov") from None
