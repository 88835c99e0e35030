"""Sweeps: a grid of cells, each cell a batch of student seeds run as one solver call.

A sweep expands the config's grid into cells in a deterministic order (the last axis
varies fastest). Each cell's id is a stable hash of its full config, and its PRNG keys
come from ``(master seed, cell config)`` alone: the teacher key from the teacher's
settings (cells that share a teacher config share the teacher), the student keys from
the cell config folded with the seed index. Results therefore do not depend on the
backend, on the order the cells run in, or on how many other cells there are.

A cell runs the algorithm on all its seeds in one batched call, polishes the end
points with Newton (:func:`earnshaw.refine`) and classifies them (:func:`earnshaw.analyze`).
The run folder holds::

    config.toml              the validated config (defaults filled in)
    cells/<cell_id>.parquet  one row per seed: config, outcome, timings   (the commit point of a cell)
    cells/<cell_id>.npz      losses over time for every seed, parameter paths for ``save_paths`` seeds,
                             end-point Hessian spectra, the teacher             (read with allow_pickle=False)
    cells.log                one line per cell computed: time, session, cell id, seconds
    results.parquet          all cells' rows, rebuilt from cells/ (after cells and at the end)
    meta.json                versions, platform, git revision, sessions with their timings
    figures/                 PNGs

Every file is written to a temporary name and renamed into place, so ``kill -9`` at any
moment loses at most the cell being computed and never leaves a half-written file; running
the sweep again on the same folder (``--resume``) skips every cell whose Parquet file exists.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import pathlib
import platform
import socket
import subprocess
import sys
import time
import uuid
from typing import Callable, Iterator, List, Optional

import numpy as np

from earnshaw import store
from earnshaw.experiments.config import (ConfigError, ExperimentConfig, _solvers, canonical_json, expand_grid,
                                         parse_config, stable_hash, to_toml)

__all__ = ["Cell", "cells_of", "run_cell", "run_sweep", "load_rows", "load_cell_arrays", "summarise",
           "wilson_interval", "rebuild_results", "write_figures", "BACKENDS", "TIME_COLUMNS", "load_run_config"]

BACKENDS = ("local", "ray")
#: Columns that hold wall-clock timings (they differ between otherwise identical runs).
TIME_COLUMNS = ("time_cell_s", "time_solve_s", "time_analyze_s")


class Cell:
    """One grid point: ``id`` (stable hash), ``params`` (axis path -> value), ``config`` (no grid)."""

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


# --- one cell ------------------------------------------------------------------------------------------------

def _fold(key, *parts):
    """Fold a stable 31-bit hash of ``parts`` into ``key``."""
    import jax

    return jax.random.fold_in(key, int(stable_hash(list(parts))[:8], 16) & 0x7FFFFFFF)


def cell_keys(cfg: ExperimentConfig):
    """``(teacher_key, student_key, algorithm_key)`` of a cell, from the master seed and the cell's settings.

    The teacher key folds in the teacher settings; the student key the potential, teacher and student
    settings; the algorithm key (perturbations, random node-wise starts) those and the algorithm. So
    cells that differ only in the algorithm or the analysis start from the same students (paired
    comparisons), and seed ``i`` of a cell (key ``fold_in(student_key, i)``) does not depend on ``seeds``.
    """
    import jax

    data = cfg.model_dump(mode="json")
    problem = {k: data[k] for k in ("activation", "potential", "potential_params", "teacher", "student")}
    root = jax.random.key(cfg.seed)
    teacher_key = _fold(root, "teacher", data["teacher"])
    student_key = _fold(root, "student", problem)
    algorithm_key = _fold(root, "algorithm", problem, data["algorithm"])
    return teacher_key, student_key, algorithm_key


def _flat_config(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_config(value, path + "."))
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
    import jax
    import jax.numpy as jnp

    from earnshaw.landscape.analyze import analyze
    from earnshaw.landscape.critical import refine
    from earnshaw.network import random_student, random_teacher

    if not jax.config.jax_enable_x64:
        raise RuntimeError("a sweep analyses critical points and needs float64: "
                           "call jax.config.update('jax_enable_x64', True) first")
    cell_id = cell_id or stable_hash(cfg.cell_dict())[:12]
    start = time.perf_counter()
    pot = cfg.build_potential()
    t, s = cfg.teacher, cfg.student
    d, k, ks = t.d, t.k, cfg.student_k
    tkey, skey, akey = cell_keys(cfg)
    teacher = random_teacher(tkey, d, k, convention=t.convention, scale=t.scale / math.sqrt(d), c=t.c)
    seed_keys = jax.vmap(lambda i: jax.random.fold_in(skey, i))(jnp.arange(cfg.seeds))
    students = jax.vmap(lambda key: random_student(key, d, ks, scale=s.init_scale / math.sqrt(d),
                                                   a_scale=s.a_scale))(seed_keys)
    name, opts = cfg.algorithm.name, dict(cfg.algorithm.options)
    solver = _solvers()[name]
    if name == "perturbed_gd":
        traj = solver(akey, pot, teacher, students, on_divergence="ignore", **opts)
    elif name == "nodewise_descent":
        traj = solver(akey, pot, teacher, students, on_divergence="ignore", **opts)
    else:
        traj = solver(pot, teacher, students, on_divergence="ignore", **opts)
    traj = jax.tree_util.tree_map(np.asarray, traj)
    t_solve = time.perf_counter() - start

    t0 = time.perf_counter()
    an = cfg.analysis
    point = jax.tree_util.tree_map(jnp.asarray, traj.final)
    objective = opts.get("objective")
    if an.refine:
        point, newton_gn = refine(pot, teacher, point, objective=objective, train=opts.get("train"))
        newton_gn = np.asarray(newton_gn)
    else:
        newton_gn = np.full(cfg.seeds, np.nan)
    report = analyze(pot, teacher, point, objective=objective, train=opts.get("train"), gtol=an.gtol, htol=an.htol,
                     eps=an.eps, loss_tol=an.loss_tol, match_tol=an.match_tol)
    t_analyze = time.perf_counter() - t0
    t_cell = time.perf_counter() - start

    from earnshaw.trajectory import STATUS

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
    return dict(rows=rows, arrays={key: np.ascontiguousarray(v) for key, v in arrays.items()},
                timings=dict(cell_s=t_cell, solve_s=t_solve, analyze_s=t_analyze))


# --- files -----------------------------------------------------------------------------------------------------

def _write_npz_atomic(path: pathlib.Path, arrays: dict):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)


def _finish_cell(run: pathlib.Path, cell: Cell, result: dict, session: str):
    """Write a computed cell: arrays first, then the Parquet file (the commit point), then the log line."""
    cells = run / "cells"
    _write_npz_atomic(cells / f"{cell.id}.npz", result["arrays"])
    params = {f"param.{k}": v for k, v in cell.params.items()}
    rows = [dict(r, cell_index=cell.index, **params) for r in result["rows"]]
    store.write_parquet_atomic(cells / f"{cell.id}.parquet", rows)
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    with open(run / "cells.log", "a") as fh:  # one short O_APPEND write per line
        fh.write(f"{stamp} {session} done {cell.id} {result['timings']['cell_s']:.3f}\n")


def _clean_tmp(run: pathlib.Path):
    """Remove temporary files a killed process left behind (they are never read)."""
    for folder in (run, run / "cells"):
        for tmp in folder.glob(".*.tmp"):
            try:
                tmp.unlink()
            except OSError:  # pragma: no cover
                pass


def load_rows(run_dir, *, from_cells: bool = False) -> list:
    """Rows of a run: ``results.parquet`` (or, with ``from_cells``, every finished cell file), in sweep order."""
    run = pathlib.Path(run_dir)
    if not from_cells and (run / "results.parquet").exists():
        return store.read_parquet(run / "results.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [f for f in sorted((run / "cells").glob("*.parquet")) if not f.name.startswith(".")]
    if not files:
        return []
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    rows = table.to_pylist()
    rows.sort(key=lambda r: (r.get("cell_index", 0), r["seed"]))
    return rows


def rebuild_results(run_dir) -> int:
    """Rewrite ``results.parquet`` atomically from the finished cell files; returns the number of rows."""
    run = pathlib.Path(run_dir)
    rows = load_rows(run, from_cells=True)
    if rows:
        store.write_parquet_atomic(run / "results.parquet", rows)
    return len(rows)


def load_cell_arrays(run_dir, cell_id: str) -> dict:
    """The arrays a cell saved (``ts``, ``losses``, ``path_theta``, ``eigenvalues``, ``teacher_w``, ...)."""
    path = pathlib.Path(run_dir) / "cells" / f"{cell_id}.npz"
    if not path.exists():
        raise FileNotFoundError(f"no arrays for cell {cell_id!r} in {run_dir} (is the cell finished?)")
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def load_run_config(run_dir) -> ExperimentConfig:
    """The validated config stored in a run folder."""
    import tomllib

    path = pathlib.Path(run_dir) / "config.toml"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a sweep run folder (no config.toml)")
    return parse_config(tomllib.loads(path.read_text()))


def git_revision() -> Optional[str]:
    """The git commit of the earnshaw source tree (``+dirty`` when it has changes), or None."""
    here = pathlib.Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _environment() -> dict:
    import jax

    import earnshaw

    info = {"earnshaw": earnshaw.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "host": socket.gethostname(), "jax": jax.__version__, "jax_backend": jax.default_backend(),
            "x64": bool(jax.config.jax_enable_x64), "git_revision": git_revision()}
    for mod in ("diffrax", "numpy", "scipy", "pyarrow", "pydantic"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            pass
    return info


# --- backends --------------------------------------------------------------------------------------------------

def _local(todo: List[Cell]) -> Iterator[tuple]:
    for cell in todo:
        yield cell, run_cell(cell.config, cell.id)


def _ray_cell(cell_json: str, cell_id: str) -> dict:
    """A Ray task: one cell, in a worker process (an entry point, so it turns float64 on here)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    return run_cell(ExperimentConfig.model_validate_json(cell_json), cell_id)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray backend needs Ray, an optional extra: pip install 'earnshaw[ray]'") from None
    return ray


