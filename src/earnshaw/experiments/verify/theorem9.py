"""Theorem 9 (Earnshaw): harmonic Phi, reduced loss (eq. 2) -> zero per-electron Laplacian, flows collide.

One check of ``earnshaw verify``; see :mod:`earnshaw.experiments.verify` for the row it returns."""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher
from earnshaw.dynamics.flow import gradient_flow
from earnshaw.experiments.verify.common import _require_x64, _row, _random_teacher, _random_student, _pot_label
from earnshaw.potentials import potential as _potential
from earnshaw.problem import Problem


def check_earnshaw(seeds=200, quick=False, *, potential=("coulomb", {"d": 3}), d=3, k=3, tol=1e-8,
                   collision_radius=1e-2, t1=1e4, flow_seeds=None, seed=1):
    r"""Earnshaw (Theorem 9): with a harmonic potential and the reduced loss (eq. 2, charges fixed),
    every electron's Laplacian (trace of its ``theta_i`` Hessian block) is zero at random
    configurations, so a nonzero block has a negative eigenvalue and there is no strict local
    minimum; and gradient flows (attracting charges: ``a, b > 0``) end with an electron on a proton
    (status ``collided``, nearest proton within ``collision_radius``).

    Per seed the claim holds when ``max_i |Delta_i| / |H_ii|_F < tol``, every nonzero block has
    ``lambda_min < 0``, and (for the first ``flow_seeds`` seeds) the flow collided into a proton.
    A non-harmonic ``potential`` (``("gaussian", {})``) fails.
    """
    _require_x64()
    t0 = time.perf_counter()
    name, params = potential
    pot = _potential(name, **params)
    kt, ks = jax.random.split(jax.random.key(seed))
    teacher = _random_teacher(kt, d, k, seeds)
    student = _random_student(ks, d, k, seeds)
    lap_rel, lam_min = (np.asarray(x) for x in _earnshaw_hess_fn(pot, k, d)(student, teacher))
    ok_lap = lap_rel.max(-1) < tol
    ok_neg = np.all(lam_min < 0, axis=-1)
    # flows: positive charges, so every electron is pulled in by the protons and pushed by the others
    nf = seeds if flow_seeds is None else min(seeds, flow_seeds)
    kt2, ks2, ka, kb = jax.random.split(jax.random.key(seed + 1), 4)
    ft = Teacher(b=jax.random.uniform(kb, (nf, k), minval=0.5, maxval=1.5), w=jax.random.normal(kt2, (nf, k, d)))
    fs = Student(a=jax.random.uniform(ka, (nf, k), minval=0.5, maxval=1.5),
                 theta=2.0 * jax.random.normal(ks2, (nf, k, d)))

    traj = gradient_flow(pot, ft, fs, t1=t1, train="theta", objective="reduced", collision_radius=collision_radius,
                         n_save=2, gtol=0.0, on_divergence="ignore")
    status = traj.status_names()
    d_ep = np.asarray(jnp.linalg.norm(traj.final.theta[:, :, None] - ft.w[:, None], axis=-1).min(axis=(-2, -1)))
    ok_flow = (status == "collided") & (d_ep < collision_radius * 1.5)
    ok = ok_lap & ok_neg
    ok[:nf] &= ok_flow
    worst = f"|Δθ|/|H| {lap_rel.max():.1e}; {int((~ok_flow).sum())}/{nf} flows not on a proton"
    return _row("Theorem 9 (Earnshaw)", "— (not realisable)", _pot_label(pot),
                "Δθᵢ L = 0 ⇒ no strict min; flows end on a proton",
                f"Hessian at random configs; flow (θ only, a,b>0) to collision, d={d}, k={k}", ok, worst,
                details=dict(laplacian_rel_max=float(lap_rel.max()), all_blocks_negative=bool(ok_neg.all()),
                             flow_status={s: int((status == s).sum()) for s in set(status.tolist())}),
                seconds=time.perf_counter() - t0)


@functools.lru_cache(maxsize=None)
def _earnshaw_hess_fn(pot, k, d):
    def single(student, teacher):
        problem = Problem(pot, teacher, objective="reduced")
        H = jax.hessian(problem.f)(problem.flatten(student))
        blocks = jnp.stack([H[k + i * d:k + (i + 1) * d, k + i * d:k + (i + 1) * d] for i in range(k)])
        lap = jnp.trace(blocks, axis1=-2, axis2=-1)
        scale = jnp.linalg.norm(blocks, axis=(-2, -1))
        return jnp.abs(lap) / scale, jnp.linalg.eigvalsh(blocks)[:, 0]

    return jax.jit(jax.vmap(single))
