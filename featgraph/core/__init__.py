"""The pure core: schema, weight containers, circuit maths, exact selection, label merging, progress.

Takes tensors and DataFrames, returns tensors, arrays and DataFrames; no file, store or page I/O
(tests/test_layering.py enforces it).
"""
