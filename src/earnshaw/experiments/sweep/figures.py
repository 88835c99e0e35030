"""Figures of a sweep or run folder: potential profile, per-cell loss curves, trajectories, Hessian
spectra, and the success-rate heat map over the grid."""
from __future__ import annotations

import os
import pathlib
from typing import List, Optional

from earnshaw.experiments.config import ExperimentConfig, parse_config
from earnshaw.experiments.sweep.grids import cells_of
from earnshaw.store import RunFolder

__all__ = ["write_figures"]


def write_figures(run_dir, *, cfg: Optional[ExperimentConfig] = None, rows: Optional[list] = None,
                  max_cells: int = 12) -> List[pathlib.Path]:
    """Write the run's figures into ``figures/``: potential and force profile, and per cell
    loss curves, trajectories (teacher plane) and end-point Hessian spectra; for sweeps the
    success-rate heat map over the first two grid axes with more than one value."""
    # matplotlib is heavy and only needed here: imported when figures are written
    import matplotlib.pyplot as plt

    from earnshaw import plot

    run = RunFolder.open(run_dir)
    cfg = cfg or parse_config(run.config_data())
    rows = rows if rows is not None else run.rows()
    out_dir = run.figures_dir()
    written = []

    def save(fig, path):
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path)

    cells = cells_of(cfg)
    save(plot.potential_profile(cells[0].config.build_potential(), dim=max(cfg.teacher.d, 2)),
         out_dir / "potential.png")
    verdicts = {}
    for r in rows:
        verdicts.setdefault(r["cell"], {})[r["seed"]] = r["verdict"]
    single = len(cells) == 1
    for cell in cells[:max_cells]:
        if cell.id not in verdicts:
            continue
        arr = run.cell_arrays(cell.id)
        labels = [verdicts[cell.id].get(i, "?") for i in range(arr["losses"].shape[0])]
        folder = out_dir if single else out_dir / "cells"
        folder.mkdir(exist_ok=True)
        prefix = "" if single else f"{cell.id}-"
        title = cell.label() if not single else f"{cfg.potential_name}, d={cfg.teacher.d}, k={cfg.teacher.k}"
        save(plot.loss_curves(arr["ts"], arr["losses"], labels=labels, title=f"loss: {title}"),
             folder / f"{prefix}loss_curves.png")
        if arr["path_theta"].shape[0]:
            save(plot.trajectories_2d(arr["path_theta"][:3], arr["teacher_w"],
                                      title=f"electrons (3 seeds) and protons: {title}"),
                 folder / f"{prefix}trajectories.png")
        save(plot.hessian_spectra(arr["eigenvalues"], labels=labels, title=f"Hessian spectra: {title}"),
             folder / f"{prefix}hessian_spectra.png")
    axes = [a for a in cfg.axes() if len(cfg.grid[a]) > 1]
    if axes and rows:
        keyed = [dict(r, **{a: r.get(f"param.{a}") for a in axes}) for r in rows]
        save(plot.success_heatmap(keyed, axes[0], axes[1] if len(axes) > 1 else None,
                                  title=f"{cfg.name}: success rate ({cfg.seeds} seeds per cell)"),
             out_dir / "success_heatmap.png")
    return written
