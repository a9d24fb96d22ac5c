"""`featgraph validate`: do a run's weight-based edges predict the model's real attention on prompts?

The run's model runs in transformers (the optional extra `featgraph[validate]`) on the prompts; layer L's
query and key states, attention pattern and head outputs are captured by a function registered with
transformers' AttentionInterface that calls the model family's own eager attention, and the residual
stream entering the layer comes from `output_hidden_states`. The pure maths
(`featgraph.analyse.decompose`, docs/maths.md "Validation on prompts") splits them exactly into the
run's feature terms, bias and error terms and scores the run's edges against them.

What depends on the model family comes from `featgraph.families` (one entry per config `model_type`): its
transformers module's eager attention, where the decoder layers sit, its norm gains, Gemma 3's query/key
norms (whose per-position, per-head denominators the decomposition carries). Each layer rotates with the
cos/sin the model itself passed to it (local and global RoPE), and sees the keys its own mask lets it see (a
sliding-window layer's window). OV destinations are residual SAEs (through o_proj and the post-attention norm)
or attention-output SAEs (the tensor o_proj receives, no norm).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from featgraph import families
from featgraph.analyse import decompose as dc
from featgraph.api import reload
from featgraph.core import circuits
from featgraph.core.progress import ProgressFactory, no_progress
from featgraph.core.weights import AttentionWeights
from featgraph.errors import BadInput, BadValue, FeatgraphError
from featgraph.load import model as model_io
from featgraph.load import sae as sae_io
from featgraph.runs.files import check_output_file, staged_file


class RunLike(Protocol):
    """What validate reads of a run (`Run` has it): a protocol, so this module does not import the run module."""

    @property
    def path(self) -> Path | None: ...

    @property
    def manifest(self) -> Any: ...

    @property
    def name(self) -> str: ...

    @property
    def edge_table(self) -> pd.DataFrame: ...

    @property
    def heads(self) -> list[int]: ...

    def _describe(self, df: pd.DataFrame, id_columns: Sequence[str]) -> pd.DataFrame: ...

FILE = "validation.parquet"
CAPTURE = "featgraph_validate"  # the name our capture function is registered under
HEAD_COLUMNS = ("layer", "head", "circuit", "prompts", "tokens", "pairs", "edges", "edges_active",
                "rho_selected", "rho_active_d0", "rho_active", "rho_active_bias",
                "r2_selected", "r2_active_d0", "r2_active", "r2_active_bias", "r2_exact", "max_abs_error", "target_std")
EDGE_COLUMNS = ("layer", "head", "circuit", "src", "dst", "src_index", "dst_index", "weight", "rank", "pairs_active",
                "mean_contribution", "total_contribution", "total_abs_contribution", "realised_rank")


# ---------------------------------------------------------------- the model family

@dataclass(frozen=True)
class Captured:
    """One prompt's layer-L tensors as the model computed them (batch of one, float32).

    resid: [T, d_model] entering the layer; q: [n_heads, T, d_head] and k: [n_kv_heads, T, d_head] after
    RoPE; v: [n_kv_heads, T, d_head]; weights: [n_heads, T, T] the attention pattern; out: [T, n_heads, d_head] before o_proj;
    cos, sin: [T, d_head] the rotation the layer applied.
    """

    resid: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    weights: torch.Tensor
    out: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor


def eager(family: families.Family) -> Callable:
    """The family's eager attention (scaling, soft-capping, mask and softmax as the model does them)."""
    return importlib.import_module(family.hf_module).eager_attention_forward


def attention_module(model, family: families.Family, layer: int):
    """Layer `layer`'s attention module in a loaded transformers model of `family`."""
    layers: Any = model
    for name in family.hf_layers:
        layers = getattr(layers, name)
    return getattr(layers[layer], family.hf_attn)


def hidden_index(layer: int) -> int:
    """The output_hidden_states entry entering layer `layer` (hidden_states[0] is the embedding)."""
    return layer


def gains(family: families.Family, attn: AttentionWeights) -> tuple[torch.Tensor, torch.Tensor | None]:
    """g_in, g_post: the input and post-attention RMSNorm gains (g_post None where the family has no norm on the
    attention output)."""
    return family.gain(attn.ln_in), (family.gain(attn.ln_post) if attn.ln_post is not None else None)


