"""Analyses over edge tables and weights (pure: DataFrames and tensors in, DataFrames and arrays out; no I/O)."""
