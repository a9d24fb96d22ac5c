"""Attaching Neuronpedia descriptions to a run's features (pure: tables in, tables out).

A label matches a feature when its source id (`sae`) and index agree, and its
model id too when the label file names one. Features a label source does not
cover keep the description they had: labels are never lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from featgraph.core.schema import FEATURE_INDEX, parse_feature_id
from featgraph.errors import BadInput

RULE = "preferred explainer models first (in the order given), then file order; empty descriptions skipped; whitespace stripped"


@dataclass(frozen=True)
class LabelCounts:
    """features: in the run; matched: given a label by these sources (replaced: of those, had one before);
    kept: not matched but keeping an earlier label; labelled: with a description afterwards."""

    features: int
    matched: int
    replaced: int
    kept: int
    labelled: int

    def describe(self) -> str:
        return (f"labelled {self.labelled} of {self.features} features ({self.matched} matched by these labels, "
                f"{self.replaced} of them replaced an earlier label; {self.kept} kept their earlier label)")


def merge(features: pd.DataFrame, chosen: pd.DataFrame, where: str = "the label sources") -> tuple[pd.DataFrame, LabelCounts]:
    """`features` with descriptions from `chosen` (one row per model, sae, feature_index: see load.neuronpedia.choose).

    Raises BadInput when no label matches any feature (a wrong file, or another model's labels).
    """
    feats = features.reset_index(drop=True).copy()
    m = pd.DataFrame({"_pos": range(len(feats)), "sae": feats["sae"].astype(str),
                      FEATURE_INDEX: feats[FEATURE_INDEX].astype("int64"),
                      "_model": feats["id"].map(lambda fid: parse_feature_id(fid)[0])})
    lab = chosen.assign(**{FEATURE_INDEX: chosen[FEATURE_INDEX].astype("int64")}, sae=chosen["sae"].astype(str))
    m = m.merge(lab[["model", "sae", FEATURE_INDEX, "description"]], on=["sae", FEATURE_INDEX], how="inner")
    # A label without a model id (the legacy files name one; others may not) matches any model.
    m = m[(m["model"].isna() | (m["model"] == m["_model"])) & m["description"].notna()].drop_duplicates("_pos")
    new = pd.Series(pd.NA, index=feats.index, dtype="string")
    new.iloc[m["_pos"].to_numpy()] = m["description"].to_numpy()
    matched = new.notna()
    if not matched.any():
        saes = ", ".join(sorted(feats["sae"].astype(str).unique())[:4])
        raise BadInput(f"{where} match none of the run's {len(feats)} features (SAEs {saes}): "
                       "check that the labels are for this model and these SAEs; nothing was changed")
    old = feats["description"].astype("string")
    had = old.notna() & (old.str.len() > 0)
    feats["description"] = new.where(matched, old)
    counts = LabelCounts(
        features=len(feats), matched=int(matched.sum()), replaced=int((matched & had).sum()),
        kept=int((~matched & had).sum()), labelled=int(feats["description"].notna().sum()),
    )
    return feats, counts
