"""Gemma Scope (Gemma 2): `params.npz` per `layer_L/width_W/average_l0_N/`, read as SAELens' gemma_2 loader does
(sae-lens 6.54.12, gemma_2_sae_huggingface_loader; also gemma_2_transcoder's files).

Keys (docs/formats.md): W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae], b_dec [d_in], threshold [d_sae];
featgraph's orientation already. The npy headers are read first (every key and shape checked), then only the
arrays asked for. The `embedding/` SAEs were trained on embeddings scaled by sqrt(d_model): as SAELens does,
W_enc / sqrt(d_in) and W_dec · sqrt(d_in).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featgraph.errors import BadInput
from featgraph.load.sae.common import KEYS, Loaded, checked_array, pick

NAME = "gemma_scope"
PARAMS = "params.npz"


def detect(folder: Path) -> Path | None:
    return folder / PARAMS if (folder / PARAMS).is_file() else None


def _npy_header(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the .npy header at fh's position; fh is left at the array's data."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(fh)


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an .npz, read from the npy headers only."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as fh:
                    shape, _, dtype = _npy_header(fh)
                claimed = math.prod(shape) * dtype.itemsize
                if claimed > zf.getinfo(name).file_size:  # a header claiming more than its entry holds: refuse, not allocate
                    raise BadInput(f"{path}: {name[:-4]}'s header claims shape {list(shape)} ({claimed / 2**30:.3g} GiB), more "
                                   f"than the file holds ({zf.getinfo(name).file_size} bytes): the file is corrupt; re-download it")
                shapes[name[:-4]] = tuple(shape)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise BadInput(f"{path} is not a readable .npz ({e.__class__.__name__}): re-download it") from None
    return shapes


def npz_member(path: Path, npz: Any, key: str) -> np.ndarray:
    """Array `key` of the .npz at `path`: memory-mapped (copy-on-write) where the entry is stored uncompressed, as
    np.savez writes Gemma Scope's params.npz, so a 300 MB file is not copied into memory by reading it (nor checked
    against its zip CRC: the file's sha256 is what featgraph records); otherwise `npz[key]`, numpy's own read."""
    name = f"{key}.npy"
    try:
        info = npz.zip.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed or encrypted: numpy reads it
            return npz[key]
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                return npz[key]
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
            fh.seek(start)
            shape, fortran, dtype = _npy_header(fh)
            offset = fh.tell()
        if dtype.hasobject or offset - start + math.prod(shape) * dtype.itemsize > info.file_size:
            return npz[key]
        if not math.prod(shape):
            return np.zeros(shape, dtype)
        return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=tuple(shape), order="F" if fortran else "C")
    except (KeyError, ValueError, OSError, AttributeError):
        return npz[key]  # numpy's read says what is wrong, as before


def check(role: str, text: str, shapes: dict[str, tuple[int, ...]], fmt: str, spelled: Sequence[str]) -> tuple[int, int]:
    """(d_in, d_sae) after checking Gemma Scope's five keys and their shapes (one line on the first problem)."""
    missing = [k for k in KEYS if k not in shapes]
    if missing:
        raise BadInput(f"{role} {text}: {fmt} lacks {', '.join(missing)} (Gemma Scope files have {', '.join(spelled)})")
    d_in, d_sae = shapes["W_enc"] if len(shapes["W_enc"]) == 2 else (None, None)
    want = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,), "threshold": (d_sae,)}
    for k, shape in want.items():
        if d_in is None or shapes[k] != shape:
            raise BadInput(f"{role} {text}: {k} has shape {list(shapes[k])}, expected {list(shape)} for W_enc {list(shapes['W_enc'])}")
    assert d_in is not None and d_sae is not None
    return int(d_in), int(d_sae)


def read(weights: Path, parts: Sequence[str], role: str, text: str, norm_scaling_factor: float | None = None) -> Loaded:
    d_in, d_sae = check(role, text, npz_shapes(weights), PARAMS, KEYS)
    embedding = "embedding" in text.replace("\\", "/").split("/") or "/embedding/" in str(weights)
    s = math.sqrt(d_in) if embedding else 1.0
    try:
        with np.load(weights) as npz:
            def arr(k: str, scale: float = 1.0):
                def make() -> torch.Tensor:
                    a = np.ascontiguousarray(checked_array(npz_member(weights, npz, k), role, text, weights.name, k),
                                             dtype=np.float32)
                    return torch.from_numpy(a) * scale if scale != 1.0 else torch.from_numpy(a)
                return make
            arrays = pick(parts, {"W_enc": arr("W_enc", 1 / s), "W_dec": arr("W_dec", s), "b_enc": arr("b_enc"),
                                  "b_dec": arr("b_dec"), "threshold": arr("threshold")})
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise BadInput(f"{role} {text}: cannot read {weights} ({e.__class__.__name__}); the file may be corrupt, re-download it") from None
    meta = {"architecture": "jumprelu"} | ({"embedding_rescale": f"W_enc / sqrt({d_in}), W_dec · sqrt({d_in}) (SAELens)"}
                                           if embedding else {})
    return Loaded(d_in, d_sae, arrays, meta)
