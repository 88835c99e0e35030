"""Hessians, spectra and per-electron Laplacians of the objective, in float64.

Landscape numerics (near-zero eigenvalues, 1e-12 gradients) need float64: these
functions warn when given float32 inputs. Enable it at your entry point with
``jax.config.update("jax_enable_x64", True)`` (the CLI does).
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp

from earnshaw.dynamics import problem as P
from earnshaw.dynamics.closed_form import flat_gradient, has_closed_form
from earnshaw.potentials import potential as _potential

__all__ = ["hessian", "flat_hessian", "spectrum", "laplacians", "warn_if_float32"]


def warn_if_float32(x, what="landscape analysis"):
    if jnp.asarray(x).dtype != jnp.float64:
        warnings.warn(f"{what} in {jnp.asarray(x).dtype}: eigenvalues and gradient norms below ~1e-6 are not "
                      "trustworthy; enable float64 with jax.config.update('jax_enable_x64', True)",
                      RuntimeWarning, stacklevel=3)


def flat_hessian(pot, teacher, k: int, d: int, objective: str):
    """``x -> H(x)`` for the flat student vector (single problem).

    Where a hand-derived gradient is known (erf) the Hessian is its forward-mode Jacobian: no reverse
    pass, about 30% less to compile and to run at k = d = 20 than ``jax.hessian``; else ``jax.hessian``.
    """
    if has_closed_form(pot, objective):
        return jax.jacfwd(flat_gradient(pot, teacher, k, d, objective, "closed_form"))
    return jax.hessian(P.make_objective(pot, teacher, k, d, objective))


@functools.lru_cache(maxsize=None)
def _hess_fn(pot, k, d, objective, nb, teacher_batched):
    def single(x, teacher):
        return flat_hessian(pot, teacher, k, d, objective)(x)

    fn = single
    for _ in range(nb):
        fn = jax.vmap(fn, in_axes=(0, 0 if teacher_batched else None))
    return jax.jit(fn)


def hessian(pot, teacher, student, *, objective=None):
    """Hessian of the objective in the flat variables ``x = [a (k), theta (k*d)]``.

    Args:
      pot, teacher, student: as for the solvers (optional batch axes).
      objective: ``"L"``, ``"G"`` or ``"reduced"`` (default by boundedness).

    Returns:
      ``(*B, n, n)`` with ``n = k + k d``.

    >>> import jax, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> H = es.hessian("erf", t, es.Student(a=t.b, theta=t.w))
    >>> H.shape, bool(abs(H - H.T).max() < 1e-12)
    ((8, 8), True)
    >>> jax.config.update("jax_enable_x64", False)
    """
    pot = _potential(pot)
    objective = P.default_objective(pot) if objective is None else objective
    nb, tb = P.batch_axes(student, teacher)
    x = P.flatten(student)
    warn_if_float32(x, "hessian")
    return _hess_fn(pot, student.k, student.d, objective, nb, tb)(x, teacher)


def spectrum(pot, teacher, student, *, objective=None):
    """Eigenvalues of the Hessian, ascending: ``(*B, n)`` with ``n = k + k d``; arguments as :func:`hessian`.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> ev = es.spectrum("erf", t, es.Student(a=t.b, theta=t.w))  # at the global minimum
    >>> ev.shape, bool(ev[0] > -1e-10)
    ((8,), True)
    """
    H = hessian(pot, teacher, student, objective=objective)
    return jnp.linalg.eigvalsh(0.5 * (H + jnp.swapaxes(H, -1, -2)))


def laplacians(H, k: int, d: int):
    """Per-electron Laplacian: the trace of each ``theta_i`` block of the Hessian, ``(*B, k)``.

    A harmonic potential makes these zero at any point where no electron sits on a
    charge (Earnshaw); a lambda-harmonic one makes the sum over a cluster equal
    ``2 lambda`` times the cluster's interaction (MATH.md section 4).
    """
    diag = jnp.diagonal(H, axis1=-2, axis2=-1)[..., k:]
    return diag.reshape(*diag.shape[:-1], k, d).sum(-1)
