"""Statements the stores run themselves (schema, batched writes, run deletes)."""
