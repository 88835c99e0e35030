"""The grid of a sweep: its cells in a deterministic order, their stable ids and their PRNG keys.

A sweep expands the config's grid into cells (the last axis varies fastest). Each cell's id is a
stable hash of its full config, and its PRNG keys come from ``(master seed, cell config)`` alone
(:func:`cell_keys`), so results do not depend on the backend, on the order the cells run in, or on
how many other cells there are.
"""
from __future__ import annotations

from typing import List

import jax

from earnshaw.experiments.config import ConfigError, ExperimentConfig, expand_grid, stable_hash

__all__ = ["Cell", "cells_of", "cell_keys"]


class Cell:
    """One grid point: ``id`` (stable hash), ``index`` (sweep order), ``params`` (axis path -> value),
    ``config`` (the cell's :class:`ExperimentConfig`, no grid).

    Example::

        cells = cells_of(load_config("examples/sweep_erf.toml"))
        cells[0].id, cells[0].label()   # ('3f1c...', 'teacher.k=2, student.init_scale=0.5')
    """

    __slots__ = ("id", "index", "params", "config")

    def __init__(self, index: int, params: dict, config: ExperimentConfig):
        self.index = index
        self.config = config
        # the values as the validated config holds them (e.g. 1 -> 1.0 for a float setting)
        self.params = {path: _get_path(config.model_dump(mode="json"), path) for path in params}
        self.id = stable_hash(config.cell_dict())[:12]

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items()) or "single cell"

    def __repr__(self):
        return f"Cell({self.id}, {self.label()})"


def _get_path(data: dict, path: str):
    node = data
    for p in path.split("."):
        node = node[p]
    return node


def cells_of(cfg: ExperimentConfig) -> List[Cell]:
    """The cells of ``cfg`` in sweep order; two grid points with the same resolved config are an error."""
    cells = [Cell(i, params, c) for i, (params, c) in enumerate(expand_grid(cfg))]
    seen = {}
    for c in cells:
        if c.id in seen:
            raise ConfigError(f"grid: cells {seen[c.id].label()!r} and {c.label()!r} have the same config")
        seen[c.id] = c
    return cells


def _fold(key, *parts):
    """Fold a stable 31-bit hash of ``parts`` into ``key``."""
    return jax.random.fold_in(key, int(stable_hash(list(parts))[:8], 16) & 0x7FFFFFFF)


def cell_keys(cfg: ExperimentConfig):
    """``(teacher_key, student_key, algorithm_key)`` of a cell, from the master seed and the cell's settings.

    The teacher key folds in the teacher settings; the student key the potential, teacher and student
    settings; the algorithm key (perturbations, random node-wise starts) those and the algorithm. So
    cells that differ only in the algorithm or the analysis start from the same students (paired
    comparisons), and seed ``i`` of a cell (key ``fold_in(student_key, i)``) does not depend on ``seeds``.
    With ``student.paired = true`` the student key leaves the activation (or potential) out as well,
    so cells that differ only in the activation start from the same students too.

    Example::

        tkey, skey, akey = cell_keys(cells_of(cfg)[0].config)
    """
    data = cfg.model_dump(mode="json")
    problem = {k: data[k] for k in ("activation", "potential", "potential_params", "teacher", "student")}
    start = problem
    if data["student"].get("paired"):
        # the starts depend only on what shapes them: the teacher's size and the student settings
        start = {"teacher": data["teacher"], "student": data["student"]}
    root = jax.random.key(cfg.seed)
    teacher_key = _fold(root, "teacher", data["teacher"])
    student_key = _fold(root, "student", start)
    algorithm_key = _fold(root, "algorithm", problem, data["algorithm"])
    return teacher_key, student_key, algorithm_key
