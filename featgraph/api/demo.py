"""`featgraph demo`: the whole pipeline offline on a tiny synthetic model and SAEs.

Inputs are written in the real formats — a sharded safetensors checkpoint with
`model.safetensors.index.json` and the family's `config.json` (Gemma 2 by default; `--family` picks Llama with
Llama 3.1's rope scaling, Mistral, Qwen2 with its q/k/v biases, Qwen3 with its query/key norms or Gemma 4, whose
demo layer is a full-attention one: its own head size, partial rotary, keys as values, GPT-2 with its fused Conv1D
c_attn and LayerNorms, GPT-NeoX/Pythia with partial rotary and parallel attention and MLP), Gemma Scope
`params.npz` files, a Neuronpedia legacy label export — so every loader runs
exactly as it does on the real thing. Each family's checkpoint is complete: transformers loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEMO_CONFIG = {
    "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "torch_dtype": "float32",
    "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "query_pre_attn_scalar": 32,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0, "sliding_window": 64, "max_position_embeddings": 512,
    "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False, "bos_token_id": 2,
    "eos_token_id": 1, "pad_token_id": 0,
}
_ROTARY_RMS = {  # what Llama, Mistral and the Qwens share (their transformers config fields)
    "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-5, "max_position_embeddings": 512,
    "hidden_act": "silu", "tie_word_embeddings": True, "torch_dtype": "float32", "bos_token_id": 2, "eos_token_id": 1,
    "pad_token_id": 0,
}
CONFIGS = {
    "gemma2": DEMO_CONFIG,
    "llama": _ROTARY_RMS | {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
                            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
    "mistral": _ROTARY_RMS | {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 64,
                              "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
    "qwen2": _ROTARY_RMS | {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}},
    "qwen3": _ROTARY_RMS | {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "attention_bias": False,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}},
    # Qwen3-MoE's attention is Qwen3's; its MLPs here are dense (mlp_only_layers, a real Qwen3MoeConfig field: no edge
    # reads an MLP, so the demo keeps the checkpoint small). tests/test_oracle_families.py runs real experts.
    "qwen3_moe": _ROTARY_RMS | {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "attention_bias": False,
                                "num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 32,
                                "mlp_only_layers": [0, 1, 2], "decoder_sparse_step": 1, "use_sliding_window": False,
                                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}},
    # Gemma 3 (text-only checkpoints, Gemma3ForCausalLM): sliding and global layers with their own RoPE bases.
    "gemma3": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "torch_dtype": "float32", "vocab_size": 128,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "query_pre_attn_scalar": 32, "rms_norm_eps": 1e-6,
        "max_position_embeddings": 512, "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 64,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
        "tie_word_embeddings": True, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
    },
    "gemma4": {
        "architectures": ["Gemma4ForCausalLM"], "model_type": "gemma4_text", "torch_dtype": "float32", "vocab_size": 128,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-6, "max_position_embeddings": 512,
        "hidden_activation": "gelu_pytorch_tanh", "sliding_window": 64, "attention_k_eq_v": True,
        "layer_types": ["sliding_attention", "full_attention"] * 2, "hidden_size_per_layer_input": 0,
        "num_kv_shared_layers": 0, "per_layer_config": {"1": {"head_dim": 64, "num_key_value_heads": 1},
                                                        "3": {"head_dim": 64, "num_key_value_heads": 1}},
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                               "rope_theta": 1000000.0}},
        "tie_word_embeddings": True, "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
    },
}
# GPT-2 (GPT2LMHeadModel) and GPT-NeoX (GPTNeoXForCausalLM) at the demo's sizes: d_model 64, 4 heads of 16.
CONFIGS["gpt2"] = {
    "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "torch_dtype": "float32", "vocab_size": 128, "n_embd": 64,
    "n_layer": 3, "n_head": 4, "n_inner": None, "n_positions": 512, "layer_norm_epsilon": 1e-5,
    "activation_function": "gelu_new", "scale_attn_weights": True, "tie_word_embeddings": True, "bos_token_id": 2,
    "eos_token_id": 1,
}
CONFIGS["gpt_neox"] = {
    "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "torch_dtype": "float32", "vocab_size": 128,
    "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 256, "rotary_pct": 0.25,
    "rotary_emb_base": 10000, "layer_norm_eps": 1e-5, "max_position_embeddings": 512, "use_parallel_residual": True,
    "hidden_act": "gelu", "tie_word_embeddings": False, "bos_token_id": 2, "eos_token_id": 1,
}
FAMILIES = tuple(CONFIGS)
LAYERNORM_FAMILIES = ("gpt2", "gpt_neox")  # d_model = n_heads·d_head: the demo says its output SAE is a residual one
MODEL_ID = "featgraph-demo"
LAYER = 1
N_IN, N_OUT = 96, 80
SOURCE_IN, SOURCE_OUT = "0-demo-res-96", "1-demo-res-80"

TOPICS = [
    "numbers in lists and sequences", "legal proceedings and court cases", "programming syntax",
    "references to military threats", "scientific terminology", "past-tense completed actions",
    "financial transactions and deposits", "punctuation, particularly periods", "names of people",
    "HTML and XML markup", "mathematical constants", "social equity and fairness", "sounds and noises",
    "faces and facial features", "instructions for tasks", "structured data formats",
    "coordinating conjunctions", "locations and events", "frequencies and counts", "authority and compliance",
]


@dataclass(frozen=True)
class DemoInputs:
    model: Path
    sae_in: Path
    sae_out: Path
    labels: Path


def _layernorm_tensors(family: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    """GPT-2's (Conv1D weights in [in, out] layout) or GPT-NeoX's checkpoint tensors, LayerNorms with biases."""
    c = CONFIGS[family]

    def rnd(*shape, s=0.15, mean=0.0):
        return (torch.randn(*shape, generator=g) * s + mean).contiguous()

    def ln(name, d):
        return {f"{name}.weight": rnd(d, s=0.2, mean=1.0), f"{name}.bias": rnd(d, s=0.05)}

    if family == "gpt2":
        d, V = c["n_embd"], c["vocab_size"]
        t = {"transformer.wte.weight": rnd(V, d), "transformer.wpe.weight": rnd(c["n_positions"], d, s=0.05),
             **ln("transformer.ln_f", d)}
        for L in range(c["n_layer"]):
            p = f"transformer.h.{L}"
            t |= {**ln(f"{p}.ln_1", d), **ln(f"{p}.ln_2", d),
                  f"{p}.attn.c_attn.weight": rnd(d, 3 * d), f"{p}.attn.c_attn.bias": rnd(3 * d, s=0.05),
                  f"{p}.attn.c_proj.weight": rnd(d, d), f"{p}.attn.c_proj.bias": rnd(d, s=0.05),
                  f"{p}.mlp.c_fc.weight": rnd(d, 4 * d), f"{p}.mlp.c_fc.bias": rnd(4 * d, s=0.05),
                  f"{p}.mlp.c_proj.weight": rnd(4 * d, d), f"{p}.mlp.c_proj.bias": rnd(d, s=0.05)}
        return t
    d, V, ff = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    t = {"gpt_neox.embed_in.weight": rnd(V, d), "embed_out.weight": rnd(V, d), **ln("gpt_neox.final_layer_norm", d)}
    for L in range(c["num_hidden_layers"]):
        p = f"gpt_neox.layers.{L}"
        t |= {**ln(f"{p}.input_layernorm", d), **ln(f"{p}.post_attention_layernorm", d),
              f"{p}.attention.query_key_value.weight": rnd(3 * d, d), f"{p}.attention.query_key_value.bias": rnd(3 * d, s=0.05),
              f"{p}.attention.dense.weight": rnd(d, d), f"{p}.attention.dense.bias": rnd(d, s=0.05),
              f"{p}.mlp.dense_h_to_4h.weight": rnd(ff, d), f"{p}.mlp.dense_h_to_4h.bias": rnd(ff, s=0.05),
              f"{p}.mlp.dense_4h_to_h.weight": rnd(d, ff), f"{p}.mlp.dense_4h_to_h.bias": rnd(d, s=0.05)}
    return t


def _tensors(family: str, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Every tensor of the family's checkpoint, named as transformers names them (so it loads the model)."""
    if family in LAYERNORM_FAMILIES:
        return _layernorm_tensors(family, g)
    c = CONFIGS[family]
    d, nh, ff = c["hidden_size"], c["num_attention_heads"], c["intermediate_size"]
    gemma = family.startswith("gemma")

    def rnd(*shape, s=0.15):
        return (torch.randn(*shape, generator=g) * s).contiguous()

    def gain(n):  # Gemma 2 and 3 store w of a gain 1 + w; the others store the gain itself
        return rnd(n, s=0.3) + (0.0 if family in ("gemma2", "gemma3") else 1.0)

    tensors = {"model.embed_tokens.weight": rnd(c["vocab_size"], d), "model.norm.weight": gain(d)}
    for L in range(c["num_hidden_layers"]):
        p = f"model.layers.{L}"
        shape = c.get("per_layer_config", {}).get(str(L), {})
        dh, nkv = shape.get("head_dim", c["head_dim"]), shape.get("num_key_value_heads", c["num_key_value_heads"])
        tensors |= {f"{p}.self_attn.q_proj.weight": rnd(nh * dh, d), f"{p}.self_attn.k_proj.weight": rnd(nkv * dh, d)}
        if not (family == "gemma4" and c["attention_k_eq_v"] and shape):  # Gemma 4's full layers: keys are values
            tensors[f"{p}.self_attn.v_proj.weight"] = rnd(nkv * dh, d)
        tensors |= {
            f"{p}.self_attn.o_proj.weight": rnd(d, nh * dh), f"{p}.mlp.gate_proj.weight": rnd(ff, d),
            f"{p}.mlp.up_proj.weight": rnd(ff, d), f"{p}.mlp.down_proj.weight": rnd(d, ff),
        }
        norms = ["input_layernorm", "post_attention_layernorm"]
        if gemma:
            norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
        for norm in norms:
            tensors[f"{p}.{norm}.weight"] = gain(d)
        if family in ("qwen3", "qwen3_moe", "gemma3", "gemma4"):
            tensors |= {f"{p}.self_attn.q_norm.weight": gain(dh), f"{p}.self_attn.k_norm.weight": gain(dh)}
        if family == "qwen2":
            tensors |= {f"{p}.self_attn.{x}_proj.bias": rnd(n * dh) for x, n in (("q", nh), ("k", nkv), ("v", nkv))}
        if family == "gemma4":
            tensors[f"{p}.layer_scalar"] = torch.tensor([0.8 + 0.1 * L])
    return tensors


