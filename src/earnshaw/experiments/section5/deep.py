"""Deep fully-connected networks for the paper's Section 5 experiments.

A depth-``D`` network has ``D - 1`` hidden layers of equal ``width`` and one
output node, no biases, and the same activation ``s`` on *every* node,
including the output (the paper's setting: "sigmoid from -1 to 1"):

.. math::

   h_0 = x, \\qquad h_l = s(W_l h_{l-1}) \\;(l = 1..D), \\qquad f(x) = h_D \\in (-1, 1).

Parameters are a pytree: a ``list`` of ``D`` weight matrices, ``W_1`` of shape
``(width, d)``, ``W_2 .. W_{D-1}`` of shape ``(width, width)`` and the output row
``W_D`` of shape ``(1, width)``. Any leading batch axis (seeds) sits in front of
every matrix, e.g. ``(S, width, d)``.

Conventions, stated once:

* the empirical loss has **no** ``1/2``: ``sum_n (f(x_n) - y_n)^2`` for
  ``reduction="sum"`` (docs/math.md section 7 default) and the same divided by ``N``
  for ``reduction="mean"``. With ``"sum"`` a step ``lr`` equals a mean-loss step
  ``lr * N``: the paper's ``lr = 1e-5`` with ``N = 10^4`` is a mean-loss step of
  ``0.1`` (:func:`effective_step`).
* the activation ``"sigmoid_pm1"`` is ``2 sigmoid(z) - 1 = tanh(z / 2)``;
  ``"tanh"`` is the other natural reading of "sigmoid from -1 to 1".
* training runs in float32 by default: the loss is bounded (outputs lie in
  ``(-1, 1)``), plain GD with a small step is benign in float32, and it is about
  twice as fast as float64 on CPU. Pass ``dtype=jnp.float64`` (with x64 on) if needed.

>>> import jax
>>> params = init_deep(jax.random.key(0), d=10, width=5, depth=3)
>>> [p.shape for p in params]
[(5, 10), (5, 5), (1, 5)]
>>> x = jax.random.normal(jax.random.key(1), (7, 10))
>>> deep_forward(params, x).shape
(7,)
"""
from __future__ import annotations

import functools
import math
import os
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw.activations import Activation, activation as _activation
# the library's one DivergenceError: a deep run that blows up raises what every solver raises
from earnshaw.trajectory import DivergenceError

__all__ = ["init_deep", "deep_forward", "training_loss", "mse", "effective_step", "make_train_chunk", "spread_seeds",
           "seed_devices", "cpu_devices_for", "ChunkResult", "DivergenceError", "check_divergence", "param_count",
           "check_packable", "REDUCTIONS"]

#: Loss reductions accepted by :func:`training_loss`.
REDUCTIONS = ("sum", "mean")


def _act(act) -> Activation:
    return _activation(act) if isinstance(act, str) else act


def _fast_fn(act) -> Callable:
    """The scalar function used in the training hot path.

    ``sigmoid_pm1`` is evaluated as the identical ``tanh(z / 2)``, which XLA's CPU
    backend computes faster than ``2 * sigmoid(z) - 1``.
    """
    a = _act(act)
    if a.name == "sigmoid_pm1":
        return lambda z: jnp.tanh(0.5 * z)
    if a.kind != "inner":
        raise ValueError(f"deep networks need an inner-product activation, got {a!r}")
    return a.fn


def check_packable(act: str):
    """Raise ValueError unless zero padding is exact for ``act`` (``s(0) = 0``, as for sigmoid_pm1 and tanh)."""
    value = float(_fast_fn(act)(jnp.float32(0.0)))
    if value != 0.0:
        raise ValueError(f"packed widths need an activation with s(0) = 0 (a zero-padded unit must stay silent); "
                         f"{act!r} has s(0) = {value:g}: run with packed = false")


