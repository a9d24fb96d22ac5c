"""Issue 19's join (docs/graph.md, docs/maths.md "Transcoder features as endpoints"): a graph written by circuit-tracer's
own writer on a tiny Gemma 2, and QK/OV edges that featgraph computes on the same model with Gemma Scope transcoders (the
files in the layout of google/gemma-scope-2b-pt-transcoders, which SAELens' registry names: Neuronpedia's
`gemmascope-transcoder-16k` source set of gemma-2-2b), in one atlas. The graph's feature nodes and the edges' endpoints
are the same (:Feature {id}) nodes, and the library's link_heads and attended_keys find the heads, as a pandas
reference computes them from the files, on the embedded store and on Neo4j."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from graph_refs import ref_attended_keys, ref_link_heads
from test_attribution import _circuit_tracer_graph

import featgraph as fg

from helpers import fg as cli
from sae_formats import write_gemma_scope_transcoder

D_SAE = 96  # the graph's feature indices are < 96


def _transcoders(root, n_layers: int, d_model: int) -> dict[int, str]:
    """Gemma Scope's transcoder of each layer at the path its Hub repo has (the registry's L0 for width_16k)."""
    from featgraph.load import registry

    rel = registry.get().releases["gemma-scope-2b-pt-transcoders"]
    out = {}
    for layer in range(n_layers):
        path = next(e.path for e in rel.values() if e.path.startswith(f"layer_{layer}/width_16k/"))
        folder, _ = write_gemma_scope_transcoder(root / "gemma-scope-2b-pt-transcoders" / path, d_model, D_SAE, seed=70 + layer)
        out[layer] = str(folder)
    return out


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    pytest.importorskip("circuit_tracer", reason="circuit-tracer is installed by scripts/setup (pip install --no-deps circuit-tracer==0.5.0)")
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from featgraph.api.demo import DEMO_CONFIG

    root = tmp_path_factory.mktemp("join")
    graph = _circuit_tracer_graph(root, scan="gemma-2-2b")  # root/model: the demo's config and tokenizer
    cfg = Gemma2Config(**{k: v for k, v in DEMO_CONFIG.items() if k not in ("architectures", "model_type", "torch_dtype")})
    cfg._attn_implementation = "eager"
    torch.manual_seed(1)
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "norm" in name else 0.2))
    model.save_pretrained(root / "model", safe_serialization=True)
    tcs = _transcoders(root, cfg.num_hidden_layers, cfg.hidden_size)
    # layer L reads layer L-1's transcoder (decoder rows) and writes into layer L's (encoder): the atlas' pairing
    fg.atlas(model=root / "model", layers=range(1, cfg.num_hidden_layers), out=root / "atlas", sae_template=tcs.__getitem__,
             top_k=10**6, device="cpu", labels=False)
    r = cli("import", graph, "--out", root / "atlas", "--source-set", "gemmascope-transcoder-16k")
    assert r.exit_code == 0, r.output
    return fg.open_run(root / "atlas"), json.loads(graph.read_text())


def _check(run, doc, **store):
    (stored,) = run.graphs
    nodes = pq.read_table(stored.nodes_path).to_pandas()
    links = pq.read_table(stored.links_path).to_pandas()
    edges = run.edge_table
    # the graph imported whole: every node and link, with its weight
    assert len(nodes) == len(doc["nodes"]) and len(links) == len(doc["links"])
    np.testing.assert_array_equal(links["weight"].to_numpy(), [x["weight"] for x in doc["links"]])
    # its feature nodes are the atlas' features: same ids, tied to the same Feature nodes
    feats = set(nodes.loc[nodes["kind"] == "feature", "feature_id"])
    assert feats and feats <= set(edges["src"]) | set(edges["dst"]), feats - set(edges["src"]) - set(edges["dst"])
    shared = run.query("MATCH (p:PromptNode)-[:OF]->(f:Feature)-[e:OV]->() RETURN count(DISTINCT f) AS n", **store)
    assert int(shared["n"][0]) == len({f for f in feats if not f.startswith("gemma-2-2b/2-")})  # the last layer's write nowhere
    big = 10**6
    got = run.query("link_heads", graph=stored.id, limit=big, **store)
    want = ref_link_heads(nodes, links, edges, limit=big)
    assert len(want) > 0 and set(want["layer"]) <= {1, 2}  # links between adjacent layers' features (the graph's pruning keeps some)
    cols = list(want.columns)
    got = got[cols].reset_index(drop=True)
    np.testing.assert_array_equal(got[["source_node", "target_node", "layer", "head"]].to_numpy(),
                                  want[["source_node", "target_node", "layer", "head"]].to_numpy())
    np.testing.assert_allclose(got["ov_weight"].to_numpy(float), want["ov_weight"].to_numpy(float), rtol=1e-6)
    np.testing.assert_allclose(got["link_weight"].to_numpy(float), want["link_weight"].to_numpy(float), rtol=1e-6)
    seen = 0
    for node in nodes.loc[nodes["kind"] == "feature", "node_id"]:
        want = ref_attended_keys(nodes, edges, node, limit=big)
        got = run.query("attended_keys", graph=stored.id, node=node, limit=big, **store)
        assert len(got) == len(want)
        if len(want):
            np.testing.assert_array_equal(got[["layer", "head", "key_node"]].to_numpy(), want[["layer", "head", "key_node"]].to_numpy())
            np.testing.assert_allclose(got["qk_weight"].to_numpy(float), want["qk_weight"].to_numpy(float), rtol=1e-6)
            seen += 1
    assert seen > 0


def test_circuit_tracer_graph_joins_transcoder_edges_embedded(joined):
    run, doc = joined
    m = fg.open_run(run.path / "layers" / "L1").manifest  # layer 1: layer 0's transcoder in, layer 1's out
    assert m.sae_in["neuronpedia_id"] == "0-gemmascope-transcoder-16k" and m.sae_out["transcoder"]["layer"] == 1
    assert m.model["neuronpedia_id"] == "gemma-2-2b"
    assert cli("load", run.path).exit_code == 0
    _check(run, doc)


@pytest.mark.neo4j
def test_circuit_tracer_graph_joins_transcoder_edges_neo4j(joined, neo4j_env):
    run, doc = joined
    r = cli("load", run.path, "--neo4j")
    assert r.exit_code == 0, r.output
    _check(run, doc, neo4j=True)
