"""Glue between the CLI and the analyses: read a run, analyse, write results into it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from featgraph import export
from featgraph.analyse import tetrads as tt
from featgraph.analyse.tables import markdown, render
from featgraph.errors import BadInput, FeatgraphError

TETRADS = "tetrads.parquet"


@dataclass
class CommandOutput:
    summary: str
    table: str
    warnings: list[str] = field(default_factory=list)


def select_edges(run: export.Run, head: int | None, circuit: str | None) -> pd.DataFrame:
    e = run.edges
    if head is not None:
        heads = sorted(e["head"].unique().tolist())
        if head not in heads:
            raise BadInput(f"head {head} has no edges in this run: heads present are {', '.join(map(str, heads))}")
        e = e[e["head"] == head]
    if circuit is not None:
        e = e[e["circuit"] == circuit]
        if e.empty:
            raise BadInput(f"the run has no {circuit} edges{'' if head is None else f' for head {head}'}")
    return e


def compute_tetrads(run: export.Run, head: int | None = None, circuit: str | None = None,
                    min_strength: float = 0.0, explain: bool = True) -> tuple[pd.DataFrame, list[str]]:
    t = tt.find_tetrads(select_edges(run, head, circuit), min_strength)
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
    if top < 1:
        raise BadInput(f"--top must be ≥ 1, got {top}")
    run = export.read_run(Path(run_path))
    t, warnings = compute_tetrads(run, head, circuit, min_strength, explain)
    if run.path is not None:
        with export.staged_file(run.path / TETRADS) as tmp:
            t.to_parquet(tmp, index=False)
    s = tt.summary(t)
    summary = (f"{len(t)} tetrads ({int(t['like_to_like'].sum()) if len(t) else 0} like-to-like)"
               + (f"; written to {run.path / TETRADS}" if run.path is not None else "") + "\n" + markdown(s))
    return CommandOutput(summary, render(t.head(top), fmt), warnings)