def write_inputs(root: Path, seed: int = 0, family: str = "gemma2") -> DemoInputs:
    """Write the synthetic checkpoint of `family` (a key of CONFIGS), SAEs and labels under `root`."""
    from safetensors.torch import save_file

    if family not in CONFIGS:
        from featgraph.errors import BadValue

        raise BadValue("family", family, f"must be one of {', '.join(FAMILIES)}")
    g = torch.Generator().manual_seed(seed)
    c = CONFIGS[family]
    d = c.get("hidden_size") or c["n_embd"]
    tensors = _tensors(family, g)
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    shards = [names[: len(names) // 2], names[len(names) // 2 :]]
    weight_map = {}
    for i, group in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensors[k] for k in group}, str(model / fname), metadata={"format": "pt"})
        weight_map |= {k: fname for k in group}
    total = sum(t.numel() * 4 for t in tensors.values())
    (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (model / "config.json").write_text(json.dumps(c, indent=2))
    write_tokenizer(model, c["vocab_size"])

    rng = np.random.default_rng(seed)
    sae_in = _write_sae(root / "sae" / "layer_0" / "params.npz", rng, d, N_IN, antipodal=[(3, 4), (10, 11), (20, 21)])
    sae_out = _write_sae(root / "sae" / "layer_1" / "params.npz", rng, d, N_OUT, antipodal=[(5, 6), (30, 31)])
    labels = root / "labels.json"
    rows = [
        {"modelId": MODEL_ID, "layer": src, "index": str(i), "description": f" {TOPICS[(i * 7 + k) % len(TOPICS)]}",
         "autoInterpModel": "synthetic"}
        for k, (src, n) in enumerate(((SOURCE_IN, N_IN), (SOURCE_OUT, N_OUT)))
        for i in range(n) if i % 9 != 8  # some features stay unlabelled, as on Neuronpedia
    ]
    labels.write_text(json.dumps({"explanations": rows}))
    return DemoInputs(model, sae_in, sae_out, labels)


# The tokenizer's words, most common first.
_WORD_TEXT = (
    ". , the of and to a in is that it for was on are as with his they at be this from have or by one had not but what "
    "all were when we there can an your which their said if do will each about how up out them then she many some so "
    "these would other into has more her two like him see time could no make than first been its who now people my "
    "made over did down only way find use may water long little very after words called just where most know get "
    "through back much go good new write our me man too any day same right look think also around another came come "
    "work three word must because does part even place well such here take why things help put years different away "
    "again off went old number great tell men say small every found still between name should home big give air "
    "line set own under read last never us left end along while might next sound below saw something thought both"
)
WORDS = tuple(_WORD_TEXT.split())


def write_tokenizer(model_dir: Path, vocab_size: int, max_length: int = DEMO_CONFIG["max_position_embeddings"]) -> None:
    """A word-level tokenizer (tokenizer.json, as the `tokenizers` library writes it) over `vocab_size` ids:
    <pad> 0, <eos> 1, <bos> 2 (added before every text, as Gemma's tokenizer does), <unk> 3, then common words."""
    special = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {w: i for i, w in enumerate([*special, *WORDS][:vocab_size])}
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
             for i, t in enumerate(special)]
    bos = [{"SpecialToken": {"id": "<bos>", "type_id": 0}}]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing", "single": [*bos, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [*bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
                           "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
        "decoder": None, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer, indent=2))
    (model_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>", "model_max_length": max_length}, indent=2))


def _write_sae(path: Path, rng, d_in: int, d_sae: int, antipodal: list[tuple[int, int]]) -> Path:
    """Gemma Scope keys; antipodal feature pairs plant mutual-exclusion tetrads."""
    W_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32) * rng.uniform(0.5, 2.0, size=(d_sae, 1)).astype(np.float32)
    W_enc = rng.normal(size=(d_in, d_sae)).astype(np.float32)
    for a, b in antipodal:
        W_dec[b] = -W_dec[a]
        W_enc[:, b] = -W_enc[:, a]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, W_enc=W_enc, W_dec=W_dec, b_enc=np.zeros(d_sae, np.float32),
             b_dec=rng.normal(size=d_in).astype(np.float32), threshold=np.full(d_sae, 0.1, np.float32))
    return path


