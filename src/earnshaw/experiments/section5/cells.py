"""One Section 5 cell: every seed of a (depth, width) pair trained together, checkpointed between chunks."""
from __future__ import annotations

import functools
import math
import os
import pathlib
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw.experiments.section5.config import PAPER_FIGURE1_FINAL, PAPER_TABLE2, Section5Config
from earnshaw.experiments.section5.deep import (_fast_fn, _forward_t, check_divergence, init_deep,
                                                make_train_chunk)
from earnshaw.store import write_npz_atomic

__all__ = ["cell_keys", "run_cell", "run_cell_task", "cell_name", "summary_row"]


def cell_keys(seed: int, depth: int, width: int, seeds: int):
    """``(seeds,)`` PRNG keys of one cell: seed ``s`` is ``fold_in(fold_in(fold_in(key(seed), depth), width), s)``.

    A seed's key depends only on ``(seed, depth, width, s)``, not on the grid or the number of seeds.
    """
    cell = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), depth), width)
    return jax.vmap(lambda s: jax.random.fold_in(cell, s))(np.arange(seeds, dtype=np.uint32))


@functools.lru_cache(maxsize=None)
def _data_fn(d: int, width: int, depth: int, n_train: int, n_test: int, act: str):
    """Compiled ``keys (S,) -> (students, x, y, x_test, y_test)``; cached so repeated cells do not recompile."""
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
    fn = _fast_fn(act)
    return jax.jit(jax.vmap(lambda p, x, y: jnp.mean((_forward_t(p, x.T, fn) - y) ** 2)))


def _cell_data(cfg: Section5Config, depth: int, width: int):
    """Student initialisations, training and test sets (teacher outputs) for every seed of a cell."""
    make = _data_fn(cfg.d, width, depth, cfg.n_train, cfg.n_test, cfg.activation)
    return make(cell_keys(cfg.seed, depth, width, cfg.seeds))


def cell_name(depth: int, width: int) -> str:
    return f"d{depth}_w{width}"


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
            write_npz_atomic(ckpt, dict(step=step, seeds=cfg.seeds, depth=depth, width=width,
                             curve_steps=np.asarray(curve_steps), curve_test=np.asarray(curve_test),
                             curve_train=np.asarray(curve_train), dense_steps=np.asarray(dense_steps, dtype=int),
                             dense_train=np.asarray(dense_train).reshape(len(dense_steps), cfg.seeds),
                             **{f"w{i}": np.asarray(w) for i, w in enumerate(params)}))
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


def summary_row(rec: dict, target: str) -> dict:
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


def run_cell_task(cfg_json: str, depth: int, width: int, checkpoint: Optional[str], checkpoint_every: float,
                  progress=None) -> dict:
    """A runtime task (:mod:`earnshaw.runtime`): one cell from its JSON config, in any process."""
    cfg = Section5Config.model_validate_json(cfg_json)
    return run_cell(cfg, depth, width, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress)
