"""The cost model of a Section 5 protocol: time a short run of every cell here, extrapolate to the full one.

A cell's GD cost is linear in its steps (every step is the same full-batch gradient), so timing ``probe``
steps of a compiled chunk, after one untimed call that compiles it, gives its seconds per step on this
hardware; the cell then costs ``seconds_per_step * steps`` plus its data and compile time. On ``N``
workers like this machine (a Ray cluster, or local processes) the cells are independent tasks, so the
run takes the makespan of scheduling them longest first on ``N`` machines (Graham's LPT rule, within
4/3 of the best schedule), never less than the longest cell.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from earnshaw.experiments.section5.cells import _cell_data, cell_name, pad_width
from earnshaw.experiments.section5.config import Section5Config
from earnshaw.experiments.section5.deep import make_train_chunk

__all__ = ["CellCost", "estimate", "makespan"]


@dataclasses.dataclass(frozen=True)
class CellCost:
    """The measured cost of one task of a protocol (a cell, or a packed depth).

    Attributes:
      name: the task (``d2_w5``, or ``packed_d2``).
      seconds_per_step: wall seconds of one GD step of all its seeds, measured.
      setup_seconds: data, first compile and first call, measured once.
      steps: the protocol's steps per run.
    """

    name: str
    seconds_per_step: float
    setup_seconds: float
    steps: int

    @property
    def seconds(self) -> float:
        """Predicted wall seconds of the whole task."""
        return self.setup_seconds + self.seconds_per_step * self.steps


def makespan(seconds: Sequence[float], workers: int) -> float:
    """Wall time of independent tasks on ``workers`` equal machines, longest first to the least loaded.

    >>> makespan([4.0, 3.0, 3.0, 2.0], 2)
    6.0
    >>> makespan([5.0, 1.0], 8)
    5.0
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    load = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        load[int(np.argmin(load))] += s
    return max(load)


def _time_task(cfg: Section5Config, depth: int, widths: Sequence[int], probe: int, repeats: int) -> tuple:
    """``(setup seconds, seconds per step)`` of GD on the seeds of ``widths`` at ``depth`` (packed if several)."""
    t0 = time.perf_counter()
    parts = [_cell_data(cfg, depth, w) for w in widths]
    if len(parts) == 1:
        data = parts[0]
    else:
        top = max(widths)
        params = [jax.numpy.concatenate(ws) for ws in zip(*(pad_width(p[0], top) for p in parts))]
        data = (params, *(jax.numpy.concatenate([p[i] for p in parts]) for i in range(1, 5)))
    chunk = make_train_chunk(probe, cfg.lr, cfg.activation, cfg.reduction)
    jax.block_until_ready(chunk(*data))  # compiles
    setup = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t1 = time.perf_counter()
        jax.block_until_ready(chunk(*data))
        best = min(best, time.perf_counter() - t1)
    return setup, best / probe


def estimate(cfg: Section5Config, *, probe: int = 100, repeats: int = 2,
             progress: Optional[Callable[[str], None]] = None) -> list:
    """Measure every task of ``cfg`` (each cell, or each depth when ``cfg.packed``) on this hardware.

    Args:
      cfg: the protocol to cost (its ``steps`` are extrapolated to, not run).
      probe: GD steps per timed call (one compiled chunk of this length).
      repeats: timed calls per task; the fastest is kept.
      progress: called with each task's name before it is timed.

    Returns:
      ``[CellCost, ...]`` in the run's order; ``sum(c.seconds)`` is the local run's time and
      :func:`makespan` of them the time on ``N`` workers.

    Example::

        costs = estimate(PRESETS["table2"]["full"], probe=50)
        hours = makespan([c.seconds for c in costs], workers=4) / 3600
    """
    probe = min(int(probe), cfg.steps)
    groups = ([(f"packed_d{dp}", dp, sorted(cfg.widths)) for dp in cfg.depths] if cfg.packed
              else [(cell_name(dp, w), dp, [w]) for dp, w in cfg.cells])
    out = []
    for name, depth, widths in groups:
        if progress is not None:
            progress(name)
        setup, per_step = _time_task(cfg, depth, widths, probe, repeats)
        out.append(CellCost(name=name, seconds_per_step=per_step, setup_seconds=setup, steps=cfg.steps))
    return out