def _forward_t(params, xt, fn) -> jax.Array:
    """Forward pass in the transposed layout: ``xt`` is ``(d, n)``, hidden states ``(width, n)``.

    The sample axis is the minor (contiguous) one, so the elementwise work on the
    ``(width, n)`` hidden states vectorises even when the width is 5; this is
    2-3x faster on CPU than the ``(n, width)`` layout for narrow networks.
    """
    h = xt
    for w in params:
        h = fn(w @ h)
    return h[0]


def _check_shape_args(d: int, width: int, depth: int):
    for name, value, low in (("d", d, 1), ("width", width, 1), ("depth", depth, 2)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def param_count(d: int, width: int, depth: int) -> int:
    """Number of weights of a depth-``depth`` network: ``width*d + (depth-2)*width^2 + width``.

    >>> param_count(10, 125, 2)
    1375
    """
    _check_shape_args(d, width, depth)
    return width * d + (depth - 2) * width * width + width


def init_deep(key, d: int, width: int, depth: int, *, scale: float = 1.0, dtype=jnp.float32) -> list:
    """Random weights, i.i.d. ``N(0, scale^2)`` (the paper: standard Gaussian, ``scale = 1``).

    Args:
      key: PRNG key.
      d: input dimension.
      width: hidden width (every hidden layer).
      depth: number of weight layers, ``>= 2`` (depth 2 is one hidden layer).
      scale: standard deviation of every weight.
      dtype: floating dtype of the weights.

    Returns:
      ``[W_1 (width, d), W_2 .. W_{depth-1} (width, width), W_depth (1, width)]``.

    Raises:
      ValueError: a non-positive size or ``depth < 2``.
    """
    _check_shape_args(d, width, depth)
    shapes = [(width, d)] + [(width, width)] * (depth - 2) + [(1, width)]
    keys = jax.random.split(key, depth)
    return [scale * jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)]


def deep_forward(params: Sequence[jax.Array], x: jax.Array, act="sigmoid_pm1") -> jax.Array:
    """Network output ``f(x)``, the activation applied at every node including the output.

    Args:
      params: list of weight matrices as from :func:`init_deep` (no batch axis; vmap for one).
      x: inputs ``(n, d)``.
      act: activation name or :class:`~earnshaw.activations.Activation`.

    Returns:
      ``(n,)`` outputs in ``(-1, 1)`` for sigmoid-like ``act``.
    """
    s = _act(act)
    h = x
    for w in params:
        h = s(h @ w.T)
    return h[..., 0]


def training_loss(params, x, y, act="sigmoid_pm1", reduction: str = "sum") -> jax.Array:
    """The deep network's training loss ``sum_n (f(x_n) - y_n)^2`` (or its mean), no ``1/2`` (the depth-2 population
    model's sample loss is :func:`earnshaw.empirical_loss`).

    Args:
      params: weights (no batch axis).
      x: inputs ``(n, d)``; y: targets ``(n,)``.
      reduction: ``"sum"`` (default, docs/math.md section 7) or ``"mean"``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    r = deep_forward(params, x, act) - y
    sq = jnp.sum(r * r)
    return sq if reduction == "sum" else sq / x.shape[-2]


def mse(params, x, y, act="sigmoid_pm1") -> jax.Array:
    """Mean squared error ``mean_n (f(x_n) - y_n)^2``: the train/test error reported in tables."""
    return training_loss(params, x, y, act, "mean")


def effective_step(lr: float, reduction: str, n_train: int) -> float:
    """The step on the *mean* loss that ``lr`` on the chosen reduction equals.

    >>> effective_step(1e-5, "sum", 10_000)
    0.1
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    return float(round(lr * n_train, 12)) if reduction == "sum" else float(lr)


