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
from earnshaw.experiments.section5.deep import (_fast_fn, _forward_t, check_divergence, check_packable, init_deep,
                                                make_train_chunk)
from earnshaw.store import write_npz_atomic

__all__ = ["cell_keys", "run_cell", "run_cell_task", "run_depth_packed", "run_depth_task", "pad_width",
           "check_packable", "cell_name", "summary_row"]


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


def _save(ckpt, state: dict, tag: str):
    write_npz_atomic(ckpt, dict(tag=np.asarray(tag), step=state["step"],
                     curve_steps=np.asarray(state["curve_steps"]), curve_test=np.asarray(state["curve_test"]),
                     curve_train=np.asarray(state["curve_train"]),
                     dense_steps=np.asarray(state["dense_steps"], dtype=int),
                     dense_train=np.asarray(state["dense_train"]).reshape(len(state["dense_steps"]),
                                                                          len(state["curve_test"][0])),
                     **{f"w{i}": np.asarray(w) for i, w in enumerate(state["params"])}))


def _load(ckpt: pathlib.Path, tag: str, depth: int, legacy: tuple) -> dict:
    with np.load(ckpt, allow_pickle=False) as z:
        # checkpoints written before packing existed name their cell by (seeds, depth, width)
        old = "tag" not in z.files and all(k in z.files for k in ("seeds", "depth", "width")) and \
            tuple(int(z[k]) for k in ("seeds", "depth", "width")) == legacy
        if not old and ("tag" not in z.files or str(z["tag"]) != tag):
            raise ValueError(f"checkpoint {ckpt} belongs to another cell, packing or seed count; delete it to restart")
        return dict(step=int(z["step"]), params=[jnp.asarray(z[f"w{i}"]) for i in range(depth)],
                    curve_steps=z["curve_steps"].tolist(), curve_test=z["curve_test"].tolist(),
                    curve_train=z["curve_train"].tolist(), dense_steps=z["dense_steps"].tolist(),
                    dense_train=z["dense_train"].tolist())


def _train(cfg: Section5Config, depth: int, data, *, tag: str, groups: dict, event: dict, legacy: tuple = (),
           checkpoint: Optional[os.PathLike], checkpoint_every: float, progress) -> dict:
    """GD on a batch of runs (leading axis ``B``) in chunks, with checkpoints, curves and divergence checks.

    ``groups`` maps a label to the slice of the batch axis it owns (a cell's seeds), so a divergence names
    the cell and its seeds; ``event`` is merged into every progress event. Returns the final state: params,
    ``curve_*`` lists of per-run values (``[point][run]``), the dense training curve, timings.
    """
    t_start = time.perf_counter()
    params, x, y, xz, yz = data
    mse = _mse_fn(cfg.activation)
    init_train = np.asarray(mse(params, x, y))
    init_test = np.asarray(mse(params, xz, yz))
    state = dict(step=0, params=params, curve_steps=[0], curve_test=[init_test.tolist()],
                 curve_train=[init_train.tolist()], dense_steps=[], dense_train=[])
    ckpt = pathlib.Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = _load(ckpt, tag, depth, legacy)
    start_step = state["step"]
    grid = _log_grid(cfg.steps)
    train_time = 0.0
    last_save = time.perf_counter()
    while state["step"] < cfg.steps:
        step = state["step"]
        n = min(cfg.chunk, cfg.steps - step)
        chunk = make_train_chunk(n, cfg.lr, cfg.activation, cfg.reduction)
        t0 = time.perf_counter()
        res = jax.block_until_ready(chunk(state["params"], x, y, xz, yz))
        train_time += time.perf_counter() - t0
        for label, part in groups.items():
            mine = res if len(groups) == 1 else jax.tree_util.tree_map(lambda a: a[part], res)
            check_divergence(init_train[part], mine, lr=cfg.lr, reduction=cfg.reduction, n_train=cfg.n_train,
                             where=f"in cell {label} by step {step + n}")
        keep = grid[(grid >= step) & (grid < step + n)]
        if keep.size:
            state["dense_steps"] += keep.tolist()
            state["dense_train"] += np.asarray(res.train_mse)[:, keep - step].T.tolist()
        state["params"] = res.params
        state["step"] = step + n
        state["curve_steps"].append(step + n)
        state["curve_test"].append(np.asarray(res.test_mse).tolist())
        state["curve_train"].append(np.asarray(res.final_train_mse).tolist())
        if ckpt is not None and state["step"] < cfg.steps and time.perf_counter() - last_save >= checkpoint_every:
            _save(ckpt, state, tag)
            last_save = time.perf_counter()
        if progress is not None:
            progress({"event": "chunk", **event, "step": state["step"], "steps": cfg.steps,
                      "chunk_steps": n * len(groups), "test_mse": float(np.mean(state["curve_test"][-1]))})
    return dict(state, init_test=init_test, init_train=init_train, train_time=train_time,
                wall=time.perf_counter() - t_start, steps_this_session=state["step"] - start_step)


