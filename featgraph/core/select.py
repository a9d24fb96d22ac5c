"""Pick the strongest entries of `S = src @ dst.T` without materialising S.

S is walked in blocks under a memory budget (whole rows on a GPU, cache-sized
tiles on a CPU: block_shape). A block is computed in the
chosen precision only to *propose* candidates; a rigorous bound on that
precision's error keeps every entry that could belong to the selection, and
the candidates are re-scored exactly (float64 dot products rounded to float32).
So fp32, TF32 and bf16 give the same edges with the same values, and ties are
broken by (src, dst) index: the order is (-|w|, src, dst).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from featgraph.errors import BadInput, BadValue

PRECISIONS = ("fp32", "tf32", "bf16")
CPU_BLOCK_BYTES = 256 << 20  # the CPU's memory budget per block; GPUs size blocks from free memory
# On the CPU S is walked in tiles of about this many bytes, so a tile is still in cache (L2/L3) when its rows are
# screened right after the product writes it; measured in bench/select_tiles.py (docs/scale.md).
CPU_TILE_BYTES = 8 << 20
_SLACK = 1 - 2.0**-20  # float32 rounding of the exact value vs its float64 source
POOL_ENTRIES = 1 << 20  # a row strip's candidates are re-scored early once there are more than this (and 8·K)


@dataclass(frozen=True)
class Selection:
    """What to keep per (head, circuit).

    top_k: the K largest |weight| (None: no limit); min_abs: every |weight| ≥ W;
    both together: the K largest among those ≥ W. per_source_k adds each source
    feature's k strongest edges. max_edges guards threshold mode. precision "auto"
    and block_bytes None are decided per device by `resolve`.
    """

    top_k: int | None = 1000
    min_abs: float | None = None
    per_source_k: int | None = None
    precision: str = "fp32"
    block_bytes: int | None = CPU_BLOCK_BYTES
    max_edges: int = 5_000_000

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise BadValue("top_k", self.top_k, "must be a positive integer")
        if self.min_abs is not None and not self.min_abs >= 0:
            raise BadValue("min_abs", self.min_abs, "must be ≥ 0")
        if self.per_source_k is not None and self.per_source_k < 1:
            raise BadValue("per_source_k", self.per_source_k, "must be a positive integer")
        if self.top_k is None and self.min_abs is None and self.per_source_k is None:
            raise BadInput("nothing to select: give top_k, min_abs or per_source_k")
        if self.precision not in (*PRECISIONS, "auto"):
            raise BadValue("precision", self.precision, f"must be one of {', '.join(PRECISIONS)} or auto")
        if self.block_bytes is not None and self.block_bytes < 1 << 16:
            raise BadValue("block_bytes", self.block_bytes, "must be at least 64 KiB")

    def resolve(self, device: torch.device) -> Selection:
        """This selection with `auto` decided for `device`: bf16 proposals and blocks from free memory on a
        GPU (its tensor cores make bf16 the fast kernel; the bound keeps the result exact), fp32 and
        CPU_BLOCK_BYTES on a CPU (where bf16 matmuls are slower than fp32)."""
        import dataclasses

        cuda = device.type == "cuda"
        precision = ("bf16" if cuda else "fp32") if self.precision == "auto" else self.precision
        block = self.block_bytes
        if block is None:
            block = max(1 << 26, int(0.5 * torch.cuda.mem_get_info(device)[0])) if cuda else CPU_BLOCK_BYTES
        return dataclasses.replace(self, precision=precision, block_bytes=block)

    def describe(self, requested: Selection | None = None) -> dict:
        """What the manifest records; `requested` is the selection as asked for, before `resolve`."""
        extra = {}
        if requested is not None and (requested.precision, requested.block_bytes) != (self.precision, self.block_bytes):
            extra = {"requested": {"precision": requested.precision, "block_bytes": requested.block_bytes}}
        return extra | {
            "top_k": self.top_k, "min_abs": self.min_abs, "per_source_k": self.per_source_k,
            "precision": self.precision, "block_bytes": self.block_bytes,
            "order": "|weight| descending, then src index, then dst index",
            "values": "float64 dot products of the factors, rounded to float32",
        }


def error_constant(precision: str, d: int) -> float:
    """c such that |approx − exact| ≤ c·‖a‖·‖b‖ for one entry a·b of length d.

    Input rounding (unit u) costs ≤ (2u + u²)‖a‖‖b‖ (Cauchy–Schwarz), fp32
    accumulation ≤ γ_d ≈ d·2⁻²⁴ of Σ|a_k b_k|, a bf16 output one more u; each
    term is doubled for safety.
    """
    acc = 2 * (d + 2) * 2.0**-24
    if precision == "fp32":
        return acc + 2.0**-40
    u = {"tf32": 2.0**-11, "bf16": 2.0**-8}[precision]
    out = u if precision == "bf16" else 0.0
    return 2 * (2 * u + u * u + out) + acc


def exact(src: torch.Tensor, dst: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """float32 of the float64 dot products src[r]·dst[c] (the reference values)."""
    out = torch.empty(len(r), dtype=torch.float32, device=src.device)
    step = 1 << 16
    for i in range(0, len(r), step):
        a = src[r[i : i + step]].double()
        b = dst[c[i : i + step]].double()
        out[i : i + step] = (a * b).sum(-1).float()
    return out


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """Each row's Euclidean norm, rounded up: float32 norms times 1 + (d + 2)·2⁻²³, above the exact norms whatever
    the order of the float32 sum of squares (the computed norm's relative error is below (d/2 + 1)·2⁻²⁴, unless
    entries below ~1e-19 underflow when squared, as in the float32 products the bound covers). They only scale the
    error bound, so float32 serves; a float64 copy of the factor costs as much as its Gram matrix. [n]"""
    return x.norm(dim=1) * (1 + (x.shape[1] + 2) * 2.0**-23)


def order(src_idx: np.ndarray, dst_idx: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Permutation sorting by (-|weight|, src, dst): featgraph's rank order."""
    return np.lexsort((dst_idx, src_idx, -np.abs(weight.astype(np.float64))))


