"""Analyses over edge tables (pure: DataFrames in, DataFrames out)."""
