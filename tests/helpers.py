"""Builders and oracles the tests share: tiny random Gemma 2 and Gemma 3 models saved by transformers, SAEs in
Gemma Scope's and Gemma Scope 2's formats, transformers' own attention as the oracle, a headless Chromium, the CLI."""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from featgraph.cli.app import app

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
NEURONPEDIA = DATA / "neuronpedia"
LAYER = 1  # the tiny model's layer the oracle tests use

runner = CliRunner()


def fg(*args):
    """Run the CLI in-process (stdout and stderr kept apart)."""
    return runner.invoke(app, [str(a) for a in args])


TINY = dict(
    vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,  # 4×16 = 64 ≠ 48
    query_pre_attn_scalar=16, rms_norm_eps=1e-6, rope_theta=10000.0,
    attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=32,
    max_position_embeddings=256,
)


def make_tiny_model(path: Path, seed: int = 0):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(**TINY)
    cfg._attn_implementation = "eager"
    model = _randomise(Gemma2ForCausalLM(cfg).eval(), seed)
    # Small shards so the index and several shard files are exercised.
    model.save_pretrained(path, max_shard_size="20KB", safe_serialization=True)
    return model


# A tiny Gemma 3: 4 layers, sliding_window_pattern 2 (layers 0, 2 local; 1, 3 global), each kind with its own RoPE
# base, linear scaling on the global layers as Gemma 3 4B+ have it, and an eps large enough that leaving it out of
# the query/key norms (docs/maths.md) is visible beside the tests' tolerances.
TINY3 = dict(
    vocab_size=64, hidden_size=48, intermediate_size=64, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16,  # 4×16 = 64 ≠ 48
    query_pre_attn_scalar=16, rms_norm_eps=0.1, rope_theta=20000.0, rope_local_base_freq=500.0,
    rope_scaling={"rope_type": "linear", "factor": 4.0}, sliding_window_pattern=2, sliding_window=8,
    max_position_embeddings=256,
)
TINY_VISION = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                   num_attention_heads=2, image_size=28, patch_size=14)


def _randomise(model, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5)  # non-zero: the gain 1 + w matters
            else:
                p.copy_(torch.randn_like(p) * 0.2)
    return model


def make_tiny_gemma3(path: Path, seed: int = 0, multimodal: bool = False):
    """A tiny random Gemma3ForCausalLM (model_type gemma3_text), or with `multimodal` a
    Gemma3ForConditionalGeneration (model_type gemma3, a tiny SigLIP tower) — saved sharded by save_pretrained."""
    from transformers import Gemma3Config, Gemma3ForCausalLM, Gemma3ForConditionalGeneration, Gemma3TextConfig

    if multimodal:
        cfg = Gemma3Config(text_config=dict(TINY3), vision_config=dict(TINY_VISION), mm_tokens_per_image=4,
                           boi_token_index=61, eoi_token_index=62, image_token_index=63)
        cfg.text_config._attn_implementation = "eager"
        model = Gemma3ForConditionalGeneration(cfg).eval()
    else:
        cfg = Gemma3TextConfig(**TINY3)
        cfg._attn_implementation = "eager"
        model = Gemma3ForCausalLM(cfg).eval()
    _randomise(model, seed)
    model.save_pretrained(path, max_shard_size="20KB", safe_serialization=True)
    return model


def write_gs2_sae(path: Path, d_in: int, d_sae: int, seed: int, config: dict | None = None) -> Path:
    """A Gemma Scope 2 SAE folder: params.safetensors (w_enc [d_in, d_sae], w_dec [d_sae, d_in], b_enc, b_dec,
    threshold) and, unless `config` is False-y, its config.json."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    W_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32) * rng.uniform(0.3, 3.0, size=(d_sae, 1)).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    save_file({
        "w_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32),
        "w_dec": W_dec,
        "b_enc": rng.normal(size=d_sae).astype(np.float32),
        "b_dec": rng.normal(size=d_in).astype(np.float32),
        "threshold": np.abs(rng.normal(size=d_sae)).astype(np.float32),
    }, str(path / "params.safetensors"))
    if config:
        (path / "config.json").write_text(json.dumps(config))
    return path / "params.safetensors"


def read_gs2(path: Path) -> dict[str, np.ndarray]:
    """A Gemma Scope 2 params.safetensors in our names (W_enc, W_dec, …), read with safetensors directly."""
    from safetensors.numpy import load_file

    return {k.replace("w_", "W_"): v for k, v in load_file(str(path)).items()}


def write_sae(path: Path, d_in: int, d_sae: int, seed: int, scale_rows: bool = True) -> Path:
    """A params.npz with Gemma Scope's keys; decoder rows deliberately not unit-norm."""
    rng = np.random.default_rng(seed)
    W_dec = rng.normal(size=(d_sae, d_in)).astype(np.float32)
    if scale_rows:
        W_dec *= rng.uniform(0.3, 3.0, size=(d_sae, 1)).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(
        path / "params.npz",
        W_enc=rng.normal(size=(d_in, d_sae)).astype(np.float32),
        W_dec=W_dec,
        b_enc=rng.normal(size=d_sae).astype(np.float32),
        b_dec=rng.normal(size=d_in).astype(np.float32),
        threshold=np.abs(rng.normal(size=d_sae)).astype(np.float32),
    )
    return path / "params.npz"


