"""The QK–OV sender correlation (pure maths over a head's factors).

For every key/value feature j of one head: its mean QK score as a key (over all
query features) against its mean |OV| (over all output features) — the post's
question whether features that are attended to also write strongly.
"""

from __future__ import annotations

import numpy as np
import torch


def sender_stats(src: torch.Tensor, dst: torch.Tensor, block_rows: int = 2048) -> np.ndarray:
    """Mean over destinations of |src_j · dst_k| for every source j, exactly, in row blocks. [n_src]"""
    out = np.empty(src.shape[0])
    for r0 in range(0, src.shape[0], block_rows):
        out[r0 : r0 + block_rows] = (src[r0 : r0 + block_rows] @ dst.T).abs().double().mean(1).numpy()
    return out


def key_means(keys: torch.Tensor, queries: torch.Tensor) -> np.ndarray:
    """Mean over queries of QK(i, j) for every key j: k_j · mean_i q_i (a column mean, from factor sums). [n_key]"""
    return (keys.double() @ queries.double().mean(0)).numpy()
