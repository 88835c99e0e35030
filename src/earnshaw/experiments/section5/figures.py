"""Section 5 figures (tables in, figures out): Table 2 heat maps beside the paper's, Figure 1 curves."""
from __future__ import annotations

import numpy as np

from earnshaw.experiments.section5.config import PAPER_FIGURE1_FINAL, PAPER_TABLE2

__all__ = ["table2_figure", "figure1_figure"]


def table2_figure(rows: list):
    """Heat maps of the test error by depth x width: ours (mean over seeds) beside the paper's."""
    # matplotlib is heavy and only needed for figures: imported when one is drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    depths = sorted({r["depth"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    ours = np.full((len(depths), len(widths)), np.nan)
    paper = np.full_like(ours, np.nan)
    for r in rows:
        i, j = depths.index(r["depth"]), widths.index(r["width"])
        ours[i, j] = r["test_mse_mean"]
        paper[i, j] = PAPER_TABLE2.get(r["depth"], {}).get(r["width"], np.nan)
    vals = np.concatenate([ours[np.isfinite(ours)], paper[np.isfinite(paper)]])
    norm = LogNorm(vmin=max(vals.min(), 1e-4), vmax=max(vals.max(), 1e-3))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    for ax, mat, title in ((axes[0], ours, f"ours (mean of {rows[0]['seeds']} seeds, {rows[0]['steps']:,} steps)"),
                           (axes[1], paper, "paper, Table 2")):
        im = ax.imshow(np.where(np.isfinite(mat), np.maximum(mat, 1e-4), np.nan), norm=norm, cmap="viridis")
        for i in range(len(depths)):
            for j in range(len(widths)):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:.4f}", ha="center", va="center", fontsize=8,
                            color="white" if norm(max(mat[i, j], 1e-4)) < 0.6 else "black")
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(depths)), [str(dp) for dp in depths])
        ax.set(xlabel="width", ylabel="depth", title=title)
    fig.colorbar(im, ax=axes, label="test MSE", shrink=0.85)
    return fig


def figure1_figure(records: list):
    """Test MSE against GD iterations for each width (mean over seeds, band = min..max)."""
    # matplotlib is heavy and only needed for figures: imported when one is drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    # widths in increasing order whatever order the cells ran in (--widths 125,5 runs 125 first)
    for i, rec in enumerate(sorted(records, key=lambda r: r["width"])):
        steps = np.asarray(rec["curve_steps"], float)
        test = np.asarray(rec["curve_test_mse"])  # (seeds, points)
        ok = steps > 0
        ax.plot(steps[ok], test.mean(0)[ok], color=f"C{i}", label=f"width {rec['width']}")
        ax.fill_between(steps[ok], test.min(0)[ok], test.max(0)[ok], color=f"C{i}", alpha=0.2, lw=0)
        if rec.get("dense_steps"):
            ds = np.asarray(rec["dense_steps"], float) + 1
            ax.plot(ds, np.asarray(rec["dense_train_mse"]).mean(0), color=f"C{i}", ls=":", lw=0.8)
    ax.axhline(PAPER_FIGURE1_FINAL, color="0.4", ls="--", lw=0.8, label="paper: 0.002")
    ax.set(xscale="log", yscale="log", xlabel="GD iterations", ylabel="MSE (solid: test, dotted: train)",
           title=f"depth 2: test error vs iterations ({records[0]['seeds']} seeds)")
    ax.legend(fontsize=8)
    return fig
