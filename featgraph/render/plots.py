"""Matplotlib figures (Agg backend: no display needed), written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featgraph.runs.files import staged_file


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def head_color(head: int) -> str:
    """One colour per head, the same in every figure and page (matplotlib's tab10)."""
    return HEAD_COLORS[int(head) % len(HEAD_COLORS)]


HEAD_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def positional_plot(scores: np.ndarray, dist: np.ndarray, out: Path, title: str, heads: list[int],
                    labels: list[str] | None = None) -> Path:
    """A line per curve over log token distance Δ ≥ 1, with Δ = 0 as its own marker at the left (a log axis has
    no 0, and a symlog axis draws a misleading straight 0→1 segment); each head keeps its colour."""
    plt = _plt()
    fig, (ax0, ax) = plt.subplots(1, 2, figsize=(8.6, 4.5), dpi=120, sharey=True, gridspec_kw={"width_ratios": [1, 11], "wspace": 0.04})
    zero, rest = dist == 0, dist > 0
    for i, row in enumerate(scores):
        label = labels[i] if labels else f"head {heads[i]}"
        feature = ":" in label
        color = head_color(heads[i])
        ax.plot(dist[rest], row[rest], label=label, color=color, lw=1.0 if feature else 1.6, ls="--" if feature else "-")
        if zero.any():
            ax0.plot([0] * int(zero.sum()), row[zero], marker="D" if feature else "o", ms=5, color=color, ls="none")
    ax.set_xscale("log")
    ax.set_xlim(left=1)
    ax.set_xlabel("token distance Δ (the key Δ tokens before the query)")
    ax0.set_xticks([0], ["Δ = 0"])
    ax0.set_xlim(-1, 1)
    ax0.set_ylabel("(R(Δ) q)·k  (raw QK units)")
    for a in (ax0, ax):
        a.axhline(0, color="0.6", lw=0.8)
    ax.tick_params(left=False)
    if not np.abs(scores).max(initial=0) > 0:
        ax.text(0.5, 0.5, "b_dec is zero: its query and key vanish, so the profile is flat at 0", transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="0.3", bbox={"fc": "white", "ec": "0.8"})
    fig.suptitle(title, fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.13, top=0.9)
    return _save(fig, out, plt)


def correlation_plot(stats: dict, out: Path, title: str) -> Path:
    """A panel per head of each key/value feature's mean QK as a key against its mean |OV|, with Pearson r.
    Above 2,000 features the points become a hexbin (log counts): 16k dots are an ink blot."""
    from matplotlib.ticker import ScalarFormatter

    plt = _plt()
    heads = sorted(stats)
    cols = min(4, len(heads))
    rows = (len(heads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.1 * rows), dpi=110, squeeze=False)
    for ax, h in zip(axes.flat, heads):
        x, y = (np.asarray(v, dtype=np.float64) for v in stats[h])
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and np.std(x) > 0 and np.std(y) > 0 else float("nan")
        if len(x) > 2000:
            ax.hexbin(x, y, gridsize=45, bins="log", cmap="Blues", mincnt=1, linewidths=0)
        else:
            ax.scatter(x, y, s=4, alpha=0.5, color=head_color(h), rasterized=True, linewidths=0)
        ax.set_title(f"head {h}: r = {r:.3f}  (n = {len(x):,})", fontsize=9, pad=14)
        ax.set_xlabel("mean QK as key", fontsize=8)
        ax.set_ylabel("mean |OV|", fontsize=8)
        ax.tick_params(labelsize=7)
        for axis in (ax.xaxis, ax.yaxis):
            fmt = ScalarFormatter(useMathText=True)
            fmt.set_powerlimits((-3, 4))
            axis.set_major_formatter(fmt)
            axis.get_offset_text().set_fontsize(7)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, plt)


RHO_BARS = (("rho_selected", "(i) run's edges, Δ as stored"), ("rho_active_d0", "(ii) all active pairs, Δ as stored"),
            ("rho_active", "(iii) all active pairs, true Δ"))


