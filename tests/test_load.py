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


@pytest.mark.parametrize("layout", ["stored", "compressed", "fortran", "big-endian"])
def test_gemma_scope_npz_read_mapped_or_by_numpy(tmp_path, layout):
    """Gemma Scope's params.npz (np.savez: entries stored uncompressed) is memory-mapped instead of copied into memory;
    compressed entries, Fortran order and big-endian arrays too read the values numpy reads. The tensors are
    copy-on-write: writing to one leaves the file as it was."""
    from featgraph.load.sae import load
    from featgraph.load.sae.gemma_scope import npz_member

    rng = np.random.default_rng(0)
    raw = {"W_enc": rng.normal(size=(6, 10)), "W_dec": rng.normal(size=(10, 6)), "b_enc": rng.normal(size=10),
           "b_dec": rng.normal(size=6), "threshold": np.abs(rng.normal(size=10))}
    raw = {k: v.astype(">f4" if layout == "big-endian" else np.float32) for k, v in raw.items()}
    if layout == "fortran":
        raw = {k: np.asfortranarray(v) for k, v in raw.items()}
    path = tmp_path / "params.npz"
    (np.savez_compressed if layout == "compressed" else np.savez)(path, **raw)
    before = path.read_bytes()
    with np.load(path) as npz:
        got = npz_member(path, npz, "W_dec")
        assert isinstance(got, np.memmap) == (layout != "compressed")
        np.testing.assert_array_equal(got, npz["W_dec"])
    sae = load(str(path), ("W_enc", "W_dec", "b_enc", "b_dec", "threshold"))
    for k, v in raw.items():
        np.testing.assert_array_equal(sae.part(k).numpy(), v.astype(np.float32))
    sae.part("W_dec").mul_(0)  # copy-on-write: the file is not touched
    assert path.read_bytes() == before


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


def test_ids_outside_the_registry_are_refused_naming_the_release():
    """The registry says which canonical SAEs exist (Gemma 2 2B has no canonical 131k at layer 20): no Hub listing."""
    with pytest.raises(BadInput, match="not in SAELens' release gemma-scope-2b-pt-res-canonical .*58 SAEs"):
        sae_io.resolve("gemma-scope-2b-pt-res-canonical/layer_20/width_131k/canonical")


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

# Loaded into the child through PYTHONPATH: counts the connections it opens and the seconds it sleeps (retries back
# off with time.sleep), written as JSON at exit. What "gives up at once" means without timing anything.
_PROBE = """
import atexit, json, os, socket, time
_seen = {"connects": 0, "slept": 0.0}
_sleep, _connect = time.sleep, socket.socket.connect
def _count_sleep(s):
    _seen["slept"] += float(s)
    _sleep(s)
def _count_connect(self, *a, **k):
    _seen["connects"] += 1
    return _connect(self, *a, **k)
time.sleep, socket.socket.connect = _count_sleep, _count_connect
atexit.register(lambda: open(os.environ["FG_PROBE_OUT"], "w").write(json.dumps(_seen)))
"""


def _offline_extract(tmp_path, **env):
    """`featgraph extract --out X` with the default model, an empty HF cache and `env`; (result, what it did:
    {connects, slept}, seconds)."""
    import json
    import os
    import subprocess
    import sys
    import time

    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(_PROBE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    path = os.pathsep.join([str(probe), *filter(None, [os.environ.get("PYTHONPATH")])])
    clean |= {"HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": path, "FG_PROBE_OUT": str(tmp_path / "probe.json"), **env}
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "featgraph", "extract", "--out", str(tmp_path / "run")], env=clean,
                       capture_output=True, text=True, timeout=300)
    return r, json.loads((tmp_path / "probe.json").read_text()), time.monotonic() - t


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}], ids=["offline", "unreachable"])
def test_default_model_without_network_is_one_line_within_seconds(tmp_path, env):
    r, did, seconds = _offline_extract(tmp_path, **env)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert "google/gemma-2-2b" in r.stderr and "hf auth login" in r.stderr and "--model PATH" in r.stderr
    if "HF_HUB_OFFLINE" in env:
        assert "HF_HUB_OFFLINE" in r.stderr
    # huggingface_hub on its own retries for ~25 s, sleeping between attempts. Counted, not timed (a busy machine
    # made a wall-clock bound fail): offline it connects nowhere; unreachable, one probe; neither backs off
    assert did["slept"] < 1 and did["connects"] <= (0 if "HF_HUB_OFFLINE" in env else 2), (did, seconds)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- model families (Gemma 3) and Gemma Scope 2