def _order(r: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`order` on the device: stable sorts by the last key first (torch has no lexsort)."""
    p = torch.argsort(c, stable=True)
    p = p[torch.argsort(r[p], stable=True)]
    return p[torch.argsort(w[p].abs(), descending=True, stable=True)]


@dataclass(frozen=True)
class Selected:
    """Selected entries of one matrix in rank order: src_idx, dst_idx (int64) and weight (float32), each [n]."""

    src_idx: np.ndarray
    dst_idx: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.weight)


class _Kept:
    """The running best-K set (on the matrix's device) with its admission threshold."""

    def __init__(self, k: int | None, device: torch.device):
        self.k = k
        self.r = torch.empty(0, dtype=torch.int64, device=device)
        self.c = torch.empty(0, dtype=torch.int64, device=device)
        self.w = torch.empty(0, dtype=torch.float32, device=device)

    @property
    def threshold(self) -> float | None:
        if self.k is None or len(self.w) < self.k:
            return None
        return float(self.w[-1].abs())  # one scalar per block: the cut-off the next block needs

    def add(self, r: torch.Tensor, c: torch.Tensor, w: torch.Tensor) -> None:
        r, c, w = torch.cat((self.r, r)), torch.cat((self.c, c)), torch.cat((self.w, w))
        p = _order(r, c, w)
        if self.k is not None:
            p = p[: self.k]
        self.r, self.c, self.w = r[p], c[p], w[p]


def _matmul(a: torch.Tensor, b: torch.Tensor, precision: str, out: torch.Tensor | None = None) -> torch.Tensor:
    """One block of a @ b.T in the requested precision, as float32.

    out: a float32 [rows, n_dst] buffer to write the block into (on the CPU, where reusing one buffer for every block
    spares the allocator a fresh mapping, its page faults and its unmapping per block). On CUDA the flags are
    set for `precision` (cuda_matmul).
    """
    if not a.is_cuda:
        if out is not None and a.dtype == torch.float32:
            return torch.matmul(a, b.T, out=out)
        return (a @ b.T).float()
    with cuda_matmul(precision):
        return (a @ b.T).float()


@contextmanager
def cuda_matmul(precision: str = "fp32") -> Iterator[None]:
    """CUDA's global matmul flags set for `precision` inside the block, restored after it: fp32 must not silently run
    as TF32 whatever the caller allows globally (the error bounds assume fp32), and bf16 must accumulate in fp32."""
    m = torch.backends.cuda.matmul
    prev = (m.allow_tf32, m.allow_bf16_reduced_precision_reduction)
    m.allow_tf32 = precision == "tf32"
    m.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        m.allow_tf32, m.allow_bf16_reduced_precision_reduction = prev


def select(
    src: torch.Tensor,
    dst: torch.Tensor,
    sel: Selection,
    progress: Callable[[int], None] | None = None,
    norms: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Selected:
    """Selected entries of src @ dst.T, in rank order.

    src: [n_src, d_head], dst: [n_dst, d_head] on one device, float32. Candidates stay on that
    device; the result moves to the host once. norms: (row_norms(src) [n_src], row_norms(dst) [n_dst]) when the
    caller has them already (a key/value head's factor shared by its query heads, norms taken with its moments).
    """
    sel = sel.resolve(src.device)
    n_src, d = src.shape
    n_dst = dst.shape[0]
    if not n_src or not n_dst:  # no entry to select (and no block to walk)
        none = np.empty(0, dtype=np.int64)
        return Selected(none, none.copy(), np.empty(0, dtype=np.float32))
    c_err = error_constant(sel.precision, d)
    src_norm, dst_norm = norms if norms is not None else (row_norms(src), row_norms(dst))
    dst_norm_max = float(dst_norm.max())

    kept = _Kept(sel.top_k, src.device)
    per_src: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    a_all, b_all, rows, cols, buf = _layout(src, dst, sel)
    col_max = [float(dst_norm[c0 : c0 + cols].max()) for c0 in range(0, n_dst, cols)]  # each tile's largest ‖dst‖
    pool = _Pool(kept, src, dst, sel)
    for r0 in range(0, n_src, rows):
        r1 = min(n_src, r0 + rows)
        src_max = float(src_norm[r0:r1].max())
        for j, c0, block in strip_blocks(a_all, b_all, r0, r1, cols, sel.precision, buf):  # [rows, cols] each
            e_blk = c_err * src_max * col_max[j]  # the tile's bound on |proposal − exact|
            if sel.per_source_k is not None:  # its whole block's magnitudes are read: take them in place
                block.abs_()
            pool.screen(block, e_blk, r0, c0)
            if sel.per_source_k is not None:  # whole rows (block_shape): each row's k best are in this block
                per_src.append(_per_source(src, dst, block, r0, sel.per_source_k, c_err, src_norm[r0:r1], dst_norm_max))
            del block
        pool.flush()  # once per row strip: the exact re-scoring and the merge are per strip, not per tile
        if progress is not None:
            progress(r1 - r0)

    rs, cs, ws = kept.r, kept.c, kept.w
    if per_src:
        rs = torch.cat([rs] + [p[0] for p in per_src])
        cs = torch.cat([cs] + [p[1] for p in per_src])
        ws = torch.cat([ws] + [p[2] for p in per_src])
        key = rs * max(n_dst, 1) + cs
        uniq, inverse = torch.unique(key, return_inverse=True)
        first = torch.full((len(uniq),), len(key), dtype=torch.int64, device=key.device)
        first.scatter_reduce_(0, inverse, torch.arange(len(key), device=key.device), reduce="amin")
        rs, cs, ws = rs[first], cs[first], ws[first]
    p = _order(rs, cs, ws)
    return Selected(rs[p].cpu().numpy(), cs[p].cpu().numpy(), ws[p].cpu().numpy())


class _Pool:
    """The global top-K / threshold candidates of the blocks of one row strip, re-scored exactly and merged into
    `kept` by `flush` (once per strip: on the CPU a strip is many cache-sized tiles, and one exact re-scoring and one
    merge per strip replace one per tile).

    Until a flush, later tiles are screened against `lower`, the best lower bound on the K-th best |weight|
    (float32) of the whole matrix known: the kept set's exact K-th best, or a tile's own k-th best proposal v_k less
    its error bound e (its k best are exactly ≥ v_k − e, so the matrix's K-th best is too). Both carry the factor
    _SLACK = 1 − 2⁻²⁰ (thr·_SLACK; (v_k − e)·_SLACK): the margin that lets a cut-off `lower − e` be compared with
    float32 proposals and float32-rounded exact values (rounding is ~2⁻²⁴ each). Do not drop it to tighten the
    cut-off."""

    def __init__(self, kept: _Kept, src: torch.Tensor, dst: torch.Tensor, sel: Selection):
        self.kept, self.src, self.dst, self.sel = kept, src, dst, sel
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.n, self.e_max, self.lower = 0, 0.0, -np.inf
        self.n_thresh = 0  # threshold-mode edges kept so far (the max_edges guard)

    def screen(self, block: torch.Tensor, e_blk: float, r0: int, c0: int) -> None:
        """Take the candidates of one block (rows r0…, columns c0… of S) that can still be selected.

        The block holds signed proposals, or their magnitudes when per-source top-k is asked (it reads them all).
        Magnitudes are taken in place only where the whole block is read anyway (an initial cut-off); otherwise
        rows are screened by their max and min, with no write."""
        sel = self.sel
        if sel.top_k is None and sel.min_abs is None:
            return
        cutoff = -np.inf if sel.min_abs is None else sel.min_abs * _SLACK - e_blk
        lower = self.lower
        signed = sel.per_source_k is None
        if lower > -np.inf:
            cutoff = max(cutoff, lower - e_blk)
        elif sel.top_k is not None and block.numel() >= sel.top_k:  # no K-th best yet: a cut-off from this block
            if signed:
                block.abs_()
                signed = False
            cutoff = max(cutoff, _initial_cutoff(block, sel.top_k) * _SLACK - 2 * e_blk)
        r, c, v = _above(block, cutoff, signed) if cutoff > -np.inf else _all(block)
        if sel.top_k is not None and len(r) >= sel.top_k:
            # This block's own k-th best proposal v_k: a lower bound for every later block, and (when it holds many
            # more than K candidates, rows of large norm) a narrower set to re-score (_block_top).
            kth = _kth_largest(v, sel.top_k)
            self.lower = max(self.lower, (kth - e_blk) * _SLACK)
            if len(r) > 2 * sel.top_k:
                r, c, v = _block_top(v, r, c, kth, e_blk)
        if len(r):
            self.parts.append((r + r0, c + c0, v))
            self.n += len(r)
            self.e_max = max(self.e_max, e_blk)
            if self.n > max(8 * (sel.top_k or 0), POOL_ENTRIES):  # a bounded pool, whatever the strip's size
                self.flush()
            elif sel.top_k is not None and self.lower == -np.inf and self.n >= sel.top_k:
                self.flush()  # K candidates and no cut-off yet (K above a tile's entries): the kept K-th best is one

    def flush(self) -> None:
        if not self.parts:
            return
        sel = self.sel
        r, c, v = (torch.cat(x) for x in zip(*self.parts))
        e_max = self.e_max
        self.parts, self.n, self.e_max = [], 0, 0.0
        if sel.top_k is not None and len(r) > 2 * sel.top_k:
            r, c, v = _block_top(v, r, c, _kth_largest(v, sel.top_k), e_max)
        w = exact(self.src, self.dst, r, c)
        if sel.min_abs is not None:
            keep = w.abs() >= sel.min_abs
            r, c, w = r[keep], c[keep], w[keep]
        if sel.top_k is None:
            self.n_thresh += len(w)
            if self.n_thresh > sel.max_edges:
                raise BadValue("min_abs", sel.min_abs, f"keeps more than {sel.max_edges:,} edges in one matrix: raise it "
                               "or add a top-k limit", value_first=True)
        if len(w):
            self.kept.add(r, c, w)
            if self.kept.threshold is not None:
                self.lower = max(self.lower, self.kept.threshold * _SLACK)


def _initial_cutoff(block: torch.Tensor, k: int) -> float:
    """A value at least k distinct entries of `block` reach: the k-th largest of ≥k chunk maxima.

    Cheaper than topk over the whole block (one max pass); looser, but only until
    the running K-th best takes over after the first block.
    """
    flat = block.flatten()
    chunks = min(flat.numel(), 4 * k)
    m = flat.numel() // chunks
    maxima = flat[: chunks * m].view(chunks, m).amax(dim=1)
    return _kth_largest(maxima, k)


def _kth_largest(v: torch.Tensor, k: int) -> float:
    """The k-th largest value of v [n ≥ k]."""
    return float(torch.topk(v, k, sorted=False).values.min())


def _block_top(v: torch.Tensor, r: torch.Tensor, c: torch.Tensor, kth: float,
               e_blk: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidates (r, c, v) of a block (or of a strip's blocks), v their |proposals| and kth the k-th largest of
    v, that can still be among the K best: those within 2·e_blk of kth, e_blk the largest of their blocks' error
    bounds. Their k best are exactly ≥ kth − e_blk, so the K-th best of the whole matrix is too, and an entry whose
    proposal is below kth − 2·e_blk is exactly below it. (When rows of large norm put most of a block above the
    running cut-off, this keeps the exact re-scoring to about k entries, not 10⁵.)"""
    keep = v >= kth * _SLACK - 2 * e_blk
    return r[keep], c[keep], v[keep]


def _above(block: torch.Tensor, cutoff: float, signed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col, |proposal|) of the entries whose magnitude is ≥ cutoff; `signed`: the block holds the signed
    proposals (else their magnitudes), and its surviving rows' magnitudes are taken where needed.

    Once the running top-K is full almost no row reaches the cut-off, so rows are screened by their largest magnitude
    (max(x) and −min(x): two reads of the block, no write) and only the survivors are compared entry by entry. On the
    CPU, after the two reads (torch, on every core) the work is on arrays of a block's rows or fewer, in numpy: a
    torch call costs tens of microseconds whatever its size, and a CPU block is one of many small tiles."""
    return _above_torch(block, cutoff, signed) if block.is_cuda else _above_cpu(block, cutoff, signed)


def _above_torch(block: torch.Tensor, cutoff: float, signed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """_above in torch, on the block's device (a GPU's)."""
    if signed:
        hit = block.amax(dim=1) >= cutoff
        hit |= block.amin(dim=1) <= -cutoff
    else:
        hit = block.amax(dim=1) >= cutoff
    rows = torch.nonzero(hit, as_tuple=True)[0]
    if not len(rows):
        none = torch.empty(0, dtype=torch.int64, device=block.device)
        return none, none, torch.empty(0, dtype=block.dtype, device=block.device)
    if len(rows) * 2 > block.shape[0]:
        if signed:
            block.abs_()
        r_all, c_all = torch.nonzero(block >= cutoff, as_tuple=True)
        return r_all, c_all, block[r_all, c_all]
    sub = block[rows]
    if signed:
        sub.abs_()
    r, c = torch.nonzero(sub >= cutoff, as_tuple=True)
    return rows[r], c, sub[r, c]


def _above_cpu(block: torch.Tensor, cutoff: float, signed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """_above on a CPU block (float32): the same entries, in the same order."""
    hit = block.amax(dim=1).numpy() >= cutoff
    if signed:
        hit |= block.amin(dim=1).numpy() <= -cutoff
    rows = np.flatnonzero(hit)
    b = block.numpy()
    if len(rows) * 2 > b.shape[0]:
        mag = np.abs(b, out=b) if signed else b
        r, c = np.nonzero(mag >= cutoff)
        v = mag[r, c]
    else:
        sub = b[rows]
        if signed:
            np.abs(sub, out=sub)
        r, c = np.nonzero(sub >= cutoff)
        v = sub[r, c]
        r = rows[r]
    return torch.from_numpy(r.astype(np.int64, copy=False)), torch.from_numpy(c.astype(np.int64, copy=False)), torch.from_numpy(v)


def _all(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every entry of `block` (its magnitudes, or signed proposals: the values only narrow a top-k, which a block
    of fewer than k entries never reaches)."""
    rows, cols = block.shape
    r = torch.arange(rows, device=block.device).repeat_interleave(cols)
    c = torch.arange(cols, device=block.device).repeat(rows)
    return r, c, block.abs().flatten()


def _layout(src: torch.Tensor, dst: torch.Tensor,
            sel: Selection) -> tuple[torch.Tensor, torch.Tensor, int, int, torch.Tensor | None]:
    """How `select` walks S = src @ dst.T (sel resolved): its operands (bf16 copies for bf16 proposals), the blocks'
    (rows, cols) (block_shape) and the CPU block buffer (block_buffer)."""
    assert sel.block_bytes is not None  # resolved
    cast = sel.precision == "bf16"
    rows, cols = block_shape(dst.shape[0], sel.block_bytes, src.is_cuda, whole_rows=sel.per_source_k is not None)
    return (src.bfloat16() if cast else src, dst.bfloat16() if cast else dst, rows, cols,
            block_buffer(src.shape[0], rows, cols, src.device))


def block_products(src: torch.Tensor, dst: torch.Tensor, sel: Selection) -> None:
    """Every block product `select(src, dst, sel)` makes (its operands, shapes, buffer and precision: _layout), and
    nothing else: the arithmetic the selection adds to (bench/atlas.py's bare products, bench/select_tiles.py)."""
    sel = sel.resolve(src.device)
    a, b, rows, cols, buf = _layout(src, dst, sel)
    for r0 in range(0, src.shape[0], rows):
        for _ in strip_blocks(a, b, r0, min(src.shape[0], r0 + rows), cols, sel.precision, buf):
            pass


def block_buffer(n_src: int, rows: int, cols: int, device: torch.device) -> torch.Tensor | None:
    """The one float32 buffer every CPU block of `block_shape`'s shape is written into (None on a GPU, or with no
    rows): reusing it spares the allocator a fresh mapping, its page faults and its unmapping per block."""
    return torch.empty(min(rows, n_src) * cols, dtype=torch.float32) if device.type == "cpu" and n_src else None


def strip_blocks(a: torch.Tensor, b: torch.Tensor, r0: int, r1: int, cols: int, precision: str,
                 buf: torch.Tensor | None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The blocks of rows r0:r1 of a @ b.T, `cols` columns at a time: (j, first column, block [r1 − r0, ≤ cols]).
    On the CPU each is a view of `buf` (block_buffer; blocks at the right and bottom edges use its first elements),
    valid until the next block is made."""
    n_dst = b.shape[0]
    for j, c0 in enumerate(range(0, n_dst, cols)):
        c1 = min(n_dst, c0 + cols)
        out = None if buf is None else buf[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0)
        yield j, c0, _matmul(a[r0:r1], b[c0:c1], precision, out)


def block_shape(n_dst: int, block_bytes: int, cuda: bool, whole_rows: bool = False) -> tuple[int, int]:
    """(rows, cols) of the blocks S is walked in. On a GPU, and where whole rows are needed (per-source top-k),
    blocks are whole rows under the memory budget. On the CPU, square-ish tiles of CPU_TILE_BYTES (at most
    block_bytes' rows): a tile written by the product is screened while it is still in cache, instead of being
    read back from memory twice."""
    if cuda or whole_rows:
        return block_rows(n_dst, block_bytes), n_dst
    cols = max(1, min(n_dst, math.isqrt(CPU_TILE_BYTES // 4)))
    return max(1, min(block_rows(cols, block_bytes), CPU_TILE_BYTES // (4 * cols))), cols


def block_rows(n_dst: int, block_bytes: int) -> int:
    """Source rows per block of S: a budget of 12 bytes per entry (the float32 block, the comparisons' masks and
    the candidates' indices)."""
    return max(1, block_bytes // max(1, n_dst * 4 * 3))


def _per_source(src: torch.Tensor, dst: torch.Tensor, block: torch.Tensor, r0: int, k: int, c_err: float,
                norms: torch.Tensor, dst_norm_max: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each source row's k strongest entries, exactly, ties by dst index (on the block's device)."""
    k_eff = min(k, block.shape[1])
    kth = torch.topk(block, k_eff, dim=1, sorted=False).values.min(dim=1).values  # [rows]
    e_row = c_err * norms.to(block.device) * dst_norm_max
    r, c = torch.nonzero(block >= (kth * _SLACK - 2 * e_row)[:, None], as_tuple=True)
    r = r + r0
    w = exact(src, dst, r, c)
    # order by (row, -|w|, dst): stable sorts, last key first
    p = torch.argsort(c, stable=True)
    p = p[torch.argsort(w[p].abs(), descending=True, stable=True)]
    p = p[torch.argsort(r[p], stable=True)]
    r, c, w = r[p], c[p], w[p]
    # position within each row's run; keep the first k
    _, counts = torch.unique_consecutive(r, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    m = torch.arange(len(r), device=r.device) - starts < k_eff
    return r[m], c[m], w[m]
