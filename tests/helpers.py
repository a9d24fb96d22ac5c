"""Builders and oracles the tests share: a tiny random Gemma 2 saved by transformers, SAEs in
Gemma Scope's format, transformers' own attention as the oracle, a headless Chromium, the CLI."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from featgraph.cli import app

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

    torch.manual_seed(seed)
    cfg = Gemma2Config(**TINY)
    cfg._attn_implementation = "eager"
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5)  # non-zero: the gain 1 + w matters
            else:
                p.copy_(torch.randn_like(p) * 0.2)
    # Small shards so the index and several shard files are exercised.
    model.save_pretrained(path, max_shard_size="20KB", safe_serialization=True)
    return model


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

def _capture_interface():
    from transformers import AttentionInterface
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    captured: dict[str, torch.Tensor] = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        out, weights = eager_attention_forward(module, query, key, value, attention_mask, **kwargs)
        captured.update(q=query.detach(), k=key.detach(), v=value.detach(), out=out.detach(), scaling=module.scaling)
        return out, weights

    AttentionInterface.register("featgraph_capture", capture)
    return captured


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(x.pow(2).mean(-1) + eps)


def oracle(model, sae_in: np.ndarray, W_enc: np.ndarray, rope_offset: int = 0):
    """QK[h] as [n_query, n_key] and OV[h] as [n_value, n_out] from transformers' modules."""
    captured = _capture_interface()
    model.config._attn_implementation = "featgraph_capture"
    layer = model.model.layers[LAYER]
    eps = model.config.rms_norm_eps
    X = torch.from_numpy(sae_in)  # [n_in, d_model]
    n = X.shape[0]
    with torch.no_grad():
        # Queries at position Δ (batch 0), keys at position 0 (batch 1).
        h = layer.input_layernorm(X.expand(2, n, -1).contiguous())
        pos = torch.tensor([[rope_offset] * n, [0] * n])
        cos, sin = model.model.rotary_emb(h, pos)
        layer.self_attn(h, position_embeddings=(cos, sin), attention_mask=None)
        q, k = captured["q"][0], captured["k"][1]  # [n_heads, n, d_head], [n_kv, n, d_head]
        scaling = captured["scaling"]
        r_in = _rms(X, eps)
        groups = q.shape[0] // k.shape[0]
        qk = [(q[hh] @ k[hh // groups].T) * r_in[:, None] * r_in[None, :] for hh in range(q.shape[0])]

        # One-token sequences: each head's attention output is exactly its value vector.
        h1 = layer.input_layernorm(X[:, None, :])
        cos1, sin1 = model.model.rotary_emb(h1, torch.zeros(n, 1, dtype=torch.long))
        layer.self_attn(h1, position_embeddings=(cos1, sin1), attention_mask=None)
        out = captured["out"][:, 0]  # [n, n_heads, d_head]
        enc = torch.from_numpy(W_enc)
        ov = []
        for hh in range(out.shape[1]):
            z = torch.zeros_like(out)
            z[:, hh] = out[:, hh]
            o = layer.self_attn.o_proj(z.reshape(n, -1))
            y = layer.post_attention_layernorm(o)
            ov.append((y @ enc) * _rms(o, eps)[:, None] * r_in[:, None])
    return qk, ov, scaling


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
def browser(viewport=(1400, 900)):
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

            page.route(re.compile(r"^(?!file:).*"), block)
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
