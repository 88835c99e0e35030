r"""Hand-derived gradients of the population objectives, for the hot path of the solvers.

For ``L = a'Ka - 2a'Bb + b'Wb`` (natural sign, docs/math.md section 4) with
``K = Phi(theta, theta)``, ``B = Phi(theta, w)``:

* ``dL/da = 2 (K a - B b)``;
* ``dL/dtheta_i = 2 a_i [sum_j a_j nabla_1 Phi(theta_i, theta_j) - sum_j b_j nabla_1 Phi(theta_i, w_j)]``
  (the diagonal term counts twice by symmetry, which the factor 2 already holds).

For erf, ``Phi = (2/pi) arcsin(s)`` with ``s = 2 u.v / sqrt(P Q)``, ``P = 1 + 2|u|^2``,
``Q = 1 + 2|v|^2``, and ``nabla_u Phi = (4/pi) / sqrt(P Q (1 - s^2)) (v - (2 u.v / P) u)``, so
the whole gradient is two Gram matrices and four matrix products, with no reverse pass.
Autodiff (``jax.grad``) stays the reference: tests compare the two to 1e-12. :class:`earnshaw.Problem`
dispatches to these functions; nothing else needs to.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from earnshaw.potentials import inner as _inner
from earnshaw.potentials._fastmath import asin

__all__ = ["GRADIENTS", "check_gradient", "gradient", "value_and_gradient", "has_closed_form", "teacher_term"]

#: Gradient modes accepted by the solvers' ``grad=`` keyword.
GRADIENTS = ("auto", "autodiff", "closed_form")


def _erf_parts(U, V, rp, rq):
    """``(Phi, C, 2 c / P)`` for Gram pairs of ``U (m, d)``, ``V (n, d)``; ``C`` is the nabla_1 factor."""
    c = U @ V.T
    s = 2.0 * c * rp[:, None] * rq[None, :]
    phi = (2.0 / math.pi) * asin(s)
    C = (4.0 / math.pi) * rp[:, None] * rq[None, :] * jax.lax.rsqrt(1.0 - s * s)
    return phi, C, 2.0 * c * (rp * rp)[:, None]


def teacher_term(b, w):
    """``b' Phi(w, w) b``: the constant of ``L`` and ``G`` (traced once, outside any solver loop)."""
    rq = jax.lax.rsqrt(1.0 + 2.0 * jnp.sum(w * w, -1))
    return b @ _erf_parts(w, w, rq, rq)[0] @ b


def _erf_value_grad(a, th, b, w, objective, const):
    """Objective value and ``(dF/da, dF/dtheta)``; the value reuses the gradient's Gram matrices."""
    rp = jax.lax.rsqrt(1.0 + 2.0 * jnp.sum(th * th, -1))
    rq = jax.lax.rsqrt(1.0 + 2.0 * jnp.sum(w * w, -1))
    K, CK, EK = _erf_parts(th, th, rp, rp)
    B, CB, EB = _erf_parts(th, w, rp, rq)
    if objective == "reduced":
        off = 1.0 - jnp.eye(a.shape[0], dtype=a.dtype)
        K, CK = K * off, CK * off
    MK = CK * a[None, :]
    MB = CB * b[None, :]
    Ka, Bb = K @ a, B @ b
    ga = 2.0 * (Ka - Bb)
    value = a @ Ka - 2.0 * (a @ Bb)
    # sum_j M_ij (v_j - E_ij theta_i) = (M @ V)_i - (sum_j M_ij E_ij) theta_i
    force = (MK @ th - MB @ w) - (jnp.sum(MK * EK, -1) - jnp.sum(MB * EB, -1))[:, None] * th
    gt = 2.0 * a[:, None] * force
    if objective != "reduced":
        value = value + const
    if objective == "G":
        ga = ga + 2.0 * a
        value = value + a @ a
    return value, ga, gt


def _is_builtin_erf(pot):
    return pot.kind == "inner" and pot.fn is _inner.erf


def has_closed_form(pot, objective) -> bool:
    """Whether erf's hand-derived gradient serves ``pot`` and ``objective`` (the built-in erf, L / G / reduced).

    >>> import earnshaw as es
    >>> has_closed_form(es.potential("erf"), "L"), has_closed_form(es.potential("relu"), "L")
    (True, False)
    """
    return _is_builtin_erf(pot) and isinstance(objective, str) and objective in ("L", "G", "reduced")


def check_gradient(pot, objective, grad: str) -> None:
    """Raise a ValueError naming the valid choices if ``grad`` is unknown or unavailable for ``pot``."""
    if grad not in GRADIENTS:
        raise ValueError(f"unknown grad={grad!r}; valid: {', '.join(GRADIENTS)}")
    if grad == "closed_form" and not has_closed_form(pot, objective):
        raise ValueError(f"no closed-form gradient for {pot!r} with objective {objective!r} "
                         "(known: the built-in erf potential with L, G or reduced); use grad='autodiff'")


def value_and_gradient(a, theta, b, w, objective: str, const=None):
    """erf's objective and its gradient ``(F, dF/da (k,), dF/dtheta (k, d))`` for one problem.

    Args:
      a: ``(k,)``, theta: ``(k, d)``: the student. b: ``(m,)``, w: ``(m, d)``: the teacher.
      objective: ``"L"``, ``"G"`` or ``"reduced"``.
      const: :func:`teacher_term` ``b' Phi(w, w) b`` if already computed (a constant of ``L`` and ``G``).

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2); s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> F, ga, gt = value_and_gradient(s.a, s.theta, t.b, t.w, "L")
    >>> bool(jnp.allclose(F, es.population_loss("erf", t, s), atol=1e-6)), gt.shape
    (True, (2, 3))
    """
    if const is None:
        const = teacher_term(b, w) if objective != "reduced" else 0.0
    return _erf_value_grad(a, theta, b, w, objective, const)


def gradient(a, theta, b, w, objective: str):
    """``(dF/da, dF/dtheta)`` alone: the value is dead code and XLA drops it; arguments as :func:`value_and_gradient`."""
    _, ga, gt = _erf_value_grad(a, theta, b, w, objective, 0.0)
    return ga, gt
