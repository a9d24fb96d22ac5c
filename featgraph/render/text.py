"""Tables as text for a terminal or a pipe: Markdown, CSV or JSON (one formatter for every command)."""

from __future__ import annotations

import re

import pandas as pd

from featgraph.core.cells import csv_safe
from featgraph.errors import BadValue

FORMATS = ("md", "table", "csv", "json")  # `table` is Markdown too (the name `query` has always used)


def format_table(df: pd.DataFrame, fmt: str) -> str:
    if fmt in ("md", "table"):
        return markdown(df)
    if fmt == "csv":
        return csv_safe(df).to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2, force_ascii=False) + "\n"
    raise BadValue("format", fmt, f"must be one of {', '.join(FORMATS)}")


_MD_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]")
_MD_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MD_SPECIAL = re.compile(r"([\\|<>\[\]])")


def md_text(text: str) -> str:
    """Text as one Markdown table cell that shows as written: no line break (a row), no raw HTML, link or image
    (`<`, `>`, `[`, `]` and `|` backslash-escaped, the backslash first), no control characters (U+FFFD)."""
    text = _MD_CONTROL.sub("\ufffd", _MD_BREAK.sub(" ", text))
    return _MD_SPECIAL.sub(r"\\\1", text)


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)

    def cell(v) -> str:
        if v is None or (not isinstance(v, str) and pd.api.types.is_scalar(v) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return md_text(str(v))

    lines = ["| " + " | ".join(md_text(str(c)) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
