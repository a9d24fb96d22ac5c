"""Matplotlib figures (Agg backend: no display needed), written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featgraph.files import staged_file


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def positional_plot(scores: np.ndarray, dist: np.ndarray, out: Path, title: str, labels: list[str] | None = None) -> Path:
    """A labelled line per head (or per curve), symlog distance axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for i, row in enumerate(scores):
        label = labels[i] if labels else f"head {i}"
        ax.plot(dist, row, label=label, lw=1.6 if ":" not in label else 1.0, ls="-" if ":" not in label else "--")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("token distance Δ (key Δ tokens before the query)")
    ax.set_ylabel("(R(Δ) q)·k  (raw QK units)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return _save(fig, out, plt)


def correlation_plot(stats: dict, out: Path, title: str) -> Path:
    """A scatter per head of mean QK (as key) against mean |OV|, with Pearson r."""
    plt = _plt()
    heads = sorted(stats)
    cols = min(4, len(heads))
    rows = (len(heads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), dpi=110, squeeze=False)
    for ax, h in zip(axes.flat, heads):
        x, y = stats[h]
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and np.std(x) > 0 and np.std(y) > 0 else float("nan")
        ax.scatter(x, y, s=2, alpha=0.4)
        ax.set_title(f"head {h}  r = {r:.3f}", fontsize=9)
        ax.set_xlabel("mean QK as key", fontsize=8)
        ax.set_ylabel("mean |OV|", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, plt)


def _save(fig, out: Path, plt) -> Path:
    out = Path(out)
    with staged_file(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out
