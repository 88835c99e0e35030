"""The paper's Section 5: deep teacher/student networks trained by full-batch GD (Figure 1, Table 2).

Protocol (paper, Section 5): a random teacher network with standard Gaussian
weights labels standard Gaussian inputs; a student of the same architecture,
initialised independently with standard Gaussian weights, runs gradient
descent on the empirical squared loss with step ``~1e-5`` for ``10^6``
iterations; the activation at every node, the output included, is the
sigmoid from -1 to 1. We report the test MSE on fresh samples (and the
training MSE, since the paper's text and captions disagree on which is shown).

The paper leaves these unspecified; our defaults (docs/math.md section 7), each an
option of :class:`Section5Config` and of ``earnshaw reproduce``:

=================  ===========================================================
input dim ``d``    10
``n_train``        10,000 (a fresh training set per seed)
``n_test``         10,000 fresh samples per seed
loss               ``sum_n (f(x_n) - y_n)^2``, no 1/2 (``reduction="sum"``), so
                   ``lr = 1e-5`` is a mean-loss step of ``0.1``
activation         ``sigmoid_pm1`` = ``2 sigmoid - 1`` = ``tanh(z/2)``; ``tanh`` is an option
biases             none
seeds              5 per cell; seed ``s`` of cell (depth, width) has its own teacher,
                   student, training and test sets, from
                   ``fold_in(fold_in(fold_in(key(seed), depth), width), s)``
dtype              float32 (see :mod:`earnshaw.experiments.section5.deep`)
=================  ===========================================================

A run lives in a :class:`~earnshaw.store.RunFolder` (``runs/table2-<time>/``) whose cells are the
(depth, width) pairs: ``cells/d<depth>_w<width>.parquet`` (the summary row, the commit point) and
``.json`` (the full record: per-seed errors and curves), per-chunk parameter checkpoints under
``checkpoints/`` while a cell runs, and at the end ``table2.csv`` / ``figure1.csv`` and PNG figures.
Running again with ``resume=`` that folder skips finished cells and continues unfinished ones from
their last checkpoint; the result is bit-for-bit that of an uninterrupted run. Cells run on any
backend of :mod:`earnshaw.runtime` (in-cell checkpoints need a file system the workers share).

The package: :mod:`.deep` (deep networks and their batched training), :mod:`.config` (the config
and presets), :mod:`.cells` (one cell), :mod:`.figures`.
"""
from __future__ import annotations

import os
import pathlib
from typing import Callable, Optional

from earnshaw import runtime
from earnshaw.experiments.section5.cells import (cell_keys, cell_name, run_cell, run_cell_task, run_depth_packed,
                                                 run_depth_task, summary_row)
from earnshaw.experiments.section5.cells import _cell_data  # noqa: F401 (used by the benchmarks and tests)
from earnshaw.experiments.section5.config import (PAPER_FIGURE1_FINAL, PAPER_TABLE2, PRESETS, TARGETS,
                                                  ReproduceConfig, Section5Config)
from earnshaw.experiments.section5.deep import seed_devices
from earnshaw.experiments.section5.figures import figure1_figure, table2_figure
from earnshaw.store import RunFolder, RunFolderError, write_csv_atomic

__all__ = ["Section5Config", "ReproduceConfig", "PRESETS", "TARGETS", "PAPER_TABLE2", "PAPER_FIGURE1_FINAL",
           "run_cell", "reproduce", "reproduce_table2", "reproduce_figure1", "table2_figure", "figure1_figure",
           "run_depth_packed", "cell_keys", "load_run_config", "load_rows", "COMMAND"]

COMMAND = "reproduce"


def _open(path) -> RunFolder:
    try:
        return RunFolder.open(path, command=COMMAND)
    except RunFolderError as err:
        raise ValueError(f"{path} is not a reproduction run folder ({err})") from None


def load_run_config(path: os.PathLike) -> tuple:
    """``(target, Section5Config)`` stored in a reproduction run folder.

    Raises FileNotFoundError for a missing folder, ValueError for one that is not a reproduction."""
    stored = ReproduceConfig.model_validate(_open(path).config_data())
    return stored.target, stored.config


def load_rows(path: os.PathLike) -> tuple:
    """``(target, config, rows)`` of a reproduction run folder: the summary row of every finished cell,
    by depth and width (what :func:`reproduce` returns as ``rows``)."""
    target, cfg = load_run_config(path)
    run = _open(path)
    rows = [run.cell_rows(cell_name(*c))[0] for c in sorted(cfg.cells) if run.done(cell_name(*c))]
    return target, cfg, [{k: v for k, v in r.items() if k not in ("cell", "cell_index")} for r in rows]