# ---------------------------------------------------------------- transformers as the oracle

def _capture_interface(eager=None):
    """Register an attention function that runs the family's own eager attention and keeps q, k, v, the output.

    With `captured["keep"] = h`, every head but h is zeroed in the attention output (before o_proj); -1 zeroes all."""
    from transformers import AttentionInterface

    if eager is None:
        from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward as eager

    captured: dict = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        out, weights = eager(module, query, key, value, attention_mask, **kwargs)  # out: [batch, seq, heads, d_head]
        if captured.get("keep") is not None:
            mask = torch.zeros(out.shape[2], dtype=out.dtype)
            if captured["keep"] >= 0:  # -1: no head
                mask[captured["keep"]] = 1
            out = out * mask[:, None]
        captured.update(q=query.detach(), k=key.detach(), v=value.detach(), out=out.detach(), scaling=module.scaling)
        return out, weights

    AttentionInterface.register("featgraph_capture", capture)
    return captured


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(x.pow(2).mean(-1) + eps)


def oracle(model, sae_in: np.ndarray, W_enc: np.ndarray, rope_offset: int = 0):
    """QK[h] as [n_query, n_key] and OV[h] as [n_value, n_out] from transformers' modules (layer LAYER)."""
    got = oracle_layer(model, LAYER, sae_in, W_enc, rope_offset=rope_offset)
    return got["qk"], got["ov"], got["scaling"]


def transcoder_read(model, layer: int, write: torch.Tensor, W_enc: np.ndarray, reads: str) -> torch.Tensor:
    """What a transcoder of `layer` gets from a residual write `write` [n, d_model] alone: transformers' own pre-MLP norm
    module of that layer (its output for reads "mlp_input", its `_norm` — before the gain — for "normalised") applied to
    the write, then W_enc [d_model, n_out], with the norm's 1/RMS of the write multiplied back: [n, n_out]."""
    lm = model.model.language_model if hasattr(model.model, "language_model") else model.model
    dec = lm.layers[layer]
    norm = dec.pre_feedforward_layernorm if hasattr(dec, "pre_feedforward_layernorm") else dec.post_attention_layernorm
    eps = getattr(norm, "eps", None) or norm.variance_epsilon
    read = norm(write) if reads == "mlp_input" else norm._norm(write.float())
    return (read @ torch.from_numpy(W_enc)) * _rms(write, eps)[:, None]


