"""`featgraph import`: an edge table made elsewhere is checked value by value before any cast; a bad value
is exit 2 with one line naming its data row (1-based, as in the file) and column, and nothing is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import fg

A, B, C = "gemma-2-2b/12-gemmascope-res-16k/5", "gemma-2-2b/12-gemmascope-res-16k/7", "gemma-2-2b/13-gemmascope-res-16k/9"
GOOD = [  # layer, head, circuit, src, dst, weight
    (13, 0, "QK", A, B, 0.5),
    (13, 0, "QK", B, A, -0.25),
    (13, 0, "OV", A, C, 1.5),
    (13, 1, "ov", B, C, 2.0),
]


def _csv(tmp_path, rows=GOOD, text=None, **extra) -> str:
    """An edge CSV written as text (so values like 2**40 or 1e300 reach the file exactly)."""
    cols = ["layer", "head", "circuit", "src", "dst", "weight", *extra]
    lines = [",".join(cols)]
    for i, row in enumerate(rows):
        lines.append(",".join([*map(str, row), *(str(v[i]) for v in extra.values())]))
    path = tmp_path / "edges.csv"
    path.write_text(text if text is not None else "\n".join(lines) + "\n")
    return path


def _rejected(path, tmp_path, *needles):
    out = tmp_path / "run"
    r = fg("import", path, "--out", out)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    assert not out.exists()
    return r.stderr


def _with(row: int, **values):
    """GOOD with data row `row` (1-based) changed."""
    rows = [list(r) for r in GOOD]
    names = ["layer", "head", "circuit", "src", "dst", "weight"]
    for k, v in values.items():
        rows[row - 1][names.index(k)] = v
    return rows


@pytest.mark.parametrize(("row", "column", "value"), [
    (2, "weight", "inf"),
    (3, "weight", "-inf"),
    (2, "weight", "1e300"),  # float32 would make it inf
    (4, "weight", "nan"),
    (1, "weight", ""),
    (3, "weight", "heavy"),
    (2, "head", str(2**40)),  # int32 would wrap it to 0
    (2, "head", "1.5"),  # int32 would truncate it to 1
    (1, "head", "-1"),
    (3, "layer", "-2"),
    (4, "layer", "1e10"),
    (2, "circuit", "QV"),
])
def test_bad_values_name_row_and_column(tmp_path, row, column, value):
    _rejected(_csv(tmp_path, _with(row, **{column: value})), tmp_path, f"data row {row}, column {column}")


@pytest.mark.parametrize("rank", ["0", "-3", "2.5", "x"])
def test_bad_rank(tmp_path, rank):
    ranks = ["1", "2", rank, "1"]
    _rejected(_csv(tmp_path, rank=ranks), tmp_path, "data row 3, column rank")


@pytest.mark.parametrize(("column", "values", "row"), [
    ("src_index", [5, 7, 6, 7], 3),  # A is feature 5
    ("dst_index", [7, 5, 9, 8], 4),  # C is feature 9
    ("src_index", [5, -7, 5, 7], 2),
])
def test_index_columns_must_agree_with_the_ids(tmp_path, column, values, row):
    _rejected(_csv(tmp_path, **{column: values}), tmp_path, f"data row {row}, column {column}")


@pytest.mark.parametrize(("dup", "opposite"), [((13, 0, "qk", A, B, 0.5), False), ((13, 0, "QK", A, B, -0.5), True)])
def test_duplicate_edges(tmp_path, dup, opposite):
    err = _rejected(_csv(tmp_path, [*GOOD, dup]), tmp_path, "data rows 1 and 5", "same edge")
    assert ("opposite signs" in err) == opposite


def test_bad_ids(tmp_path):
    _rejected(_csv(tmp_path, _with(3, dst="gemma-2-2b/13-gemmascope-res-16k")), tmp_path, "data row 3, column dst")


def test_parquet_values_are_checked_before_the_cast(tmp_path):
    df = pd.DataFrame(GOOD, columns=["layer", "head", "circuit", "src", "dst", "weight"])
    big = df.assign(head=np.array([0, 0, 2**40, 1], dtype=np.int64))
    big.to_parquet(tmp_path / "big.parquet")
    _rejected(tmp_path / "big.parquet", tmp_path, "data row 3, column head")
    huge = df.assign(weight=np.array([0.5, -1e300, 1.5, 2.0], dtype=np.float64))
    huge.to_parquet(tmp_path / "huge.parquet")
    _rejected(tmp_path / "huge.parquet", tmp_path, "data row 2, column weight")


def test_a_good_table_imports_with_its_values(tmp_path):
    path = _csv(tmp_path, kv_head=["", 0, "", 0])
    r = fg("import", path, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    got = pd.read_parquet(tmp_path / "run" / "edges.parquet")
    want = pd.read_csv(path)
    key = ["layer", "head", "src", "dst"]
    got, want = got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    assert got["circuit"].tolist() == want["circuit"].str.upper().tolist()
    assert got["weight"].tolist() == want["weight"].astype("float32").tolist()
    assert got["kv_head"].tolist() == want["kv_head"].fillna(-1).astype(int).tolist()
    assert got["src_index"].tolist() == [int(s.rsplit("/", 1)[1]) for s in want["src"]]
    # ranks by |weight| within (layer, head, circuit)
    assert got.set_index(["head", "circuit", "src"])["rank"].to_dict() == {
        (0, "QK", A): 1, (0, "QK", B): 2, (0, "OV", A): 1, (1, "OV", B): 1}
