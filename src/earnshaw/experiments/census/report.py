"""A census's tables (markdown, JSON, CSV in the run folder) and figures.

Figure rules: losses are clipped at the rounding level of ``F`` (``FLOOR``: below it a loss is zero to working
precision, and a band between 1e-15 and 1e-30 says nothing), the x axis is GD steps, the rarer families are
drawn over the common ones, and every curve keeps its saved points (thinned log-spaced by the descent).
"""
from __future__ import annotations

import json
import math

import numpy as np

from earnshaw.store import write_csv_atomic, write_json_atomic, write_text_atomic

__all__ = ["FLOOR", "cell_rows", "family_rows", "markdown", "write_report", "figures"]

#: F below this is zero to float64 rounding (F ~ 1 at the start; sums of ~k^2 terms of size 1).
FLOOR = 1e-14

_FAMILY_COLS = ("cell", "family", "kind", "F", "index", "lambda_min", "recovered", "count", "fraction", "ci_low",
                "ci_high", "certificate", "cert_kind", "cert_index", "cert_radius", "cert_F_lo", "cert_F_hi",
                "cert_lambda_lower")
_CELL_COLS = ("cell", "activation", "k", "n", "seeds", "spurious_rate", "spurious_lo", "spurious_hi", "converged",
              "median_steps", "max_steps_taken", "families", "gd_s", "group_s", "certify_s")


def cell_rows(rows) -> list:
    """The per-cell summary rows (``row_kind == "cell"``), in cell order."""
    return [{c: r.get(c) for c in _CELL_COLS} for r in rows if r.get("row_kind") == "cell"]


def family_rows(rows) -> list:
    """The per-family rows (``row_kind == "family"``)."""
    return [{c: r.get(c) for c in _FAMILY_COLS} for r in rows if r.get("row_kind") == "family"]


