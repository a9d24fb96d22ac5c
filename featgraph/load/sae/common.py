"""What every SAE reader shares: the result type, shape checks before reading, safe .pt loading."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from featgraph.core.weights import all_finite, float_array, float_weights
from featgraph.errors import BadInput

KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


@dataclass
class Loaded:
    """One SAE as a reader returns it, in featgraph's orientation: W_enc [d_in, d_sae], W_dec [d_sae, d_in],
    b_enc and threshold [d_sae], b_dec [d_in] (only the arrays asked for). meta: what its files say (hook, model,
    architecture, how it was converted), merged into SAE.source."""

    d_in: int
    d_sae: int
    arrays: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def expect(role: str, text: str, fmt: str, shapes: Mapping[str, Sequence[int]], want: Mapping[str, tuple[int, ...]]) -> None:
    """A one-line BadInput naming the first key that is missing or has the wrong shape."""
    for k, shape in want.items():
        if k not in shapes:
            raise BadInput(f"{role} {text}: {fmt} lacks {k} (it has {', '.join(sorted(shapes)) or 'nothing'})")
        if tuple(shapes[k]) != tuple(shape):
            raise BadInput(f"{role} {text}: {fmt} {k} has shape {list(shapes[k])}, expected {list(shape)}")


def finite(role: str, text: str, arrays: Mapping[str, torch.Tensor]) -> None:
    for k, a in arrays.items():
        if not all_finite(a):
            raise BadInput(f"{role} {text}: {k} has NaN or infinite values")


def read_json(path: Path, what: str) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        raise BadInput(f"{path} is not valid JSON: re-download the SAE's {what}") from None
    if not isinstance(cfg, dict):
        raise BadInput(f"{path} is not a JSON object: re-download the SAE's {what}")
    return cfg


FIX = "pass the SAE's full-precision weights"


def checked(t: torch.Tensor, role: str, text: str, file: str, key: str) -> torch.Tensor:
    """Tensor `key` of `file` if it holds float weights; one line naming both for integer, bool or float8 ones (a
    quantized SAE: cast to float they are not its weights). The model loader's check (core.weights.float_weights)."""
    return float_weights(t, f"{role} {text}: {key} in {file}", FIX)


def checked_array(a: Any, role: str, text: str, file: str, key: str) -> Any:
    """checked for a numpy array."""
    return float_array(a, f"{role} {text}: {key} in {file}", FIX)


def checked_getter(get: Callable[[str], torch.Tensor], role: str, text: str, file: str) -> Callable[[str], torch.Tensor]:
    """`get` (e.g. a safetensors handle's get_tensor) whose tensors pass `checked`."""
    return lambda key: checked(get(key), role, text, file, key)


class CheckedDict(dict):
    """A state dict whose tensors pass `checked` as a reader takes them (sd[key], sd.get(key)); its other
    tensors (step counters, a top-k's k) are left alone."""

    def __init__(self, sd: Mapping[str, Any], role: str, text: str, file: str):
        super().__init__(sd)
        self._where = (role, text, file)

    def __getitem__(self, key: str) -> Any:
        v = super().__getitem__(key)
        return checked(v, *self._where, key) if isinstance(v, torch.Tensor) else v

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default  # noqa: SIM401 (dict.get would skip the check)


