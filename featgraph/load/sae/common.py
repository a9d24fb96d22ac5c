"""What every SAE reader shares: the result type, shape checks before reading, safe .pt loading."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from featgraph.core.weights import all_finite
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


def torch_load(path: Path, role: str, text: str) -> dict:
    """A torch checkpoint read with weights_only=True (tensors, numbers, strings and containers only: no code)."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # unpickling refusals, truncated zips and old formats raise different errors
        raise BadInput(f"{role} {text}: cannot read {path.name} as a weights-only torch checkpoint "
                       f"({e.__class__.__name__}); re-download it") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{role} {text}: {path.name} holds a {type(obj).__name__}, not a state dict")
    return obj


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
