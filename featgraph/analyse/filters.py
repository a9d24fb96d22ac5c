"""Selecting one head's / circuit's edges, with the errors every command shares."""

from __future__ import annotations

import pandas as pd

from featgraph.errors import BadInput


def head_circuit(edges: pd.DataFrame, head: int | None = None, circuit: str | None = None) -> pd.DataFrame:
    """The edges of `head` and/or `circuit` (None: all); a clear error when there are none."""
    e = edges
    if head is not None:
        heads = sorted(e["head"].unique().tolist())
        if head not in heads:
            raise BadInput(f"head {head} has no edges in this run: heads present are {', '.join(map(str, heads))}")
        e = e[e["head"] == head]
    if circuit is not None:
        present = sorted(e["circuit"].unique())
        e = e[e["circuit"] == circuit]
        if e.empty:
            where = "" if head is None else f" for head {head}"
            raise BadInput(f"the run has no {circuit} edges{where}: circuits present are {', '.join(present)}")
    return e


def positive_top(top: int | None) -> None:
    if top is not None and top < 1:
        raise BadInput(f"--top must be ≥ 1, got {top}")
