r"""Hand-derived gradients of the population objectives, for the hot path of the solvers.

For ``L = a'Ka - 2a'Bb + b'Wb`` (natural sign, MATH.md section 4) with
``K = Phi(theta, theta)``, ``B = Phi(theta, w)``:

* ``dL/da = 2 (K a - B b)``;
* ``dL/dtheta_i = 2 a_i [sum_j a_j nabla_1 Phi(theta_i, theta_j) - sum_j b_j nabla_1 Phi(theta_i, w_j)]``
  (the diagonal term counts twice by symmetry, which the factor 2 already holds).

For erf, ``Phi = (2/pi) arcsin(s)`` with ``s = 2 u.v / sqrt(P Q)``, ``P = 1 + 2|u|^2``,
``Q = 1 + 2|v|^2``, and ``nabla_u Phi = (4/pi) / sqrt(P Q (1 - s^2)) (v - (2 u.v / P) u)``, so
the whole gradient is two Gram matrices and four matrix products, with no reverse pass.
Autodiff (``jax.grad``) stays the reference: tests compare the two to 1e-12.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from earnshaw.dynamics import problem as P
from earnshaw.potentials import inner as _inner
from earnshaw.potentials._fastmath import asin

__all__ = ["GRADIENTS", "check_gradient", "flat_gradient", "flat_value_and_gradient", "has_closed_form"]

#: Gradient modes accepted by the solvers' ``grad=`` keyword.
GRADIENTS = ("auto", "autodiff", "closed_form")


def _erf_parts(U, V, rp, rq):
    """``(Phi, C, 2 c / P)`` for Gram pairs of ``U (m, d)``, ``V (n, d)``; ``C`` is the nabla_1 factor."""
    c = U @ V.T
    s = 2.0 * c * rp[:, None] * rq[None, :]
    phi = (2.0 / math.pi) * asin(s)
    C = (4.0 / math.pi) * rp[:, None] * rq[None, :] * jax.lax.rsqrt(1.0 - s * s)
    return phi, C, 2.0 * c * (rp * rp)[:, None]


def _teacher_term(b, w):
    """``b' Phi(w, w) b``: the constant of ``L`` and ``G`` (traced once, outside any solver loop)."""
    rq = jax.lax.rsqrt(1.0 + 2.0 * jnp.sum(w * w, -1))
    return b @ _erf_parts(w, w, rq, rq)[0] @ b


def _erf_value_grad(a, th, b, w, objective, teacher_term):
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
        value = value + teacher_term
    if objective == "G":
        ga = ga + 2.0 * a
        value = value + a @ a
    return value, ga, gt


def _erf_grad(a, th, b, w, objective):
    # the value is dead code here: XLA drops it
    _, ga, gt = _erf_value_grad(a, th, b, w, objective, 0.0)
    return ga, gt


def _is_builtin_erf(pot):
    return pot.kind == "inner" and pot.fn is _inner.erf


def has_closed_form(pot, objective) -> bool:
    """Whether :func:`flat_gradient` has a hand-derived gradient for ``pot`` and ``objective``."""
    return _is_builtin_erf(pot) and objective in ("L", "G", "reduced")


def check_gradient(pot, objective, grad: str) -> None:
    """Raise a ValueError naming the valid choices if ``grad`` is unknown or unavailable for ``pot``."""
    if grad not in GRADIENTS:
        raise ValueError(f"unknown grad={grad!r}; valid: {', '.join(GRADIENTS)}")
    if grad == "closed_form" and not has_closed_form(pot, objective):
        raise ValueError(f"no closed-form gradient for {pot!r} with objective {objective!r} "
                         "(known: the built-in erf potential with L, G or reduced); use grad='autodiff'")


def flat_gradient(pot, teacher, k: int, d: int, objective: str, grad: str = "auto"):
    """``x -> grad f(x)`` on the flat vector ``[a, theta.ravel()]`` of one problem.

    Args:
      pot: a :class:`~earnshaw.potentials.Potential`. teacher: unbatched :class:`Teacher`.
      k, d: student width and dimension. objective: ``"L"``, ``"G"`` or ``"reduced"``.
      grad: ``"auto"`` (closed form where one is known, else autodiff), ``"autodiff"`` or
        ``"closed_form"`` (an error when none is known).

    Returns:
      A function of ``x`` with shape ``(k + k d,)`` returning the same shape.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> from earnshaw.dynamics import problem as P
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2); s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> x = P.flatten(s); pot = es.potential("erf")
    >>> g1 = flat_gradient(pot, t, 2, 3, "L", "closed_form")(x)
    >>> g2 = flat_gradient(pot, t, 2, 3, "L", "autodiff")(x)
    >>> bool(jnp.allclose(g1, g2, atol=1e-6))
    True
    """
    check_gradient(pot, objective, grad)
    if has_closed_form(pot, objective) and grad != "autodiff":
        def g(x):
            s = P.unflatten(x, k, d)
            ga, gt = _erf_grad(s.a, s.theta, teacher.b, teacher.w, objective)
            return jnp.concatenate([ga, gt.reshape(-1)])
        return g
    return jax.grad(P.make_objective(pot, teacher, k, d, objective))


def flat_value_and_gradient(pot, teacher, k: int, d: int, objective: str, grad: str = "auto"):
    """``x -> (f(x), grad f(x))`` on the flat vector of one problem; arguments as :func:`flat_gradient`.

    With erf's closed form the value comes from the gradient's own Gram matrices (two inner products
    more), so a program that needs both holds one copy of the objective instead of two (the flow's
    saves, SecondGD, Hessian descent); else ``jax.value_and_grad``.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> from earnshaw.dynamics import problem as P
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2); s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> val, g = flat_value_and_gradient(es.potential("erf"), t, 2, 3, "L")(P.flatten(s))
    >>> bool(jnp.allclose(val, es.population_loss("erf", s, t), atol=1e-6)), g.shape
    (True, (8,))
    """
    check_gradient(pot, objective, grad)
    if has_closed_form(pot, objective) and grad != "autodiff":
        const = _teacher_term(teacher.b, teacher.w) if objective != "reduced" else 0.0

        def vg(x):
            s = P.unflatten(x, k, d)
            value, ga, gt = _erf_value_grad(s.a, s.theta, teacher.b, teacher.w, objective, const)
            return value, jnp.concatenate([ga, gt.reshape(-1)])
        return vg
    return jax.value_and_grad(P.make_objective(pot, teacher, k, d, objective))