def oracle_layer(model, layer: int, sae_in: np.ndarray, W_enc: np.ndarray | None = None,
                 W_enc_att: np.ndarray | None = None, rope_offset: int = 0,
                 transcoder: tuple[int, np.ndarray, str] | None = None) -> dict:
    """Every QK and OV value of `layer` from transformers' own modules (Gemma 2 or Gemma 3, text or multimodal).

    qk[h]: [n_query, n_key]; ov[h]: [n_value, n_out] into a residual SAE (W_enc [d_model, n]); ov_att[h]: into an
    attention-output SAE (W_enc_att [n_heads·d_head, n]) reading the tensor o_proj receives, captured by a hook;
    ov_tc[h]: into the transcoder `transcoder` = (its layer, W_enc [d_model, n], reads): the head's residual write read
    through that layer's pre-MLP norm module (transcoder_read).
    The weights-only definitions leave out what depends on the residual's size, which is multiplied back here:
    the input norm's 1/RMS (Gemma 2 queries and keys, every value), the attention output's RMS before the
    post-attention norm, and for Gemma 3's q_norm/k_norm their eps: transformers' query is g ⊙ u / sqrt(mean(u²) + eps)
    with u its projection of the normalised input, featgraph's g ⊙ u / rms(u).
    """
    lm = model.model.language_model if hasattr(model.model, "language_model") else model.model
    dec = lm.layers[layer]
    attn = dec.self_attn
    captured = _capture_interface(sys.modules[type(attn).__module__].eager_attention_forward)
    before = attn.config._attn_implementation
    attn.config._attn_implementation = "featgraph_capture"
    eps = attn.config.rms_norm_eps
    qk_norm = hasattr(attn, "q_norm")
    n_heads, d_head = attn.config.num_attention_heads, attn.head_dim

    def rotation(h, pos):
        if "layer_type" in inspect.signature(lm.rotary_emb.forward).parameters:
            return lm.rotary_emb(h, pos, lm.config.layer_types[layer])  # as Gemma3TextModel.forward picks it
        return lm.rotary_emb(h, pos)

    X = torch.from_numpy(sae_in)  # [n_in, d_model]
    n = X.shape[0]
    out: dict = {}
    try:
        with torch.no_grad():
            r_in = _rms(X, eps)
            # Queries at position Δ (batch 0), keys at position 0 (batch 1).
            h = dec.input_layernorm(X.expand(2, n, -1).contiguous())
            pos = torch.tensor([[rope_offset] * n, [0] * n])
            attn(h, position_embeddings=rotation(h, pos), attention_mask=None)
            q, k = captured["q"][0], captured["k"][1]  # [n_heads, n, d_head], [n_kv, n, d_head]
            out["scaling"] = captured["scaling"]
            groups = q.shape[0] // k.shape[0]
            if qk_norm:
                hn = dec.input_layernorm(X)

                def fix(proj):
                    ms = proj(hn).view(n, -1, d_head).pow(2).mean(-1)  # [n, heads]
                    return torch.sqrt((ms + eps) / ms).T  # [heads, n]

                cq, ck = fix(attn.q_proj), fix(attn.k_proj)
                out["qk"] = [(q[hh] @ k[hh // groups].T) * cq[hh][:, None] * ck[hh // groups][None, :] for hh in range(n_heads)]
            else:
                out["qk"] = [(q[hh] @ k[hh // groups].T) * r_in[:, None] * r_in[None, :] for hh in range(n_heads)]

            # One-token sequences: each head's attention output is exactly its value vector.
            h1 = dec.input_layernorm(X[:, None, :])
            cos_sin = rotation(h1, torch.zeros(n, 1, dtype=torch.long))
            attn(h1, position_embeddings=cos_sin, attention_mask=None)
            z_all = captured["out"][:, 0]  # [n, n_heads, d_head]
            if transcoder is not None:
                ov_tc = []
                for hh in range(n_heads):
                    z = torch.zeros_like(z_all)
                    z[:, hh] = z_all[:, hh]
                    o = attn.o_proj(z.reshape(n, -1))
                    write = dec.post_attention_layernorm(o) * _rms(o, eps)[:, None]  # the head's write, its norm's RMS back
                    ov_tc.append(transcoder_read(model, transcoder[0], write, transcoder[1], transcoder[2]) * r_in[:, None])
                out["ov_tc"] = ov_tc
            if W_enc is not None:
                enc = torch.from_numpy(W_enc)
                ov = []
                for hh in range(n_heads):
                    z = torch.zeros_like(z_all)
                    z[:, hh] = z_all[:, hh]
                    o = attn.o_proj(z.reshape(n, -1))
                    y = dec.post_attention_layernorm(o)
                    ov.append((y @ enc) * _rms(o, eps)[:, None] * r_in[:, None])
                out["ov"] = ov
            if W_enc_att is not None:
                enc = torch.from_numpy(W_enc_att)
                seen: dict = {}
                hook = attn.o_proj.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0].detach()))
                ov_att = []
                try:
                    for hh in range(n_heads):
                        captured["keep"] = hh  # only head h's output reaches o_proj
                        attn(h1, position_embeddings=cos_sin, attention_mask=None)
                        ov_att.append((seen["x"][:, 0] @ enc) * r_in[:, None])
                finally:
                    captured["keep"] = None
                    hook.remove()
                out["ov_att"] = ov_att
    finally:
        attn.config._attn_implementation = before
    return out


# ---------------------------------------------------------------- a real headless browser

PROBE = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  document.body.setAttribute('data-nodes', network.body.data.nodes.length);
  document.body.setAttribute('data-edges', network.body.data.edges.length);
  document.body.setAttribute('data-canvas', document.querySelectorAll('#mynetwork canvas').length);
}, 300); });
</script></body>"""


class Browser:
    """A page in Debian's headless Chromium driven by Playwright, with every non-file request blocked and recorded."""

    def __init__(self, page, requests: list[str], console: list[str]):
        self.page, self.requests, self.console = page, requests, console


@contextlib.contextmanager
def browser(viewport=(1400, 900), allow: str | None = None):
    """`allow`: a URL prefix (a local server's) whose requests pass; every other non-file request is blocked."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is required (scripts/provision installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                         "--disable-component-update", "--no-first-run"])
        try:
            page = b.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            requests: list[str] = []
            console: list[str] = []

            def block(route):
                requests.append(route.request.url)
                route.abort()

            outside = r"^(?!file:)" + (f"(?!{re.escape(allow)})" if allow else "") + ".*"
            page.route(re.compile(outside), block)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            yield Browser(page, requests, console)
        finally:
            b.close()


def chromium(page: Path) -> tuple[str, list[str]]:
    """Render `page` offline; return the DOM and the console messages."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is required (scripts/provision installs it)"
    r = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                        "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # no network at all
                        "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    console = [l for l in r.stderr.splitlines() if ":CONSOLE" in l]
    return r.stdout, console