def torch_load(path: Path, role: str, text: str) -> dict:
    """A torch checkpoint read with weights_only=True (tensors, numbers, strings and containers only: no code); the
    tensors a reader takes from it must be float (CheckedDict)."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # unpickling refusals, truncated zips and old formats raise different errors
        raise BadInput(f"{role} {text}: cannot read {path.name} as a weights-only torch checkpoint "
                       f"({e.__class__.__name__}); re-download it") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{role} {text}: {path.name} holds a {type(obj).__name__}, not a state dict")
    return CheckedDict(obj, role, text, path.name)


def shapes_of(tensors: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tensors.items() if isinstance(v, torch.Tensor)}


def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def pick(parts: Sequence[str], make: Mapping[str, Callable[[], torch.Tensor | None]]) -> dict[str, torch.Tensor]:
    """The arrays asked for, each made only when asked (a reader's key -> builder)."""
    out = {}
    for k in parts:
        t = make[k]() if k in make else None
        if t is not None:
            out[k] = f32(t)
    return out


def linear_pair(sd: Mapping[str, Any], keys: tuple[str, str, str, str], role: str, text: str,
                fmt: str) -> tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """An SAE stored as two nn.Linear layers (or their raw [out, in] matrices) under `keys` = (encoder weight, decoder
    weight, encoder bias, decoder bias): (d_in, d_sae, W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec) in
    featgraph's orientation, every shape checked (the encoder's shape gives d_sae × d_in)."""
    enc, dec, benc, bdec = keys
    sh = shapes_of(sd)
    if enc not in sh or len(sh[enc]) != 2:
        raise BadInput(f"{role} {text}: {fmt} lacks a 2-D {enc} (it has {', '.join(sorted(sh)) or 'nothing'})")
    d_sae, d_in = sh[enc]
    expect(role, text, fmt, sh, {dec: (d_in, d_sae), benc: (d_sae,), bdec: (d_in,)})
    return d_in, d_sae, sd[enc].T, sd[dec].T, sd[benc], sd[bdec]


# ---------------------------------------------------------------- transcoders

# What a transcoder's encoder reads (docs/maths.md, "Transcoder features"), by the hook its publisher names:
#   resid_mid   the residual stream after the layer's attention, not normalised (circuit-tracer `hook_resid_mid`)
#   normalised  that stream divided by its RMS (LayerNorm: centred, then divided), without the norm's gain — the pre-MLP
#               norm's `_norm(x)` (TransformerLens `ln2.hook_normalized` with fold_ln=False, as SAELens and
#               circuit-tracer load Gemma Scope's transcoders)
#   mlp_input   the pre-MLP norm's output, gain included: what the MLP reads (`mlp.hook_in`, transformers'
#               `pre_feedforward_layernorm.output` / Llama-style `post_attention_layernorm.output`)
TRANSCODER_READS = ("resid_mid", "normalised", "mlp_input")


def transcoder_reads(hook: str) -> str | None:
    """What a transcoder whose input hook is `hook` reads (TRANSCODER_READS), or None for a hook that is not an MLP input."""
    if "ln2.hook_normalized" in hook or "self__norm" in hook:
        return "normalised"
    if "hook_resid_mid" in hook or "hook_mlp_in" in hook:  # TransformerLens' hook_mlp_in is ln2's input: resid_mid
        return "resid_mid"
    if hook.endswith(("mlp.hook_in", "pre_feedforward_layernorm.output", "post_attention_layernorm.output", "ln_2.output")):
        return "mlp_input"
    return None


def transcoder_meta(layer: int, hook_in: str, hook_out: str, reads: str, how: str, **extra: Any) -> dict[str, Any]:
    """The `meta` every transcoder reader returns: where it reads and writes, and what its encoder reads."""
    if reads not in TRANSCODER_READS:
        raise BadInput(f"transcoder reads {reads!r}: expected one of {', '.join(TRANSCODER_READS)}")
    return {"site": "transcoder", "hook": hook_in, "hook_from": how, "input_of_layer": layer + 1, "output_of_layer": layer,
            "transcoder": {
        "layer": layer, "reads": reads, "reads_hook": hook_in, "writes_hook": hook_out,
        "writes": "the MLP's output as it joins the residual stream (after the post-MLP norm where the family has one)",
    } | extra}


def read_relu_linear_pair(weights: Path, parts: Sequence[str], role: str, text: str, keys: tuple[str, str, str, str],
                          fmt: str, layer_re: Any, publisher: str, **meta: Any) -> Loaded:
    """A ReLU SAE saved as two nn.Linear layers with no config (Goodfire's, qresearch's DeepSeek-R1 one): transposed,
    threshold 0, b_dec not subtracted; the hook is blocks.{L}.hook_resid_post with L from the file name's `-l{L}`."""
    sd = torch_load(weights, role, text)
    d_in, d_sae, W_enc, W_dec, b_enc, b_dec = linear_pair(sd, keys, role, text, fmt)
    arrays = pick(parts, {"W_enc": lambda: W_enc, "W_dec": lambda: W_dec, "b_enc": lambda: b_enc, "b_dec": lambda: b_dec,
                          "threshold": lambda: torch.zeros(d_sae)})
    m = layer_re.search(weights.name)
    return Loaded(d_in, d_sae, arrays, {
        "hook": f"blocks.{m[1]}.hook_resid_post" if m else None,
        "hook_from": f"file name -l{{L}} (SAELens' {publisher} config: blocks.L.hook_resid_post)" if m else None,
        "architecture": "relu", "apply_b_dec_to_input": False, **meta})


def open_safetensors(weights: Path, role: str, text: str) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """A .safetensors file opened lazily (safetensors' safe_open, to use in a `with`) and its tensors' shapes from the
    header; an unreadable file is a one-line BadInput."""
    from safetensors import safe_open

    try:
        f = safe_open(str(weights), framework="pt")
    except Exception as e:  # a truncated or foreign file raises different errors
        raise BadInput(f"{role} {text}: {weights.name} is not a readable .safetensors file ({e.__class__.__name__})") from None
    return f, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
