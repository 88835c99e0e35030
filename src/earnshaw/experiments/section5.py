"""The paper's Section 5: deep teacher/student networks trained by full-batch GD (Figure 1, Table 2).

Protocol (paper, Section 5): a random teacher network with standard Gaussian
weights labels standard Gaussian inputs; a student of the same architecture,
initialised independently with standard Gaussian weights, runs gradient
descent on the empirical squared loss with step ``~1e-5`` for ``10^6``
iterations; the activation at every node, the output included, is the
sigmoid from -1 to 1. We report the test MSE on fresh samples (and the
training MSE, since the paper's text and captions disagree on which is shown).

The paper leaves these unspecified; our defaults (MATH.md section 7), each an
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
dtype              float32 (see :mod:`earnshaw.deep`)
=================  ===========================================================

A run lives in a folder (``runs/table2-<time>/``): ``config.json``, one JSON
file per finished cell under ``cells/``, per-chunk parameter checkpoints
(``.npz``, written atomically) under ``checkpoints/`` while a cell runs,
and at the end ``table2.csv`` / ``figure1.csv``, PNG figures and ``meta.json``.
Running again with ``resume=`` that folder skips finished cells and continues
unfinished ones from their last checkpoint; the result is bit-for-bit that of
an uninterrupted run.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import pathlib
import time
from typing import Callable, Optional

import numpy as np

__all__ = ["Section5Config", "PRESETS", "TARGETS", "PAPER_TABLE2", "run_cell", "reproduce", "reproduce_table2",
           "reproduce_figure1", "table2_figure", "figure1_figure", "cell_keys", "load_run_config"]

#: The paper's Table 2 (test error), ``PAPER_TABLE2[depth][width]``.
PAPER_TABLE2 = {
    2: {5: 0.0015, 10: 0.0017, 20: 0.0018, 40: 0.0019},
    3: {5: 0.0033, 10: 0.0264, 20: 0.1503, 40: 0.2362},
    5: {5: 0.0036, 10: 0.0579, 20: 0.2400, 40: 0.4397},
    9: {5: 0.0085, 10: 0.1662, 20: 0.4171, 40: 0.6071},
    17: {5: 0.0845, 10: 0.3862, 20: 0.4934, 40: 0.5777},
}

#: What the paper says of Figure 1 (depth 2): error "under 0.002" for widths up to 125.
PAPER_FIGURE1_FINAL = 0.002

TARGETS = ("table2", "figure1")


@dataclasses.dataclass(frozen=True)
class Section5Config:
    """One Section 5 experiment: a grid of (depth, width) cells, each with ``seeds`` runs.

    Attributes:
      name: preset name, recorded in the run folder.
      depths, widths: the grid (tuples of ints; depth >= 2).
      seeds: runs per cell (vmapped together).
      d: input dimension. n_train, n_test: samples per seed.
      lr: GD step on the loss with the given ``reduction``.
      reduction: ``"sum"`` or ``"mean"`` (see :func:`earnshaw.deep.effective_step`).
      steps: GD iterations per run. chunk: steps per compiled ``lax.scan`` call;
        progress, divergence checks, test errors and checkpoints happen between chunks.
      activation: ``"sigmoid_pm1"`` or ``"tanh"`` (any inner-product activation name works).
      seed: root seed of the whole grid.
    """

    name: str
    depths: tuple
    widths: tuple
    seeds: int = 5
    d: int = 10
    n_train: int = 10_000
    n_test: int = 10_000
    lr: float = 1e-5
    reduction: str = "sum"
    steps: int = 1_000_000
    chunk: int = 10_000
    activation: str = "sigmoid_pm1"
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "depths", tuple(int(v) for v in self.depths))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        if not self.depths or any(v < 2 for v in self.depths):
            raise ValueError(f"depths must be a non-empty list of integers >= 2, got {self.depths}")
        if not self.widths or any(v < 1 for v in self.widths):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {self.widths}")
        for field in ("seeds", "d", "n_train", "n_test", "steps", "chunk"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        from earnshaw.activations import activation
        from earnshaw.deep import REDUCTIONS

        if self.reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {self.reduction!r}; valid: {', '.join(REDUCTIONS)}")
        activation(self.activation)  # raises a ValueError listing the valid names
        object.__setattr__(self, "lr", float(self.lr))

    @property
    def effective_step(self) -> float:
        """The equivalent step on the mean loss (``lr * n_train`` for ``reduction="sum"``)."""
        from earnshaw.deep import effective_step

        return effective_step(self.lr, self.reduction, self.n_train)

    @property
    def cells(self) -> list:
        """``[(depth, width), ...]`` in run order."""
        return [(dp, w) for dp in self.depths for w in self.widths]

    def replace(self, **changes) -> "Section5Config":
        """A copy with some fields changed (``None`` values are ignored), validated again."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["depths"], out["widths"] = list(self.depths), list(self.widths)
        return out


