"""SAELens' registry as featgraph's source of truth: the shipped snapshot, the script that makes it, `featgraph sae`
against every registry entry, and the same ids for an SAE by every route (release/id, Hub path, HF cache, local)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

import featgraph as fg
from featgraph import families
from featgraph.errors import BadInput
from featgraph.load import registry as reg

from helpers import REPO
from helpers import fg as cli
from sae_formats import write_dictionary_learning, write_hook_z, write_llama_scope, write_saelens

SNAP = "0123456789abcdef0123456789abcdef01234567"


def _raw_snapshot() -> dict:
    return json.loads(gzip.decompress(reg.SNAPSHOT.read_bytes()))


def test_snapshot_records_its_source():
    raw = _raw_snapshot()
    assert raw["sae_lens_version"] == "6.54.12" and raw["wheel"] == "sae_lens-6.54.12-py3-none-any.whl"
    assert re.fullmatch(r"[0-9a-f]{64}", raw["wheel_sha256"]) and re.fullmatch(r"[0-9a-f]{64}", raw["yaml_sha256"])
    r = reg.get()
    entries = list(r.entries())
    # the figures of issue 17, measured from this registry: 170 releases, 13,857 SAEs, 2,441 on Neuronpedia
    assert (len(r.releases), len(entries), sum(e.neuronpedia is not None and e.neuronpedia_from is None for e in entries)) \
        == (170, 13857, 2441)
    # 419 more are the same files under another release (gemma-scope-2b-pt-res/… beside its -canonical alias): same id
    shared = [e for e in entries if e.neuronpedia_from]
    assert len(shared) == 419
    for e in shared:
        src = r.lookup(*e.neuronpedia_from.split("/", 1))
        assert src is not None and (src.repo, src.path, src.neuronpedia, src.neuronpedia_from) == (e.repo, e.path, e.neuronpedia, None)
    assert r.version == "6.54.12" and "6.54.12" in r.source


def _fake_wheel(tmp_path: Path, yaml_text: str) -> Path:
    wheel = tmp_path / "sae_lens-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("sae_lens/pretrained_saes.yaml", yaml_text)
        zf.writestr("sae_lens/__init__.py", "raise ImportError('the script must not import sae_lens')\n")
    return wheel


TINY_YAML = """\
rel-a:
  conversion_func: null
  model: gpt2-small
  repo_id: owner/repo-a
  config_overrides:
    model_from_pretrained_kwargs:
      center_writing_weights: true
  saes:
  - id: blocks.3.hook_resid_pre
    path: blocks.3.hook_resid_pre
    neuronpedia: gpt2-small/3-res-x
    l0: 12.5
rel-b:
  conversion_func: llama_scope
  model: meta-llama/Llama-3.1-8B
  repo_id: owner/repo-b
  saes:
  - id: l7r_8x
    path: 7
    norm_scaling_factor: 2.5