def run_demo(out: Path, force: bool = False, family: str = "gemma2", prog: str = "featgraph") -> list[str]:
    """The whole pipeline on synthetic inputs of `family` (a key of CONFIGS), through the public API; returns the
    lines to show the user (`prog`: how the user runs featgraph, for the commands it suggests).

    Running it again replaces what an earlier demo made in `out` (its marker says so); anything else there is refused."""
    import shutil

    from featgraph.analyse.tables import post_view
    from featgraph.api.compute import extract
    from featgraph.render.text import markdown
    from featgraph.runs.files import check_target, write_marker

    out = Path(out)
    # The run records absolute input paths, so the demo is built in place (not renamed into place):
    # an earlier demo is replaced, and a failed build removes what it wrote.
    if family not in CONFIGS:
        from featgraph.errors import BadValue

        raise BadValue("family", family, f"must be one of {', '.join(FAMILIES)}")
    from featgraph.runs.files import marker_kind

    check_target(out, force or (out.is_dir() and marker_kind(out, legacy=False) == "demo"), kind="demo")  # the demo's own: replaced
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_marker(out, "demo")
    tmp = out
    try:
        inputs = write_inputs(tmp / "inputs", family=family)
        run = extract(model=str(inputs.model), layer=LAYER, sae_in=str(inputs.sae_in), sae_out=str(inputs.sae_out),
                      top_k=200, per_source_k=2, device="cpu", model_id=MODEL_ID, sae_in_id=SOURCE_IN,
                      sae_out_id=SOURCE_OUT, out=tmp / "run", label_sources=[inputs.labels],
                      ov_target="resid" if family in LAYERNORM_FAMILIES else "auto")
        counts = run.load()
        hubs = run.query("hubs", head=0, circuit="ov", limit=3)
        tet = run.tetrads()
        run.viz(0, "ov", tmp / "head0_ov.html", top=80)
        run.report(tmp / "report")
        qk = post_view(run.table(0, "qk", distinct=True, top=8))
        write_graph(run, inputs.model, tmp / "inputs" / "graph.json")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    run_dir = out / "run"
    labels = run.manifest.labels or {}
    return [
        f"demo inputs (real formats, a tiny {CONFIGS[family]['architectures'][0]}): {out / 'inputs' / 'model'}, {out / 'inputs' / 'sae'}",
        f"run directory: {run_dir}  ({len(run.edge_table)} edges, {labels.get('labelled')}/{labels.get('features')} features labelled)",
        f"embedded graph: {run_dir / 'graph.lbdb'}  ({counts['nodes']} features, {counts['QK']} QK + {counts['OV']} OV edges)",
        f"tetrads: {len(tet)} ({int(tet['like_to_like'].sum())} like-to-like) in {run_dir / 'tetrads.parquet'}",
        f"interactive graph: {out / 'head0_ov.html'}",
        f"report: {out / 'report' / 'index.html'}",
        f"attribution graph (circuit-tracer's format, synthetic, over these features): {out / 'inputs' / 'graph.json'}",
        "",
        "head 0, QK, strongest distinct edges:",
        markdown(qk),
        "head 0, OV, hub features (cypher/hubs.cypher):",
        markdown(hubs),
        "try next:",
        f"  {prog} tables {run_dir} --head 1 --circuit ov --top 10",
        f"  {prog} query {run_dir} two_step --param head=0 --param limit=5",
        f"  {prog} tetrads {run_dir} --head 0 --circuit ov --top 5",
        f"  {prog} query --list",
    ]