class ChunkResult(NamedTuple):
    """What one training chunk returns (leading axis: seeds).

    Attributes:
      params: weights after the chunk, each ``(S, ...)``.
      train_mse: ``(S, steps)`` training MSE *before* each step of the chunk.
      final_train_mse: ``(S,)`` training MSE after the chunk.
      test_mse: ``(S,)`` test MSE after the chunk.
    """

    params: list
    train_mse: jax.Array
    final_train_mse: jax.Array
    test_mse: jax.Array


@functools.lru_cache(maxsize=None)
def make_train_chunk(steps: int, lr: float, act="sigmoid_pm1", reduction: str = "sum") -> Callable:
    """A jit-compiled, seed-batched function running ``steps`` full-batch GD steps.

    GD (the paper's Algorithm 4 without projection) on :func:`training_loss`:
    ``W <- W - lr * grad L(W)``, as a :func:`jax.lax.scan` over steps, vmapped
    over the leading seed axis. Cached per ``(steps, lr, act, reduction)`` so a
    long run of many chunks compiles once.

    Returns:
      ``chunk(params, x, y, x_test, y_test) -> ChunkResult`` where ``params`` is a
      list of ``(S, ...)`` arrays, ``x`` is ``(S, N, d)``, ``y`` is ``(S, N)``,
      ``x_test`` is ``(S, M, d)`` and ``y_test`` is ``(S, M)``.

    >>> import jax, jax.numpy as jnp
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> params = jax.vmap(lambda k: init_deep(k, 3, 4, 2))(keys)
    >>> x = jax.random.normal(jax.random.key(1), (2, 50, 3))
    >>> y = jnp.zeros((2, 50))
    >>> out = make_train_chunk(10, 1e-2)(params, x, y, x, y)
    >>> out.train_mse.shape, out.test_mse.shape
    ((2, 10), (2,))
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
    fn = _fast_fn(act)

    def _mse_t(params, xt, y):
        r = _forward_t(params, xt, fn) - y
        return jnp.mean(r * r)

    def one_seed(params, x, y, x_test, y_test):
        n = x.shape[0]
        xt, xt_test = x.T, x_test.T  # once per chunk, outside the scan
        step_size = lr if reduction == "sum" else lr / n

        def sum_loss(p):
            r = _forward_t(p, xt, fn) - y
            return jnp.sum(r * r)

        loss_and_grad = jax.value_and_grad(sum_loss)

        def step(p, _):
            loss, g = loss_and_grad(p)
            p = [w - step_size * gw for w, gw in zip(p, g)]
            return p, loss / n

        params, train = jax.lax.scan(step, params, None, length=steps)
        return ChunkResult(params, train, _mse_t(params, xt, y), _mse_t(params, xt_test, y_test))

    return spread_seeds(jax.jit(jax.vmap(one_seed)))


def seed_devices(n_seeds: int, n_devices: int | None = None) -> int:
    """How many of the local devices :func:`spread_seeds` splits ``n_seeds`` seeds over.

    Each device gets ``ceil(n_seeds / n_devices)`` seeds (the last one's share padded); devices
    beyond ``ceil(n_seeds / per_device)`` would hold only padding and are left out.

    >>> seed_devices(5, 2), seed_devices(3, 5), seed_devices(6, 5), seed_devices(1, 4)
    (2, 3, 3, 1)
    """
    n_devices = jax.local_device_count() if n_devices is None else n_devices
    per = -(-n_seeds // n_devices)
    return -(-n_seeds // per)


def cpu_devices_for(n_seeds: int, depths=(2,), cores: int | None = None) -> int:
    """The number of XLA CPU devices to expose for ``n_seeds`` seed-batched runs of the given depths.

    Only depth-2 cells: one device per seed (at least one and at most four per core), the OS
    sharing the cores among them: 5 seeds on 2 cores then cost 2.5 seeds' time rather than the 3 of
    a padded 3 + 3 split (depth-2 cells 1.2-1.8x faster). Deeper networks, chains of many smaller
    products, run 1.2-1.5x *slower* in a process with more devices than cores (even on two of
    them), so any deeper cell gets one device per core.

    >>> cpu_devices_for(5, (2,), 2), cpu_devices_for(1, (2,), 2), cpu_devices_for(100, (2,), 2)
    (5, 2, 8)
    >>> cpu_devices_for(5, (2, 3), 2)
    2
    """
    cores = (os.cpu_count() or 1) if cores is None else cores
    if all(int(dp) <= 2 for dp in depths):
        return max(cores, min(n_seeds, 4 * cores))
    return cores


def spread_seeds(fn: Callable) -> Callable:
    """Run a seed-batched function with its seed axis split over the local devices.

    XLA runs one program on one CPU thread for elementwise work, so a vmap over seeds leaves the
    other cores idle; with several devices (on CPU: ``jax.config.update("jax_num_cpu_devices", n)``
    before the first computation, as ``earnshaw reproduce`` does with :func:`cpu_devices_for`)
    each runs its share of the seeds at the same time, on :func:`seed_devices` of them. Inputs'
    leading axes are padded to a multiple of that count by repeating the last seed, and outputs
    are cut back, so results equal the one-device run. With one device ``fn`` is called as is.

    Args:
      fn: a jitted function whose every input and output array has the seed axis first.

    Returns:
      A function with ``fn``'s signature.
    """
    devices = jax.local_devices()
    if len(devices) < 2:
        return fn
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    @functools.lru_cache(maxsize=None)
    def sharding(m):
        return NamedSharding(Mesh(np.asarray(devices[:m]), ("seeds",)), PartitionSpec("seeds"))

    def spread(*args):
        n = jax.tree_util.tree_leaves(args)[0].shape[0]
        m = seed_devices(n, len(devices))
        pad = -n % m

        def place(a):
            if pad:
                a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
            return jax.device_put(a, sharding(m))

        out = fn(*jax.tree_util.tree_map(place, args))
        return jax.tree_util.tree_map(lambda a: a[:n], out) if pad else out

    return spread


def check_divergence(initial_mse, result: ChunkResult, *, lr: float, reduction: str, n_train: int,
                     where: str = "") -> None:
    """Raise :class:`DivergenceError` naming the seeds whose run blew up.

    A seed has diverged when any weight or loss is non-finite, or when its
    training MSE rose above ``1.5 x`` its value before training (small-step GD
    on a smooth loss only decreases it; outputs are bounded, so a too-large step
    shows up as saturated units and a loss that jumps up rather than as NaN).

    Args:
      initial_mse: ``(S,)`` training MSE at step 0 of the run.
      result: the chunk's :class:`ChunkResult`.
    """
    init = np.asarray(initial_mse)
    train = np.asarray(result.train_mse)
    final = np.asarray(result.final_train_mse)
    finite = np.all(np.isfinite(train), axis=-1) & np.isfinite(final) & np.isfinite(np.asarray(result.test_mse))
    for w in result.params:
        finite &= np.all(np.isfinite(np.asarray(w)).reshape(w.shape[0], -1), axis=-1)
    peak = np.max(np.where(np.isfinite(train), train, np.inf), axis=-1)
    rose = peak > 1.5 * init + 1e-3
    rose |= final > 1.5 * init + 1e-3
    bad = np.flatnonzero(~finite | rose)
    if bad.size:
        eff = effective_step(lr, reduction, n_train)
        what = "non-finite weights or loss" if not finite.all() else "the training loss rose"
        raise DivergenceError(
            f"gradient descent diverged{(' ' + where) if where else ''} for seed(s) {bad.tolist()}: {what} "
            f"(train MSE at the start {init[bad].round(4).tolist()}, peak {peak[bad].round(4).tolist()}, "
            f"now {final[bad].round(4).tolist()}). "
            f"The step size is too large: lr={lr:g} with reduction={reduction!r} and n_train={n_train} "
            f"is a mean-loss step of {eff:g}; try a smaller --lr.")