_T2 = dict(depths=(2, 3, 5, 9, 17), widths=(5, 10, 20, 40))
_F1 = dict(depths=(2,), widths=(5, 10, 20, 40, 125))

#: Presets per target. ``full`` is the paper's protocol (10^6 steps); ``quick`` takes minutes and
#: shows the qualitative pattern; ``ci`` is the smallest run that still shows it (used by the tests).
PRESETS = {
    "table2": {
        "full": Section5Config("table2-full", **_T2),
        # quick: 2,000 samples, a 10x larger mean-loss step (lr*N = 0.2 ... as lr=1e-4 with N=2e3),
        # 4,000 steps. Enough for the ordering (depth 2 small, error grows with width at depth >= 3).
        "quick": Section5Config("table2-quick", **_T2, seeds=3, n_train=2_000, n_test=2_000, lr=1e-4,
                                steps=4_000, chunk=1_000),
        "ci": Section5Config("table2-ci", depths=(2, 5), widths=(5, 20, 40), seeds=2, n_train=1_000,
                             n_test=1_000, lr=2e-4, steps=2_000, chunk=500),
    },
    "figure1": {
        "full": Section5Config("figure1-full", **_F1),
        "quick": Section5Config("figure1-quick", **_F1, seeds=3, n_train=2_000, n_test=2_000, lr=1e-4,
                                steps=5_000, chunk=250),
        "ci": Section5Config("figure1-ci", depths=(2,), widths=(5, 20), seeds=2, n_train=1_000, n_test=1_000,
                             lr=2e-4, steps=1_000, chunk=250),
    },
}


# ---------------------------------------------------------------------------------------------------------------
# one cell


def cell_keys(seed: int, depth: int, width: int, seeds: int):
    """``(seeds,)`` PRNG keys of one cell: seed ``s`` is ``fold_in(fold_in(fold_in(key(seed), depth), width), s)``.

    A seed's key depends only on ``(seed, depth, width, s)``, not on the grid or the number of seeds.
    """
    import jax

    cell = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), depth), width)
    return jax.vmap(lambda s: jax.random.fold_in(cell, s))(np.arange(seeds, dtype=np.uint32))


@functools.lru_cache(maxsize=None)
def _data_fn(d: int, width: int, depth: int, n_train: int, n_test: int, act: str):
    """Compiled ``keys (S,) -> (students, x, y, x_test, y_test)``; cached so repeated cells do not recompile."""
    import jax
    import jax.numpy as jnp

    from earnshaw.deep import _fast_fn, _forward_t, init_deep

    fn = _fast_fn(act)
    dtype = jnp.float32

    def one(key):
        kt, ks, kx, kz = jax.random.split(key, 4)
        teacher = init_deep(kt, d, width, depth, dtype=dtype)
        student = init_deep(ks, d, width, depth, dtype=dtype)
        x = jax.random.normal(kx, (n_train, d), dtype)
        xz = jax.random.normal(kz, (n_test, d), dtype)
        return student, x, _forward_t(teacher, x.T, fn), xz, _forward_t(teacher, xz.T, fn)

    return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=None)
