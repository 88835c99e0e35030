"""One cell of a sweep: every seed in one batched solver call, then Newton polish and the landscape verdicts."""
from __future__ import annotations

import json
import math
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher
from earnshaw.experiments.config import ExperimentConfig, _solvers, stable_hash
from earnshaw.experiments.sweep.grids import cell_keys
from earnshaw.landscape.analyze import analyze
from earnshaw.landscape.critical import refine
from earnshaw.network import random_student, random_teacher
from earnshaw.problem import Problem
from earnshaw.trajectory import STATUS

__all__ = ["run_cell", "run_cell_task", "build_teacher"]


def build_teacher(cfg: ExperimentConfig, key) -> Teacher:
    """The cell's teacher: random (``teacher.convention``) with ``key``, or the explicit one the config names.

    Example::

        build_teacher(cfg, jax.random.key(0)).w.shape   # (teacher.k, teacher.d)
    """
    t = cfg.teacher
    explicit = t.arrays()
    if explicit is not None:
        w, b = explicit
        bias = t.bias_array()
        return Teacher(b=jnp.asarray(b), w=jnp.asarray(w), bias=None if bias is None else jnp.asarray(bias))
    scale = t.scale if t.scale is not None else 1.0 / math.sqrt(t.d)
    return random_teacher(key, t.d, t.k, convention=t.convention, scale=scale, c=t.c, bias_scale=t.bias_scale)


def _flat_config(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_config(value, path + "."))
        elif isinstance(value, list):
            out[path] = json.dumps(value)  # one column type whether a cell gives one value or a list
        elif value is not None:
            out[path] = value
    return out


def run_cell(cfg: ExperimentConfig, cell_id: Optional[str] = None) -> dict:
    """Run one cell: all ``cfg.seeds`` students in one batched solver call, then refine and analyze.

    Needs float64 (``jax.config.update("jax_enable_x64", True)``): the analysis resolves
    gradient norms of ``1e-9`` and near-zero Hessian eigenvalues.

    Args:
      cfg: the cell's :class:`ExperimentConfig` (its grid is ignored).
      cell_id: id written into the rows (default: the stable hash of ``cfg``).

    Returns:
      ``{"rows": [one dict per seed], "arrays": {name: ndarray}, "timings": {...}}``.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("a sweep analyses critical points and needs float64: "
                           "call jax.config.update('jax_enable_x64', True) first")
    cell_id = cell_id or stable_hash(cfg.cell_dict())[:12]
    start = time.perf_counter()
    pot = cfg.build_potential()
    t, s = cfg.teacher, cfg.student
    d, k, ks = t.d, t.k, cfg.student_k
    tkey, skey, akey = cell_keys(cfg)
    teacher = build_teacher(cfg, tkey)
    seed_keys = jax.vmap(lambda i: jax.random.fold_in(skey, i))(jnp.arange(cfg.seeds))
    students = jax.vmap(lambda key: random_student(key, d, ks, scale=s.init_scale / math.sqrt(d),
                                                   a_scale=s.a_scale, bias_scale=s.bias_scale))(seed_keys)
    if s.a is not None:  # given output weights instead of random ones
        a = jnp.broadcast_to(jnp.asarray(s.a, students.a.dtype), students.a.shape)
        students = Student(a=a, theta=students.theta, bias=students.bias)
    if cfg.input_mean is not None or cfg.input_cov is not None:
        # inputs N(mu, Sigma) live in the problem: the solvers and the analysis take (problem, students)
        teacher_args = (Problem(pot, teacher, input_mean=cfg.input_mean, input_cov=cfg.input_cov),)
    else:
        teacher_args = (pot, teacher)
    name, opts = cfg.algorithm.name, dict(cfg.algorithm.options)
    solver = _solvers()[name]
    if name in ("perturbed_gd", "nodewise_descent"):
        traj = solver(akey, *teacher_args, students, on_divergence="ignore", **opts)
    else:
        traj = solver(*teacher_args, students, on_divergence="ignore", **opts)
    traj = jax.tree_util.tree_map(np.asarray, traj)
    t_solve = time.perf_counter() - start

    t0 = time.perf_counter()
    an = cfg.analysis
    point = jax.tree_util.tree_map(jnp.asarray, traj.final)
    objective = opts.get("objective")
    if an.refine:
        point, newton_gn = refine(*teacher_args, point, objective=objective, train=opts.get("train"))
        newton_gn = np.asarray(newton_gn)
    else:
        newton_gn = np.full(cfg.seeds, np.nan)
    report = analyze(*teacher_args, point, objective=objective, train=opts.get("train"), gtol=an.gtol, htol=an.htol,
                     eps=an.eps, loss_tol=an.loss_tol, match_tol=an.match_tol)
    t_analyze = time.perf_counter() - t0
    t_cell = time.perf_counter() - start

    config_cols = _flat_config(cfg.cell_dict())
    config_cols["master_seed"] = config_cols.pop("seed")  # "seed" is the seed index within the cell
    rows = []
    for i, r in enumerate(report.rows()):
        row = dict(cell=cell_id, seed=i, success=bool(r["recovered"] == k), **r,
                   status=STATUS.get(int(traj.status[i]), str(int(traj.status[i]))),
                   algo_loss=float(traj.final_loss[i]), algo_grad_norm=float(traj.final_grad_norm[i]),
                   n_steps=int(traj.n_steps[i]), n_grad_evals=int(traj.n_grad_evals[i]),
                   newton_grad_norm=float(newton_gn[i]))
        row.update(config_cols)
        row.update(time_cell_s=t_cell, time_solve_s=t_solve, time_analyze_s=t_analyze)
        rows.append(row)
    n_paths = min(cfg.save_paths, cfg.seeds)
    arrays = dict(ts=traj.ts, losses=traj.losses, grad_norms=traj.grad_norms, saved=traj.saved,
                  path_theta=traj.params.theta[:n_paths], path_a=traj.params.a[:n_paths],
                  final_theta=np.asarray(report.point.theta), final_a=np.asarray(report.point.a),
                  eigenvalues=np.asarray(report.eigenvalues), teacher_w=np.asarray(teacher.w),
                  teacher_b=np.asarray(teacher.b))
    if students.bias is not None:
        arrays.update(path_bias=traj.params.bias[:n_paths], final_bias=np.asarray(report.point.bias))
    if teacher.bias is not None:
        arrays.update(teacher_bias=np.asarray(teacher.bias))
    return dict(rows=rows, arrays={key: np.ascontiguousarray(v) for key, v in arrays.items()},
                timings=dict(cell_s=t_cell, solve_s=t_solve, analyze_s=t_analyze))


def run_cell_task(cell_json: str, cell_id: str, progress=None) -> dict:
    """A runtime task (:mod:`earnshaw.runtime`): one cell from its JSON config, in any process.

    An entry point of worker processes, so it turns float64 on here (the analysis needs it)."""
    jax.config.update("jax_enable_x64", True)
    return run_cell(ExperimentConfig.model_validate_json(cell_json), cell_id)