"""


def test_script_snapshots_a_wheel_without_importing_it(tmp_path, monkeypatch):
    wheel = _fake_wheel(tmp_path, TINY_YAML)
    out = tmp_path / "snap.json.gz"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "saelens_registry.py"), "--wheel", str(wheel), "--version",
                        "0.0.1", "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "2 releases, 2 SAEs from sae-lens 0.0.1" in p.stdout
    for source in (out, tmp_path / "pretrained_saes.yaml"):  # the snapshot and the yaml itself read the same
        (tmp_path / "pretrained_saes.yaml").write_text(TINY_YAML)
        monkeypatch.setenv(reg.ENV, str(source))
        r = reg.get()
        a, b = r.lookup("rel-a", "blocks.3.hook_resid_pre"), r.lookup("rel-b", "l7r_8x")
        assert a is not None and b is not None
        assert (a.repo, a.path, a.neuronpedia, a.l0, a.conversion) == ("owner/repo-a", "blocks.3.hook_resid_pre",
                                                                       "gpt2-small/3-res-x", 12.5, None)
        assert (b.path, b.norm_scaling_factor, b.conversion) == ("7", 2.5, "llama_scope")  # an integer path, as a string
        d = reg.describe(a, r)
        assert d["model_from_pretrained_kwargs"] == {"center_writing_weights": True}
        assert d["registry"]["sae_lens_version"] == ("0.0.1" if source == out else None)
    monkeypatch.setenv(reg.ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(BadInput, match="no such file"):
        reg.get()


def test_installed_registry_is_read_without_importing_sae_lens(monkeypatch):
    monkeypatch.setenv(reg.ENV, "installed")
    from importlib import metadata

    try:
        metadata.distribution("sae-lens")
    except metadata.PackageNotFoundError:
        with pytest.raises(BadInput, match="sae-lens is not installed"):
            reg.get()
        return
    r = reg.get()  # pragma: no cover (sae-lens is not in the test environment)
    assert "sae_lens" not in sys.modules and len(r.releases) > 100


def _family_of(model: str) -> str:
    """The featgraph family (model_type, Gemma 3's text and multimodal checkpoints together) of a registry model."""
    types = reg.model_types(model)
    return next((t.removesuffix("_text") for t in types if t in families.FAMILIES), "unsupported")


def test_sae_info_agrees_with_the_registry_for_every_entry():
    """`featgraph sae` for every entry, compared with the snapshot's own rows (read here without featgraph's
    registry module): release, id, repo, path, Neuronpedia id; and every entry has a hook point whose layer agrees
    with Neuronpedia's numbering (the layer or the residual position after it) — except the one registry entry whose
    Neuronpedia id is another SAE's, which featgraph refuses to use."""
    raw = _raw_snapshot()
    fields = raw["sae_fields"]
    rows = [(rel, r, dict(zip(fields, s))) for rel, r in raw["releases"].items() for s in r["saes"]]
    infos = fg.sae_info([f"{rel}/{s['id']}" for rel, _, s in rows])
    assert len(infos) == len(rows) == 13857
    per_family: Counter = Counter()
    refused = []
    alias: dict = {}  # SAELens lists an id once, under the -canonical release; the same repo + path shares it
    for _rel, r, s in rows:
        if s.get("neuronpedia"):
            alias.setdefault((r["repo"], str(s["path"]).strip("/")), set()).add(s["neuronpedia"])
    for (rel, r, s), d in zip(rows, infos):
        assert (d["release"], d["sae_id"], d["repo"], d["path"], d["model"]) == (rel, s["id"], r["repo"], str(s["path"]), r["model"])
        assert d["files"] and d["hook"], d
        assert d["readable"] == (d["format"] in {"gemma_scope", "gemma_scope_2", "saelens", "llama_scope", "llama_scope_r1",
                                                 "dictionary_learning", "hook_z", "qwen_scope", "goodfire",
                                                 "deepseek_r1", "gemma_scope_transcoder", "gemma_scope_2_transcoder",
                                                 "circuit_tracer"})
        if d["format"] in ("gemma_scope_transcoder", "gemma_scope_2_transcoder", "circuit_tracer"):  # every transcoder release
            assert d["site"] == "transcoder" and d["input_of_layer"] == d["layer"] + 1, d
        per_family[_family_of(r["model"])] += 1
        ids = alias.get((r["repo"], str(s["path"]).strip("/")), set())
        np_id = s.get("neuronpedia") or (next(iter(ids)) if len(ids) == 1 else None)
        if d["neuronpedia_id"] is None and np_id:
            refused.append((d["ref"], np_id))
            continue
        assert (f"{d['neuronpedia_model']}/{d['neuronpedia_id']}" if d["neuronpedia_id"] else None) == np_id
        if np_id:
            n = re.match(r"(\d+|e)-", np_id.split("/", 1)[1])
            assert n is not None and ((n[1] == "e" and d["input_of_layer"] == 0) or int(n[1]) in (d["layer"], d["layer"] + 1)), d
    assert refused == [("gemma-scope-9b-pt-res/layer_2/width_16k/average_l0_8", "gemma-2-9b/20-gemmascope-res-131k__l0-10")]
    # the entries of the families featgraph supports (the rest are described the same way, for when they land)
    assert (per_family["gemma2"], per_family["gemma3"]) == (3607, 8809), per_family


@pytest.mark.parametrize(("ref", "want"), [
    ("gpt2-small-res-jb/blocks.8.hook_resid_pre", dict(format="saelens", hook="blocks.8.hook_resid_pre", layer=8, site="res",
                                                       input_of_layer=8, output_of_layer=7, neuronpedia_id="8-res-jb",
                                                       model_from_pretrained_kwargs={"center_writing_weights": True})),
    ("gpt2-small-res-jb/blocks.11.hook_resid_post", dict(input_of_layer=12, output_of_layer=11, neuronpedia_id="12-res-jb")),
    ("llama_scope_lxr_8x/l15r_8x", dict(format="llama_scope", hook="blocks.15.hook_resid_post", input_of_layer=16,
                                        neuronpedia_model="llama3.1-8b", neuronpedia_id="15-llamascope-res-32k",
                                        files=["Llama3_1-8B-Base-L15R-8x/hyperparams.json",
                                               "Llama3_1-8B-Base-L15R-8x/checkpoints/final.safetensors"])),
    ("llama_scope_lxa_8x/l3a_8x", dict(hook="blocks.3.hook_attn_out", site="attn_out", output_of_layer=3, input_of_layer=None)),
    ("gemma-scope-9b-pt-res-canonical/layer_20/width_16k/canonical",
     dict(path="layer_20/width_16k/average_l0_68", d_sae=16384, neuronpedia_model="gemma-2-9b", neuronpedia_id="20-gemmascope-res-16k")),
    ("gemma-scope-2b-pt-att-canonical/layer_13/width_16k/canonical", dict(hook="blocks.13.attn.hook_z", site="att", output_of_layer=13)),
    ("gpt2-small-hook-z-kk/blocks.5.hook_z", dict(format="hook_z", hook="blocks.5.attn.hook_z", d_sae=49152, output_of_layer=5)),
    ("pythia-70m-deduped-res-sm/blocks.0.hook_resid_pre", dict(input_of_layer=0, neuronpedia_id="e-att-sm")),
    ("sae_bench_pythia70m_sweep_topk_ctx128_0730/blocks.3.hook_resid_post__trainer_0",
     dict(format="dictionary_learning", hook="blocks.3.hook_resid_post")),
    # the non-canonical release's entry is the same file as its -canonical alias: the alias's Neuronpedia id (docs/ids.md)
    ("gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82", dict(neuronpedia_model="gemma-2-2b", neuronpedia_id="12-gemmascope-res-16k",
     neuronpedia_from="gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")),
    ("gemma-scope-2b-pt-att/layer_13/width_16k/average_l0_92", dict(neuronpedia_id="13-gemmascope-att-16k")),
    ("gemma-scope-9b-pt-res/layer_20/width_16k/average_l0_68", dict(neuronpedia_id="20-gemmascope-res-16k")),
    ("goodfire-llama-3.1-8b-instruct/layer_19", dict(format="goodfire", readable=True, neuronpedia_model="llama3.1-8b-it",
                                                     neuronpedia_id="19-resid-post-gf", input_of_layer=20)),
    ("qwen-scope-3-8b-base-w64k-l50/layer7", dict(format="qwen_scope", readable=True, d_sae=65536, hook="blocks.7.hook_resid_post",
                                                   files=["layer7.sae.pt"], input_of_layer=8)),
    ("mwhanna-qwen3-4b-transcoders/layer_0", dict(format="circuit_tracer", readable=True, site="transcoder",
                                                  neuronpedia_id="0-transcoder-hp", files=["config.yaml", "layer_0.safetensors"])),
    ("gemma-scope-2b-pt-transcoders/layer_12/width_16k/average_l0_6",
     dict(format="gemma_scope_transcoder", hook="blocks.12.ln2.hook_normalized", site="transcoder", input_of_layer=13,
          output_of_layer=12, neuronpedia_model="gemma-2-2b", neuronpedia_id="12-gemmascope-transcoder-16k")),
])
def test_sae_info_fields(ref, want):
    d = fg.sae_info(ref)[0]
    assert {k: d[k] for k in want} == want


def test_sae_command_json_lines_and_errors():
    r = cli("sae", "gpt2-small-res-jb/blocks.8.hook_resid_pre", "google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82",
            "--json")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    a, b = (json.loads(x) for x in lines)
    assert (a["neuronpedia_id"], b["neuronpedia_id"]) == ("8-res-jb", "12-gemmascope-res-16k")
    assert b["matched_by"] == "Hub path" and b["release"] == "gemma-scope-2b-pt-res-canonical"
    r = cli("sae", "gemma-scope-2-1b-pt-res-all/layer_12_width_16k_l0_small")
    assert r.exit_code == 0 and "neuronpedia none: SAELens' registry" in r.stdout
    r = cli("sae", "gpt2-small-res-jb/blocks.99.hook_resid_pre")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "not in SAELens' release gpt2-small-res-jb" in r.stderr


def _cache(tmp_path: Path, repo: str) -> Path:
    return tmp_path / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots" / SNAP


@pytest.mark.parametrize(("ref", "write"), [
    ("gpt2-small-res-jb/blocks.8.hook_resid_pre", lambda p: write_saelens(p, 24, 40, 0)),
    ("llama_scope_lxr_8x/l15r_8x", lambda p: write_llama_scope(p, 24, 40, 1)),
    ("sae_bench_pythia70m_sweep_standard_ctx128_0712/blocks.3.hook_resid_post__trainer_10",
     lambda p: write_dictionary_learning(p, 24, 40, 2)),
])
def test_every_route_to_an_sae_gives_the_same_ids(tmp_path, ref, write):
    """release/id, Hub path, HF cache path and a `--local-dir` copy named after the repo: one registry entry."""
    e = fg.sae_info(ref)[0]
    hub_path = f"{e['repo']}/{e['path']}"
    cached = _cache(tmp_path, e["repo"]) / e["path"]
    write(cached)
    local = tmp_path / "copies" / e["repo"].split("/")[1] / e["path"]
    write(local)
    for other in (hub_path, str(cached), str(local), str(_cache(tmp_path, e["repo"]) / e["files"][-1])):
        d = fg.sae_info(other)[0]
        assert (d["release"], d["sae_id"], d["neuronpedia_id"], d["hook"]) == (e["release"], e["sae_id"], e["neuronpedia_id"],
                                                                               e["hook"]), other
    d = fg.sae_info(str(cached))[0]
    assert (d["d_in"], d["d_sae"], d["d_sae_from"]) == (24, 40, "the SAE's files")


def test_a_local_copy_without_its_repo_name_is_confirmed_by_its_files(tmp_path):
    """`hf download jbloom/GPT2-Small-SAEs-Reformatted --local-dir saes`: blocks.8.hook_resid_pre is a path of many
    repos; cfg.json's model_name (gpt2-small) picks gpt2-small-res-jb's. A folder matching nothing is not named."""
    folder, _ = write_saelens(tmp_path / "saes" / "blocks.8.hook_resid_pre", 24, 40, 0)
    d = fg.sae_info(str(folder))[0]
    assert d["neuronpedia_id"] == "8-res-jb" and d["neuronpedia_model"] == "gpt2-small"
    folder, _ = write_saelens(tmp_path / "mine" / "x", 24, 40, 0, extra_cfg={"model_name": "tiny"})
    d = fg.sae_info(str(folder))[0]
    assert d["neuronpedia_id"] is None and d["hook"] == "blocks.8.hook_resid_pre" and d["input_of_layer"] == 8
    hz, _ = write_hook_z(tmp_path / "z", "attn_L5", 64, 40, 3)
    d = fg.sae_info(str(hz))[0]
    assert (d["format"], d["site"], d["output_of_layer"], d["d_in"]) == ("hook_z", "att", 5, 64)


# ---------------------------------------------------------------- pairing by hook point, atlas defaults, model ids

def test_atlas_defaults_pair_by_hook_points():
    """An atlas layer L reads the residual SAE of layer L−1 (its input) and of layer L (its output): for GPT-2's
    res-jb that is blocks.L.hook_resid_pre and blocks.(L+1).hook_resid_pre, for Gemma Scope layer_{L−1} and layer_L."""
    from featgraph.api.reload import default_sae
    from featgraph.load import registry

    gpt2 = registry.atlas_default("gpt2", 12)
    assert gpt2 is not None and gpt2.release == "gpt2-small-res-jb"
    assert [gpt2.sae(s) for s in (7, 8, 11)] == ["gpt2-small-res-jb/blocks.8.hook_resid_pre", "gpt2-small-res-jb/blocks.9.hook_resid_pre",
                                                "gpt2-small-res-jb/blocks.11.hook_resid_post"]
    llama = registry.atlas_default("meta-llama/Llama-3.1-8B", 32)
    assert llama is not None and llama.sae(14) == "llama_scope_lxr_8x/l14r_8x" and llama.d_sae == 32768
    assert registry.atlas_default("llama3.1-8b", 32) == llama  # Neuronpedia's name finds it too
    gemma = registry.atlas_default("google/gemma-2-2b", 26)
    assert gemma is not None and all(gemma.sae(s) == default_sae(s) for s in range(26))  # the post's SAEs, as before
    assert registry.atlas_default("gpt2", 13) is None  # no SAE after a 13th layer
    models = registry.atlas_models()
    assert {"gpt2-small (gpt2-small-res-jb)", "meta-llama/Llama-3.1-8B (llama_scope_lxr_8x)",
            "pythia-70m-deduped (pythia-70m-deduped-res-sm)", "gemma-2-9b (gemma-scope-9b-pt-res-canonical)"} <= set(models)
    assert "Qwen/Qwen3-8B-Base (qwen-scope-3-8b-base-w64k-l100)" in models  # Qwen Scope's layer{L}.sae.pt series
    assert not any("Qwen3.5" in m for m in models)  # model_type qwen3_5: a family featgraph does not read


def test_a_registry_sae_names_the_model_and_its_labels_come_from_its_export(tiny, tmp_path, monkeypatch):
    """Llama Scope SAEs (their real layout, in the HF cache) on a tiny model: the run's model id is Neuronpedia's
    `llama3.1-8b` from the registry, not the directory's name, and labels are fetched from
    v1/llama3.1-8b/0-llamascope-res-32k/explanations/ (a loopback S3)."""
    import http.server
    import threading

    import pandas as pd
    from test_labels import _S3, _write_jsonl_gz

    from featgraph.load import neuronpedia as L

    from helpers import LAYER, TINY

    model_dir = tiny[0]
    d = TINY["hidden_size"]
    root = _cache(tmp_path, "fnlp/Llama3_1-8B-Base-LXR-8x")
    sae_in, _ = write_llama_scope(root / "Llama3_1-8B-Base-L0R-8x", d, 40, 1, hook="blocks.0.hook_resid_post")
    sae_out, _ = write_llama_scope(root / "Llama3_1-8B-Base-L1R-8x", d, 36, 2, hook="blocks.1.hook_resid_post")
    rows = [{"modelId": "llama3.1-8b", "layer": f"{s}-llamascope-res-32k", "index": str(i), "description": f"feature {s}/{i}",
             "explanationModelName": "x"} for s in (0, 1) for i in range(40)]
    objs = {}
    for s in (0, 1):
        p = tmp_path / f"{s}.jsonl.gz"
        _write_jsonl_gz(p, [r for r in rows if r["layer"].startswith(f"{s}-")])
        objs[f"v1/llama3.1-8b/{s}-llamascope-res-32k/explanations/batch-0.jsonl.gz"] = p.read_bytes()
    _S3.objects, _S3.requests = objs, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _S3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv(L.S3_ENV, f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("FEATGRAPH_CACHE", str(tmp_path / "cache"))
    try:
        run = fg.extract(model=str(model_dir), layer=LAYER, sae_in=str(sae_in), sae_out=str(sae_out), top_k=20, device="cpu",
                         out=tmp_path / "run")
    finally:
        srv.shutdown()
    m = run.manifest
    assert m.model["neuronpedia_id"] == "llama3.1-8b" and "SAELens registry" in m.model["id_source"]
    assert (m.sae_in["neuronpedia_id"], m.sae_out["neuronpedia_id"]) == ("0-llamascope-res-32k", "1-llamascope-res-32k")
    assert (m.sae_in["input_of_layer"], m.sae_out["output_of_layer"]) == (1, 1)  # resid_post 0 feeds layer 1
    assert m.sae_in["norm_scaling_factor"] == reg.get().lookup("llama_scope_lxr_8x", "l0r_8x").norm_scaling_factor
    f = pd.read_parquet(tmp_path / "run" / "features.parquet")
    assert f["description"].notna().all() and f["id"].str.startswith("llama3.1-8b/").all()
    for fid, desc in zip(f["id"], f["description"]):
        _, source, index = fid.split("/")
        assert desc == f"feature {source.split('-')[0]}/{index}"


def test_extract_picks_a_registry_models_saes_by_hook_point(tmp_path, monkeypatch):
    """A GPT-2 (tiny, saved by transformers in a folder named gpt2) without --sae-in/--sae-out: layer 1 reads
    gpt2-small-res-jb's blocks.1.hook_resid_pre (its input) and blocks.2.hook_resid_pre (after it), in SAELens'
    format from the Hub (faked: the files as the Hub serves them); the model is Neuronpedia's gpt2-small, and the
    registry's center_writing_weights override is recorded."""
    import huggingface_hub
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from featgraph.load import hub

    torch.manual_seed(0)
    d = 24
    GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=64, n_embd=d, n_layer=3, n_head=4)).save_pretrained(tmp_path / "gpt2")
    snap = tmp_path / "snap"
    for L, seed in ((1, 1), (2, 2)):
        write_saelens(snap / f"blocks.{L}.hook_resid_pre", d, 40 + L, seed, hook=f"blocks.{L}.hook_resid_pre")
    asked = []

    def fake_download(repo_id, filename, revision=None, **kw):
        assert repo_id == "jbloom/GPT2-Small-SAEs-Reformatted"
        asked.append(filename)
        return str(snap / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "_check_reachable", lambda ref, filename: None, raising=False)
    run = fg.extract(model=str(tmp_path / "gpt2"), layer=1, top_k=5, device="cpu", labels=False)
    m = run.manifest
    assert sorted(asked) == sorted(f"blocks.{L}.hook_resid_pre/{f}" for L in (1, 2) for f in ("cfg.json", "sae_weights.safetensors"))
    assert (m.sae_in["release"], m.sae_in["sae_id"], m.sae_out["sae_id"]) == ("gpt2-small-res-jb", "blocks.1.hook_resid_pre",
                                                                            "blocks.2.hook_resid_pre")
    assert (m.sae_in["d_sae"], m.sae_out["d_sae"]) == (41, 42)
    assert (m.model["neuronpedia_id"], m.sae_in["neuronpedia_id"], m.sae_out["neuronpedia_id"]) == ("gpt2-small", "1-res-jb", "2-res-jb")
    assert m.sae_in["model_from_pretrained_kwargs"] == {"center_writing_weights": True}
    assert m.sae_out["reads"] == "resid"


