"""`featgraph validate`: the feature decomposition of real attention is exact, and its scores are right.

A tiny random Gemma 2 saved by transformers runs on token ids; transformers' own eager attention (through
the AttentionInterface capture) gives the real logits, patterns and head outputs. References are
independent: softmax of the logits against the captured pattern, the model's own o_proj and
post-attention norm, brute-force loops over pairs and edges, scipy's Spearman ρ.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import featgraph as fg_api
from featgraph import circuits
from featgraph import validate as val
from featgraph.demo import write_tokenizer
from featgraph.run import open_run

from helpers import LAYER, TINY, fg, make_tiny_model, write_sae

D = TINY["hidden_size"]


def _complete_sae(path, b_dec):
    """d_sae = 2·d_model, decoder rows ±e_i, threshold 0: a = [(x−b)⁺, (x−b)⁻] reconstructs x exactly."""
    eye = np.eye(D, dtype=np.float32)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "params.npz", W_enc=np.concatenate([eye, -eye], 1), W_dec=np.concatenate([eye, -eye], 0),
             b_enc=np.concatenate([-b_dec, b_dec]).astype(np.float32), b_dec=b_dec.astype(np.float32),
             threshold=np.zeros(2 * D, np.float32))
    return path / "params.npz"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    make_tiny_model(root / "model")
    write_tokenizer(root / "model", TINY["vocab_size"], TINY["max_position_embeddings"])
    return root


def _run(root, name, sae_in, top_k=None, **kw):
    out = root / name
    if not out.exists():
        sae_out = root / "sae_out" / "params.npz"
        if not sae_out.exists():
            write_sae(root / "sae_out", D, 36, seed=2)
        n_in = int(np.load(sae_in)["W_dec"].shape[0])
        fg_api.extract(model=root / "model", layer=LAYER, sae_in=sae_in, sae_out=sae_out,
                       top_k=top_k or max(n_in * n_in, n_in * 36), device="cpu", out=out, labels=False,
                       sae_in_id="sae-in", sae_out_id="sae-out", **kw)
    return open_run(out)


PROMPTS = [[2, 5, 9, 11, 4, 33, 7, 7, 60, 12, 13, 40, 41, 3, 2, 8, 19, 23, 24, 50],
           [2, *range(4, 41)]]  # 20 and 38 tokens; blocks of 8 query positions


def _cat(blocks):
    blocks = list(blocks)
    return {k: torch.cat([b[k] for b in blocks]) for k in blocks[0]}


def _causal_softmax_check(session, cap, qk, h):
    """The target logits reproduce the model's own attention pattern (softcap, causal mask, softmax)."""
    T = cap.weights.shape[-1]
    L = torch.full((T, T), -torch.inf, dtype=torch.float64)
    L[qk["t"], qk["s"]] = qk["target"]
    cap_ = session.attn.config.attn_logit_softcapping
    A = torch.softmax(cap_ * torch.tanh(L / cap_), -1)
    np.testing.assert_allclose(A.numpy(), cap.weights[h].double().numpy(), atol=2e-6)


