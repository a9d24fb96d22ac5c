"""HTML pieces every page shares: how a feature is named and linked, numbers, inline sparklines.

A feature is shown as `index: short label`, linked to its Neuronpedia page, with the full label
in a tooltip; long Neuronpedia labels are cut with an ellipsis so table rows stay one line high.
All text is escaped here; callers pass raw strings.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from featgraph.core.schema import NEURONPEDIA, caption

SHORT = 48  # characters of a label shown in tables and captions


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def short(text: str, n: int = SHORT) -> str:
    """`text` cut to n characters with an ellipsis."""
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def short_caption(index: int, description: object, n: int = SHORT) -> str:
    """`index: short label` (the index alone for an unlabelled feature)."""
    return short(caption(index, description), n)


def feature_link(fid: str, index: int, description: object, url: object = None, n: int = SHORT) -> str:
    """`<a>` to the feature's Neuronpedia page: `index: short label`, the full label and id on hover."""
    full = caption(index, description)
    href = url if isinstance(url, str) and url else f"{NEURONPEDIA}/{fid}"
    return (f"<a class='feat' href='{esc(href)}' target='_blank' rel='noopener' "
            f"title='{esc(full)}&#10;{esc(fid)}'>{esc(short(full, n))}</a>")


def number(v: object, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{float(v):.{digits}g}"


def sparkline(y: Sequence[float], width: int = 120, height: int = 28, color: str = "#444", zero: bool = True,
              title: str = "") -> str:
    """A tiny inline SVG line of `y` (evenly spaced), with a zero line when the range spans 0."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2 or not np.isfinite(y).all():
        return ""
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo or 1.0
    xs = np.linspace(1, width - 1, len(y))
    ys = height - 2 - (y - lo) / span * (height - 4)
    pts = " ".join(f"{x:.1f},{v:.1f}" for x, v in zip(xs, ys))
    axis = ""
    if zero and lo < 0 < hi:
        z = height - 2 - (0 - lo) / span * (height - 4)
        axis = f"<line x1='0' x2='{width}' y1='{z:.1f}' y2='{z:.1f}' stroke='#bbb' stroke-width='0.8'/>"
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (f"<svg class='spark' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{tip}{axis}"
            f"<polyline fill='none' stroke='{color}' stroke-width='1.4' points='{pts}'/></svg>")