def _record(cfg: Section5Config, depth: int, width: int, st: dict, part: slice, wall_share: float) -> dict:
    """The result record of one cell from the columns ``part`` of a trained batch."""
    curve_test = np.asarray(st["curve_test"])[:, part]
    curve_train = np.asarray(st["curve_train"])[:, part]
    dense = np.asarray(st["dense_train"]).reshape(len(st["dense_steps"]), len(st["init_test"]))[:, part]
    ran = max(st["steps_this_session"], 1)
    return {
        "depth": depth, "width": width, "seeds": cfg.seeds, "steps": cfg.steps,
        "test_mse": curve_test[-1].tolist(), "train_mse": curve_train[-1].tolist(),
        "initial_test_mse": st["init_test"][part].tolist(), "initial_train_mse": st["init_train"][part].tolist(),
        "curve_steps": st["curve_steps"], "curve_test_mse": curve_test.T.tolist(),
        "curve_train_mse": curve_train.T.tolist(),
        "dense_steps": st["dense_steps"], "dense_train_mse": dense.T.tolist(),
        "train_seconds_this_session": st["train_time"] * wall_share, "wall_seconds_this_session": st["wall"] * wall_share,
        "steps_this_session": st["steps_this_session"],
        "seconds_per_step_all_seeds": st["train_time"] * wall_share / ran,
    }


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
    st = _train(cfg, depth, _cell_data(cfg, depth, width), tag=f"cell d{depth} w{width} seeds {cfg.seeds}",
                groups={f"depth={depth} width={width}": slice(0, cfg.seeds)}, event={"depth": depth, "width": width},
                legacy=(cfg.seeds, depth, width),
                checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress)
    return _record(cfg, depth, width, st, slice(None), 1.0)


def pad_width(params: list, width: int) -> list:
    """Zero-pad a seed-batched depth-``D`` network (``[(S, w, d), (S, w, w).., (S, 1, w)]``) to ``width`` units.

    The padded units have zero incoming and outgoing weights. When the activation has ``s(0) = 0`` they
    output 0, their weights get zero gradient, and they stay zero under GD: the padded network computes
    and trains exactly as the original (to the rounding of longer sums).

    >>> import jax.numpy as jnp
    >>> [p.shape for p in pad_width([jnp.ones((2, 3, 4)), jnp.ones((2, 1, 3))], 5)]
    [(2, 5, 4), (2, 1, 5)]
    """
    out = []
    for i, w in enumerate(params):
        rows = 0 if i == len(params) - 1 else width - w.shape[-2]
        cols = 0 if i == 0 else width - w.shape[-1]
        out.append(jnp.pad(w, [(0, 0)] * (w.ndim - 2) + [(0, rows), (0, cols)]))
    return out


def run_depth_packed(cfg: Section5Config, depth: int, *, checkpoint: Optional[os.PathLike] = None,
                     checkpoint_every: float = 30.0, progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Train every width of one depth as one program: students zero-padded to the widest, seeds and widths on
    one batch axis. Each cell's data, initialisation and GD equal :func:`run_cell`'s (to float32 rounding).

    Returns:
      ``{cell_name(depth, width): record}`` with :func:`run_cell`'s records.
    """
    check_packable(cfg.activation)
    widths = sorted(cfg.widths)
    top, s = widths[-1], cfg.seeds
    parts = [_cell_data(cfg, depth, w) for w in widths]
    params = [jnp.concatenate(ws) for ws in zip(*(pad_width(p[0], top) for p in parts))]
    data = (params, *(jnp.concatenate([p[i] for p in parts]) for i in range(1, 5)))
    groups = {f"depth={depth} width={w}": slice(i * s, (i + 1) * s) for i, w in enumerate(widths)}
    st = _train(cfg, depth, data, tag=f"packed d{depth} w{','.join(map(str, widths))} seeds {s}", groups=groups,
                event={"depth": depth, "width": f"{widths[0]}..{top} packed"}, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, progress=progress)
    return {cell_name(depth, w): _record(cfg, depth, w, st, slice(i * s, (i + 1) * s), 1.0 / len(widths))
            for i, w in enumerate(widths)}


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


def run_depth_task(cfg_json: str, depth: int, checkpoint: Optional[str], checkpoint_every: float,
                   progress=None) -> dict:
    """A runtime task: every width of one depth, packed (:func:`run_depth_packed`), in any process."""
    cfg = Section5Config.model_validate_json(cfg_json)
    return run_depth_packed(cfg, depth, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress)