def shift(W: torch.Tensor, ln_bias: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor | None:
    """The part of a head's projection that does not scale with the residual: W b + b_proj (W: [d_head, d_model]
    the head's rows; b: the input norm's bias (a LayerNorm's); b_proj: the projection's bias slice), None when both
    are absent."""
    out = None if ln_bias is None else W @ ln_bias
    if bias is not None:
        out = bias if out is None else out + bias
    return out


def sliding_window(model, family: families.Family, layer: int) -> int | None:
    """The window of layer `layer`'s attention as the loaded module has it (None: full attention); Mistral passes
    its config's sliding_window to every layer."""
    module = attention_module(model, family, layer)
    if family.window_from_config:
        return getattr(module.config, "sliding_window", None) or None
    return getattr(module, "sliding_window", None) or None


@contextlib.contextmanager
def capturing(model, family: families.Family, layer: int) -> Iterator[dict[str, torch.Tensor]]:
    """While the block runs, every forward of `model` fills the dict with layer `layer`'s tensors."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:
        raise FeatgraphError("validate needs transformers >= 4.53 (AttentionInterface and AttentionMaskInterface): "
                             "pip install 'featgraph[validate]'") from None
    attention = eager(family)
    target = attention_module(model, family, layer)
    got: dict[str, torch.Tensor] = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        out, weights = attention(module, query, key, value, attention_mask, **kwargs)
        if module is target:
            got.update(q=query[0].detach(), k=key[0].detach(), v=value[0].detach(), weights=weights[0].detach(),
                       out=out[0].detach())
        return out, weights

    def rotation(module, args, kwargs):
        if kwargs.get("position_embeddings") is not None:  # GPT-2 has none (run_model fills the identity)
            cos, sin = kwargs["position_embeddings"]
            got.update(cos=cos[0].detach(), sin=sin[0].detach())

    AttentionInterface.register(CAPTURE, capture)
    # A name without a mask function gets no mask at all: give ours the eager (additive) causal mask.
    AttentionMaskInterface.register(CAPTURE, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    # The language model's config (a multimodal model's text_config) picks attention and masks; setting the
    # top-level config would also switch the vision tower's.
    config = target.config
    before = config._attn_implementation
    config._attn_implementation = CAPTURE
    hook = target.register_forward_pre_hook(rotation, with_kwargs=True)
    try:
        yield got
    finally:
        hook.remove()
        config._attn_implementation = before


def run_model(model, family: families.Family, layer: int, ids: Sequence[int]) -> Captured:
    """One forward pass over `ids` (one prompt), capturing layer `layer`."""
    dev = next(model.parameters()).device
    with torch.inference_mode(), capturing(model, family, layer) as got:
        res = model(input_ids=torch.tensor([list(ids)], device=dev), output_hidden_states=True, use_cache=False)
        resid = res.hidden_states[hidden_index(layer)][0]
    if not family.rotary and "q" in got:  # GPT-2: no rotation; R(t) is the identity
        T, d_head = got["q"].shape[1], got["q"].shape[2]
        got.update(cos=torch.ones(T, d_head, device=dev), sin=torch.zeros(T, d_head, device=dev))
    if not {"q", "cos"} <= got.keys():
        raise FeatgraphError(f"layer {layer}'s attention was not captured: this transformers version calls attention differently")
    return Captured(resid, got["q"], got["k"], got["v"], got["weights"], got["out"], got["cos"], got["sin"])


# ---------------------------------------------------------------- prompts

def read_prompts(path: Path) -> list[str]:
    """Prompts from a text file (one per line) or a .jsonl file (a `text` field per line)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path} does not exist or is not a file: give a text file with one prompt per line")
    try:
        # lines end at \n (or \r\n) only: str.splitlines also splits at \x0b, \x0c, \x1c-\x1e, \x85, U+2028 and U+2029,
        # which cut a prompt in several and a JSON string holding U+2028 in two
        lines = [line.removesuffix("\r") for line in path.read_text(encoding="utf-8").split("\n")]
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path} ({e.__class__.__name__}): give a UTF-8 text file") from None
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix.lower() == ".jsonl":
            try:
                row = json.loads(line)
            except ValueError:
                raise BadInput(f"{path} line {n} is not JSON: a .jsonl file holds one object with a `text` field per line") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise BadInput(f"{path} line {n} has no string `text` field")
            if row["text"].strip():
                prompts.append(row["text"])
        else:
            prompts.append(line)
    if not prompts:
        raise BadInput(f"{path} holds no prompts: write one prompt per line (or a `text` field per .jsonl line)")
    return prompts