def _mse_fn(act: str):
    """Compiled seed-batched MSE ``(params (S,...), x (S,n,d), y (S,n)) -> (S,)``."""
    import jax
    import jax.numpy as jnp

    from earnshaw.deep import _fast_fn, _forward_t

    fn = _fast_fn(act)
    return jax.jit(jax.vmap(lambda p, x, y: jnp.mean((_forward_t(p, x.T, fn) - y) ** 2)))


def _cell_data(cfg: Section5Config, depth: int, width: int):
    """Student initialisations, training and test sets (teacher outputs) for every seed of a cell."""
    make = _data_fn(cfg.d, width, depth, cfg.n_train, cfg.n_test, cfg.activation)
    return make(cell_keys(cfg.seed, depth, width, cfg.seeds))


def _cell_name(depth: int, width: int) -> str:
    return f"d{depth}_w{width}"


def _save_npz_atomic(path: pathlib.Path, **arrays):
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _write_json_atomic(path: pathlib.Path, obj):
    from earnshaw._cli.common import write_json_atomic

    write_json_atomic(path, obj)


def _log_grid(steps: int, n: int = 120) -> np.ndarray:
    """About ``n`` log-spaced step indices in ``[0, steps)`` at which the dense training curve is kept."""
    return np.unique(np.concatenate([[0], np.round(np.logspace(0, math.log10(max(steps - 1, 1)), n)).astype(int)]))


