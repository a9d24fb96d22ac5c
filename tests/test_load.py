"""Model and SAE loaders on files in the real formats."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from featgraph.errors import BadInput, FeatgraphError
from featgraph.load import hub
from featgraph.load import model as model_io
from featgraph.load import sae as sae_io

from helpers import fg, make_tiny_model, write_sae


def test_sharded_model_reads_the_six_tensors(tiny):
    model_dir, model, _, _ = tiny
    assert (model_dir / "model.safetensors.index.json").is_file()
    w = model_io.load_attention(str(model_dir), 1)
    sd = model.state_dict()
    torch.testing.assert_close(w.W_Q, sd["model.layers.1.self_attn.q_proj.weight"])
    torch.testing.assert_close(w.W_O, sd["model.layers.1.self_attn.o_proj.weight"])
    torch.testing.assert_close(w.ln_post, sd["model.layers.1.post_attention_layernorm.weight"])
    assert w.config.d_head == 16 and w.config.d_model == 48 and w.config.n_kv_heads == 2


def test_single_file_model(tmp_path):
    make_tiny_model(tmp_path / "m", seed=3)
    # re-save unsharded with safetensors directly: one model.safetensors, no index
    from safetensors.torch import load_file, save_file

    merged = {}
    idx = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    for shard in set(idx["weight_map"].values()):
        merged |= load_file(tmp_path / "m" / shard)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(tmp_path / "m" / "config.json", one)
    save_file(merged, one / "model.safetensors")
    w = model_io.load_attention(str(one), 2)
    torch.testing.assert_close(w.W_K, merged["model.layers.2.self_attn.k_proj.weight"])


def test_hub_path_downloads_only_the_needed_shards(tiny, monkeypatch, tmp_path):
    model_dir = tiny[0]
    snap = tmp_path / "hub" / "models--google--gemma-2-2b" / "snapshots" / "abc123"
    shutil.copytree(model_dir, snap)
    asked = []

    def fake_download(repo_id, filename, revision=None, **kw):
        assert repo_id == "google/gemma-2-2b" and revision == "main"
        asked.append(filename)
        return str(snap / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "_check_reachable", lambda ref, filename: None, raising=False)  # the fake Hub is always there
    w = model_io.load_attention("google/gemma-2-2b@main", 1)
    idx = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    needed = {idx[n] for n in model_io.tensor_names(1).values()}
    shards = [a for a in asked if a.endswith(".safetensors")]
    assert set(shards) == needed and len(shards) == len(set(shards))
    assert w.source["revision"] == "abc123"


def test_gated_repo_message(monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors as hfe

    def gated(*a, **k):
        raise _gated_error(hfe)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    monkeypatch.setattr(hub, "_check_reachable", lambda ref, filename: None, raising=False)
    with pytest.raises(FeatgraphError, match="accept the licence.*HF_TOKEN"):
        model_io.load_attention("google/gemma-2-2b", 13)


def _gated_error(hfe):
    err = hfe.GatedRepoError.__new__(hfe.GatedRepoError)
    Exception.__init__(err, "gated")
    return err


def test_model_errors(tiny, tmp_path):
    with pytest.raises(BadInput, match="not found"):
        model_io.load_attention(str(tmp_path / "nope"), 1)
    with pytest.raises(BadInput, match="out of range"):
        model_io.load_attention(str(tiny[0]), 3)
    bad = tmp_path / "bad"
    shutil.copytree(tiny[0], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["head_dim"] = 8
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadInput, match="shape"):
        model_io.load_attention(str(bad), 1)


def test_sae_local_and_shapes(tmp_path):
    p = write_sae(tmp_path / "s", 48, 20, seed=0)
    s = sae_io.load(str(p), expect_d_in=48)
    ref = np.load(p)
    np.testing.assert_array_equal(s.W_dec.numpy(), ref["W_dec"])
    assert s.d_sae == 20 and s.d_in == 48
    norms = s.W_dec.norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms))  # fixtures are not unit-norm
    # only the requested arrays are read
    s2 = sae_io.load(str(p.parent), ("W_enc",))
    assert s2.W_dec is None and s2.W_enc is not None


def test_sae_errors(tmp_path):
    p = write_sae(tmp_path / "s", 48, 20, seed=0)
    with pytest.raises(BadInput, match="d_model is 64"):
        sae_io.load(str(p), expect_d_in=64)
    arrays = dict(np.load(p))
    del arrays["threshold"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(BadInput, match="lacks threshold"):
        sae_io.load(str(tmp_path / "missing.npz"))
    arrays = dict(np.load(p))
    arrays["b_dec"] = arrays["b_dec"][:5]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(BadInput, match="b_dec has shape"):
        sae_io.load(str(tmp_path / "shape.npz"))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(p.read_bytes()[: 2000])
    with pytest.raises(BadInput, match="corrupt|not a readable"):
        sae_io.load(str(corrupt))


def test_sae_references_resolve():
    r = sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")
    assert r.repo.repo_id == "google/gemma-scope-2b-pt-res"
    assert r.filename == "layer_12/width_16k/average_l0_82/params.npz"
    r = sae_io.resolve("gemma-scope-2b-pt-att-canonical/layer_13/width_16k/canonical")
    assert r.filename == "layer_13/width_16k/average_l0_92/params.npz"
    r = sae_io.resolve("google/gemma-scope-2b-pt-res@abc/layer_13/width_65k/average_l0_74")
    assert (r.repo.repo_id, r.repo.revision, r.filename) == ("google/gemma-scope-2b-pt-res", "abc", "layer_13/width_65k/average_l0_74/params.npz")
    assert sae_io.neuronpedia_source(r.filename)[0] is None  # repo is not in the filename
    assert sae_io.neuronpedia_source("google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82/params.npz")[:2] == ("12-gemmascope-res-16k", 12)
    assert sae_io.neuronpedia_source("x/gemma-scope-2b-pt-att/layer_13/width_16k/average_l0_92/")[:2] == ("13-gemmascope-att-16k", 13)
    with pytest.raises(BadInput):
        sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_12/width_16k")
    with pytest.raises(BadInput):
        sae_io.resolve("./missing/params.npz")


def test_canonical_rule_over_listing(monkeypatch):
    listing = [f"layer_20/width_131k/average_l0_{v}/params.npz" for v in (22, 38, 71, 139, 294)]
    monkeypatch.setattr(hub, "list_files", lambda ref, prefix: [f for f in listing if f.startswith(prefix)])
    r = sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_20/width_131k/canonical")
    assert r.filename == "layer_20/width_131k/average_l0_71/params.npz"
    assert "closest to 100" in r.canonical_rule


def test_canonical_ids_resolve_from_the_table_without_the_hub(monkeypatch):
    """SAELens' pretrained_saes.yaml: gemma-scope-2b-pt-res-canonical layer_20/width_16k is average_l0_71,
    gemma-scope-2b-pt-mlp-canonical layer_3/width_65k is average_l0_68 (values copied from that file)."""
    def no_listing(ref, prefix):
        raise AssertionError("listed the Hub")

    monkeypatch.setattr(hub, "list_files", no_listing)
    assert sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical").filename == \
        "layer_20/width_16k/average_l0_71/params.npz"
    assert sae_io.resolve("gemma-scope-2b-pt-mlp-canonical/layer_3/width_65k/canonical").filename == \
        "layer_3/width_65k/average_l0_68/params.npz"


# ---------------------------------------------------------------- hostile or corrupt checkpoints

def _with_index_entry(src, dst, tensor, shard):
    shutil.copytree(src, dst)
    idx_path = dst / "model.safetensors.index.json"
    idx = json.loads(idx_path.read_text())
    idx["weight_map"][tensor] = shard
    idx_path.write_text(json.dumps(idx))
    return dst


@pytest.mark.parametrize("shard", ["../../../../etc/passwd", "/etc/passwd", "sub/../../outside.safetensors"])
def test_shard_paths_outside_the_model_directory_are_refused(tiny, tmp_path, shard, monkeypatch):
    opened = []
    import safetensors

    real_open = safetensors.safe_open
    monkeypatch.setattr(safetensors, "safe_open", lambda path, **kw: opened.append(path) or real_open(path, **kw))
    (tmp_path / "outside.safetensors").write_bytes(b"secret")
    q = model_io.tensor_names(1)["q_proj"]
    bad = _with_index_entry(tiny[0], tmp_path / "a" / "m", q, shard)
    with pytest.raises(BadInput, match=rf"maps {q} to .*not a file inside the model directory"):
        model_io.load_attention(str(bad), 1)
    assert opened == []


def test_shard_symlink_leading_outside_is_refused(tiny, tmp_path):
    q = model_io.tensor_names(1)["q_proj"]
    bad = _with_index_entry(tiny[0], tmp_path / "m", q, "evil.safetensors")
    (tmp_path / "secret").write_bytes(b"secret")
    (bad / "evil.safetensors").symlink_to(tmp_path / "secret")
    with pytest.raises(BadInput, match="leads outside the model directory"):
        model_io.load_attention(str(bad), 1)


def test_hub_shard_names_must_be_plain(tiny, tmp_path, monkeypatch):
    q = model_io.tensor_names(1)["q_proj"]
    snap = _with_index_entry(tiny[0], tmp_path / "snap", q, "../../x.safetensors")
    asked = []

    def fake_download(repo_id, filename, revision=None, **kw):
        asked.append(filename)
        return str(snap / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "_check_reachable", lambda ref, filename: None, raising=False)
    with pytest.raises(BadInput, match="not a file inside the model directory"):
        model_io.load_attention("google/gemma-2-2b", 1)
    assert asked and not any(".." in a or a.endswith(".safetensors") for a in asked)


def test_non_finite_model_weights_are_exit_2_naming_the_tensor(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    model_dir, _, sae_in, sae_out = tiny
    for name, bad in (("o_proj", float("nan")), ("post_attention_layernorm", float("inf"))):
        m = tmp_path / name
        shutil.copytree(model_dir, m)
        tensor = model_io.tensor_names(1)[name]
        shard = m / json.loads((m / "model.safetensors.index.json").read_text())["weight_map"][tensor]
        ts = load_file(shard)
        ts[tensor].view(-1)[3] = bad
        save_file(ts, shard, metadata={"format": "pt"})
        out = tmp_path / f"run-{name}"
        r = fg("extract", "--model", m, "--layer", 1, "--sae-in", sae_in, "--sae-out", sae_out, "--device", "cpu",
               "--no-labels", "--out", out)
        assert r.exit_code == 2, r.output
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {tensor} in ") and "NaN or infinite" in r.stderr
        assert not out.exists()


# ---------------------------------------------------------------- no network

def _offline_extract(tmp_path, **env):
    """`featgraph extract --out X` with the default model, an empty HF cache and `env`; (result, seconds)."""
    import os
    import subprocess
    import sys
    import time

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    clean |= {"HF_HOME": str(tmp_path / "hf"), **env}
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "featgraph", "extract", "--out", str(tmp_path / "run")], env=clean,
                       capture_output=True, text=True, timeout=120)
    return r, time.monotonic() - t


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}], ids=["offline", "unreachable"])
def test_default_model_without_network_is_one_line_within_seconds(tmp_path, env):
    r, seconds = _offline_extract(tmp_path, **env)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert "google/gemma-2-2b" in r.stderr and "hf auth login" in r.stderr and "--model PATH" in r.stderr
    if "HF_HUB_OFFLINE" in env:
        assert "HF_HUB_OFFLINE" in r.stderr
    # huggingface_hub on its own retries for ~25 s; starting Python and importing torch take 2-3 s of
    # these seconds on an idle machine (the whole command: 2.6 s), more on a busy one
    assert seconds < 10, seconds
    assert not (tmp_path / "run").exists()
