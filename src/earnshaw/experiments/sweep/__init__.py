"""Sweeps (``earnshaw run`` and ``earnshaw sweep``): a grid of cells, each a batch of student seeds run as one
solver call.

The pieces: :mod:`.grids` (cells, ids, PRNG keys), :mod:`.cells` (one cell: solve, refine,
analyze), :mod:`.summaries` (success rates, Wilson intervals), :mod:`.figures`; the backends and
the run folder are the shared runtime (:mod:`earnshaw.runtime`, :class:`earnshaw.store.RunFolder`).

A sweep's run folder holds, besides the common files (``config.toml``, ``meta.json``, ``run.log``,
``results.parquet``): ``cells/<cell_id>.parquet`` (one row per seed: config, outcome, timings; the
commit point of a cell) and ``cells/<cell_id>.npz`` (losses over time for every seed, parameter paths
for ``save_paths`` seeds, end-point Hessian spectra, the teacher; read with ``allow_pickle=False``).
Running the sweep again on the same folder (``--resume``) skips every committed cell.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import jax

from earnshaw import runtime
from earnshaw.experiments.config import ConfigError, ExperimentConfig, parse_config
from earnshaw.experiments.sweep.cells import build_teacher, run_cell, run_cell_task
from earnshaw.experiments.sweep.figures import write_figures
from earnshaw.experiments.sweep.grids import Cell, cell_keys, cells_of
from earnshaw.experiments.sweep.summaries import TIME_COLUMNS, summarise, wilson_interval
from earnshaw.runtime import BACKENDS
from earnshaw.store import RunFolder, RunFolderError

__all__ = ["Cell", "cells_of", "cell_keys", "run_cell", "run_cell_task", "build_teacher", "run_sweep",
           "open_run", "load_rows", "load_cell_arrays", "load_run_config", "rebuild_results", "summarise",
           "wilson_interval", "write_figures", "BACKENDS", "TIME_COLUMNS", "COMMAND"]

#: The command name recorded in a sweep's (or single run's) ``meta.json``.
COMMAND = "sweep"


def open_run(run_dir) -> RunFolder:
    """The sweep run folder at ``run_dir`` (:class:`ConfigError` if it is none)."""
    try:
        return RunFolder.open(run_dir, command=COMMAND)
    except (FileNotFoundError, RunFolderError) as err:
        raise ConfigError(f"{run_dir} is not a sweep run folder ({err})") from None


def load_run_config(run_dir) -> ExperimentConfig:
    """The validated config stored in a sweep run folder."""
    return parse_config(open_run(run_dir).config_data())


def load_rows(run_dir, *, from_cells: bool = False) -> list:
    """Rows of a run: ``results.parquet`` (or, with ``from_cells``, every committed cell), in sweep order."""
    return RunFolder.open(run_dir).rows(from_cells=from_cells)


def rebuild_results(run_dir) -> int:
    """Rewrite ``results.parquet`` atomically from the committed cells; returns the number of rows."""
    return RunFolder.open(run_dir).write_results()


def load_cell_arrays(run_dir, cell_id: str) -> dict:
    """The arrays a cell saved (``ts``, ``losses``, ``path_theta``, ``eigenvalues``, ``teacher_w``, ...)."""
    return RunFolder.open(run_dir).cell_arrays(cell_id)


def _commit(run: RunFolder, cells: dict):
    def commit(task: runtime.Task, result: dict):
        cell = cells[task.id]
        params = {f"param.{k}": v for k, v in cell.params.items()}
        rows = [dict(r, cell_index=cell.index, **params) for r in result["rows"]]
        run.commit(cell.id, rows, arrays=result["arrays"], seconds=result["timings"]["cell_s"])
    return commit


def run_sweep(cfg: ExperimentConfig, run_dir, *, backend: str = "local", address: Optional[str] = None,
              workers: int = 1, progress: Optional[Callable[[dict], None]] = None, figures: bool = True,
              rebuild_every_s: float = 5.0, invoked_as: str = "sweep") -> dict:
    """Run (or continue) a sweep in ``run_dir``.

    Cells already committed in ``run_dir`` are skipped, so calling this again on a folder that a
    killed sweep left behind finishes the remaining cells and recomputes none.

    Args:
      cfg: the validated config (see :func:`earnshaw.experiments.config.load_config`).
      run_dir: the run folder (created if needed); if it holds a run, its config must equal ``cfg``.
      backend: ``"local"`` or ``"ray"`` (see :mod:`earnshaw.runtime`); workers: local processes.
      address: Ray cluster address (``"127.0.0.1:6379"``, ``"ray://host:10001"``, ``"auto"``);
        None starts a local Ray.
      progress: receives the runtime's events (:func:`earnshaw.runtime.run_cells`).
      figures: write the figures at the end (:func:`write_figures`).
      rebuild_every_s: rebuild ``results.parquet`` after a cell at most this often (and always at the end).
      invoked_as: the command recorded in the session (``"run"`` or ``"sweep"``).

    Returns:
      ``{"run_dir", "cells": [ids in order], "computed": [ids computed now], "skipped": [...],
      "summary": per-cell rows of :func:`summarise`, "seconds"}``.

    Example::

        jax.config.update("jax_enable_x64", True)
        out = run_sweep(load_config("examples/sweep_erf.toml"), "runs/erf")
    """
    runtime.check_backend(backend, address, workers)
    if not jax.config.jax_enable_x64:
        raise RuntimeError("a sweep analyses critical points and needs float64: "
                           "call jax.config.update('jax_enable_x64', True) first")
    cells = cells_of(cfg)  # validates the whole grid before the folder exists
    try:
        run = RunFolder.at(run_dir, cfg.name, command=COMMAND, config=cfg)
    except RunFolderError as err:
        raise ConfigError(str(err)) from None
    if "cells" not in run.meta:
        run.update_meta(cells=[dict(id=c.id, index=c.index, params=c.params) for c in cells])
    by_id = {c.id: c for c in cells}
    tasks = [runtime.Task(id=c.id, fn=run_cell_task, args=(c.config.model_dump_json(), c.id), label=c.label(),
                          index=c.index) for c in cells]
    last = [time.perf_counter()]

    def rebuild(task, result):
        if time.perf_counter() - last[0] >= rebuild_every_s:
            run.write_results()
            last[0] = time.perf_counter()

    out = runtime.run_cells(run, tasks, _commit(run, by_id), backend=backend, address=address, workers=workers,
                            progress=progress, after_cell=rebuild)
    run.write_results()
    sessions = run.meta["sessions"]
    run.session["invoked_as"] = invoked_as
    run.update_meta(timings={"total_s": sum(s.get("seconds") or 0.0 for s in sessions)})
    rows = run.rows()
    if figures:
        t0 = time.perf_counter()
        write_figures(run.path, cfg=cfg, rows=rows)
        run.session["figures_s"] = time.perf_counter() - t0
        run.save_meta()
    return {"run_dir": str(run.path), "cells": [c.id for c in cells], "computed": out["computed"],
            "skipped": out["skipped"], "summary": summarise(rows, cfg.axes()), "seconds": out["seconds"]}