def test_attention_output_in_residual_units_is_a_resid_destination():
    """Llama-3.1-8B and GPT-2 have d_model = n_heads·d_head: the hook decides. hook_attn_out (after o_proj) -> resid;
    hook_z (before o_proj) -> attn."""
    from featgraph.core.circuits import ov_target
    from featgraph.core.weights import ModelConfig

    cfg = ModelConfig(d_model=64, n_heads=4, n_kv_heads=4, d_head=16, n_layers=2, query_pre_attn_scalar=16, rms_norm_eps=1e-6,
                      rope_theta=1e4, attn_logit_softcapping=None, model_type="llama")
    lxa = fg.sae_info("llama_scope_lxa_8x/l3a_8x")[0]
    hz = fg.sae_info("gpt2-small-hook-z-kk/blocks.5.hook_z")[0]
    assert ov_target("auto", 64, cfg, lxa["site"])[0] == "resid"
    assert ov_target("auto", 64, cfg, hz["site"])[0] == "attn"


def test_sae_ids_are_described_without_torch():
    """`featgraph sae release/sae_id` reads the registry alone (the same record as the loaders' info) and imports no torch."""
    from featgraph.load import sae as sae_io

    for ref in ("gpt2-small-res-jb/blocks.8.hook_resid_pre", "gemma-scope-2-1b-pt-res-all/layer_12_width_16k_l0_small"):
        assert fg.sae_info(ref)[0] == sae_io.info(ref)
    code = ("import sys, featgraph as fg; d = fg.sae_info('llama_scope_lxr_8x/l15r_8x')[0]; "
            "print(d['neuronpedia_id'], 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0 and p.stdout.split() == ["15-llamascope-res-32k", "False"], p.stderr


def test_extract_reads_a_qwen3_models_qwen_scope_saes_from_the_registry(tmp_path, monkeypatch):
    """A tiny Qwen3 saved by transformers in a folder named after Qwen3-1.7B-Base, without --sae-in/--sae-out: layer 2
    reads Qwen Scope's layer1.sae.pt (blocks.1.hook_resid_post, its input) and layer2.sae.pt (after it) from the
    Hub (faked: the files as the repo serves them); the edges equal the same files passed as local paths."""
    import huggingface_hub
    import pandas as pd
    from family_models import make_tiny

    from featgraph.load import hub

    from sae_formats import write_qwen_scope

    make_tiny("qwen3", tmp_path / "Qwen3-1.7B-Base")
    d_model = json.loads((tmp_path / "Qwen3-1.7B-Base" / "config.json").read_text())["hidden_size"]
    snap = tmp_path / "snap"
    for L in (1, 2):
        write_qwen_scope(snap / f"layer{L}.sae.pt", d_model, 40 + L, L)
    asked = []

    def fake_download(repo_id, filename, revision=None, **kw):
        asked.append((repo_id, filename))
        return str(snap / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "_check_reachable", lambda ref, filename: None, raising=False)
    run = fg.extract(model=str(tmp_path / "Qwen3-1.7B-Base"), layer=2, top_k=5, device="cpu", labels=False)
    m = run.manifest
    repos = {r for r, _ in asked}
    assert len(repos) == 1 and next(iter(repos)).startswith("Qwen/SAE-Res-Qwen3-1.7B-Base-W32K-L0_")
    assert sorted(f for _, f in asked) == ["layer1.sae.pt", "layer2.sae.pt"]
    assert (m.sae_in["sae_id"], m.sae_out["sae_id"], m.sae_in["format"]) == ("layer1", "layer2", "qwen_scope")
    local = fg.extract(model=str(tmp_path / "Qwen3-1.7B-Base"), layer=2, top_k=5, device="cpu", labels=False,
                       sae_in=str(snap / "layer1.sae.pt"), sae_out=str(snap / "layer2.sae.pt"))
    cols = ["head", "circuit", "src_index", "dst_index", "weight"]
    a = run.edges[cols].sort_values(cols[:4]).reset_index(drop=True)
    b = local.edges[cols].sort_values(cols[:4]).reset_index(drop=True)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)