def _ray(todo: List[Cell], address: Optional[str]) -> Iterator[tuple]:
    """Cells as Ray tasks (``num_cpus=1`` each); results come back to this process, which writes them."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        import warnings

        with warnings.catch_warnings():
            # Ray starts its processes with fork+exec, which is safe with JAX's threads
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            if address is None:
                # a local Ray for this sweep; its workers import earnshaw from this environment
                ray.init(**kwargs)
            else:
                ray.init(address=address, **kwargs)
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=2)(_ray_cell)
        pending = {task.remote(c.config.model_dump_json(), c.id): c for c in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                yield cell, ray.get(ref)
    finally:
        if started:
            ray.shutdown()


# --- the sweep -------------------------------------------------------------------------------------------------

def run_sweep(cfg: ExperimentConfig, run_dir, *, backend: str = "local", address: Optional[str] = None,
              progress: Optional[Callable[[dict], None]] = None, figures: bool = True,
              rebuild_every_s: float = 5.0) -> dict:
    """Run (or continue) a sweep in ``run_dir``.

    Cells whose ``cells/<id>.parquet`` exists are skipped, so calling this again on a folder
    that a killed sweep left behind finishes the remaining cells and recomputes none.

    Args:
      cfg: the validated config (see :func:`earnshaw.experiments.config.load_config`).
      run_dir: the run folder (created if needed); if it holds a config, it must equal ``cfg``.
      backend: ``"local"`` (cells one after another in this process) or ``"ray"``.
      address: Ray cluster address (``"ray://host:10001"``, ``"auto"``); None starts a local Ray.
      progress: callback taking event dicts: ``{"event": "start", "total", "done", "run_dir"}`` and,
        after each computed cell, ``{"event": "cell", "cell", "label", "seconds", "done", "total"}``.
      figures: write the figures at the end (:func:`write_figures`).
      rebuild_every_s: rebuild ``results.parquet`` after a cell at most this often (and always at the end).

    Returns:
      ``{"run_dir", "cells": [ids in order], "computed": [ids computed now], "skipped": [...],
      "summary": per-cell rows of :func:`summarise`, "seconds"}``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "ray":
        _import_ray()  # fail before any work
    import jax

    if not jax.config.jax_enable_x64:
        raise RuntimeError("a sweep analyses critical points and needs float64: "
                           "call jax.config.update('jax_enable_x64', True) first")
    emit = progress or (lambda event: None)
    run = pathlib.Path(run_dir)
    (run / "cells").mkdir(parents=True, exist_ok=True)
    cfg_path = run / "config.toml"
    if cfg_path.exists():
        stored = load_run_config(run)
        if canonical_json(stored.model_dump(mode="json")) != canonical_json(cfg.model_dump(mode="json")):
            raise ConfigError(f"{run} holds a different config; resume it with its own config.toml "
                              "or start a new run folder")
    else:
        store.write_text_atomic(cfg_path, to_toml(cfg))
    _clean_tmp(run)
    cells = cells_of(cfg)
    todo = [c for c in cells if not (run / "cells" / f"{c.id}.parquet").exists()]
    skipped = [c.id for c in cells if c not in todo]
    session = uuid.uuid4().hex[:8]
    meta_path = run / "meta.json"
    meta = store.read_json(meta_path) if meta_path.exists() else {
        "command": "sweep", "name": cfg.name, "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "config": cfg.model_dump(mode="json"), "cells": [dict(id=c.id, index=c.index, params=c.params)
                                                          for c in cells], "sessions": []}
    record = {"session": session, "started": _dt.datetime.now().isoformat(timespec="seconds"), "backend": backend,
              "address": address, "pid": os.getpid(), "environment": _environment(), "cells_skipped": len(skipped),
              "cells_computed": [], "finished": None}
    meta["sessions"].append(record)
    meta["environment"] = record["environment"]
    store.write_json_atomic(meta_path, meta)

    emit({"event": "start", "total": len(cells), "done": len(skipped), "run_dir": str(run),
          "todo": [c.label() for c in todo]})
    start = time.perf_counter()
    computed, cell_seconds, last_rebuild = [], {}, time.perf_counter()
    runner = _local(todo) if backend == "local" else _ray(todo, address)
    for cell, result in runner:
        _finish_cell(run, cell, result, session)
        computed.append(cell.id)
        cell_seconds[cell.id] = result["timings"]["cell_s"]
        if time.perf_counter() - last_rebuild >= rebuild_every_s:
            rebuild_results(run)
            last_rebuild = time.perf_counter()
        emit({"event": "cell", "cell": cell.id, "label": cell.label(), "seconds": result["timings"]["cell_s"],
              "done": len(skipped) + len(computed), "total": len(cells)})
    rebuild_results(run)
    elapsed = time.perf_counter() - start
    record.update(cells_computed=computed, cell_seconds=cell_seconds, seconds=elapsed,
                  finished=_dt.datetime.now().isoformat(timespec="seconds"))
    meta["timings"] = {"total_s": sum(s.get("seconds") or 0.0 for s in meta["sessions"]),
                       "cells_s": {**meta.get("timings", {}).get("cells_s", {}), **cell_seconds}}
    store.write_json_atomic(meta_path, meta)
    rows = load_rows(run)
    if figures:
        t0 = time.perf_counter()
        write_figures(run, cfg=cfg, rows=rows)
        record["figures_s"] = time.perf_counter() - t0
        store.write_json_atomic(meta_path, meta)
    return {"run_dir": str(run), "cells": [c.id for c in cells], "computed": computed, "skipped": skipped,
            "summary": summarise(rows, cfg.axes()), "seconds": elapsed}