def _split_ref(manifest) -> tuple[str, str | None]:
    m = manifest.model or {}
    ref = str(m["ref"])
    if Path(ref).exists():
        return ref, None
    base, _, rev = ref.partition("@")
    return base, rev or m.get("revision")


# What a local model folder must hold for AutoTokenizer to be its tokenizer (without any, transformers may fall
# back to something that turns a whole prompt into one token).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json", "vocab.txt",
                   "spiece.model", "merges.txt")


def _tokenize(ref: str, revision: str | None, texts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
    """Each text's token ids, its first max_tokens only (see truncated_ids)."""
    from transformers import AutoTokenizer

    if Path(ref).is_dir() and not any((Path(ref) / f).is_file() for f in TOKENIZER_FILES):
        raise BadInput(f"{ref} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, …): add the model's tokenizer "
                       "files there (or, from Python, pass token_ids=)")
    try:
        tok = AutoTokenizer.from_pretrained(ref, revision=revision)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise BadInput(f"cannot load a tokenizer from {ref} ({first}): pass token ids instead of text") from None
    return [truncated_ids(lambda t: list(tok(t)["input_ids"]), t, max_tokens) for t in texts]


PREFIX_MARGIN = 8  # tokens past max_tokens that a prefix must give before its first max_tokens count as settled


def truncated_ids(encode: Callable[[str], list[int]], text: str, max_tokens: int | None) -> list[int]:
    """`encode(text)[:max_tokens]`, encoding a prefix of `text` when that settles it (a 44 MB one-line prompt with
    max_tokens 16 was encoded whole: 6.5 GB).

    A prefix of n characters (16 per token to start with) is taken as settled when it gives more than
    max_tokens + PREFIX_MARGIN tokens and the prefix of 2n characters gives the same first max_tokens: cutting a
    text changes only the tokens at the cut (a pre-tokenizer splits the text into words tokenized one by one; a
    BPE merge reaches only its neighbours), and the cut lies a margin of tokens and a doubling of characters past
    the last kept token. Otherwise n doubles, up to the whole text."""
    if max_tokens is None:
        return encode(text)
    n, before = 16 * (max_tokens + PREFIX_MARGIN), None
    while n < len(text):
        ids = encode(text[:n])
        if before is not None and len(before) > max_tokens + PREFIX_MARGIN and ids[:max_tokens] == before[:max_tokens]:
            return ids[:max_tokens]
        before, n = ids, 2 * n
    return encode(text)[:max_tokens]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise BadValue("device", name, "must be auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadValue("device", name, "needs a visible CUDA GPU: use auto or cpu")
    return torch.device(name)


# ---------------------------------------------------------------- the session: model, SAEs, heads

class Session:
    """A run's model (in transformers), input SAE and per-head maps, ready to decompose prompts."""

    def __init__(self, run: RunLike, heads: Sequence[int] | None = None, device: str = "auto"):
        m = run.manifest
        if not m.has_weights:
            raise BadInput("validate needs the run's model and SAEs, which this run does not record (imported?): "
                           "use a run made by `featgraph extract`")
        if any((sae or {}).get("site") == "transcoder" for sae in (m.sae_in, m.sae_out)):
            raise BadInput("validate decomposes the residual stream the layer reads into its input SAE's features; a "
                           "transcoder's features are read from an MLP's input instead, which validate does not decompose: "
                           "validate a run of residual SAEs (the transcoders' QK/OV edges are checked against transformers "
                           "in tests/test_oracle_transcoders.py)")
        self.run, self.layer = run, int(m.layer or 0)
        self.dev = _device(device)
        ref, self.revision = _split_ref(m)
        self.ref = ref
        self.attn = model_io.load_attention(reload._model_ref(m), self.layer)
        c = self.attn.config
        self.family = families.of(c.model_type, self.ref)
        run_heads = list(m.heads) or run.heads
        if heads is None:
            self.heads = tuple(run_heads)
        else:
            bad = [h for h in heads if h not in run_heads]
            if bad:
                raise BadValue("heads", bad[0], f"is not in this run: its heads are {', '.join(map(str, run_heads))}")
            self.heads = tuple(dict.fromkeys(heads))
        self.circuits = tuple(x for x in ("QK", "OV") if x in (m.circuits or ("QK", "OV")))
        if "OV" in self.circuits and not (m.sae_out or {}).get("ref"):
            self.circuits = ("QK",)
        self.conv = reload.conventions(m)
        self.scale = 1.0 / math.sqrt(c.query_pre_attn_scalar)
        self._model: Any = None

    # -- loading, only when a prompt is to be run

    @functools.cached_property
    def hf_config(self) -> Any:
        """The language model's transformers config (a multimodal checkpoint's text_config)."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.ref, revision=self.revision)
        return config.get_text_config() if hasattr(config, "get_text_config") else config

    def window(self) -> int:
        """The longest prompt the model takes (max_position_embeddings)."""
        return int(getattr(self.hf_config, "max_position_embeddings", 0) or 0) or 10**9

    def tokenize(self, texts: Sequence[str], max_tokens: int | None = None) -> list[list[int]]:
        return _tokenize(self.ref, self.revision, texts, max_tokens)

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the library never prints: no loading bar
        try:
            model = AutoModelForCausalLM.from_pretrained(self.ref, revision=self.revision, attn_implementation="eager")
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise BadInput(f"cannot load the model {self.ref} in transformers: {first}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        loaded: Any = model
        self._model = loaded.to(device=self.dev, dtype=torch.float32).eval()
        self.sliding = sliding_window(self._model, self.family, self.layer)
        m, dev = self.run.manifest, self.dev
        sae = sae_io.load(str((m.sae_in or {})["ref"]), sae_io.KEYS, expect_d_in=self.attn.config.d_model, role="input SAE")
        d64 = {k: getattr(sae, k).to(dev, torch.float64) for k in sae_io.KEYS}
        self.sae = dc.JumpReLU(d64["W_enc"], d64["b_enc"], d64["threshold"], d64["W_dec"], d64["b_dec"])
        attn64 = dataclasses.replace(self.attn, **{f: getattr(self.attn, f).to(dev, torch.float64)
                                                   for f in ("W_Q", "W_K", "W_V", "W_O", "ln_in", "ln_post", "q_norm", "k_norm",
                                                             "layer_scalar", "b_Q", "b_K", "b_V", "b_O", "ln_in_bias")
                                                   if getattr(self.attn, f) is not None})
        self.attn64 = attn64
        self.qk = {h: self._qk_head(h) for h in self.heads} if "QK" in self.circuits else {}
        self.ov = {}
        if "OV" in self.circuits:
            c = self.attn.config
            out = sae_io.load(str((m.sae_out or {})["ref"]), ("W_enc",), role="output SAE",
                              expect_d_in=c.d_attn if self.conv.ov_target == "attn" else c.d_model)
            w_enc_out = out.part("W_enc").to(dev, torch.float64)
            self.ov = {h: self._ov_head(h, w_enc_out) for h in self.heads}

    @property
    def model(self):
        """The transformers model (loaded on first use)."""
        self.load()
        return self._model

    def _edges(self, head: int, circ: str) -> pd.DataFrame:
        e = self.run.edge_table
        return e[(e["head"] == head) & (e["circuit"] == circ)].sort_values("rank")

    def _idx(self, values) -> torch.Tensor:
        return torch.tensor(np.asarray(values, dtype=np.int64), device=self.dev)

    def _weights(self, e: pd.DataFrame) -> torch.Tensor:
        return torch.tensor(e["weight"].to_numpy(np.float64), device=self.dev)

    def _qk_head(self, h: int) -> dc.QKHead:
        a, c = self.attn64, self.attn64.config
        kv = c.kv_head(h)
        Nq = self.family.fold_in(circuits.head_rows(a.W_Q, h, c.d_head), a.ln_in)
        Nk = self.family.fold_in(circuits.head_rows(a.W_K, kv, c.d_head), a.ln_in)
        q_shift = shift(circuits.head_rows(a.W_Q, h, c.d_head), a.ln_in_bias, _rows(a.b_Q, h, c.d_head))
        k_shift = shift(circuits.head_rows(a.W_K, kv, c.d_head), a.ln_in_bias, _rows(a.b_K, kv, c.d_head))
        e = self._edges(h, "QK")
        qi, kj = self._idx(e["dst_index"]), self._idx(e["src_index"])
        # Stored weights are QK at the run's offset, times the scale when the run used --attn-scale.
        w = self._weights(e) / (self.scale if self.conv.attn_scale else 1.0)
        norm = None
        if self.family.qk_norm and (a.b_Q is not None or a.b_K is not None):
            raise BadInput(f"validate does not decompose query/key norms of biased projections ({self.family.name} "
                           f"layer {self.layer} has both): the biases would enter the norms' denominators")
        if self.family.qk_norm:
            assert a.q_norm is not None and a.k_norm is not None  # the loader requires them for this family
            # The run stores (R(Δ) q_i)·k_j with q_i = g_q ⊙ u_i / rms(u_i), u_i = Nq d_i: back to the raw bilinear
            # form (R(Δ) g_q ⊙ u_i)·(g_k ⊙ w_j) that the logit decomposes into, multiply by rms(u_i)·rms(w_j).
            rms_u = (self.sae.W_dec @ Nq.T).pow(2).mean(-1).sqrt()
            rms_w = (self.sae.W_dec @ Nk.T).pow(2).mean(-1).sqrt()
            w = w * rms_u[qi] * rms_w[kj]
            norm = dc.QKNorm(Nq, Nk, c.rms_norm_eps)
            Wq, Wk = Nq * self.family.gain(a.q_norm)[:, None], Nk * self.family.gain(a.k_norm)[:, None]
        else:
            Wq, Wk = Nq, Nk
        q_feat, k_feat = self.sae.W_dec @ Wq.T, self.sae.W_dec @ Wk.T
        q_run = circuits.rope_rotate(q_feat, self.conv.rope_offset, a.rope) if self.conv.rope_offset else q_feat
        return dc.QKHead(h, Wq, Wk, q_feat, k_feat, q_run, Wq @ self.sae.b_dec, Wk @ self.sae.b_dec, self.scale,
                         qi, kj, w, norm, q_shift, k_shift)

    def _ov_head(self, h: int, w_enc_out: torch.Tensor) -> dc.OVHead:
        a, c = self.attn64, self.attn64.config
        e = self._edges(h, "OV")
        scored = np.unique(e["dst_index"].to_numpy(np.int64))
        f = circuits.circuit_factors(a, self.sae.W_dec, w_enc_out[:, self._idx(scored)], h, "OV",
                                     circuits.Conventions(ov_target=self.conv.ov_target, out_basis=self.conv.out_basis))
        Wv = self.family.fold_in(circuits.head_rows(a.W_V, f.kv_head, c.d_head), a.ln_in)
        v_shift = shift(circuits.head_rows(a.W_V, f.kv_head, c.d_head), a.ln_in_bias, _rows(a.b_V, f.kv_head, c.d_head))
        row = np.searchsorted(scored, e["dst_index"].to_numpy(np.int64))
        v_feat, w, norm = f.src, self._weights(e), None
        if self.family.v_norm:
            if v_shift is not None:
                raise BadInput(f"validate does not decompose a value norm of a biased projection ({self.family.name} "
                               f"layer {self.layer})")
            # The run stores v_j / rms(v_j)·p_k (v_norm, eps left out): back to the raw form v_j·p_k that the head's
            # output decomposes into over the per-position value denominators.
            v_feat = self.sae.W_dec @ Wv.T
            w = w * v_feat.pow(2).mean(-1).sqrt()[self._idx(e["src_index"])]
            norm = (Wv, float(c.rms_norm_eps))
        return dc.OVHead(h, Wv, v_feat, Wv @ self.sae.b_dec, f.dst, self._idx(e["src_index"]), self._idx(row), w,
                         v_shift, norm)

    # -- one prompt

    def prompt(self, ids: Sequence[int]) -> tuple[Captured, dc.Stream]:
        self.load()
        cap = run_model(self._model, self.family, self.layer, ids)
        st = dc.stream(cap.resid.to(torch.float64), self.sae, self.attn.config.rms_norm_eps, cap.cos, cap.sin,
                       self.sliding, layer_norm=self.family.norm == "layer",
                       centred=(self.run.manifest.sae_in or {}).get("basis") == "centred")
        return cap, st

    def qk_blocks(self, cap: Captured, st: dc.Stream, h: int, block: int = 256) -> Iterator[dict[str, torch.Tensor]]:
        kv = self.attn.config.kv_head(h)
        return dc.qk_blocks(st, self.qk[h], cap.q[h], cap.k[kv], block)

    def qk_pairs(self, cap: Captured, st: dc.Stream, h: int, t: int, s: int) -> dc.QKPairs:
        """Head h's logit at query position t, key position s over (query feature, key feature) pairs."""
        return dc.qk_pairs(st, self.qk[h], cap.q[h], cap.k[self.attn.config.kv_head(h)], t, s)

    def rms_o(self, cap: Captured) -> torch.Tensor:
        """What each position's OV target divides by: the post-attention norm's RMS (residual SAE), or 1 (an
        attention-output SAE reads the heads' outputs before o_proj, with no norm)."""
        if self.conv.ov_target == "attn" or not self.family.post_attn_norm:
            return torch.ones(cap.out.shape[0], dtype=torch.float64, device=cap.out.device)
        return dc.output_rms(cap.out, self.attn64.W_O, self.attn.config.rms_norm_eps)

    def ov_blocks(self, cap: Captured, st: dc.Stream, h: int, rms_o: torch.Tensor, block: int = 256):
        return dc.ov_blocks(st, self.ov[h], cap.weights[h], cap.out[:, h], rms_o, block)


def _rows(b: torch.Tensor | None, head: int, d_head: int) -> torch.Tensor | None:
    return None if b is None else circuits.head_rows(b, head, d_head)


# ---------------------------------------------------------------- the whole validation

def prompt_ids(session: Session, prompts: Sequence[str], token_ids: Sequence[Sequence[int]] | None,
               max_tokens: int | None) -> list[list[int]]:
    """Token ids of every prompt, cut to max_tokens, each checked against the vocabulary and the model's window."""
    ids = [list(map(int, t)) for t in (token_ids or [])]
    if prompts:
        ids += session.tokenize(prompts, max_tokens)
    if not ids:
        raise BadInput("no prompts: give prompt text, a text file or token ids")
    if max_tokens is not None:
        ids = [t[:max_tokens] for t in ids]
    window, vocab = session.window(), None
    for n, t in enumerate(ids, 1):
        if not t:
            raise BadInput(f"prompt {n} has no tokens: remove it")
        if len(t) > window:
            raise BadInput(f"prompt {n} is {len(t)} tokens long, more than the model's window ({window} tokens): "
                           "shorten it or cap the tokens per prompt")
        vocab = vocab or int(session.hf_config.vocab_size)
        bad = [x for x in t if not 0 <= x < vocab]
        if bad:
            raise BadValue("token_ids", bad[0], f"is outside the model's vocabulary of {vocab} tokens (prompt {n})")
    return ids


def compute(session: Session, ids: Sequence[Sequence[int]], progress: ProgressFactory | None = None,
            block: int = 256) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-head scores and edge usage over all prompts: (heads table, edges table)."""
    session.load()
    scores = {(h, c): dc.Scores() for c in session.circuits for h in session.heads}
    usage = {key: [np.zeros(len(session._edges(*key)))] * 3 for key in scores}
    tick = (progress or no_progress)("prompts", len(ids))
    for t in ids:
        cap, st = session.prompt(t)
        rms_o = session.rms_o(cap) if "OV" in session.circuits else None
        for h in session.heads:
            if "QK" in session.circuits:
                for part in session.qk_blocks(cap, st, h, block):
                    scores[(h, "QK")].add(part)
                _accumulate(usage[(h, "QK")], dc.qk_edge_usage(st, session.qk[h]))
            if rms_o is not None:
                for part in session.ov_blocks(cap, st, h, rms_o, block):
                    scores[(h, "OV")].add(part)
                _accumulate(usage[(h, "OV")], dc.ov_edge_usage(st, session.ov[h], cap.weights[h], rms_o))
        tick(1)
    rows, edges = [], []
    for (h, circ), sc in scores.items():
        e = session._edges(h, circ)
        u = dc.usage_frame(e["rank"].to_numpy(), *usage[(h, circ)])
        edges.append(pd.concat([e[["layer", "head", "circuit", "src", "dst", "src_index", "dst_index", "weight", "rank"]]
                                .reset_index(drop=True), u], axis=1))
        rows.append({"layer": session.layer, "head": h, "circuit": circ, "prompts": len(ids),
                     "tokens": int(sum(map(len, ids))), "edges": len(e), "edges_active": int((u["pairs_active"] > 0).sum()),
                     **sc.summary()})
    heads = pd.DataFrame(rows, columns=list(HEAD_COLUMNS))
    return heads, pd.concat(edges, ignore_index=True) if edges else pd.DataFrame(columns=list(EDGE_COLUMNS))


def _accumulate(acc: list, parts: tuple[torch.Tensor, ...]) -> None:
    for i, x in enumerate(parts):
        acc[i] = acc[i] + x.cpu().numpy()


def validate(run: RunLike, prompts: Sequence[str] = (), text_file: str | Path | None = None,
             token_ids: Sequence[Sequence[int]] | None = None, heads: Sequence[int] | None = None,
             max_tokens: int | None = None, device: str = "auto", out: str | Path | None = None, force: bool = False,
             progress: ProgressFactory | None = None) -> pd.DataFrame:
    """Per (head, circuit): Spearman ρ and variance shares of the run's predictions on the prompts.

    Returns the heads table; `.attrs["edges"]` holds the edge usage. A call over all heads of a run directory
    keeps both in the run as validation.parquet; `out` (.png) writes the figure.
    """
    if max_tokens is not None and max_tokens < 1:
        raise BadValue("max_tokens", max_tokens, "must be ≥ 1")
    if out is not None:
        out = check_output_file(Path(out), (".png",), force)
    texts = list(prompts)
    blank = [n for n, t in enumerate(texts, 1) if not str(t).strip()]
    if blank:
        raise BadInput(f"prompt {blank[0]} is empty: give the text to run the model on (an empty text file is refused likewise)")
    if text_file is not None:
        texts += read_prompts(Path(text_file))
    if not texts and not token_ids:
        raise BadInput("no prompts: give prompt text, a text file or token ids")
    session = Session(run, heads, device)
    ids = prompt_ids(session, texts, token_ids, max_tokens)
    keep = run.path / FILE if heads is None and run.path is not None else None
    prompt_set = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    if keep is not None and keep.is_file() and not force and stored_prompt_set(keep) != prompt_set:
        raise BadInput(f"{keep} holds a validation made from other prompts: pass force=True (--force) to replace it, "
                       "or name heads (--heads), which keeps nothing in the run")
    table, edges = compute(session, ids, progress)
    edges = run._describe(edges, ("src", "dst"))
    if out is not None:
        figure(table, edges, out, f"{run.name}: layer {session.layer}, {len(ids)} prompts, {int(table['tokens'].max())} tokens")
    if keep is not None:
        write(table, edges, keep, prompt_set)
    table.attrs["edges"] = edges
    return table


# ---------------------------------------------------------------- the stored results and the figure

def write(table: pd.DataFrame, edges: pd.DataFrame, path: Path, prompt_set: str | None = None) -> Path:
    """Both tables in one Parquet file, told apart by `kind` (head or edge); `prompt_set` (a digest of the prompts'
    token ids) is kept in the file's metadata, so a validation from other prompts is not replaced unasked."""
    both = pd.concat([table.assign(kind="head"), edges.assign(kind="edge")], ignore_index=True)
    both = both[["kind", *[c for c in both.columns if c != "kind"]]]
    both.attrs = {"prompt_set": prompt_set} if prompt_set else {}
    with staged_file(path) as tmp:
        both.to_parquet(tmp, index=False)
    return path


def stored_prompt_set(path: Path) -> str | None:
    """The digest of the prompts a kept validation was made from (None: unknown, a file from before it was kept)."""
    try:
        return pd.read_parquet(path, columns=["kind"]).attrs.get("prompt_set")
    except Exception:
        return None


def read(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(heads, edges) from a validation.parquet."""
    df = pd.read_parquet(path)
    heads = df[df["kind"] == "head"][[c for c in HEAD_COLUMNS if c in df.columns]].reset_index(drop=True)
    edge_cols = [c for c in df.columns if c not in HEAD_COLUMNS or c in ("layer", "head", "circuit")]
    edges = df[df["kind"] == "edge"][[c for c in edge_cols if c != "kind"]].reset_index(drop=True)
    return heads, edges


def figure(table: pd.DataFrame, edges: pd.DataFrame, out: Path, title: str) -> Path:
    from featgraph.render.plots import validation_plot

    return validation_plot(table, edges, out, title)
