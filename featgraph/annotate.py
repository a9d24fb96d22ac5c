"""`featgraph labels`: attach Neuronpedia descriptions to a run's features."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from featgraph import export
from featgraph.errors import BadInput
from featgraph.load import labels as np_labels
from featgraph.schema import parse_feature_id

log = logging.getLogger(__name__)

RULE = "preferred explainer models first (in the order given), then file order; empty descriptions skipped; whitespace stripped"


@dataclass(frozen=True)
class LabelReport:
    features: int
    labelled: int
    sources: tuple[str, ...]


def attach(run_dir: Path, sources: tuple[Path, ...] = (), prefer: tuple[str, ...] = (),
           progress: Callable[[int, int], None] | None = None) -> LabelReport:
    run = export.read_run(Path(run_dir))
    if run.path is None:
        raise BadInput(f"{run_dir} is an edge file: labels are attached to a run directory (make one with `featgraph import`)")
    feats = run.features.copy()
    models = {fid: parse_feature_id(fid)[0] for fid in feats["id"]}
    if sources:
        table = np_labels.read_labels(sources)
        used = tuple(str(Path(s).resolve()) for s in sources)
    else:
        dirs = []
        for model_id, sae in sorted({(models[f], s) for f, s in zip(feats["id"], feats["sae"])}):
            dirs.append(np_labels.download(model_id, sae, progress=progress))
        table = np_labels.read_labels(dirs)
        used = tuple(f"neuronpedia-datasets:v1/{m}/{s}/explanations" for m, s in
                     sorted({(models[f], s) for f, s in zip(feats["id"], feats["sae"])}))
    chosen = np_labels.choose(table, prefer)
    # A file's modelId must match when it has one; the legacy export always does.
    feats["_model"] = feats["id"].map(models)
    m = feats.merge(chosen.rename(columns={"description": "_desc"}), on=["sae", "index"], how="left")
    ok = m["model"].isna() | (m["model"] == m["_model"])
    m.loc[~ok, "_desc"] = None
    m = m.sort_values("_desc", na_position="last").drop_duplicates("id")
    desc = m.set_index("id")["_desc"]
    feats["description"] = feats["id"].map(desc).astype("string")
    feats.loc[feats["description"].isna(), "description"] = pd.NA
    feats = feats.drop(columns="_model")
    labelled = int(feats["description"].notna().sum())
    export.update_features(run, feats, {"labels": {"sources": list(used), "rule": RULE, "prefer": list(prefer),
                                                   "labelled": labelled, "features": int(len(feats))}})
    return LabelReport(int(len(feats)), labelled, used)
