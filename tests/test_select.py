"""Blocked selection against a dense reference (float64 matrix, full sort)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featgraph.core import select as select_module
from featgraph.core.circuits import moments
from featgraph.core.select import PRECISIONS, Selection, select
from featgraph.errors import BadInput


def pytest_generate_tests(metafunc):
    """Every CPU test again with CPU tiles smaller than its matrices (16×16, and 9 rows × 8 columns): ties and the
    running K-th best must carry across column tiles as across row blocks. (Not the GPU tests: GPUs use whole rows.)"""
    if "cpu_tiles" in metafunc.fixturenames and metafunc.definition.get_closest_marker("gpu") is None:
        metafunc.parametrize("cpu_tiles", [None, 1 << 10, 300], ids=["cpu-tiles", "tiles-16x16", "tiles-9x8"],
                             indirect=True)


@pytest.fixture(autouse=True)
def cpu_tiles(request, monkeypatch):
    """select.CPU_TILE_BYTES for this test (None: the default)."""
    size = getattr(request, "param", None)
    if size is not None:
        monkeypatch.setattr(select_module, "CPU_TILE_BYTES", size)
    return size


def dense_reference(a, b, top_k=None, min_abs=None, per_source_k=None):
    """Materialise S in float64, round to float32, sort by (-|w|, src, dst)."""
    S = (a.double() @ b.double().T).float().numpy()
    r, c = np.meshgrid(np.arange(S.shape[0]), np.arange(S.shape[1]), indexing="ij")
    r, c, w = r.ravel(), c.ravel(), S.ravel()
    p = np.lexsort((c, r, -np.abs(w.astype(np.float64))))
    r, c, w = r[p], c[p], w[p]
    chosen = np.zeros(len(w), bool)
    if top_k is not None or min_abs is not None:
        ok = np.ones(len(w), bool) if min_abs is None else np.abs(w) >= min_abs
        idx = np.flatnonzero(ok)
        if top_k is not None:
            idx = idx[:top_k]
        chosen[idx] = True
    if per_source_k is not None:
        for row in range(S.shape[0]):
            idx = np.flatnonzero(r == row)[:per_source_k]  # already in (-|w|, dst) order within the row
            chosen[idx] = True
    return r[chosen], c[chosen], w[chosen]


def _factors(n, m, d, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g)
    b = torch.randn(m, d, generator=g)
    if ties:  # integer-valued factors: many exactly equal entries
        a = torch.randint(-2, 3, (n, d), generator=g).float()
        b = torch.randint(-2, 3, (m, d), generator=g).float()
        b[1] = b[0]  # duplicate column: pairwise-identical values
    return a, b


def _check(a, b, sel, **ref):
    got = select(a, b, sel)
    want = dense_reference(a, b, **ref)
    np.testing.assert_array_equal(got.src_idx, want[0])
    np.testing.assert_array_equal(got.dst_idx, want[1])
    np.testing.assert_array_equal(got.weight, want[2])


@pytest.mark.parametrize("n,m,d", [(1, 1, 3), (7, 13, 5), (50, 40, 16), (200, 90, 32)])
@pytest.mark.parametrize("block_bytes", [1 << 16, 1 << 30])  # blocks smaller / larger than S
@pytest.mark.parametrize("k", [1, 17, 10**6])  # K larger than n·m included
def test_top_k_matches_dense(n, m, d, block_bytes, k):
    a, b = _factors(n, m, d, seed=n * m + k)
    _check(a, b, Selection(top_k=k, block_bytes=block_bytes), top_k=k)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("ties", [False, True])
def test_ties_and_fast_paths_give_the_same_edges(precision, ties):
    a, b = _factors(300, 120, 24, seed=3, ties=ties)
    _check(a, b, Selection(top_k=250, precision=precision, block_bytes=1 << 16), top_k=250)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("ties", [False, True])
def test_a_late_block_of_large_rows_gives_the_same_edges(precision, ties, monkeypatch, cpu_tiles):
    """Rows of large norm in a later block put most of it above the running K-th best: the block's own K-th best
    proposal narrows its candidates (select._block_top) to about K before the exact re-scoring, same edges."""
    import featgraph.core.select as sel_mod

    a, b = _factors(400, 150, 16, seed=11, ties=ties)
    a[330:336] *= 8  # six rows far above the rest, in the last blocks
    seen = []
    real = sel_mod._block_top
    monkeypatch.setattr(sel_mod, "_block_top", lambda v, r, c, k, e: (seen.append(len(r)), real(v, r, c, k, e))[1])
    for k, ref in ((60, {}), (60, {"min_abs": 1.0})):
        got = select(a, b, Selection(top_k=k, precision=precision, block_bytes=1 << 16, **ref))
        want = dense_reference(a, b, top_k=k, **ref)
        np.testing.assert_array_equal(got.src_idx, want[0])
        np.testing.assert_array_equal(got.dst_idx, want[1])
        np.testing.assert_array_equal(got.weight, want[2])
    if cpu_tiles is None:  # (a 16×16 tile cannot hold 4·K candidates: there, the same edges is the check)
        assert seen and max(seen) > 4 * 60  # the path was taken, with many more candidates than K


@pytest.mark.parametrize("negative", [False, True])
def test_signed_row_screen_both_ways(negative, monkeypatch):
    """Once the running top-K is full, blocks are screened on their signed proposals (row max and −min, the block
    not made absolute): a block with few rows above the cut-off (the survivors' rows copied) and one with most rows
    above it (the whole block compared) give the dense reference's edges, whether the strong entries are positive
    or negative (and with the buffer reused by every block, the last one shorter)."""
    import featgraph.core.select as sel_mod

    a, b = _factors(410, 150, 16, seed=5)
    a[200:236] *= 6 * (-1 if negative else 1)  # one whole block (36 rows at this budget) of strong rows
    a[300] *= 9 * (-1 if negative else 1)  # one strong row in a later block
    taken = []
    real = sel_mod._above

    def spy(block, cutoff, signed):
        r, c, v = real(block, cutoff, signed)
        if signed:
            taken.append(len(torch.unique(r)) * 2 > block.shape[0])
        return r, c, v

    monkeypatch.setattr(sel_mod, "_above", spy)
    for k, ref in ((40, {}), (40, {"min_abs": 2.0})):
        _check(a, b, Selection(top_k=k, block_bytes=1 << 16, **ref), top_k=k, **ref)
    assert True in taken and False in taken  # both ways were taken


def test_threshold_mode_and_combined():
    a, b = _factors(120, 80, 16, seed=5)
    _check(a, b, Selection(top_k=None, min_abs=6.0, block_bytes=1 << 16), min_abs=6.0)
    _check(a, b, Selection(top_k=30, min_abs=6.0, block_bytes=1 << 16), top_k=30, min_abs=6.0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_per_source_top_k_union(precision):
    a, b = _factors(90, 70, 16, seed=9, ties=True)
    _check(a, b, Selection(top_k=40, per_source_k=3, precision=precision, block_bytes=1 << 16), top_k=40, per_source_k=3)
    _check(a, b, Selection(top_k=None, per_source_k=2, block_bytes=1 << 16), per_source_k=2)


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 59, 60, 61])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_block_edges(rows, precision):
    """Blocks of exactly `rows` source rows (block_bytes = rows · n_dst · 12): with integer factors many equal
    values straddle block boundaries, so the running K-th value and the ties must carry across blocks."""
    a, b = _factors(60, 37, 8, seed=rows, ties=True)
    need = -(-(1 << 16) // (rows * 12))  # destinations that make one block of `rows` rows reach the 64 KiB floor
    if need > 37:  # pad with zero destinations (more ties, at 0)
        b = torch.cat([b, torch.zeros(need - 37, b.shape[1])])
    for k in (1, 37, 38, 200):
        _check(a, b, Selection(top_k=k, precision=precision, block_bytes=rows * b.shape[0] * 12), top_k=k)
    _check(a, b, Selection(top_k=25, per_source_k=2, precision=precision, block_bytes=rows * b.shape[0] * 12),
           top_k=25, per_source_k=2)
    _check(a, b, Selection(top_k=None, min_abs=9.0, precision=precision, block_bytes=rows * b.shape[0] * 12), min_abs=9.0)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("strong_rows", [0, 3, 40])  # none, a few (survivors' rows copied), most (whole block)
def test_row_screen_in_torch_equals_numpy(signed, strong_rows):
    """The row screen's torch path (GPUs; CI has none) and its numpy path (CPUs) give the same entries in the same
    order, on signed proposals and on magnitudes, with no row, a few rows and most rows above the cut-off."""
    g = torch.Generator().manual_seed(strong_rows + signed)
    block = torch.randn(60, 37, generator=g)
    block[:strong_rows] *= 10
    if not signed:
        block = block.abs()
    for cutoff in (3.5, 12.0, 1e9):
        got = select_module._above_cpu(block.clone(), cutoff, signed)
        want = select_module._above_torch(block.clone(), cutoff, signed)
        for x, y in zip(got, want):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x.numpy(), y.numpy())
        mag = block.abs()
        assert len(got[0]) == int((mag >= cutoff).sum())


def test_block_shape_cpu_tiles_and_whole_rows(cpu_tiles):
    from featgraph.core.select import block_rows, block_shape

    n_dst, budget = 10_000, 256 << 20
    rows, cols = block_shape(n_dst, budget, cuda=False)
    tile = select_module.CPU_TILE_BYTES
    assert cols < n_dst and rows * cols * 4 <= tile  # in the tile's bytes
    assert abs(rows - cols) <= 1 and rows * cols * 4 > tile / 2  # about square, about the tile's size
    assert block_shape(n_dst, budget, cuda=True) == (block_rows(n_dst, budget), n_dst)  # GPUs: whole rows
    assert block_shape(n_dst, budget, cuda=False, whole_rows=True) == (block_rows(n_dst, budget), n_dst)
    assert block_shape(5, budget, cuda=False)[1] == 5  # narrower than a tile: whole rows
    assert block_shape(n_dst, 1 << 16, cuda=False)[0] <= block_rows(cols, 1 << 16)  # the memory budget still caps rows


@pytest.mark.parametrize("kwargs", [dict(top_k=50), dict(top_k=None, min_abs=0.5), dict(top_k=5, per_source_k=2),
                                    dict(top_k=50, precision="bf16")])
def test_block_products_are_the_products_select_makes(kwargs, cpu_tiles, monkeypatch):
    """select.block_products (the benches' bare products) makes the block products select makes: the same operands'
    rows and columns, dtypes and precision, in the same order, into a buffer of the same shape."""
    calls: list[tuple] = []
    real = select_module._matmul

    def record(a, b, precision, out=None):
        calls.append((a.storage_offset(), tuple(a.shape), b.storage_offset(), tuple(b.shape), a.dtype, b.dtype,
                      precision, None if out is None else (out.storage_offset(), tuple(out.shape))))
        return real(a, b, precision, out)

    monkeypatch.setattr(select_module, "_matmul", record)
    a, b = _factors(90, 70, 8, seed=5)
    sel = Selection(block_bytes=1 << 16, **kwargs)
    select(a, b, sel)
    made = calls.copy()
    calls.clear()
    select_module.block_products(a, b, sel)
    assert made and calls == made


@pytest.mark.parametrize("n,m", [(0, 30), (30, 0), (0, 0)])
@pytest.mark.parametrize("kwargs", [dict(top_k=10), dict(top_k=None, min_abs=0.5), dict(top_k=5, per_source_k=2)])
def test_empty_matrices_select_nothing(n, m, kwargs):
    a, b = _factors(max(n, 1), max(m, 1), 8, seed=3)
    got = select(a[:n], b[:m], Selection(block_bytes=1 << 16, **kwargs))
    assert len(got) == 0 and got.src_idx.dtype == np.int64 and got.weight.dtype == np.float32


def test_many_candidates_in_one_strip_and_k_above_a_tile(cpu_tiles, monkeypatch):
    """A threshold keeping more candidates of one strip than the pool holds (select.POOL_ENTRIES, lowered here: the
    pool is re-scored inside the strip, the max_edges guard counts across those flushes), and a K larger than a whole
    tile (no tile gives a cut-off: the pool is flushed once it holds K, and the kept K-th best screens the rest): the
    dense reference's edges."""
    monkeypatch.setattr(select_module, "POOL_ENTRIES", 50)
    a, b = _factors(90, 70, 4, seed=8)
    _check(a, b, Selection(top_k=None, min_abs=0.5, block_bytes=1 << 16), min_abs=0.5)
    n = int((dense_reference(a, b, min_abs=0.5)[2] != 0).sum())
    with pytest.raises(BadInput, match=f"keeps more than {n - 1:,} edges"):
        select(a, b, Selection(top_k=None, min_abs=0.5, max_edges=n - 1, block_bytes=1 << 16))
    _check(a, b, Selection(top_k=400, block_bytes=1 << 16), top_k=400)  # 400 > a 16×16 or 9×8 tile's entries


def test_auto_resolves_per_device():
    from featgraph.core.select import CPU_BLOCK_BYTES

    sel = Selection(precision="auto", block_bytes=None).resolve(torch.device("cpu"))
    assert (sel.precision, sel.block_bytes) == ("fp32", CPU_BLOCK_BYTES)
    assert sel.describe(Selection(precision="auto", block_bytes=None))["requested"] == {"precision": "auto", "block_bytes": None}
    a, b = _factors(80, 50, 16, seed=11)
    _check(a, b, Selection(top_k=60, precision="auto", block_bytes=None), top_k=60)


def test_threshold_guard():
    a, b = _factors(60, 60, 8, seed=1)
    with pytest.raises(BadInput, match="min_abs 0.0 keeps more than 100"):
        select(a, b, Selection(top_k=None, min_abs=0.0, max_edges=100, block_bytes=1 << 16))


@pytest.mark.parametrize("common", ["none", "offset", "dominant"])
def test_moments_match_dense(common):
    """Mean and std of every entry of S from the factors' means and centred Gram matrices (float32 products summed in
    float64), against the dense float64 matrix: within 1e-6 of std, also when every row shares a component so large
    that the mean is over 100 times the std (the uncentred closed form loses the variance there), in one chunk and in
    many."""
    from featgraph.core import circuits

    a, b = _factors(700, 500, 12, seed=2)
    if common == "offset":
        a = a + 0.3
    elif common == "dominant":  # rows close to one shared vector: entries all near 12
        a, b = 1 + a / 100, 1 + b / 100
    S = (a.double() @ b.double().T).numpy()
    if common == "dominant":
        assert abs(S.mean()) > 100 * S.std()
    for rows in (1 << 12, 37):
        mean, std = moments(a, b, circuits.mean_and_gram(a, rows), circuits.mean_and_gram(b, rows))
        assert abs(mean - S.mean()) <= 1e-6 * S.std() + 1e-12 * abs(S.mean())
        assert std == pytest.approx(S.std(), rel=1e-6)


def test_shared_moments_and_row_norms(cpu_tiles):
    """compute_edges takes a key/value head's moments and row norms once for the query heads sharing it: moments given
    them equal moments computed afresh, and select given the norms keeps the dense reference's edges. The norms are
    rounded up: above the float64 norms, by less than 1e-4."""
    from featgraph.core.circuits import mean_and_gram
    from featgraph.core.select import row_norms

    a, b = _factors(300, 130, 16, seed=4)
    na, nb = row_norms(a), row_norms(b)
    exact_norms = a.double().norm(dim=1)
    assert bool((na.double() >= exact_norms).all()) and float((na.double() / exact_norms - 1).max()) < 1e-4
    got = select(a, b, Selection(top_k=70, block_bytes=1 << 16), norms=(na, nb))
    want = dense_reference(a, b, top_k=70)
    np.testing.assert_array_equal(got.src_idx, want[0])
    np.testing.assert_array_equal(got.weight, want[2])
    assert moments(a, b, mean_and_gram(a), mean_and_gram(b)) == moments(a, b)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(top_k=-3), "top_k"), (dict(top_k=0), "top_k"), (dict(min_abs=-1.0), "min_abs"),
    (dict(precision="fp8"), "precision"), (dict(top_k=None), "nothing to select"),
])
def test_bad_selection(kwargs, msg):
    with pytest.raises(BadInput, match=msg):
        Selection(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; the CPU path is covered above")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "auto"])
@pytest.mark.parametrize("block_bytes", [1 << 22, None])  # None: blocks sized from the GPU's free memory
def test_cuda_matches_cpu(precision, block_bytes):
    a, b = _factors(3000, 2000, 64, seed=4)
    cpu = select(a, b, Selection(top_k=500, per_source_k=2, block_bytes=1 << 22))
    gpu = select(a.cuda(), b.cuda(), Selection(top_k=500, per_source_k=2, precision=precision, block_bytes=block_bytes))
    for x, y in zip((cpu.src_idx, cpu.dst_idx, cpu.weight), (gpu.src_idx, gpu.dst_idx, gpu.weight)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("k", [3, 40, 300])
@pytest.mark.parametrize("adversary", ["members-weaker", "first-block-stronger"])
@pytest.mark.parametrize("strong", ["first-rows", "every-fifth-row", "ties"])
def test_proposals_wrong_by_their_whole_error_bound(k, adversary, strong, monkeypatch):
    """Proposals made adversarially wrong by (almost) their whole error bound e = c·‖a‖·‖b‖: the top K weaker and the
    rest stronger, or the first blocks' entries stronger and the rest weaker. Every bound derived from proposals (a
    block's own k-th best, the running K-th best, the initial and later cut-offs, the strip's narrowing, min_abs)
    must allow for the error, or the dense reference's edges are not found: dropping any one error term fails here
    (checked by hand, one term at a time)."""
    c = 0.1 if strong == "ties" else 0.02
    a, b = _factors(260, 190, 24, seed=k, ties=strong == "ties")  # ties: many entries equal to the K-th best
    if strong == "first-rows":  # the first blocks hold the strongest entries: bounds from them reach the K-th best
        a[:12] *= 4
    elif strong == "every-fifth-row":  # blocks of different norms: different bounds
        a[::5] *= 4
    S = a.double() @ b.double().T
    cut = S.abs().flatten().kthvalue(S.numel() - k + 1).values  # the K-th best

    def wrong(x, y, precision, out=None):
        exact = x.double() @ y.double().T
        e = 0.99 * c * x.double().norm(dim=1)[:, None] * y.double().norm(dim=1)[None, :]
        if adversary == "members-weaker":
            grow = exact.abs() < cut
        else:  # which block is first is not known here: the first product select makes is the first block
            grow = torch.full_like(exact, float(not calls), dtype=torch.bool)
        calls.append(1)
        got = (exact + torch.where(grow, e, -e) * torch.sign(exact)).float()
        return got if out is None else out.copy_(got)

    calls: list[int] = []
    monkeypatch.setattr(select_module, "_matmul", wrong)
    monkeypatch.setattr(select_module, "error_constant", lambda precision, d: c)
    _check(a, b, Selection(top_k=k, block_bytes=1 << 16), top_k=k)
    calls.clear()
    _check(a, b, Selection(top_k=k, min_abs=float(cut) * 0.97, block_bytes=1 << 16), top_k=k, min_abs=float(cut) * 0.97)


@pytest.mark.parametrize("seed", range(4))
def test_bf16_proposals_around_the_kth_best(seed):
    """bf16 proposals err by far more than the gaps between neighbouring weights: every bound derived from them (a
    block's own k-th best, the running K-th best, the cut-offs) must allow for the error, or members of the top K are
    lost (checked: a bound short of its error term fails here)."""
    a, b = _factors(300, 200, 64, seed=100 + seed)
    a[::7] *= 3  # rows of larger norm: their blocks' bounds differ from the others'
    for k in (5, 60, 400):
        _check(a, b, Selection(top_k=k, precision="bf16", block_bytes=1 << 16), top_k=k)
        _check(a, b, Selection(top_k=k, min_abs=1.0, precision="bf16", block_bytes=1 << 16), top_k=k, min_abs=1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; the CPU path is covered above")
def test_cuda_moments_in_float32_even_with_tf32_allowed():
    """The moments' Gram products stay float32 on a GPU when the caller allows TF32 globally (restored after)."""
    from featgraph.core.circuits import mean_and_gram

    a, b = _factors(3000, 2000, 64, seed=6)
    S = (a.double() @ b.double().T).numpy()
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        mean, std = moments(a.cuda(), b.cuda(), mean_and_gram(a.cuda()), mean_and_gram(b.cuda()))
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert abs(mean - S.mean()) <= 1e-6 * S.std() and std == pytest.approx(S.std(), rel=1e-6)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_matmul_sets_the_flags_for_its_precision_and_restores_them(precision):
    """The GPU products' flags (select._matmul and the moments' Gram products share them): TF32 only when asked, bf16
    accumulating in fp32, the caller's settings back afterwards, after an error too. The flags are plain globals, so
    this runs without a GPU; the CUDA tests above check the products themselves."""
    from featgraph.core.select import cuda_matmul

    m = torch.backends.cuda.matmul
    before = (m.allow_tf32, m.allow_bf16_reduced_precision_reduction)
    try:
        for caller in ((True, True), (False, False)):
            m.allow_tf32, m.allow_bf16_reduced_precision_reduction = caller
            with pytest.raises(RuntimeError), cuda_matmul(precision):
                assert (m.allow_tf32, m.allow_bf16_reduced_precision_reduction) == (precision == "tf32", False)
                raise RuntimeError
            assert (m.allow_tf32, m.allow_bf16_reduced_precision_reduction) == caller
    finally:
        m.allow_tf32, m.allow_bf16_reduced_precision_reduction = before