def _fmt(v, spec=".3g"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return format(v, spec) if isinstance(v, float) else str(v)


def markdown(rows) -> str:
    """The census as markdown: one summary table over cells, then each cell's families."""
    out = ["| cell | seeds | spurious rate [95% CI] | converged | median steps | families | GD s | group s | "
           "certify s |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for c in cell_rows(rows):
        out.append(f"| {c['cell']} | {c['seeds']} | {c['spurious_rate']:.3f} [{c['spurious_lo']:.3f}, "
                   f"{c['spurious_hi']:.3f}] | {c['converged']:.3f} | {c['median_steps']:.0f} | {c['families']} | "
                   f"{c['gd_s']:.1f} | {c['group_s']:.1f} | {c['certify_s']:.1f} |")
    fams = family_rows(rows)
    for cell in dict.fromkeys(f["cell"] for f in fams):
        out += ["", f"### {cell}", "",
                "| # | kind | F | index | lambda_min | units recovered | count | basin fraction [95% CI] | "
                "certificate | radius | F interval |",
                "|---:|---|---:|---:|---:|---:|---:|---|---|---:|---|"]
        for f in fams:
            if f["cell"] != cell:
                continue
            cert = f["certificate"] if f["certificate"] != "certified" else \
                f"certified {f['cert_kind']} (index {f['cert_index']})"
            interval = "" if f["certificate"] != "certified" else f"[{f['cert_F_lo']:.6e}, {f['cert_F_hi']:.6e}]"
            F = f"{f['F']:.6e}" if abs(f["F"]) >= FLOOR else f"< {FLOOR:g} (0 to rounding)"
            out.append(f"| {f['family']} | {f['kind']} | {F} | {f['index']} | {f['lambda_min']:.3e} | "
                       f"{f['recovered']} | {f['count']} | {f['fraction']:.3f} [{f['ci_low']:.3f}, "
                       f"{f['ci_high']:.3f}] | {cert} | {_fmt(f['cert_radius'], '.1e')} | {interval} |")
    return "\n".join(out) + "\n"


def write_report(run, cfg, rows):
    """Write ``census.md``, ``census.json``, ``cells.csv``, ``families.csv`` and the figures into ``run``."""
    write_text_atomic(run.path / "census.md", markdown(rows))
    write_json_atomic(run.path / "census.json", dict(cells=cell_rows(rows), families=family_rows(rows)))
    write_csv_atomic(run.path / "cells.csv", cell_rows(rows))
    fams = family_rows(rows)
    if fams:
        write_csv_atomic(run.path / "families.csv", fams)
    figures(run, cfg, rows)


def figures(run, cfg, rows):
    """``spurious_rate.png`` (rate against k, per activation and n - k, Wilson intervals), ``family_losses.png``
    (F of each family against k, marker area by basin fraction), ``basins.png`` (basin fractions per cell) and
    one ``curves-<cell>.png`` per cell (F against GD steps, coloured by family)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = run.figures_dir()
    cells = cell_rows(rows)
    fams = [r for r in rows if r.get("row_kind") == "family"]
    groups = {}
    for c in cells:
        groups.setdefault((c["activation"], c["n"] - c["k"]), []).append(c)

    fig, ax = plt.subplots(figsize=(6, 4))
    for (act, extra), cs in groups.items():
        ks = np.array([c["k"] for c in cs])
        rate = np.array([c["spurious_rate"] for c in cs])
        err = np.maximum(0.0, np.array([[c["spurious_rate"] - c["spurious_lo"] for c in cs],
                                        [c["spurious_hi"] - c["spurious_rate"] for c in cs]]))
        ax.errorbar(ks, 100 * rate, yerr=100 * err, marker="o", capsize=3, label=f"{act}, n = k + {extra}")
    ax.set_xlabel("teacher units k (d = k)")
    ax.set_ylabel("runs ending at F >= %g (%%), 95%% Wilson" % cfg.spurious)
    ax.set_title("spurious rate")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "spurious_rate.png", dpi=110)

    fig, ax = plt.subplots(figsize=(6, 4))
    for (act, extra), cs in groups.items():
        mine = [f for f in fams if f["activation"] == act and f["n"] - f["k"] == extra and f["F"] >= cfg.spurious]
        if mine:
            ax.scatter([f["k"] + 0.15 * extra for f in mine], [max(f["F"], FLOOR) for f in mine],
                       s=[20 + 400 * f["fraction"] for f in mine], alpha=0.6, label=f"{act}, n = k + {extra}")
    ax.set_yscale("log")
    ax.set_xlabel("teacher units k (d = k)")
    ax.set_ylabel("F at the family's critical point")
    ax.set_title("spurious families (area: basin fraction)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "family_losses.png", dpi=110)

    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(cells)), 4))
    for x, c in enumerate(cells):
        mine = sorted((f for f in fams if f["cell"] == c["cell"]), key=lambda f: -f["fraction"])
        bottom = 0.0
        for f in mine:
            colour = "tab:green" if f["kind"] == "global minimum" else (
                "tab:red" if f["kind"] == "spurious local minimum" else "tab:orange")
            ax.bar(x, f["fraction"], bottom=bottom, color=colour, edgecolor="white", linewidth=0.5)
            bottom += f["fraction"]
    ax.set_xticks(range(len(cells)), [c["cell"] for c in cells], rotation=60, fontsize=7)
    ax.set_ylabel("basin fraction (one block per family)")
    ax.set_title("basins: green global, red spurious minima, orange saddles / other")
    fig.tight_layout()
    fig.savefig(out / "basins.png", dpi=110)

    for c in cells:
        arrays = run.cell_arrays(c["cell"])
        _curves(plt, out / f"curves-{c['cell']}.png", arrays, c["cell"])
    plt.close("all")


def _curves(plt, path, arrays, title):
    """F against GD steps, one colour per family; the most common family drawn first, rarer ones on top."""
    steps, F, fam = arrays["curve_steps"], arrays["curve_F"], arrays["family_of"]
    fig, ax = plt.subplots(figsize=(6, 4))
    order = sorted(set(fam.tolist()), key=lambda f: -int(np.sum(fam == f)))
    colours = plt.get_cmap("tab10")
    for j, f in enumerate(order):
        for i in np.flatnonzero(fam == f)[:200]:
            ok = np.isfinite(steps[i])
            ax.plot(np.maximum(steps[i][ok], 1), np.maximum(F[i][ok], FLOOR), color=colours(j % 10), lw=0.6,
                    alpha=0.5, label=f"family {f} ({int(np.sum(fam == f))} runs)" if i == np.flatnonzero(fam == f)[0]
                    else None, zorder=2 + j)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GD steps")
    ax.set_ylabel(f"F (clipped at {FLOOR:g})")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summary_json(rows) -> str:
    """Cells and families as one JSON string (``earnshaw results --json``)."""
    return json.dumps(dict(cells=cell_rows(rows), families=family_rows(rows)), indent=2)
