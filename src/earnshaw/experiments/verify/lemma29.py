"""Appendix F, Lemma 29: the sign activation on S^1, the local minima of L*.

One check of ``earnshaw verify``; see :mod:`earnshaw.experiments.verify` for the row it returns."""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Teacher
from earnshaw.experiments.verify.common import _require_x64, _row, _circle_label, _circle, _angle_dist
from earnshaw.potentials import potential as _potential


def check_lemma29(seeds=200, quick=False, *, potential="sign", k=3, grid=None, lr=0.05, steps=None, starts=16,
                  seed=5):
    r"""Lemma 29: on ``S^1`` with the sign activation, the single-node loss ``L*(t) = -P(t)^2`` (eq. 3 at
    optimal ``a``) has its local minima only at ``+-w_j``.

    Per seed (random angles ``s_j`` and ``b ~ U[-1, 1]``): (1) every strict local minimum of ``L*`` on a fine
    grid lies within one grid step of some ``+-s_j``; (2) descent on the angle, ``t <- t - eta_n sgn(L*'(t))``
    with ``eta_n = lr / (1 + n / 50)`` (the loss is piecewise smooth with kinks, so plain GD rattles around the
    kinks), from ``starts`` random angles ends within 4 final steps of some ``+-w_j``. A smooth potential on the
    circle (``potential="erf"``) fails.
    """
    _require_x64()
    t0 = time.perf_counter()

    pot = _potential(potential)
    grid = grid or (4096 if quick else 16384)
    steps = steps or (4000 if quick else 10_000)
    ks, kb, kt = jax.random.split(jax.random.key(seed), 3)
    s = jax.random.uniform(ks, (seeds, k), maxval=2 * jnp.pi)
    b = jax.random.uniform(kb, (seeds, k), minval=-1.0, maxval=1.0)
    teacher = Teacher(b=b, w=_circle(s))
    h = 2 * np.pi / grid
    targets = jnp.concatenate([s, s + jnp.pi], -1)
    grid_far = np.asarray(_lemma29_grid_fn(pot, grid)(teacher, targets))
    ok_grid = grid_far <= 1.01 * h
    # descent on the angle from random starts: normalised (sign) steps, diminishing so they settle on kinks
    t_start = jax.random.uniform(kt, (seeds, starts), maxval=2 * jnp.pi)
    t_end = _lemma29_descent_fn(pot, steps, lr)(teacher, t_start)
    gd_far = np.asarray(_angle_dist(t_end[..., None], targets[:, None, :]).min(-1).max(-1))
    final_step = lr / (1 + steps / 50)
    ok_gd = gd_far <= 4 * final_step
    ok = ok_grid & ok_gd
    return _row("Lemma 29", potential, _circle_label(potential, pot),
                "local minima of L*(t) = −P(t)² only at ±wⱼ",
                f"grid of {grid} angles; descent on the angle ({starts} starts × {steps} steps), k={k}",
                ok, f"grid {grid_far.max():.1e} rad, GD {gd_far.max():.1e} rad from ±wⱼ",
                details=dict(grid_ok=float(ok_grid.mean()), gd_ok=float(ok_gd.mean())),
                seconds=time.perf_counter() - t0)


@functools.lru_cache(maxsize=None)
def _lemma29_descent_fn(pot, steps, lr):
    def loss(t, teacher):
        return -(pot(_circle(t), teacher.w) @ teacher.b) ** 2

    def single(teacher, t0):
        def body(n, t):
            g = jax.grad(loss)(t, teacher)
            step = lr / (1.0 + n / 50.0)
            return jnp.mod(t - step * jnp.where(jnp.isfinite(g), jnp.sign(g), 0.0), 2 * jnp.pi)

        return jax.vmap(lambda t: jax.lax.fori_loop(0, steps, body, t))(t0)

    return jax.jit(jax.vmap(single))


@functools.lru_cache(maxsize=None)
def _lemma29_grid_fn(pot, grid):
    tg = jnp.linspace(0.0, 2 * jnp.pi, grid, endpoint=False)

    def single(teacher, targets):
        P_ = pot(_circle(tg)[:, None, :], teacher.w[None]) @ teacher.b
        L = -P_**2
        tol = 1e-7
        strict = (L < jnp.roll(L, 1) - tol) & (L < jnp.roll(L, -1) - tol)
        far = _angle_dist(tg[:, None], targets[None]).min(-1)
        return jnp.max(jnp.where(strict, far, 0.0))

    return jax.jit(jax.vmap(single))