# --- summaries -------------------------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple:
    """Wilson score interval for a binomial proportion (95% by default); ``(nan, nan)`` for ``n = 0``."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(rows: list, axes: Optional[list] = None) -> list:
    """One dict per cell: its grid values, seeds, success rate with a Wilson 95% interval,
    fractions per verdict, median final loss and the cell's time.

    ``success`` means every teacher unit was recovered (``recovered == teacher.k``).
    """
    from earnshaw.landscape.analyze import VERDICTS

    by_cell = {}
    for r in rows:
        by_cell.setdefault(r["cell"], []).append(r)
    out = []
    for cell, rs in sorted(by_cell.items(), key=lambda kv: kv[1][0].get("cell_index", 0)):
        n = len(rs)
        wins = sum(bool(r["success"]) for r in rs)
        lo, hi = wilson_interval(wins, n)
        params = {k[len("param."):]: v for k, v in rs[0].items() if k.startswith("param.")}
        if axes:
            params = {a: params.get(a, rs[0].get(a)) for a in axes}
        entry = dict(cell=cell, cell_index=rs[0].get("cell_index", 0), **params, seeds=n, successes=wins,
                     success_rate=wins / n, ci_low=lo, ci_high=hi)
        for v in VERDICTS:
            entry[v] = sum(r["verdict"] == v for r in rs) / n
        entry["median_loss"] = float(np.median([r["loss"] for r in rs]))
        entry["time_cell_s"] = float(rs[0].get("time_cell_s", math.nan))
        out.append(entry)
    return out


# --- figures ---------------------------------------------------------------------------------------------------

def write_figures(run_dir, *, cfg: Optional[ExperimentConfig] = None, rows: Optional[list] = None,
                  max_cells: int = 12) -> List[pathlib.Path]:
    """Write the run's figures into ``figures/``: potential and force profile, and per cell
    loss curves, trajectories (teacher plane) and end-point Hessian spectra; for sweeps the
    success-rate heat map over the first two grid axes with more than one value."""
    import matplotlib.pyplot as plt

    from earnshaw import plot

    run = pathlib.Path(run_dir)
    cfg = cfg or load_run_config(run)
    rows = rows if rows is not None else load_rows(run)
    out_dir = run / "figures"
    out_dir.mkdir(exist_ok=True)
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
        arr = load_cell_arrays(run, cell.id)
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