def _check_exact(session, ids, complete):
    layer = session.model.model.layers[LAYER]
    w_enc = torch.from_numpy(np.load(session.run.manifest.sae_out["ref"])["W_enc"]).double()
    cap, st = session.prompt(ids)
    rms_o = session.rms_o(cap)
    ov_sum = 0
    for h in session.heads:
        qk = _cat(session.qk_blocks(cap, st, h, block=8))
        T = len(ids)
        assert len(qk["t"]) == T * (T + 1) // 2 and bool((qk["s"] <= qk["t"]).all())
        _causal_softmax_check(session, cap, qk, h)
        y = qk["target"]
        tol = 1e-5 * float(y.abs().max())
        if complete:
            assert float(qk["error"].abs().max()) < 1e-9 * float(y.abs().max())
            np.testing.assert_allclose((qk["active"] + qk["bias"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        else:
            assert float(qk["error"].abs().max()) > 1e-2 * float(y.abs().max())  # the error terms matter here
        np.testing.assert_allclose((qk["active"] + qk["bias"] + qk["error"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        # the captured values are the normalised residual (gain 1 + w) through the head's value map
        v = (st.x / st.rms[:, None]) @ session.ov[h].Wv.T
        np.testing.assert_allclose(cap.v[session.attn.config.kv_head(h)].double().numpy(), v.numpy(), rtol=1e-5, atol=1e-5)
        ov = _cat(session.ov_blocks(cap, st, h, rms_o, block=8))
        y = ov["target"]
        tol = 1e-5 * float(y.abs().max())
        if complete:
            assert float(ov["error"].abs().max()) < 1e-9 * float(y.abs().max())
            np.testing.assert_allclose((ov["active"] + ov["bias"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        np.testing.assert_allclose((ov["active"] + ov["bias"] + ov["error"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        ov_sum = ov_sum + y.reshape(len(ids), -1)
    # The heads' targets add up to the real pre-activation change: o_proj, post-attention norm, output encoder.
    with torch.no_grad():
        z = layer.post_attention_layernorm(layer.self_attn.o_proj(cap.out.reshape(len(ids), -1))).double()
    scored = np.unique(session._edges(0, "OV")["dst_index"])
    np.testing.assert_allclose(ov_sum.numpy(), (z @ w_enc[:, scored]).numpy(), rtol=1e-5, atol=1e-5 * float(ov_sum.abs().max()))


@pytest.mark.parametrize("b_dec", ["zero", "random"])
def test_complete_sae_feature_and_bias_terms_are_the_real_logits(tiny_dir, b_dec):
    b = np.zeros(D) if b_dec == "zero" else np.random.default_rng(3).normal(size=D)
    run = _run(tiny_dir, f"complete-{b_dec}", _complete_sae(tiny_dir / f"sae-complete-{b_dec}", b))
    session = val.Session(run, device="cpu")
    for ids in PROMPTS:
        _check_exact(session, ids, complete=True)


def test_random_sae_all_terms_are_the_real_logits(tiny_dir):
    run = _run(tiny_dir, "random", write_sae(tiny_dir / "sae-random", D, 40, seed=1))
    session = val.Session(run, device="cpu")
    for ids in PROMPTS:
        _check_exact(session, ids, complete=False)


def test_capture_leaves_the_model_unchanged(tiny_dir):
    run = _run(tiny_dir, "random", write_sae(tiny_dir / "sae-random", D, 40, seed=1))
    session = val.Session(run, device="cpu")
    model, ids = session.model, torch.tensor([PROMPTS[1]])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with val.capturing(model, session.family, LAYER) as got:
            captured = model(input_ids=ids).logits
    assert model.config._attn_implementation == "eager"
    torch.testing.assert_close(captured, plain, rtol=0, atol=0)
    assert float(torch.triu(got["weights"], 1).abs().max()) == 0.0  # causal


def _pairs(session, ids_list):
    """Target and predictions over all pairs of all prompts, per (head, circuit), from the blocks."""
    out = {}
    for ids in ids_list:
        cap, st = session.prompt(ids)
        rms_o = session.rms_o(cap)
        for h in session.heads:
            for circ, blocks in (("QK", session.qk_blocks(cap, st, h, 8)), ("OV", session.ov_blocks(cap, st, h, rms_o, 8))):
                b = _cat(blocks)
                p = {"target": b["target"], "selected": b["selected"], "active_d0": b["active_d0"], "active": b["active"],
                     "active_bias": b["active"] + b["bias"], "exact": b["active"] + b["bias"] + b["error"]}
                acc = out.setdefault((h, circ), {k: [] for k in p})
                for k, v in p.items():
                    acc[k].append(v.numpy())
    return {key: {k: np.concatenate(v) for k, v in d.items()} for key, d in out.items()}


def test_all_edges_selected_equals_all_active_pairs_and_scores_match_scipy(tiny_dir):
    from scipy.stats import spearmanr

    run = _run(tiny_dir, "random", write_sae(tiny_dir / "sae-random", D, 40, seed=1))
    pairs = _pairs(val.Session(run, device="cpu"), PROMPTS)
    df = run.validate(token_ids=PROMPTS, device="cpu")
    assert len(df) == 8 and set(df["circuit"]) == {"QK", "OV"}
    for (h, circ), p in pairs.items():
        np.testing.assert_allclose(p["selected"], p["active_d0"], rtol=1e-5, atol=1e-6 * np.abs(p["active_d0"]).max())
        row = df[(df["head"] == h) & (df["circuit"] == circ)].iloc[0]
        assert row["pairs"] == len(p["target"])
        for name in ("selected", "active_d0", "active", "active_bias"):
            assert row[f"rho_{name}"] == pytest.approx(spearmanr(p[name], p["target"]).statistic, abs=1e-4)
        for name in ("selected", "active_d0", "active", "active_bias", "exact"):
            want = 1 - np.var(p["target"] - p[name]) / np.var(p["target"])
            assert row[f"r2_{name}"] == pytest.approx(want, rel=1e-6, abs=1e-9)
        assert row["rho_selected"] == pytest.approx(row["rho_active_d0"], abs=1e-4)
        assert row["r2_exact"] == pytest.approx(1.0, abs=1e-8) and row["max_abs_error"] < 1e-4
    # the whole run: kept in the run; the edge usage as attrs and in the file
    heads, edges = val.read(run.path / "validation.parquet")
    pd.testing.assert_frame_equal(heads, df[list(heads.columns)], check_dtype=False)
    assert len(edges) == len(run.edge_table) and {"src_description", "realised_rank"} <= set(edges.columns)


def test_selected_edges_follow_the_runs_conventions(tiny_dir):
    """attn_scale and rope_offset: (i) = (ii) with all edges, and (i) with a few edges equals a brute-force sum."""
    sae = write_sae(tiny_dir / "sae-random", D, 40, seed=1)
    full = _run(tiny_dir, "conv-all", sae, attn_scale=True, rope_offset=3)
    few = _run(tiny_dir, "conv-few", sae, top_k=30, attn_scale=True, rope_offset=3)
    s_full, s_few = val.Session(full, device="cpu"), val.Session(few, device="cpu")
    ids = PROMPTS[0]
    cap, st = s_few.prompt(ids)
    a, rms = st.a.numpy(), st.rms.numpy()
    scale = 1 / math.sqrt(TINY["query_pre_attn_scalar"])
    for h in (0, 3):
        b = _cat(s_full.qk_blocks(*s_full.prompt(ids), h, 8))
        np.testing.assert_allclose(b["selected"], b["active_d0"], rtol=1e-5, atol=1e-6 * float(b["active_d0"].abs().max()))
        e = few.edge_table[(few.edge_table["head"] == h) & (few.edge_table["circuit"] == "QK")]
        b = _cat(s_few.qk_blocks(cap, st, h, 8))
        for t, s, got in zip(b["t"].numpy(), b["s"].numpy(), b["selected"].numpy()):
            # stored weights already carry the scale (attn_scale); the logit divides by both RMS
            want = sum(a[t, i] * a[s, j] * w for i, j, w in zip(e["dst_index"], e["src_index"], e["weight"])) / (rms[t] * rms[s])
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert float(b["selected"].abs().max()) > 0
    assert s_few.scale == pytest.approx(scale)


def test_edge_usage_matches_brute_force(tiny_dir):
    run = _run(tiny_dir, "few", write_sae(tiny_dir / "sae-random", D, 40, seed=1), top_k=12)
    ids = PROMPTS[0]
    df = run.validate(token_ids=[ids], device="cpu")
    edges = df.attrs["edges"]
    session = val.Session(run, device="cpu")
    cap, st = session.prompt(ids)
    a, rms, T = st.a.numpy(), st.rms.numpy(), len(ids)
    attn = session.attn64
    c = attn.config
    layer = session.model.model.layers[LAYER]
    with torch.no_grad():
        o = layer.self_attn.o_proj(cap.out.reshape(T, -1)).double()
    rms_o = torch.sqrt(o.pow(2).mean(-1) + c.rms_norm_eps).numpy()
    scale = 1 / math.sqrt(c.query_pre_attn_scalar)
    for h in range(c.n_heads):
        f = circuits.circuit_factors(attn, session.sae.W_dec, None, h, "QK")
        for r in edges[(edges["head"] == h) & (edges["circuit"] == "QK")].itertuples():
            q, k = f.dst[r.dst_index], f.src[r.src_index]
            cs = [scale * a[t, r.dst_index] * a[s, r.src_index] * float(circuits.rope_rotate(q, t - s, c.rope_theta) @ k) / (rms[t] * rms[s])
                  for t in range(T) for s in range(t + 1) if a[t, r.dst_index] > 0 and a[s, r.src_index] > 0]
            assert r.pairs_active == len(cs)
            assert r.total_contribution == pytest.approx(sum(cs), rel=1e-5, abs=1e-9)
            assert r.total_abs_contribution == pytest.approx(sum(map(abs, cs)), rel=1e-5, abs=1e-9)
            assert (np.isnan(r.mean_contribution) and not cs) or r.mean_contribution == pytest.approx(np.mean(cs), rel=1e-5)
        A = cap.weights[h].double().numpy()
        for r in edges[(edges["head"] == h) & (edges["circuit"] == "OV")].itertuples():
            cs = [A[t, s] * a[s, r.src_index] * r.weight / (rms[s] * rms_o[t])
                  for t in range(T) for s in range(t + 1) if A[t, s] > 0 and a[s, r.src_index] > 0]
            assert r.pairs_active == len(cs)
            assert r.total_contribution == pytest.approx(sum(cs), rel=1e-5, abs=1e-9)
    for circ, g in edges.groupby(["head", "circuit"]):
        order = g.sort_values(["total_abs_contribution", "rank"], ascending=[False, True])
        assert order["realised_rank"].tolist() == list(range(1, len(g) + 1)), circ


# ---------------------------------------------------------------- the command line

def _one_line_error(r):
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_bad_inputs_are_one_line_and_write_nothing(tiny_dir, tmp_path):
    run = _run(tiny_dir, "few", write_sae(tiny_dir / "sae-random", D, 40, seed=1), top_k=12)
    (run.path / "validation.parquet").unlink(missing_ok=True)
    png = tmp_path / "v.png"
    imported = tmp_path / "imported"
    assert fg("import", run.path / "edges.parquet", "--out", imported).exit_code == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    long_prompt = " ".join(["the"] * (TINY["max_position_embeddings"] + 5))
    cases = {
        "imported": (imported, "--prompt", "the cat"),
        "too long": (run.path, "--prompt", long_prompt),
        "empty file": (run.path, "--text-file", empty),
        "no prompts": (run.path,),
        "bad jsonl": (run.path, "--text-file", tmp_path / "x.jsonl"),
        "max tokens": (run.path, "--prompt", "the", "--max-tokens", 0),
    }
    (tmp_path / "x.jsonl").write_text('{"txt": "no text field"}\n')
    words = {"imported": "extract", "too long": "window", "empty file": "no prompts", "no prompts": "no prompts",
             "bad jsonl": "text", "max tokens": "--max-tokens"}
    for name, args in cases.items():
        line = _one_line_error(fg("validate", *args, "--device", "cpu", "--out", png))
        assert words[name] in line, (name, line)
        assert not png.exists() and not (run.path / "validation.parquet").exists() and not (imported / "validation.parquet").exists()
    # --max-tokens makes the long prompt fit
    r = fg("validate", run.path, "--prompt", long_prompt, "--max-tokens", 40, "--device", "cpu", "--format", "json")
    assert r.exit_code == 0, r.output
    assert {row["pairs"] for row in json.loads(r.stdout) if row["circuit"] == "QK"} == {40 * 41 // 2}


def test_demo_validates_end_to_end(tmp_path):
    d = tmp_path / "demo"
    assert fg("demo", "--out", d).exit_code == 0
    run = d / "run"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d / "inputs" / "model")
    assert tok("The cat")["input_ids"] == [2, 6, 3]  # <bos>, "the", <unk>
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"text": "the people came home after a long day of work"}) + "\n")
    png = tmp_path / "validation.png"
    r = fg("validate", run, "--prompt", "two words and three more words made the first line .", "--text-file", prompts,
           "--device", "cpu", "--out", png)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2 prompts, ") and str(png) in lines[0]
    rows = [l for l in lines if l.startswith("| ") and not l.startswith("| head")]
    assert [tuple(x.strip() for x in l.split("|")[1:3]) for l in rows] == [(str(h), c) for c in ("QK", "OV") for h in range(4)]
    heads, edges = val.read(run / "validation.parquet")
    assert heads["r2_exact"].between(1 - 1e-9, 1 + 1e-9).all() and len(edges) == len(pd.read_parquet(run / "edges.parquet"))
    assert png.stat().st_size > 10_000
    # a filtered call writes nothing in the run; the report shows the whole-run results
    before = (run / "validation.parquet").stat().st_mtime_ns
    r = fg("validate", run, "--prompt", "the first line", "--heads", "1", "--device", "cpu", "--format", "csv")
    assert r.exit_code == 0 and pd.read_csv(__import__("io").StringIO(r.stdout))["head"].tolist() == [1, 1]
    assert (run / "validation.parquet").stat().st_mtime_ns == before
    r = fg("report", run, "--out", tmp_path / "report", "--no-plots")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Edges against real attention on prompts" in page and (tmp_path / "report" / "validation.png").stat().st_size > 10_000
