"""Appendix F, Lemma 31: strict minima of the sign-activation loss on S^1 are matchings.

One check of ``earnshaw verify``; see :mod:`earnshaw.experiments.verify` for the row it returns."""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw.experiments.verify.common import _require_x64, _row, _circle_label, _circle, _angle_dist
from earnshaw.potentials import potential as _potential


def check_lemma31(seeds=100, quick=False, *, potential="sign", k=2, grid=None, charges=1.0, seed=6):
    r"""Lemma 31: on ``S^1``, sign activation, fixed unit charges (the paper's ``a = -1, b = 1``; natural sign
    ``a = b = 1``), loss eq. (2): no strict local minima except the global minima (electrons on the protons).

    Per seed (random proton angles), ``L`` is evaluated on a ``grid x grid`` torus of electron angles
    (``k = 2``); every strict local minimum (below all 8 neighbours by more than 1e-12) must be a matching:
    each electron within a grid step of a distinct proton. ``charges`` other than 1 (electron charge
    ``charges``, proton 1) make spurious strict minima possible.
    """
    _require_x64()
    t0 = time.perf_counter()
    if k != 2:
        raise ValueError("check_lemma31 scans the 2-torus: k=2")
    pot = _potential(potential)
    grid = grid or (256 if quick else 720)
    s = jax.random.uniform(jax.random.key(seed), (seeds, k), maxval=2 * jnp.pi)
    res = np.asarray(_lemma31_grid_fn(pot, grid, float(charges))(s))
    h = 2 * np.pi / grid
    n_min, worst = res[:, 0], res[:, 1]
    ok = worst <= 1.5 * h
    return _row("Lemma 31", potential, _circle_label(potential, pot),
                "fixed unit charges: strict minima only at matchings",
                f"L (eq. 2) on a {grid}×{grid} torus grid, k={k}, a={charges:g}, b=1",
                ok, f"strict minima ≤ {worst.max():.1e} rad from a matching",
                details=dict(strict_minima_per_seed=float(n_min.mean()), max_from_matching=float(worst.max())),
                seconds=time.perf_counter() - t0)


@functools.lru_cache(maxsize=None)
def _lemma31_grid_fn(pot, grid, charge):
    tg = jnp.linspace(0.0, 2 * jnp.pi, grid, endpoint=False)
    u = _circle(tg)

    def single(s):
        w = _circle(s)
        a = jnp.array([charge, charge])
        b = jnp.ones(2)
        Pee = pot(u[:, None, :], u[None, :, :])                 # (g, g)
        Pep = pot(u[:, None, :], w[None, :, :]) @ b               # (g,)
        L = 2 * a[0] * a[1] * Pee - 2 * (a[0] * Pep[:, None] + a[1] * Pep[None, :])
        tol = 1e-7  # arcsin near rho = +-1 amplifies rounding to ~1e-8: flat lines must not look strict
        strict = jnp.ones_like(L, bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di or dj:
                    strict &= L < jnp.roll(L, (di, dj), (0, 1)) - tol
        d1 = _angle_dist(tg[:, None, None], s[None, None, :])   # electron 1 to each proton
        d2 = _angle_dist(tg[None, :, None], s[None, None, :])
        match = jnp.minimum(jnp.maximum(d1[..., 0], d2[..., 1]), jnp.maximum(d1[..., 1], d2[..., 0]))
        return jnp.stack([strict.sum().astype(float), jnp.max(jnp.where(strict, match, 0.0))])

    return jax.jit(jax.vmap(single))
