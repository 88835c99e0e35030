"""Hessians, spectra and per-electron Laplacians of the objective, in float64.

Landscape numerics (near-zero eigenvalues, 1e-12 gradients) need float64: these
functions warn when given float32 inputs. Enable it at your entry point with
``jax.config.update("jax_enable_x64", True)`` (the CLI does).
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from earnshaw.problem import resolve, vmap_batch

__all__ = ["hessian", "spectrum", "laplacians", "warn_if_float32"]


def warn_if_float32(x, what="landscape analysis"):
    if jnp.asarray(x).dtype != jnp.float64:
        warnings.warn(f"{what} in {jnp.asarray(x).dtype}: eigenvalues and gradient norms below ~1e-6 are not "
                      "trustworthy; enable float64 with jax.config.update('jax_enable_x64', True)",
                      RuntimeWarning, stacklevel=3)


@jax.jit
def _hessian_program(problem, student):
    return problem.hessian(student)


@jax.jit
def _spectrum_program(problem, student):
    def single(p, x):
        H, g = p.flat_hessian(x), p.flat_grad(x)
        return p.free_eigh(H, g, x)[0]
    nb = student.a.ndim - 1
    return vmap_batch(single, nb, (0 if problem.teacher.b.ndim > 1 else None, 0))(problem, problem.flatten(student))


def hessian(*args, objective=None, train=None, manifold=None):
    """Hessian of the objective over the trainable variables, in the flat layout ``x = [a (k), theta (k*d)]``
    (``[a, theta, bias (k)]`` for a biased student).

    Call as ``hessian(problem, student)`` or ``hessian(pot, teacher, student, ...)``.

    Args:
      args: ``problem, student`` or ``pot, teacher, student`` (optional batch axes).
      objective, train, manifold: as for the solvers (with a ``problem``, they replace its fields).

    Returns:
      ``(*B, n_t, n_t)``: ``n_t = k + k d`` for ``train="both"``, ``k d`` for ``"theta"``, ``k`` for ``"a"``
      (the rows and columns of the trainable coordinates); on spheres the Riemannian Hessian
      ``P (H - diag(theta_i . grad_i)) P`` in ambient coordinates.

    >>> import jax, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> H = es.hessian("erf", t, es.Student(a=t.b, theta=t.w))
    >>> H.shape, bool(abs(H - H.T).max() < 1e-12)
    ((8, 8), True)
    >>> es.hessian("erf", t, es.Student(a=t.b, theta=t.w), train="theta").shape
    (6, 6)
    >>> jax.config.update("jax_enable_x64", False)
    """
    problem, student = resolve("hessian", args, objective=objective, train=train, manifold=manifold)
    warn_if_float32(student.theta, "hessian")
    return _hessian_program(problem, student)


def spectrum(*args, objective=None, train=None, manifold=None):
    """Eigenvalues of the Hessian over the directions the problem moves in, ascending; arguments as :func:`hessian`.

    Returns ``(*B, n_free)``: ``n_free`` counts the trainable coordinates, less one per unit on spheres
    (the radial directions, in which the problem cannot move, are left out).

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> ev = es.spectrum("erf", t, es.Student(a=t.b, theta=t.w))  # at the global minimum
    >>> ev.shape, bool(ev[0] > -1e-10)
    ((8,), True)
    """
    problem, student = resolve("spectrum", args, objective=objective, train=train, manifold=manifold)
    return _spectrum_program(problem, student)


def laplacians(H, k: int, d: int):
    """Per-electron Laplacian: the trace of each ``theta_i`` block of the Hessian, ``(*B, k)``.

    A harmonic potential makes these zero at any point where no electron sits on a
    charge (Earnshaw); a lambda-harmonic one makes the sum over a cluster equal
    ``2 lambda`` times the cluster's interaction (docs/math.md section 4).
    """
    diag = jnp.diagonal(H, axis1=-2, axis2=-1)[..., k:k + k * d]  # biases, if any, follow theta
    return diag.reshape(*diag.shape[:-1], k, d).sum(-1)