def test_sae_command_answers_each_reference_and_suggests_near_misses(tmp_path):
    """One bad reference among good ones: the good ones are printed, the bad one is an error line, exit 2. Typos get
    the nearest release or id; a release without an id, an id of another release and a missing file say so."""
    r = cli("sae", "gpt2-small-res-jb/blocks.8.hook_resid_pre", "nonsense", "llama_scope_lxr_8x/l15r_8x", "--json")
    assert r.exit_code == 2
    assert [json.loads(x)["ref"] for x in r.stdout.splitlines()] == ["gpt2-small-res-jb/blocks.8.hook_resid_pre",
                                                                     "llama_scope_lxr_8x/l15r_8x"]
    assert "SAE 'nonsense' not found" in r.stderr and "1 of 3 SAE references" in r.stderr
    for ref, want in [("gpt2-smal-res-jb/blocks.8.hook_resid_pre", "did you mean 'gpt2-small-res-jb'?"),
                      ("llama_scope_lxr_8x/l15r_16x", "closest: l15r_8x"),
                      ("gpt2-small-res-jb", "a SAELens release of 13 SAEs: name one"),
                      ("gemma-scope-2b-pt-res-canonical/layer_12/width_16k/average_l0_82", "it is an SAE of gemma-scope-2b-pt-res"),
                      (str(tmp_path / "nothere.npz"), "no such file or folder"),
                      ("", "the SAE reference is empty")]:
        r = cli("sae", ref)
        assert r.exit_code == 2 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1, (ref, r.stderr)


def test_sae_text_names_the_alias_a_neuronpedia_id_comes_from():
    r = cli("sae", "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82", "mwhanna-qwen3-4b-transcoders/layer_0")
    assert r.exit_code == 0
    assert "gemma-2-2b/12-gemmascope-res-16k  (listed under its alias gemma-scope-2b-pt-res-canonical/" in r.stdout
    assert "; )" not in r.stdout
