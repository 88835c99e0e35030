"""Appendix F, Theorem 30: polynomial potentials on S^{d-1}.

One check of ``earnshaw verify``; see :mod:`earnshaw.experiments.verify` for the row it returns."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher
from earnshaw.dynamics.descent import gradient_descent
from earnshaw.experiments.verify.common import _require_x64, _row
from earnshaw.loss import optimal_a
from earnshaw.potentials import potential as _potential


def check_theorem30(seeds=400, quick=False, *, l=3, b=(0.9, -0.6, 0.3, 0.0), w=None, lr=0.1, steps=None,
                    tol=1e-3, seed=7):
    r"""Theorem 30: ``Phi = (theta . w)^l`` (``h_l`` activation, ``l >= 3``) on ``S^{d-1}`` with orthonormal
    ``w_j``: projected GD on the single-node loss (eq. 3) from random starts (``a`` optimal at the start)
    ends only at ``+-w_j`` with ``b_j != 0``; and the Riemannian Hessian of ``L* = -P^2`` there is
    ``2 l b_j^2 I`` (docs/math.md section 6). Runs that stall on the flat set ``P = 0`` (the maximum of ``L*``,
    about 0.1-0.7% of starts) are not minima and are counted separately.

    ``l = 2`` (then ``+-e_2, +-e_3`` are saddles) or non-orthonormal ``w`` fail.
    """
    _require_x64()
    t0 = time.perf_counter()

    pot = _potential("hermite", m=l)
    b = jnp.asarray(b, float)
    kd = b.shape[0]
    W = jnp.eye(kd) if w is None else jnp.asarray(w, float)
    W = W / jnp.linalg.norm(W, axis=-1, keepdims=True)
    d = W.shape[-1]
    teacher = Teacher(b=b, w=W)
    steps = steps or (2000 if quick else 20_000)
    th = jax.random.normal(jax.random.key(seed), (seeds, 1, d))
    th = th / jnp.linalg.norm(th, axis=-1, keepdims=True)
    student = Student(a=optimal_a(pot, teacher, th), theta=th)
    traj = gradient_descent(pot, teacher, student, lr=lr, max_steps=steps, manifold="sphere", save_every=steps,
                            on_divergence="ignore")
    end = traj.final.theta[:, 0]
    nz = np.asarray(jnp.abs(b) > 0)
    targets = jnp.concatenate([W[nz], -W[nz]])
    far = np.asarray(jnp.linalg.norm(end[:, None] - targets[None], axis=-1).min(-1))
    Pend = np.asarray(pot(end[:, None], W[None]) @ b)
    flat = (np.abs(Pend) < 1e-3) & (far > tol)
    ok_gd = (far <= tol) | flat
    # Riemannian Hessian of L* = -P^2 at each +-w_j, through the retraction theta = (w + u)/|w + u|
    hess_err = 0.0
    for j in np.flatnonzero(nz):
        for sgn in (1.0, -1.0):
            wj = sgn * W[j]
            basis = jnp.linalg.svd(jnp.eye(d) - jnp.outer(wj, wj))[0][:, :d - 1]
            f = lambda u: -(pot((wj + basis @ u) / jnp.linalg.norm(wj + basis @ u), W) @ b) ** 2  # noqa: B023,E731
            H = np.asarray(jax.hessian(f)(jnp.zeros(d - 1)))
            pred = 2 * l * float(b[j]) ** 2
            hess_err = max(hess_err, float(np.abs(H - pred * np.eye(d - 1)).max() / pred))
    ok_hess = hess_err < 1e-6
    ok = ok_gd & ok_hess
    counts = {}
    for j in np.flatnonzero(nz):
        for sgn, lab in ((1, "+"), (-1, "-")):
            counts[f"{lab}w{j + 1}"] = int((np.linalg.norm(np.asarray(end) - sgn * np.asarray(W[j]), axis=-1)
                                            <= tol).sum())
    orth = bool(np.allclose(np.asarray(W @ W.T), np.eye(kd), atol=1e-12))
    return _row("Theorem 30", f"h_{l} (Hermite)", f"(θ·w)^{l} on S^{d - 1}",
                "minima only at ±wⱼ, Riemannian Hessian 2l·bⱼ²",
                f"projected GD ({steps} steps, lr={lr}), b={tuple(float(x) for x in b)}, "
                f"{'orthonormal' if orth else 'non-orthonormal'} w",
                ok, f"end {far[~flat].max() if (~flat).any() else 0.0:.1e} from ±wⱼ; Hessian rel. err {hess_err:.1e}",
                details=dict(endpoint_counts=counts, stalled_on_P0=int(flat.sum()), hessian_rel_err=hess_err),
                seconds=time.perf_counter() - t0)