GRAPH_SLUG = "demo-graph"
GRAPH_PROMPT = "the people who made it back had water"


def write_graph(run: Any, model_dir: Path, path: Path) -> dict[str, str]:
    """An attribution graph over the demo run's features on GRAPH_PROMPT, in circuit-tracer 0.5.0's file layout
    (schema_version 1: feature numbers are Cantor pairings), for the README's attribution-graph workflow.

    Synthetic (no attribution was computed): head 0's strongest OV edge v -> o and strongest QK edge k -> q become
    feature nodes — v and k at position 3, q at the last position (layer 0, the input SAE `0-demo-res-96`), o at
    the last position (layer 1; named through the Lorsa source set, the file's second source set, so it is the
    output SAE's `1-demo-res-80` feature) — with embeddings, a logit and links E -> v, k, q; v -> o (a link head 0
    can carry); q -> o; o -> logit. Returns the node ids by role (v, k, q, o)."""
    import pandas as pd
    from transformers import AutoTokenizer

    from featgraph.core.schema import parse_feature_id

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = list(tok(GRAPH_PROMPT)["input_ids"])
    tokens = tok.convert_ids_to_tokens(ids)
    e = run.edge_table
    head0 = e[e["head"] == 0]

    def strongest(circuit: str) -> pd.Series:
        rows = head0[head0["circuit"] == circuit]
        return rows.loc[rows["weight"].abs().idxmax()]

    ov, qk = strongest("OV"), strongest("QK")
    s, t = 3, len(ids) - 1

    def cantor(layer: int, index: int) -> int:
        return (layer + index) * (layer + index + 1) // 2 + index

    def node(node_id: str, feature: int | None, layer: str, ctx: int, ftype: str, clerp: str = "", **kw: Any) -> dict:
        return {"node_id": node_id, "feature": feature, "layer": layer, "ctx_idx": ctx, "feature_type": ftype,
                "token_prob": kw.get("token_prob", 0.0), "is_target_logit": kw.get("is_target_logit", False), "run_idx": 0,
                "reverse_ctx_idx": 0, "jsNodeId": kw.get("js", node_id), "clerp": clerp, "influence": kw.get("influence", 0.5),
                "activation": kw.get("activation")}

    desc = run.features.set_index("id")["description"] if len(run.features) else pd.Series(dtype=object)
    roles: dict[str, str] = {}
    nodes = [node(f"E_{x}_{p}", x, "E", p, "embedding", f'Emb: "{tokens[p]}"', js=f"E_{x}-{p}") for p, x in enumerate(ids)]
    for role, fid, pos, ftype in (("v", ov["src"], s, "cross layer transcoder"), ("k", qk["src"], s, "cross layer transcoder"),
                                  ("q", qk["dst"], t, "cross layer transcoder"), ("o", ov["dst"], t, "lorsa")):
        _, source, index = parse_feature_id(str(fid))
        layer = int(source.split("-", 1)[0])
        nid = f"{layer}_{index}_{pos}"
        roles[role] = nid
        if all(n["node_id"] != nid for n in nodes):
            label = desc.get(fid)
            nodes.append(node(nid, cantor(layer, index), str(layer), pos, ftype, label.strip() if isinstance(label, str) else "",
                              js=f"{layer}_{index}-0", activation=1.0))
    n_layers = int(CONFIGS["gemma2"]["num_hidden_layers"])
    nxt = int(tok.convert_tokens_to_ids("."))  # the predicted token
    logit = f"{n_layers}_{nxt}_{t}"
    nodes.append(node(logit, nxt, str(n_layers), t, "logit", 'Output "." (p=0.500)', token_prob=0.5, is_target_logit=True,
                      js=f"L_{nxt}-{t}"))
    pairs = [(f"E_{ids[s]}_{s}", roles["v"], 1.5), (f"E_{ids[s]}_{s}", roles["k"], 1.25), (f"E_{ids[t]}_{t}", roles["q"], 2.0),
             (roles["v"], roles["o"], 0.75), (roles["q"], roles["o"], 0.5), (roles["o"], logit, 1.0)]
    links = list({(a, b): {"source": a, "target": b, "weight": w} for a, b, w in pairs}.values())
    meta = {"slug": GRAPH_SLUG, "scan": MODEL_ID, "transcoder_list": [], "prompt_tokens": tokens, "prompt": GRAPH_PROMPT,
            "node_threshold": 0.8, "schema_version": 1,
            "feature_details": {"neuronpedia_source_set": SOURCE_IN.split("-", 1)[1],
                                "neuronpedia_lorsa_source_set": SOURCE_OUT.split("-", 1)[1]},
            "info": {"description": "featgraph demo: a synthetic attribution graph over the demo run's features"}}
    graph = {"metadata": meta, "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
             "nodes": nodes, "links": links}
    path.write_text(json.dumps(graph, indent=2))
    return roles
