"""Tables as text for a terminal or a pipe: Markdown, CSV or JSON (one formatter for every command)."""

from __future__ import annotations

import pandas as pd

from featgraph.errors import BadValue

FORMATS = ("md", "table", "csv", "json")  # `table` is Markdown too (the name `query` has always used)


def format_table(df: pd.DataFrame, fmt: str) -> str:
    if fmt in ("md", "table"):
        return markdown(df)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2, force_ascii=False) + "\n"
    raise BadValue("format", fmt, f"must be one of {', '.join(FORMATS)}")


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)

    def cell(v) -> str:
        if v is None or (not isinstance(v, str) and pd.api.types.is_scalar(v) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
