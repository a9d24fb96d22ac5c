"""Table cells as spreadsheet tools read them: the one rule every CSV featgraph writes of labels follows."""

from __future__ import annotations

import pandas as pd

# A cell a spreadsheet would read as a formula (OWASP, "CSV Injection"): text starting with one of these.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that start like a formula get a leading `'`, as spreadsheet tools expect; numbers are untouched."""
    def fix(v):
        return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v

    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].map(fix)
    return out
