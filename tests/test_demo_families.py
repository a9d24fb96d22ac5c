"""`featgraph demo --family NAME`: each family's tiny synthetic checkpoint is complete (transformers loads it with
no missing or unexpected tensor), and the demo's edges are what transformers' own modules compute on it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from family_models import oracle

import featgraph as fg
from featgraph.api import demo

from helpers import fg as cli


# GPT-2 and GPT-NeoX's demos: tests/test_validate_ln.py (their oracle is tests/ln_models.py).
@pytest.mark.parametrize("family", [f for f in demo.FAMILIES if f not in ("gemma2", *demo.LAYERNORM_FAMILIES)])
def test_each_familys_demo_checkpoint_loads_in_transformers_and_its_edges_match(tmp_path, family):
    from transformers import AutoModelForCausalLM

    inp = demo.write_inputs(tmp_path, family=family)
    model, info = AutoModelForCausalLM.from_pretrained(inp.model, output_loading_info=True)
    assert model.config.model_type == demo.CONFIGS[family]["model_type"]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.FeatgraphWarning)
        run = fg.extract(model=inp.model, layer=demo.LAYER, sae_in=inp.sae_in, sae_out=inp.sae_out, rope_offset=3,
                         top_k=10**6, device="cpu")
    W_dec, W_enc = np.load(inp.sae_in)["W_dec"], np.load(inp.sae_out)["W_enc"]
    want = oracle(model, demo.LAYER, W_dec, W_enc, rope_offset=3)
    e = run.edge_table
    for h in range(demo.CONFIGS[family]["num_attention_heads"]):
        for circ, key, cols in (("QK", "qk", ("dst_index", "src_index")), ("OV", "ov", ("src_index", "dst_index"))):
            eh = e[(e["head"] == h) & (e["circuit"] == circ)]
            w = want[key][h].numpy()
            assert len(eh) == w.size
            np.testing.assert_allclose(eh["weight"], w[eh[cols[0]], eh[cols[1]]], rtol=2e-4, atol=2e-4 * np.abs(w).max())


def test_cli_demo_family(tmp_path):
    r = cli("demo", "--family", "gemma4", "--out", tmp_path / "g4")
    assert r.exit_code == 0, r.output
    assert "a tiny Gemma4ForCausalLM" in r.stdout and (tmp_path / "g4" / "report" / "index.html").is_file()
    r = cli("demo", "--family", "falcon", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "gemma2, llama, mistral, qwen2, qwen3, qwen3_moe, gemma3, gemma4" in r.stderr and not (tmp_path / "bad").exists()
    assert len(r.stderr.strip().splitlines()) == 1