def validation_plot(heads, edges, out: Path, title: str) -> Path:
    """Per circuit, a row: Spearman ρ per head for predictions (i)–(iii) as grouped bars, and each selected
    edge's realised rank against its weight rank (log–log; on the diagonal, weight order = realised order)."""
    plt = _plt()
    circuits = [c for c in ("QK", "OV") if (heads["circuit"] == c).any()]
    fig, axes = plt.subplots(len(circuits), 2, figsize=(12, 4.2 * len(circuits)), dpi=110, squeeze=False,
                             gridspec_kw={"width_ratios": [1.1, 1]})
    colours = plt.get_cmap("tab10")
    for row, circ in zip(axes, circuits):
        t = heads[heads["circuit"] == circ].sort_values("head")
        x = np.arange(len(t))
        width = 0.8 / len(RHO_BARS)
        ax = row[0]
        for i, (col, label) in enumerate(RHO_BARS):
            vals = t[col].to_numpy(dtype=float)
            bars = ax.bar(x + (i - 1) * width, np.nan_to_num(vals), width, label=label, color=colours(i))
            for b, v in zip(bars, vals):
                up = np.isnan(v) or v >= 0
                ax.annotate("n/a" if np.isnan(v) else f"{v:.2f}", (b.get_x() + b.get_width() / 2, 0 if np.isnan(v) else v),
                            ha="center", va="bottom" if up else "top", fontsize=7, xytext=(0, 1 if up else -1),
                            textcoords="offset points")
        ax.set_xticks(x, [f"head {h}" for h in t["head"]])
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_ylim(min(-0.1, float(np.nanmin(t[[c for c, _ in RHO_BARS]].to_numpy(dtype=float), initial=0)) - 0.08), 1.08)
        ax.set_ylabel("Spearman ρ with the real value")
        what = "pre-softmax logits" if circ == "QK" else "output-feature pre-activation change (values carry no position: (ii) = (iii))"
        ax.set_title(f"{circ}: {what}", fontsize=9)
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
        ax = row[1]
        e = edges[(edges["circuit"] == circ) & (edges["pairs_active"] > 0)]
        for i, (h, g) in enumerate(e.groupby("head", sort=True)):
            r = np.corrcoef(g["rank"], g["realised_rank"])[0, 1] if len(g) > 2 and g["realised_rank"].std() > 0 else np.nan
            ax.scatter(g["rank"], g["realised_rank"], s=6, alpha=0.6, color=colours(i), label=f"head {h} (r = {r:.2f})")
        hi = max(2, int(edges.loc[edges["circuit"] == circ, "rank"].max() or 1))
        ax.plot([1, hi], [1, hi], color="0.5", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("weight rank (1 = largest |weight|)")
        ax.set_ylabel("realised rank (1 = largest total |contribution|)")
        n_used = len(e)
        ax.set_title(f"{circ}: {n_used} of {int((edges['circuit'] == circ).sum())} selected edges active on the prompts", fontsize=9)
        if n_used:
            ax.legend(fontsize=7, markerscale=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, plt)


def _save(fig, out: Path, plt) -> Path:
    out = Path(out)
    with staged_file(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out


def positional_figure(df, out: Path, model_name: str, layer: int) -> Path:
    """The positional figure from `positional_frame`'s table (columns query, key, head, distance, score)."""
    import numpy as np

    lines, labels, heads = [], [], []
    for (q, k, h), g in df.groupby(["query", "key", "head"], sort=False):
        lines.append(g["score"].to_numpy())
        heads.append(int(h))
        labels.append(f"head {h}" if q == "b_dec" else f"head {h}: {q.rsplit('/', 1)[-1]}→{k.rsplit('/', 1)[-1]}")
    dist = df["distance"].drop_duplicates().to_numpy()
    title = f"{model_name} layer {layer}: rotary profile of the input SAE's b_dec" + \
        (" and features" if (df["query"] != "b_dec").any() else "")
    return positional_plot(np.array(lines), dist, out, title, heads, labels)
