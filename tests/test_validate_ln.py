"""`featgraph validate` on GPT-2 and GPT-NeoX: the feature decomposition of real attention is exact.

Tiny random models (ln_models.make_tiny: every LayerNorm and projection bias non-zero, eps 0.1) run on token ids;
transformers' own eager attention gives the real logits, patterns and head outputs. The LayerNorm divides by σ_t
(the RMS of the centred residual), the biases enter as per-position shifts (docs/maths.md, "Validation on prompts"),
GPT-NeoX rotates part of each head with the cos/sin the model passed, GPT-2 not at all; the heads' OV targets add up to
the real change of each output feature's pre-activation (c_proj/dense output less its bias, through W_enc).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch
from ln_models import FAMILIES, make_tiny, parts

import featgraph as fg
from featgraph.api import validate as val
from featgraph.api.run import open_run
from featgraph.core import circuits

from helpers import write_sae

D, LAYER = 48, 1
PROMPTS = [[0, 5, 9, 11, 4, 33, 7, 7, 60, 12, 13, 40, 41, 3, 2, 8, 19, 23, 24, 50], [0, *range(4, 41)]]


def _complete_sae(path, b_dec):
    """Decoder rows ±e_i, threshold 0: reconstructs x exactly (error 0)."""
    eye = np.eye(D, dtype=np.float32)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "params.npz", W_enc=np.concatenate([eye, -eye], 1), W_dec=np.concatenate([eye, -eye], 0),
             b_enc=np.concatenate([-b_dec, b_dec]).astype(np.float32), b_dec=b_dec.astype(np.float32),
             threshold=np.zeros(2 * D, np.float32))
    return path / "params.npz"


@pytest.fixture(scope="module", params=FAMILIES)
def made(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"val-{request.param}")
    make_tiny(request.param, root / "model")
    write_sae(root / "sae_out", D, 36, seed=2)
    return request.param, root


def _run(root, name, sae_in, top_k=None, **kw):
    out = root / name
    if not out.exists():
        sae_out = root / "sae_out" / "params.npz"
        n_in = np.load(sae_in)["W_dec"].shape[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fg.FeatgraphWarning)
            fg.extract(model=root / "model", layer=LAYER, sae_in=sae_in, sae_out=sae_out, ov_target="resid",
                       top_k=top_k or n_in * max(n_in, 36), device="cpu", out=out, labels=False, sae_in_id="sae-in",
                       sae_out_id="sae-out", **kw)
    return open_run(out)


def _cat(blocks):
    blocks = list(blocks)
    return {k: torch.cat([b[k] for b in blocks]) for k in blocks[0]}


def _check_exact(session, ids, complete, centred=False):
    layers, attr, _ = parts(session.model)
    attn = getattr(layers[LAYER], attr)
    proj = attn.c_proj if hasattr(attn, "c_proj") else attn.dense
    w_enc = torch.from_numpy(np.load(session.run.manifest.sae_out["ref"])["W_enc"]).double()
    cap, st = session.prompt(ids)
    T = len(ids)
    rms_o = session.rms_o(cap)
    assert torch.equal(rms_o, torch.ones_like(rms_o))  # no norm between the heads and the residual
    ov_sum = 0
    for h in session.heads:
        qk = _cat(session.qk_blocks(cap, st, h, block=8))
        assert list(zip(qk["t"].tolist(), qk["s"].tolist())) == [(t, s) for t in range(T) for s in range(t + 1)]
        L = torch.full((T, T), -torch.inf, dtype=torch.float64)
        L[qk["t"], qk["s"]] = qk["target"]
        np.testing.assert_allclose(torch.softmax(L, -1).numpy(), cap.weights[h].double().numpy(), atol=2e-6)
        y = qk["target"]
        tol = 1e-5 * float(y.abs().max())
        if complete:
            assert float(qk["error"].abs().max()) < 1e-9 * float(y.abs().max())
        else:
            assert float(qk["error"].abs().max()) > 1e-2 * float(y.abs().max())
        assert float(qk["bias"].abs().max()) > 1e-2 * float(y.abs().max())  # the biases' terms are there, and needed
        np.testing.assert_allclose((qk["active"] + qk["bias"] + qk["error"]).numpy(), y.numpy(), rtol=1e-5, atol=tol)
        ov = _cat(session.ov_blocks(cap, st, h, rms_o, block=8))
        y = ov["target"]
        np.testing.assert_allclose((ov["active"] + ov["bias"] + ov["error"]).numpy(), y.numpy(), rtol=1e-5,
                                   atol=1e-5 * float(y.abs().max()))
        ov_sum = ov_sum + y.reshape(T, -1)
    # The heads' targets add up to the real change: the output projection's output less its bias, read by the SAE
    # (in the centred basis, centred: TransformerLens' c_proj writes C W_O z + C b_O).
    with torch.no_grad():
        z = (proj(cap.out.reshape(T, -1)) - proj.bias).double()
    if centred:
        z = z - z.mean(-1, keepdim=True)
    scored = np.unique(session._edges(0, "OV")["dst_index"])
    np.testing.assert_allclose(ov_sum.numpy(), (z @ w_enc[:, scored]).numpy(), rtol=1e-5,
                               atol=1e-5 * float(ov_sum.abs().max()))


@pytest.mark.parametrize("b_dec", ["zero", "random"])
def test_complete_sae_feature_and_bias_terms_are_the_real_logits(made, b_dec):
    _, root = made
    b = np.zeros(D) if b_dec == "zero" else np.random.default_rng(3).normal(size=D)
    session = val.Session(_run(root, f"complete-{b_dec}", _complete_sae(root / f"c-{b_dec}", b)), device="cpu")
    for ids in PROMPTS:
        _check_exact(session, ids, complete=True)


def test_random_sae_all_terms_are_the_real_logits(made):
    _, root = made
    session = val.Session(_run(root, "random", write_sae(root / "sae-random", D, 40, seed=1)), device="cpu")
    for ids in PROMPTS:
        _check_exact(session, ids, complete=False)


def test_a_centred_basis_run_encodes_the_centred_residual(made, tmp_path):
    """A run whose SAEs read TransformerLens' centred residual (SAELens' center_writing_weights): validate encodes
    C x_t and reads the head's write centred, and the split stays exact. (The manifest says so here; the registry
    says so for gpt2-small-res-jb.)"""
    _family, root = made
    run = _run(root, "random", write_sae(root / "sae-random", D, 40, seed=1))
    shutil.copytree(run.path, tmp_path / "run")
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    m["sae_in"]["basis"] = m["sae_out"]["basis"] = "centred"
    m["conventions"]["out_basis"] = "centred"
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(m))
    session = val.Session(open_run(tmp_path / "run"), device="cpu")
    _cap, st = session.prompt(PROMPTS[0])
    assert float(st.x.mean(-1).abs().max()) < 1e-12  # what the SAE encoded is centred
    _check_exact(session, PROMPTS[0], complete=False, centred=True)


def test_selected_edges_with_every_edge_equal_all_active_pairs_and_usage_matches_brute_force(made):
    family, root = made
    kw = {"rope_offset": 5} if family == "gpt_neox" else {}
    run = _run(root, "all-offset", write_sae(root / "sae-random", D, 40, seed=1), **kw)
    session = val.Session(run, device="cpu")
    cap, st = session.prompt(PROMPTS[0])
    for h in session.heads:
        qk = _cat(session.qk_blocks(cap, st, h, block=8))
        np.testing.assert_allclose(qk["selected"].numpy(), qk["active_d0"].numpy(), rtol=2e-5,  # weights: float32
                                   atol=1e-6 * float(qk["active_d0"].abs().max()))
    few = _run(root, "few", write_sae(root / "sae-random", D, 40, seed=1), top_k=10, **kw)
    ids = PROMPTS[0]
    edges = few.validate(token_ids=[ids], device="cpu").attrs["edges"]
    session = val.Session(few, device="cpu")
    cap, st = session.prompt(ids)
    a, rms, T = st.a.numpy(), st.rms.numpy(), len(ids)
    attn, c = session.attn64, session.attn64.config
    scale = 1 / math.sqrt(c.query_pre_attn_scalar)
    for h in range(c.n_heads):
        f = circuits.circuit_factors(attn, session.sae.W_dec, None, h, "QK")
        for r in edges[(edges["head"] == h) & (edges["circuit"] == "QK")].itertuples():
            q, k = f.dst[r.dst_index], f.src[r.src_index]
            rot = (lambda x, d: circuits.rope_rotate(x, d, attn.rope)) if family == "gpt_neox" else (lambda x, d: x)
            cs = [scale * a[t, r.dst_index] * a[s, r.src_index] * float(rot(q, t - s) @ k) / (rms[t] * rms[s])
                  for t in range(T) for s in range(t + 1) if a[t, r.dst_index] > 0 and a[s, r.src_index] > 0]
            assert r.pairs_active == len(cs)
            assert r.total_contribution == pytest.approx(sum(cs), rel=1e-5, abs=1e-9)
            assert r.total_abs_contribution == pytest.approx(sum(map(abs, cs)), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_demo_family_loads_in_transformers_and_validates_exactly(tmp_path, family):
    """`featgraph demo --family`: a checkpoint transformers loads with no missing or unexpected tensor, the whole
    pipeline on it, and validate's split of its real attention is exact."""
    from transformers import AutoModelForCausalLM

    from helpers import fg as cli

    r = cli("demo", "--family", family, "--out", tmp_path / "demo")
    assert r.exit_code == 0, r.output
    model_dir = tmp_path / "demo" / "inputs" / "model"
    _, info = AutoModelForCausalLM.from_pretrained(model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    run = open_run(tmp_path / "demo" / "run")
    assert run.manifest.model["config"]["model_type"] == family and run.manifest.conventions["ov_target"] == "resid"
    report = tmp_path / "demo" / "report"
    page = (report / "index.html").read_text()
    if family == "gpt2":  # no rotary: the report says why it has no positional profile, and warns of nothing
        assert not (report / "positional.png").exists() and "this model has no rotary embedding" in page
        assert "warning" not in r.stderr
    else:
        assert (report / "positional.png").exists()
    table = run.validate(token_ids=[[2, *range(4, 30)]], device="cpu")
    assert (table["r2_exact"] > 1 - 1e-9).all() and len(table) == 2 * 4
    r = cli("demo", "--family", "llama2000", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "--family" in r.stderr and not (tmp_path / "bad").exists()