# google/gemma-3-4b-pt's config.json (as published; the vision tower's config left out): its text_config names few
# fields and transformers' Gemma3TextConfig defaults fill the rest (docs/gemma3.md).
GEMMA3_4B = {
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
    "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
                    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
}
# google/gemma-3-1b-pt's config.json (attention fields).
GEMMA3_1B = {"architectures": ["Gemma3ForCausalLM"], "attn_logit_softcapping": None, "head_dim": 256, "hidden_size": 1152,
             "model_type": "gemma3_text", "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
             "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000, "rope_scaling": None,
             "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6}


def test_gemma3_configs_read_as_transformers_reads_them():
    from transformers import Gemma3Config, Gemma3TextConfig

    from featgraph.core.weights import ModelConfig, Rope

    for raw, hf in ((GEMMA3_4B, Gemma3Config(**GEMMA3_4B).text_config), (GEMMA3_1B, Gemma3TextConfig(**GEMMA3_1B))):
        c = ModelConfig.from_json(json.loads(json.dumps(raw)), "x")
        assert (c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.n_layers) == (
            hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads, hf.head_dim, hf.num_hidden_layers)
        assert (c.query_pre_attn_scalar, c.rms_norm_eps, c.attn_logit_softcapping) == (
            hf.query_pre_attn_scalar, hf.rms_norm_eps, hf.attn_logit_softcapping)
        assert c.layer_types == tuple(hf.layer_types)
        for layer, kind in enumerate(hf.layer_types):
            p = hf.rope_parameters[kind]
            assert c.layer_rope(layer) == Rope(p["rope_theta"], p["rope_type"], p.get("factor", 1.0))
    c = ModelConfig.from_json(GEMMA3_4B, "x")
    assert c.model_type == "gemma3" and c.d_attn == 2048 and c.layer_rope(5) == Rope(1e6, "linear", 8.0)
    assert c.layer_rope(4) == Rope(10000.0) and c.layer_types.count("full_attention") == 5


def test_unknown_family_is_one_line_naming_the_supported_ones():
    from featgraph.core.weights import ModelConfig

    with pytest.raises(BadInput, match=r"^x: model_type is 'falcon'; featgraph reads 'gemma2' \(Gemma 2\)") as e:
        ModelConfig.from_json({"model_type": "falcon", "hidden_size": 8}, "x")
    assert "\n" not in str(e.value)
    for named in ("'llama' (Llama)", "'mistral' (Mistral)", "'qwen2' (Qwen2)", "'qwen3' (Qwen3)", "'gemma4_text'", "'gemma4'"):
        assert named in str(e.value)
    with pytest.raises(BadInput, match="layer_types"):
        ModelConfig.from_json(GEMMA3_1B | {"layer_types": ["sliding_attention"]}, "x")


def test_multimodal_checkpoint_with_the_real_tensor_names(tmp_path):
    """A text checkpoint's tensors renamed as google/gemma-3-4b-pt's index names them, its config nested under text_config."""
    from safetensors.torch import load_file, save_file

    from helpers import make_tiny_gemma3

    make_tiny_gemma3(tmp_path / "t", seed=2)
    merged = {}
    idx = json.loads((tmp_path / "t" / "model.safetensors.index.json").read_text())
    for shard in set(idx["weight_map"].values()):
        merged |= load_file(tmp_path / "t" / shard)
    mm = tmp_path / "mm"
    mm.mkdir()
    save_file({"language_model." + k: v for k, v in merged.items()}, mm / "model.safetensors")
    text_cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    (mm / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": text_cfg}))
    a, b = model_io.load_attention(str(tmp_path / "t"), 2), model_io.load_attention(str(mm), 2)
    for name in ("W_Q", "W_O", "ln_in", "q_norm", "k_norm"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    torch.testing.assert_close(b.k_norm, merged["model.layers.2.self_attn.k_norm.weight"])
    assert b.config.model_type == "gemma3" and b.rope == a.rope
    del merged["model.layers.2.self_attn.q_norm.weight"]
    save_file({"language_model." + k: v for k, v in merged.items()}, mm / "model.safetensors")
    with pytest.raises(BadInput, match=r"no language_model\.model\.layers\.2\.self_attn\.q_norm\.weight; is this a Gemma 3"):
        model_io.load_attention(str(mm), 2)


@pytest.mark.parametrize(("ref", "want"), [
    ("google/gemma-3-1b-pt", "gemma-3-1b"), ("google/gemma-3-1b-it", "gemma-3-1b-it"), ("google/gemma-3-270m", "gemma-3-270m"),
    ("google/gemma-3-27b-pt@main", "gemma-3-27b"), ("google/gemma-2-2b", "gemma-2-2b"),
])
def test_neuronpedia_model_ids_of_gemma3(ref, want):
    assert model_io.infer_model_id(ref)[0] == want


def _gs2_config(layer: int, hook: str, model: str = "google/gemma-3-1b-pt") -> dict:
    return {"width": 16384, "model_name": model, "architecture": "jump_relu", "l0": 60, "affine_connection": False,
            "hf_hook_point_in": hook, "hf_hook_point_out": hook, "type": "sae"}


def test_gemma_scope_2_files_and_names(tmp_path):
    from safetensors.numpy import load_file

    from helpers import write_gs2_sae

    res = write_gs2_sae(tmp_path / "gemma-scope-2-1b-pt" / "resid_post" / "layer_13_width_16k_l0_medium", 48, 20, 0,
                        _gs2_config(13, "model.layers.13.output"))
    s = sae_io.load(str(res.parent), expect_d_in=48)
    raw = load_file(str(res))
    for ours, theirs in (("W_enc", "w_enc"), ("W_dec", "w_dec"), ("b_dec", "b_dec"), ("threshold", "threshold")):
        np.testing.assert_array_equal(getattr(s, ours).numpy(), raw[theirs])
    assert (s.d_in, s.d_sae, s.source["format"], s.source["site"], s.source["layer"]) == (48, 20, "gemma_scope_2", "res", 13)
    assert s.neuronpedia_id == "13-gemmascope-2-res-16k" and s.source["config"]["model_name"] == "google/gemma-3-1b-pt"
    # resid_post_all (small/big) and attn_out are not on Neuronpedia: a featgraph name and a note saying so
    small = write_gs2_sae(tmp_path / "g" / "resid_post_all" / "layer_12_width_16k_l0_small", 48, 20, 1,
                          _gs2_config(12, "model.layers.12.output"))
    s = sae_io.load(str(small), expect_d_in=48)
    assert s.neuronpedia_id is None and s.source["fallback_id"] == "12-gemmascope-2-resid_post_all-16k-l0_small"
    assert "gemma-scope-2-1b-pt-res: layers 7, 13, 17, 22" in s.source["id_note"] and "gemma-3-1b" in s.source["id_note"]
    att = write_gs2_sae(tmp_path / "gemma-scope-2-4b-it" / "attn_out" / "layer_17_width_16k_l0_medium", 64, 20, 2, None)
    s = sae_io.load(str(att), expect_d_in=(48, 64), d_attn=64)
    assert s.neuronpedia_id is None and s.source["site"] == "att" and s.source["fallback_id"].startswith("17-gemmascope-2-attn_out-")
    assert "config" not in s.source  # config.json is optional (SAELens does without it)
    with pytest.raises(BadInput, match="reads vectors of size 64 but the model's d_model is 48 and its n_heads·d_head 32"):
        sae_io.load(str(att), expect_d_in=(48, 32))
    # the hook point in config.json names what an SAE outside Gemma Scope 2's layout reads
    plain = write_gs2_sae(tmp_path / "plain", 64, 8, 3, _gs2_config(5, "model.layers.5.self_attn.o_proj.input"))
    s = sae_io.load(str(plain))
    assert (s.source["site"], s.source["layer"], s.neuronpedia_id) == ("att", 5, None)


def test_gemma_scope_2_file_errors(tmp_path):
    from safetensors.numpy import save_file

    from helpers import write_gs2_sae

    p = write_gs2_sae(tmp_path / "a", 48, 20, 0, {"architecture": "topk"})
    with pytest.raises(BadInput, match="architecture 'topk'.*jump_relu"):
        sae_io.load(str(p))
    p = write_gs2_sae(tmp_path / "b", 48, 20, 0)
    (p.parent / "config.json").write_text("{nope")
    with pytest.raises(BadInput, match="config.json is not valid JSON"):
        sae_io.load(str(p))
    save_file({"w_enc": np.zeros((4, 3), np.float32), "w_dec": np.zeros((3, 4), np.float32)}, str(tmp_path / "c.safetensors"))
    with pytest.raises(BadInput, match="lacks b_enc, b_dec, threshold .*w_enc, w_dec, b_enc"):
        sae_io.load(str(tmp_path / "c.safetensors"))
    (tmp_path / "d.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")
    with pytest.raises(BadInput, match="not a readable .safetensors"):
        sae_io.load(str(tmp_path / "d.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="has no params.npz or params.safetensors"):
        sae_io.resolve(str(tmp_path / "empty"))


def test_gemma_scope_2_references_resolve():
    """SAELens' releases (pretrained_saes.yaml, conversion_func gemma_3): repo google/gemma-scope-2-{size}-{pt|it}."""
    r = sae_io.resolve("gemma-scope-2-1b-pt-res-all/layer_12_width_16k_l0_small")
    assert (r.repo.repo_id, r.filename) == ("google/gemma-scope-2-1b-pt", "resid_post_all/layer_12_width_16k_l0_small/params.safetensors")
    r = sae_io.resolve("gemma-scope-2-4b-it-att/layer_17_width_262k_l0_medium")
    assert (r.repo.repo_id, r.filename) == ("google/gemma-scope-2-4b-it", "attn_out/layer_17_width_262k_l0_medium/params.safetensors")
    r = sae_io.resolve("gemma-scope-2-270m-pt-transcoders/transcoder/layer_15_width_262k_l0_big_affine")
    assert r.filename == "transcoder/layer_15_width_262k_l0_big_affine/params.safetensors"
    r = sae_io.resolve("google/gemma-scope-2-12b-pt@v1/mlp_out_all/layer_3_width_16k_l0_big")
    assert (r.repo.revision, r.filename) == ("v1", "mlp_out_all/layer_3_width_16k_l0_big/params.safetensors")
    with pytest.raises(BadInput, match="not in SAELens' release gemma-scope-2-1b-pt-res-all .*closest: layer_12_width_16k_l0_small"):
        sae_io.resolve("gemma-scope-2-1b-pt-res-all/layer_12/width_16k/canonical")
    path = "models--google--gemma-scope-2-27b-it/snapshots/abc/resid_post/layer_40_width_1m_l0_medium/params.safetensors"
    assert sae_io.neuronpedia_source(path)[:2] == ("40-gemmascope-2-res-1m", 40)
    # the registry gives gemma-3-1b-it no 1m residual source: no id (featgraph names it when loading, with a note)
    assert sae_io.neuronpedia_source("google/gemma-scope-2-1b-it/resid_post/layer_13_width_1m_l0_medium/params.safetensors")[0] is None


def test_gemma_scope_2_from_the_hub_with_its_config(tmp_path, monkeypatch):
    from helpers import write_gs2_sae

    folder = "resid_post/layer_7_width_16k_l0_medium"
    snap = tmp_path / "snap"
    write_gs2_sae(snap / folder, 48, 10, 0, _gs2_config(7, "model.layers.7.output"))
    asked = []

    def fake_download(repo_id, filename, revision=None, **kw):
        assert repo_id == "google/gemma-scope-2-1b-pt"
        asked.append(filename)
        return str(snap / filename)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "_check_reachable", lambda ref, filename: None, raising=False)
    s = sae_io.load("gemma-scope-2-1b-pt-res/layer_7_width_16k_l0_medium", ("W_dec",), expect_d_in=48)
    assert asked == [f"{folder}/config.json", f"{folder}/params.safetensors"]
    assert s.neuronpedia_id == "7-gemmascope-2-res-16k" and s.source["release"] == "gemma-scope-2-1b-pt-res"
    assert s.source["config"]["hf_hook_point_in"] == "model.layers.7.output"
    (snap / folder / "config.json").unlink()  # the Hub answers 404 for a missing config.json: the SAE loads without it

    def missing_config(repo_id, filename, revision=None, **kw):
        if filename.endswith("config.json"):
            from huggingface_hub import errors as hfe

            raise hfe.RemoteEntryNotFoundError("404", response=_Response404())
        return str(snap / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing_config)
    s = sae_io.load("google/gemma-scope-2-1b-pt/resid_post/layer_7_width_16k_l0_medium", ("W_dec",), expect_d_in=48)
    assert "config" not in s.source and s.neuronpedia_id == "7-gemmascope-2-res-16k"


class _Response404:
    status_code = 404
    headers: dict = {}
    url = "https://huggingface.co/x"
    request = None

    def json(self):
        return {}


def test_all_finite_by_sum_and_by_chunks():
    """all_finite's one-sum proof and its chunked fallback against torch.isfinite: a NaN or an infinity anywhere is
    found; finite values whose sum overflows (the sum decides nothing) are still finite; bf16 and integers too."""
    import torch

    from featgraph.core.weights import all_finite

    big = torch.full((50,), 3e38)
    cases = [torch.zeros(0), torch.randn(1000), big, -big, torch.randn(1000, dtype=torch.float64),
             torch.randn(300).bfloat16() * 1e38, torch.arange(10)]
    for bad in (float("nan"), float("inf"), float("-inf")):
        for base in (torch.randn(1000), big.clone()):
            t = base.clone()
            t[len(t) // 2] = bad
            cases.append(t)
    for t in cases:
        for chunk in (1 << 24, 7):
            assert all_finite(t, chunk) == bool(torch.isfinite(t).all()), (t.dtype, t[:3])
