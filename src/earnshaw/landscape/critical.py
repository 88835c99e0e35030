"""Newton polishing of near-critical points (optimistix), like MLPGradientFlow's flow -> Newton step.

Newton's method on ``grad f = 0`` converges quadratically to the nearest critical
point of any index (minimum or saddle), which is what landscape analysis wants;
the least-squares linear solve copes with the flat directions that symmetric
configurations have.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx

from earnshaw.dynamics import problem as P
from earnshaw.landscape.hessian import warn_if_float32
from earnshaw.potentials import potential as _potential

__all__ = ["refine"]


@functools.lru_cache(maxsize=None)
def _refine_fn(pot, k, d, objective, train, nb, teacher_batched, max_steps, rtol, atol):
    def single(x0, teacher):
        f = P.make_objective(pot, teacher, k, d, objective)
        mask = P.train_mask(k, d, train, x0.dtype)

        def fn(x, args):
            # frozen coordinates: residual x - x0 pins them
            return jnp.where(mask > 0, jax.grad(f)(x), x - x0)

        solver = optx.Newton(rtol=rtol, atol=atol, linear_solver=lx.AutoLinearSolver(well_posed=False))
        sol = optx.root_find(fn, solver, x0, max_steps=max_steps, throw=False)
        x = sol.value
        gn = jnp.linalg.norm(jax.grad(f)(x) * mask)
        # keep the start if Newton made things worse (e.g. it left the basin)
        gn0 = jnp.linalg.norm(jax.grad(f)(x0) * mask)
        better = jnp.isfinite(gn) & (gn <= gn0)
        return jnp.where(better, x, x0), jnp.where(better, gn, gn0), sol.stats["num_steps"]

    fn = single
    for _ in range(nb):
        fn = jax.vmap(fn, in_axes=(0, 0 if teacher_batched else None))
    return jax.jit(fn)


def refine(pot, teacher, student, *, objective=None, train="both", max_steps=30, rtol=1e-13, atol=1e-13):
    """Polish ``student`` to a critical point of the objective with Newton's method.

    Args:
      pot, teacher, student: as for the solvers; leading batch axes allowed.
      objective: ``"L"``, ``"G"`` or ``"reduced"`` (default by boundedness).
      train: which variables move (the others stay fixed).
      max_steps: Newton iterations. rtol, atol: optimistix termination tolerances.

    Returns:
      ``(student, grad_norm, n_steps)``: the polished point, its gradient norm ``(*B,)``
      (Euclidean norm over the trainable variables) and the iterations used. A start
      that Newton cannot improve is returned unchanged.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> near = es.Student(a=t.b + 1e-3, theta=t.w - 1e-3)
    >>> s, gn, _ = es.refine("erf", t, near)
    >>> bool(gn < 1e-10)
    True
    >>> jax.config.update("jax_enable_x64", False)
    """
    pot = _potential(pot)
    P.check_options(train, "euclidean")
    objective = P.default_objective(pot) if objective is None else objective
    nb, tb = P.batch_axes(student, teacher)
    x0 = P.flatten(student)
    warn_if_float32(x0, "refine")
    x, gn, n = _refine_fn(pot, student.k, student.d, objective, train, nb, tb, int(max_steps), float(rtol),
                          float(atol))(x0, teacher)
    return P.unflatten(x, student.k, student.d), gn, n