def run_cell(cfg: Section5Config, depth: int, width: int, *, checkpoint: Optional[os.PathLike] = None,
             checkpoint_every: float = 30.0, progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Train all seeds of one (depth, width) cell; return its result record.

    Args:
      cfg: the experiment.
      depth, width: the cell.
      checkpoint: ``.npz`` path for the parameters and curves so far; read if it exists
        (the run continues from its step), written atomically between chunks.
      checkpoint_every: seconds between checkpoint writes (0: after every chunk).
      progress: called with a dict after every chunk: ``{"event": "chunk", "depth", "width",
        "step", "steps", "test_mse" (mean over seeds)}``; it may raise (e.g. KeyboardInterrupt)
        to stop the run, and the last checkpoint is kept.

    Returns:
      A JSON-able dict: per-seed ``test_mse``, ``train_mse``, ``initial_test_mse`` (a random
      student, the "random guess"), the Figure 1 curve (``curve_steps``, ``curve_test_mse``
      ``[seed][point]``), a log-spaced training curve, timings.

    Raises:
      DivergenceError: a seed's loss became non-finite or rose (step size too large).
    """
    import jax
    import jax.numpy as jnp

    from earnshaw.deep import check_divergence, make_train_chunk

    t_start = time.perf_counter()
    params, x, y, xz, yz = _cell_data(cfg, depth, width)
    mse = _mse_fn(cfg.activation)
    init_train = np.asarray(mse(params, x, y))
    init_test = np.asarray(mse(params, xz, yz))
    step = 0
    curve_steps, curve_test, curve_train = [0], [init_test.tolist()], [init_train.tolist()]
    grid = _log_grid(cfg.steps)
    dense_steps, dense_train = [], []
    ckpt = pathlib.Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        with np.load(ckpt) as z:
            if int(z["seeds"]) != cfg.seeds or int(z["depth"]) != depth or int(z["width"]) != width:
                raise ValueError(f"checkpoint {ckpt} belongs to another cell or seed count; delete it to restart")
            step = int(z["step"])
            params = [jnp.asarray(z[f"w{i}"]) for i in range(depth)]
            curve_steps = z["curve_steps"].tolist()
            curve_test, curve_train = z["curve_test"].tolist(), z["curve_train"].tolist()
            dense_steps, dense_train = z["dense_steps"].tolist(), z["dense_train"].tolist()
    start_step = step
    train_time = 0.0
    last_save = time.perf_counter()
    while step < cfg.steps:
        n = min(cfg.chunk, cfg.steps - step)
        chunk = make_train_chunk(n, cfg.lr, cfg.activation, cfg.reduction)
        t0 = time.perf_counter()
        res = chunk(params, x, y, xz, yz)
        res = jax.block_until_ready(res)
        train_time += time.perf_counter() - t0
        check_divergence(init_train, res, lr=cfg.lr, reduction=cfg.reduction, n_train=cfg.n_train,
                         where=f"in cell depth={depth} width={width} by step {step + n}")
        keep = grid[(grid >= step) & (grid < step + n)]
        if keep.size:
            dense_steps += keep.tolist()
            dense_train += np.asarray(res.train_mse)[:, keep - step].T.tolist()
        params = res.params
        step += n
        curve_steps.append(step)
        curve_test.append(np.asarray(res.test_mse).tolist())
        curve_train.append(np.asarray(res.final_train_mse).tolist())
        if ckpt is not None and (step < cfg.steps) and (time.perf_counter() - last_save >= checkpoint_every):
            _save_npz_atomic(ckpt, step=step, seeds=cfg.seeds, depth=depth, width=width,
                             curve_steps=np.asarray(curve_steps), curve_test=np.asarray(curve_test),
                             curve_train=np.asarray(curve_train), dense_steps=np.asarray(dense_steps, dtype=int),
                             dense_train=np.asarray(dense_train).reshape(len(dense_steps), cfg.seeds),
                             **{f"w{i}": np.asarray(w) for i, w in enumerate(params)})
            last_save = time.perf_counter()
        if progress is not None:
            progress({"event": "chunk", "depth": depth, "width": width, "step": step, "steps": cfg.steps,
                      "chunk_steps": n, "test_mse": float(np.mean(curve_test[-1]))})
    test = np.asarray(curve_test[-1])
    train = np.asarray(curve_train[-1])
    return {
        "depth": depth, "width": width, "seeds": cfg.seeds, "steps": cfg.steps,
        "test_mse": test.tolist(), "train_mse": train.tolist(),
        "initial_test_mse": init_test.tolist(), "initial_train_mse": init_train.tolist(),
        "curve_steps": curve_steps, "curve_test_mse": np.asarray(curve_test).T.tolist(),
        "curve_train_mse": np.asarray(curve_train).T.tolist(),
        "dense_steps": dense_steps, "dense_train_mse": np.asarray(dense_train).T.tolist(),
        "train_seconds_this_session": train_time, "wall_seconds_this_session": time.perf_counter() - t_start,
        "steps_this_session": step - start_step,
        "seconds_per_step_all_seeds": train_time / max(step - start_step, 1),
    }


# ---------------------------------------------------------------------------------------------------------------
# the grid, the run folder


def _summary(rec: dict, target: str) -> dict:
    test = np.asarray(rec["test_mse"])
    s = len(test)
    row = {
        "depth": rec["depth"], "width": rec["width"], "seeds": s, "steps": rec["steps"],
        "test_mse_mean": float(test.mean()), "test_mse_sd": float(test.std(ddof=1)) if s > 1 else float("nan"),
        "test_mse_sem": float(test.std(ddof=1) / math.sqrt(s)) if s > 1 else float("nan"),
        "test_mse_min": float(test.min()), "test_mse_max": float(test.max()),
        "train_mse_mean": float(np.mean(rec["train_mse"])),
        "random_student_test_mse": float(np.mean(rec["initial_test_mse"])),
    }
    if target == "table2":
        row["paper_test_error"] = PAPER_TABLE2.get(rec["depth"], {}).get(rec["width"], float("nan"))
    else:
        row["paper_test_error"] = PAPER_FIGURE1_FINAL
    return row


def _run_cell_worker(args):
    """Worker process entry (``spawn``): run one cell, write its JSON, return the record."""
    cfg_dict, depth, width, run_path, checkpoint_every, queue = args
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    cfg = Section5Config(**cfg_dict)
    run_path = pathlib.Path(run_path)
    progress = None if queue is None else queue.put
    rec = run_cell(cfg, depth, width, checkpoint=run_path / "checkpoints" / f"{_cell_name(depth, width)}.npz",
                   checkpoint_every=checkpoint_every, progress=progress)
    _finish_cell(run_path, rec)
    return rec


def _finish_cell(run_path: pathlib.Path, rec: dict):
    name = _cell_name(rec["depth"], rec["width"])
    _write_json_atomic(run_path / "cells" / f"{name}.json", rec)
    ck = run_path / "checkpoints" / f"{name}.npz"
    if ck.exists():
        ck.unlink()


def load_run_config(path: os.PathLike) -> tuple:
    """``(target, Section5Config)`` stored in a reproduction run folder's ``config.json``."""
    conf = pathlib.Path(path) / "config.json"
    if not conf.exists():
        raise FileNotFoundError(f"{path} is not a reproduction run folder (no config.json)")
    stored = json.loads(conf.read_text())
    return stored["target"], Section5Config(**stored["config"])


def load_rows(path: os.PathLike) -> tuple:
    """``(target, config, rows)`` of a reproduction run folder: the summary row of every finished cell,
    by depth and width (what :func:`reproduce` returns as ``rows``), read from ``cells/*.json``."""
    target, cfg = load_run_config(path)
    cells = pathlib.Path(path) / "cells"
    rows = [_summary(json.loads((cells / f"{_cell_name(*c)}.json").read_text()), target) for c in sorted(cfg.cells)
            if (cells / f"{_cell_name(*c)}.json").exists()]
    return target, cfg, rows


def reproduce(target: str, cfg: Optional[Section5Config] = None, *, out: os.PathLike = "runs",
              resume: Optional[os.PathLike] = None, progress: Optional[Callable[[dict], None]] = None,
              workers: int = 1, checkpoint_every: float = 30.0, figures: bool = True) -> dict:
    """Run (or resume) a Section 5 reproduction in a run folder.

    Args:
      target: ``"table2"`` or ``"figure1"``.
      cfg: the experiment (default: the ``full`` preset of ``target``). Ignored when resuming,
        which uses the folder's ``config.json``.
      out: parent folder of the new run folder.
      resume: an existing run folder to continue.
      progress: called with event dicts: ``{"event": "start", "cells", "steps", "done"}``,
        ``{"event": "skip", depth, width}`` for finished cells, per-chunk ``"chunk"`` events
        (see :func:`run_cell`) and ``{"event": "cell", "row": ...}`` when a cell finishes.
      workers: cells trained at the same time, each in its own ``spawn`` process (1: in this process).
      checkpoint_every: seconds between parameter checkpoints within a cell.
      figures: write the PNG figures.

    Returns:
      ``{"run_dir", "config", "rows": [summary dict per cell], "cells": {name: record}}``.
    """
    from earnshaw._cli.common import environment, run_dir

    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if resume is not None:
        path = pathlib.Path(resume)
        stored_target, cfg = load_run_config(path)
        if stored_target != target:
            raise ValueError(f"{path} is a {stored_target} run, not {target}")
    else:
        cfg = cfg if cfg is not None else PRESETS[target]["full"]
        path = run_dir(target, out)
        _write_json_atomic(path / "config.json", {"target": target, "config": cfg.to_dict()})
    (path / "cells").mkdir(exist_ok=True)
    (path / "checkpoints").mkdir(exist_ok=True)
    emit = progress or (lambda event: None)
    records = {}
    todo = []
    for depth, width in cfg.cells:
        f = path / "cells" / f"{_cell_name(depth, width)}.json"
        if f.exists():
            records[(depth, width)] = json.loads(f.read_text())
        else:
            todo.append((depth, width))
    emit({"event": "start", "cells": cfg.cells, "steps": cfg.steps, "done": sorted(records), "run_dir": str(path)})
    for depth, width in sorted(records):
        emit({"event": "skip", "depth": depth, "width": width})
    t0 = time.perf_counter()
    if workers <= 1 or len(todo) <= 1:
        for depth, width in todo:
            rec = run_cell(cfg, depth, width, checkpoint=path / "checkpoints" / f"{_cell_name(depth, width)}.npz",
                           checkpoint_every=checkpoint_every, progress=emit)
            _finish_cell(path, rec)
            records[(depth, width)] = rec
            emit({"event": "cell", "depth": depth, "width": width, "row": _summary(rec, target)})
    else:
        records.update(_run_parallel(cfg, todo, path, workers, checkpoint_every, emit, target))
    elapsed = time.perf_counter() - t0
    # by depth, then width, whatever order the cells ran in (--widths 125,5 runs 125 first)
    rows = [_summary(records[c], target) for c in sorted(cfg.cells)]
    _write_csv(path / f"{target}.csv", rows)
    meta_path = path / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"sessions": []}
    meta.update({"target": target, "config": cfg.to_dict(), "effective_mean_loss_step": cfg.effective_step,
                 "environment": environment(), "dtype": "float32", "workers": workers})
    # the CPU devices a cell's seeds were split over in this session (workers train on one each)
    from earnshaw.deep import seed_devices

    devices = 1 if workers > 1 else seed_devices(cfg.seeds)
    meta["sessions"].append({"cells_run": [list(c) for c in todo], "seconds": elapsed, "devices_per_cell": devices,
                             "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    _write_json_atomic(meta_path, meta)
    if figures:
        import matplotlib.pyplot as plt

        fig = table2_figure(rows) if target == "table2" else figure1_figure(
            [records[c] for c in cfg.cells])
        fig.savefig(path / f"{target}.png", dpi=110)
        plt.close(fig)
    return {"run_dir": str(path), "config": cfg, "rows": rows,
            "cells": {_cell_name(*c): records[c] for c in cfg.cells}}


def _run_parallel(cfg, todo, path, workers, checkpoint_every, emit, target) -> dict:
    """Cells in ``workers`` spawned processes (each single-threaded XLA); progress through a queue."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import queue as _queue

    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    q = manager.Queue()
    out = {}
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futs = {pool.submit(_run_cell_worker, (cfg.to_dict(), dp, w, str(path), checkpoint_every, q)): (dp, w)
                for dp, w in todo}
        pending = set(futs)
        try:
            while pending:
                done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                while True:
                    try:
                        emit(q.get_nowait())
                    except _queue.Empty:
                        break
                for f in done:
                    rec = f.result()
                    out[futs[f]] = rec
                    emit({"event": "cell", "depth": rec["depth"], "width": rec["width"],
                          "row": _summary(rec, target)})
        except BaseException:
            for f in pending:
                f.cancel()
            for p in list(getattr(pool, "_processes", {}).values()):
                p.terminate()
            raise
    manager.shutdown()
    return out


def _write_csv(path: pathlib.Path, rows: list):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def reproduce_table2(cfg: Optional[Section5Config] = None, **kwargs) -> dict:
    """Table 2 (test error by depth x width); see :func:`reproduce`. ``cfg`` defaults to the full preset."""
    return reproduce("table2", cfg, **kwargs)


def reproduce_figure1(cfg: Optional[Section5Config] = None, **kwargs) -> dict:
    """Figure 1 (depth 2, test error against iterations per width); see :func:`reproduce`."""
    return reproduce("figure1", cfg, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# figures (tables in, figures out)


def table2_figure(rows: list):
    """Heat maps of the test error by depth x width: ours (mean over seeds) beside the paper's."""
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
