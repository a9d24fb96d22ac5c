"""Finding features by what their labels say (pure: a feature table in, ranked rows out).

Researchers start from a concept ("numerical", "court cases"), not an index. Features are
ranked by BM25 over their Neuronpedia descriptions (k1 = 1.2, b = 0.75, the usual defaults),
with a bonus when the whole query appears as a phrase; a query that is a number also matches
that feature index. Matching is case-insensitive.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

from featgraph.core.schema import FEATURE_INDEX
from featgraph.errors import BadInput

_WORD = re.compile(r"[a-z0-9]+")
K1, B = 1.2, 0.75


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rank_features(features: pd.DataFrame, query: str, limit: int | None = 20) -> pd.DataFrame:
    """Features matching `query`, best first: columns id, sae, feature_index, description, score.

    A feature matches when its description holds every query word as a substring of some word
    (so "numer" finds "numerical"), or the query is its feature_index; BM25 over whole words orders them.
    """
    return SearchIndex(features).rank(query, limit)


class SearchIndex:
    """`rank_features` over one feature table, its words read once (a server answers many searches)."""

    def __init__(self, features: pd.DataFrame):
        self.features = features
        desc = features["description"].astype("string").fillna("")
        self._desc = desc  # a label's words are read again for the features a search finds (not kept: memory)
        self.n = len(desc)
        lengths: list[int] = []
        counts: dict[str, tuple[list[int], list[int]]] = {}  # word -> (features whose words hold it, how often)
        for pos, d in enumerate(desc):
            words = tokens(d)
            lengths.append(len(words))
            for w, k in Counter(words).items():
                p, c = counts.setdefault(w, ([], []))
                p.append(pos)
                c.append(k)
        self._df = Counter({w: len(p) for w, (p, _) in counts.items()})
        self._tf = {w: (np.asarray(p, dtype="int64"), np.asarray(c, dtype="float64")) for w, (p, c) in counts.items()}
        self._len = np.asarray(lengths, dtype="float64")
        self.avg = max(float(np.mean(lengths)), 1.0) if lengths else 1.0
        # word -> the features whose lowered labels hold it. A query word matches a label when it is a substring of
        # the label lowered (as pandas lowers it, which differs from str.lower on a few letters, e.g. İ); it is made
        # of [a-z0-9] only, so it then lies inside one [a-z0-9] run of that text: the labels holding a run that
        # contains it are exactly those (so a search reads the distinct words, not every label).
        postings: dict[str, list[int]] = {}
        for pos, low in enumerate(desc.str.lower()):
            for w in set(_WORD.findall(low)):
                postings.setdefault(w, []).append(pos)
        self._postings = {w: np.asarray(p, dtype="int64") for w, p in postings.items()}
        self._index = features[FEATURE_INDEX].to_numpy(dtype="int64")
        codes, _ = pd.factorize(features["sae"], sort=True)  # codes in the names' order; a missing name sorts last
        self._sae = np.where(codes < 0, codes.max(initial=0) + 1, codes)

    def _holding(self, w: str) -> np.ndarray:
        """A mask over the features: those whose lowered label holds `w` (one [a-z0-9]+ word) as a substring."""
        mask = np.zeros(self.n, dtype=bool)
        for word, pos in self._postings.items():
            if w in word:
                mask[pos] = True
        return mask

    def _term_freq(self, w: str, hits: np.ndarray) -> np.ndarray:
        """For each feature in `hits` (ascending positions): how often its label's words hold `w`, else 0.5 where one
        of them starts with `w` (a prefix counts half), else 0."""
        tf = np.zeros(len(hits))
        prefix = np.zeros(self.n, dtype=bool)
        for word, (pos, _) in self._tf.items():
            if word.startswith(w) and word != w:
                prefix[pos] = True
        tf[prefix[hits]] = 0.5
        if w in self._tf:
            pos, k = self._tf[w]
            at = np.searchsorted(pos, hits)
            inside = at < len(pos)
            inside[inside] &= pos[at[inside]] == hits[inside]
            tf[inside] = k[at[inside]]
        return tf

    def _doc_freq(self, w: str) -> int:
        return self._df.get(w, 0)

    def rank(self, query: str, limit: int | None = 20) -> pd.DataFrame:
        """As `rank_features(features, query, limit)`."""
        q = query.strip()
        if not q:
            raise BadInput("give some text to search feature labels for, e.g. \"numerical\"")
        words = tokens(q)
        mask = np.full(self.n, bool(words))
        for w in dict.fromkeys(words):
            mask &= self._holding(w)
        if q.isdigit():
            mask |= self._index == int(q)
        hits = np.flatnonzero(mask)
        if not len(hits):
            return pd.DataFrame({"id": pd.Series(dtype="string"), "sae": pd.Series(dtype="string"),
                                 FEATURE_INDEX: pd.Series(dtype="int64"), "description": pd.Series(dtype="string"),
                                 "score": pd.Series(dtype="float64")})
        n = self.n
        idf = {w: float(np.log(1 + (n - self._doc_freq(w) + 0.5) / (self._doc_freq(w) + 0.5))) for w in set(words)}
        # BM25 over the hits, a word at a time (the words' counts read from the index, not the labels); the same
        # operations in the same order as one label at a time, so the same floats
        norm = K1 * (1 - B + B * self._len[hits] / self.avg)
        scores = np.zeros(len(hits))
        for w in words:
            tf = self._term_freq(w, hits)
            has = tf > 0
            scores[has] += idf[w] * tf[has] * (K1 + 1) / (tf[has] + norm[has])
        if len(words) > 1:
            phrase = " ".join(words)
            for i, label in enumerate(self._desc.take(hits)):
                if phrase in " ".join(tokens(label)):
                    scores[i] *= 1.5
        # best score first, then sae, then feature_index; a stable sort, so equal keys keep the table's order
        order = np.lexsort((self._index[hits], self._sae[hits], -scores))
        if limit is not None:
            order = order[:max(int(limit), 0)]
        out = self.features[["id", "sae", FEATURE_INDEX, "description"]].take(hits[order]).assign(score=scores[order])
        return out.reset_index(drop=True)


def strongest_edges(edges: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """For each feature in `ids`, its strongest edge (by |weight|) per (layer, head, circuit, side).

    Columns feature, layer, head, circuit, side (`src`: the feature is the key/value; `dst`: the
    query/output), weight, z, rank, other (the feature at the other end).
    """
    keep = ["layer", "head", "circuit", "weight", "rank"] + (["z"] if "z" in edges.columns else [])
    parts = []
    for side, other in (("src", "dst"), ("dst", "src")):
        e = edges[edges[side].isin(ids)]
        e = e.assign(feature=e[side], other=e[other], side=side, _a=e["weight"].abs())
        e = e.sort_values(["_a"], ascending=False, kind="stable").drop_duplicates(["feature", "layer", "head", "circuit"])
        parts.append(e[["feature", *keep, "side", "other"]])
    out = pd.concat(parts, ignore_index=True)
    if "z" not in out.columns:
        out["z"] = np.nan
    order = {f: i for i, f in enumerate(ids)}
    out["_o"] = out["feature"].map(order)
    out = out.sort_values(["_o", "layer", "head", "circuit", "side"], kind="stable").drop(columns="_o")
    return out[["feature", "layer", "head", "circuit", "side", "weight", "z", "rank", "other"]].reset_index(drop=True)