def reproduce(target: str, cfg: Optional[Section5Config] = None, *, out: os.PathLike = "runs",
              resume: Optional[os.PathLike] = None, progress: Optional[Callable[[dict], None]] = None,
              workers: int = 1, backend: str = "local", address: Optional[str] = None,
              checkpoint_every: float = 30.0, figures: bool = True) -> dict:
    """Run (or resume) a Section 5 reproduction in a run folder.

    Args:
      target: ``"table2"`` or ``"figure1"``.
      cfg: the experiment (default: the ``full`` preset of ``target``). Ignored when resuming,
        which uses the folder's ``config.toml``.
      out: parent folder of the new run folder.
      resume: an existing run folder to continue.
      progress: called with event dicts: ``{"event": "start", "cells", "steps", "done", "run_dir"}``,
        ``{"event": "skip", depth, width}`` for finished cells, per-chunk ``"chunk"`` events
        (see :func:`run_cell`; not from Ray workers) and ``{"event": "cell", depth, width, "row"}``
        when a cell is committed.
      workers: local backend: cells trained at the same time, each in its own ``spawn`` process.
      backend, address: where the cells run (:mod:`earnshaw.runtime`).
      checkpoint_every: seconds between parameter checkpoints within a cell.
      figures: write the PNG figures.

    Returns:
      ``{"run_dir", "config", "rows": [summary dict per cell], "cells": {name: record}}``.

    Example::

        res = reproduce("figure1", PRESETS["figure1"]["ci"], out="runs")
        res["rows"][0]["test_mse_mean"]
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    runtime.check_backend(backend, address, workers)
    if resume is not None:
        path = pathlib.Path(resume)
        stored_target, cfg = load_run_config(path)
        if stored_target != target:
            raise ValueError(f"{path} is a {stored_target} run, not {target}")
        run = _open(path)
    else:
        cfg = cfg if cfg is not None else PRESETS[target]["full"]
        run = RunFolder.create(out, target, command=COMMAND, config=ReproduceConfig(target=target, config=cfg))
    emit = progress or (lambda event: None)
    cfg_json = cfg.model_dump_json()
    index = {c: i for i, c in enumerate(sorted(cfg.cells))}
    if cfg.packed:
        # one task per depth; it commits every (depth, width) cell of that depth
        tasks = [runtime.Task(id=f"packed_d{dp}", fn=run_depth_task, index=dp, label=f"depth {dp} (packed)",
                              args=(cfg_json, dp, str(run.checkpoint(f"packed_d{dp}")), checkpoint_every),
                              cells=tuple(cell_name(dp, w) for w in cfg.widths))
                 for dp in cfg.depths]
    else:
        tasks = [runtime.Task(id=cell_name(dp, w), fn=run_cell_task, index=index[(dp, w)],
                              label=f"depth {dp} width {w}",
                              args=(cfg_json, dp, w, str(run.checkpoint(cell_name(dp, w))), checkpoint_every))
                 for dp, w in cfg.cells]
    cell_of = {cell_name(*c): c for c in cfg.cells}
    records = {}

    def commit(task, result):
        for name, rec in (result.items() if cfg.packed else [(task.id, result)]):
            row = dict(summary_row(rec, target), cell=name, cell_index=index[cell_of[name]])
            run.commit(name, [row], record=rec, seconds=rec["wall_seconds_this_session"])
            records[cell_of[name]] = rec

    def on_event(ev):
        if ev["event"] == "start":
            done = sorted(c for c in cfg.cells if run.done(cell_name(*c)))
            emit({"event": "start", "cells": cfg.cells, "steps": cfg.steps, "done": done, "run_dir": str(run.path)})
            for depth, width in done:
                emit({"event": "skip", "depth": depth, "width": width})
        elif ev["event"] == "cell":
            for name, rec in (ev["result"].items() if cfg.packed else [(ev["cell"], ev["result"])]):
                depth, width = cell_of[name]
                emit({"event": "cell", "depth": depth, "width": width, "row": summary_row(rec, target),
                      "done": ev["done"], "total": ev["total"]})
        else:
            emit(ev)

    out_ = runtime.run_cells(run, tasks, commit, backend=backend, address=address, workers=workers,
                             progress=on_event)
    for c in cfg.cells:
        if c not in records:
            records[c] = run.cell_record(cell_name(*c))
    # by depth, then width, whatever order the cells ran in (--widths 125,5 runs 125 first)
    rows = [summary_row(records[c], target) for c in sorted(cfg.cells)]
    run.write_results()
    write_csv_atomic(run.path / f"{target}.csv", rows)
    # the CPU devices a cell's seeds were split over in this session (workers train on one each)
    run.session["devices_per_cell"] = 1 if (workers > 1 or backend != "local") else seed_devices(cfg.seeds)
    run.update_meta(target=target, config=cfg.to_dict(), effective_mean_loss_step=cfg.effective_step,
                    dtype="float32", workers=workers, seconds=out_["seconds"])
    if figures:
        # matplotlib is heavy and only needed for figures: imported when they are written
        import matplotlib.pyplot as plt

        fig = table2_figure(rows) if target == "table2" else figure1_figure([records[c] for c in cfg.cells])
        fig.savefig(run.path / f"{target}.png", dpi=110)
        plt.close(fig)
    return {"run_dir": str(run.path), "config": cfg, "rows": rows,
            "cells": {cell_name(*c): records[c] for c in cfg.cells}}


def reproduce_table2(cfg: Optional[Section5Config] = None, **kwargs) -> dict:
    """Table 2 (test error by depth x width); see :func:`reproduce`. ``cfg`` defaults to the full preset."""
    return reproduce("table2", cfg, **kwargs)


def reproduce_figure1(cfg: Optional[Section5Config] = None, **kwargs) -> dict:
    """Figure 1 (depth 2, test error against iterations per width); see :func:`reproduce`."""
    return reproduce("figure1", cfg, **kwargs)
