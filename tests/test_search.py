"""Finding features by meaning: `featgraph search` / `Run.search` against plain pandas references."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

import featgraph as fg
from featgraph.analyse.search import rank_features

from helpers import fg as cli


def _features(descriptions):
    n = len(descriptions)
    return pd.DataFrame({"id": [f"m/12-x/{i}" for i in range(n)], "sae": "12-x", "layer": 12, "feature_index": range(n),
                         "description": pd.array(descriptions, dtype="string"), "url": ""})


def test_matches_are_every_feature_holding_every_word_case_insensitively():
    f = _features(["Numerical patterns in lists", "numbers", "lists of numerical values", None, "court cases",
                   "NUMERICAL", "patterns of speech"])
    got = rank_features(f, "numerical", limit=None)
    want = f[f["description"].fillna("").str.lower().str.contains("numerical")]
    assert set(got["id"]) == set(want["id"])
    got = rank_features(f, "numer patterns", limit=None)  # prefixes count, every word must appear
    assert list(got["id"]) == ["m/12-x/0"]
    assert rank_features(f, "3", limit=None)["id"].tolist() == ["m/12-x/3"]  # an index
    assert rank_features(f, "zebra", limit=None).empty


def test_ranking_prefers_the_phrase_and_the_rarer_word():
    f = _features(["cases of courts", "court cases and appeals", "legal court cases", "court", "cases", "a court of cases here"])
    ranked = rank_features(f, "court cases", limit=None)["description"].tolist()
    assert ranked[0] in ("court cases and appeals", "legal court cases")
    assert ranked.index("a court of cases here") > ranked.index("legal court cases")
    assert rank_features(f, "court cases", limit=2).shape[0] == 2


def _ref_rank(features, query, limit):
    """rank_features as a full scan: every label lowered and searched for every query word (the index's reference)."""
    import numpy as np

    from featgraph.analyse.search import K1, B, tokens

    desc = features["description"].astype("string").fillna("")
    low, docs = desc.str.lower(), [tokens(d) for d in desc]
    words = tokens(query)
    hit = pd.Series(bool(words), index=features.index)
    for w in words:
        hit &= low.str.contains(w, regex=False)
    if query.strip().isdigit():
        hit |= features["feature_index"].astype("int64") == int(query.strip())
    n, avg = len(docs), max(float(np.mean([len(d) for d in docs])), 1.0)
    scores = []
    for pos in np.flatnonzero(hit.to_numpy()):
        d, s = docs[pos], 0.0
        for w in words:
            df = sum(w in set(x) for x in docs)
            tf = float(d.count(w)) or (0.5 if any(t.startswith(w) for t in d) else 0.0)
            if tf:
                s += float(np.log(1 + (n - df + 0.5) / (df + 0.5))) * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(d) / avg))
        scores.append(s * (1.5 if len(words) > 1 and " ".join(words) in " ".join(d) else 1.0))
    out = features[hit][["id", "sae", "feature_index", "description"]].assign(score=scores)
    return out.sort_values(["score", "sae", "feature_index"], ascending=[False, True, True], kind="stable").reset_index(drop=True).head(limit)


def test_index_ranks_as_a_full_scan():
    """The word index (labels' words -> features, read once) answers exactly as scanning every label does."""
    import numpy as np

    from featgraph.analyse.search import SearchIndex

    rng = np.random.default_rng(0)
    vocab = ["numerical", "numbers", "court", "cases", "Legal", "code", "x2", "alpha-beta", "naïve", "KELVIN\u212a",
             "İstanbul", "a", "ab", "abc", "", "the", "of", "ØRE", "n0", "2024"]
    descs = [" ".join(rng.choice(vocab, size=rng.integers(0, 6))) for _ in range(400)] + [None, "", "!!!", "Numerical, (numbers)"]
    f = _features(descs)
    f["sae"] = pd.array(rng.choice(["20-b", "3-a", "12-x"], size=len(f)), dtype="string")  # ties broken by sae, then index
    f["feature_index"] = rng.permutation(len(f))
    index = SearchIndex(f)
    queries = ["numer", "numerical numbers", "court cases", "a", "b", "legal", "alpha beta", "beta-alpha", "ve",
               "istanbul", "k", "kelvin", "x2 code", "12", "3", "2024", "zebra", "ø", "n0 the of", "c", "court court",
               "legal code legal", "numbers numerical"]
    for q in queries:
        got, want = index.rank(q, limit=None), _ref_rank(f, q, None)
        assert list(got["id"]) == list(want["id"]), q
        np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-12, err_msg=q)
        assert list(index.rank(q, 7)["id"]) == list(want["id"][:7]), q


def test_empty_text_is_an_error():
    with pytest.raises(fg.BadInput, match="give some text"):
        rank_features(_features(["a"]), "  ")


def test_search_gives_each_feature_its_strongest_edges_per_head(demo_run):
    run = fg.open_run(demo_run)
    r = cli("search", demo_run, "Court", "--limit", 3, "--format", "json")
    assert r.exit_code == 0, r.output
    got = pd.DataFrame(json.loads(r.stdout))
    api = run.search("court", limit=3)
    pd.testing.assert_frame_equal(got, api.astype(object).where(api.notna(), None).infer_objects(), check_dtype=False)
    feats = list(dict.fromkeys(got["feature"]))
    assert len(feats) == 3
    desc = run.features.set_index("id")["description"]
    assert all("court" in desc[f].lower() for f in feats)
    # reference: per feature, head, circuit and end, the edge of largest |weight|
    e = run.edge_table
    for f in feats:
        for side in ("src", "dst"):
            mine = e[e[side] == f]
            if mine.empty:
                continue
            best = mine.loc[mine["weight"].abs().groupby([mine["head"], mine["circuit"]]).idxmax()]
            rows = got[(got["feature"] == f) & (got["side"] == side)].sort_values(["head", "circuit"])
            best = best.sort_values(["head", "circuit"])
            assert rows["weight"].tolist() == pytest.approx(best["weight"].astype(float).tolist())
            assert rows["other"].tolist() == best["dst" if side == "src" else "src"].tolist()
    r = cli("search", demo_run, "court", "--limit", 2, "--format", "csv")
    assert pd.read_csv(io.StringIO(r.stdout))["feature"].nunique() == 2


def test_search_bad_input(demo_run):
    r = cli("search", demo_run, "   ")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    r = cli("search", demo_run, "court", "--limit", 0)
    assert r.exit_code == 2 and "--limit" in r.stderr


def test_no_match_is_said(demo_run, tmp_path):
    r = cli("search", demo_run, "zzzzqqq", "--format", "csv")
    assert r.exit_code == 0 and r.stderr == "no feature matches 'zzzzqqq'\n", r.stderr
    # an imported edge table has no labels: the line says so
    edges = tmp_path / "e.csv"
    pd.read_parquet(demo_run / "edges.parquet").to_csv(edges, index=False)
    r = cli("search", edges, "court")
    assert r.exit_code == 0 and "no feature matches 'court': this run has no labels" in r.stderr, r.stderr
