"""Rotary positional profile and QK–OV sender correlation, checked against transformers' modules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from featgraph.analyse import positional as pos
from featgraph.cli.app import app
from featgraph.load import model as model_io

from helpers import LAYER, oracle, runner


def test_distances():
    d = pos.distances()
    assert d[0] == 0 and d[-1] == 8192 and len(d) >= 51 and np.all(np.diff(d) > 0)


@pytest.mark.parametrize("delta", [0, 1, 5, 300, 8192])
def test_profile_matches_transformers_rotary(tiny, delta):
    model_dir, model, sae_in, _ = tiny
    b_dec = np.load(sae_in)["b_dec"][None, :]
    W_enc_dummy = np.zeros((b_dec.shape[1], 1), np.float32)
    qk, _, _ = oracle(model, b_dec, W_enc_dummy, rope_offset=delta)
    attn = model_io.load_attention(str(model_dir), LAYER)
    got = pos.profile(attn, torch.from_numpy(b_dec[0]), torch.from_numpy(b_dec[0]), np.array([delta]))
    want = np.array([q[0, 0].item() for q in qk])
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_feature_pair_profile(tiny):
    model_dir, model, sae_in, _ = tiny
    W = np.load(sae_in)["W_dec"][[3, 7]]
    qk, _, _ = oracle(model, W, np.zeros((W.shape[1], 1), np.float32), rope_offset=4)
    attn = model_io.load_attention(str(model_dir), LAYER)
    got = pos.profile(attn, torch.from_numpy(W[0]), torch.from_numpy(W[1]), np.array([4]))  # query 3, key 7
    np.testing.assert_allclose(got[:, 0], [q[0, 1].item() for q in qk], rtol=1e-4)


def test_positional_cli(tiny, tmp_path):
    model_dir, _, sae_in, _ = tiny
    out = tmp_path / "p.png"
    r = runner.invoke(app, ["positional", "--model", str(model_dir), "--layer", "1", "--sae-in", str(sae_in),
                            "--feature", "m/0-x/3", "--feature", "m/0-x/3,m/0-x/7", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = pd.read_csv(out.with_suffix(".csv"))
    assert {"head", "distance", "score"} <= set(csv.columns)
    assert csv["head"].nunique() == 4 and csv.groupby(["head", "query", "key"]).size().min() >= 51
    r = runner.invoke(app, ["positional", "--model", str(model_dir), "--layer", "1", "--sae-in", str(sae_in),
                            "--feature", "m/0-x/999", "--out", str(tmp_path / "q.png")])
    assert r.exit_code == 2 and "outside" in r.stderr and not (tmp_path / "q.png").exists()


def test_sender_correlation_matches_dense_oracle(tiny, tmp_path):
    model_dir, model, sae_in, sae_out = tiny
    run = tmp_path / "run"
    r = runner.invoke(app, ["extract", "--model", str(model_dir), "--layer", "1", "--sae-in", str(sae_in), "--sae-out", str(sae_out),
                            "--top-k", "10", "--device", "cpu", "--no-labels", "--out", str(run)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "c.png"
    r = runner.invoke(app, ["correlation", str(run), "--out", str(out)])
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(out.with_suffix(".csv"))
    qk, ov, _ = oracle(model, np.load(sae_in)["W_dec"], np.load(sae_out)["W_enc"])
    for h in range(4):
        c = csv[csv["head"] == h].sort_values("feature_index")
        np.testing.assert_allclose(c["mean_qk_as_key"], qk[h].numpy().mean(axis=0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(c["mean_abs_ov"], np.abs(ov[h].numpy()).mean(axis=1), rtol=1e-4)
        assert f"head {h}: r = {np.corrcoef(c['mean_qk_as_key'], c['mean_abs_ov'])[0, 1]:.4f}" in r.stdout
