r"""Hand-derived gradients of the population objectives, for the hot path of the solvers.

For ``L = a'Ka - 2a'Bb + b'Wb`` (natural sign, docs/math.md section 4) with
``K = Phi(theta, theta)``, ``B = Phi(theta, w)``:

* ``dL/da = 2 (K a - B b)``;
* ``dL/dtheta_i = 2 a_i [sum_j a_j nabla_1 Phi(theta_i, theta_j) - sum_j b_j nabla_1 Phi(theta_i, w_j)]``
  (the diagonal term counts twice by symmetry, which the factor 2 already holds).

For erf, ``Phi = (2/pi) arcsin(s)`` with ``s = 2 u.v / sqrt(P Q)``, ``P = 1 + 2|u|^2``,
``Q = 1 + 2|v|^2``, and ``nabla_u Phi = (4/pi) / sqrt(P Q (1 - s^2)) (v - (2 u.v / P) u)``, so
the whole gradient is two Gram matrices and four matrix products, with no reverse pass. For relu,
``nabla_u Phi = ((pi - alpha) v + |v| sin(alpha) u / |u|) / (2 pi)`` (``alpha`` the angle between ``u`` and
``v``; ``u / 2`` for the self-pair), again matrix products of Gram matrices. For the fast Hermite tables (tanh,
sigmoid_pm1, softplus, ...), ``nabla_u Phi = 2 (dPhi/d|u|^2) u + (dPhi/du.v) v`` with both partials from the same
pass of the series as ``Phi`` (:func:`~earnshaw.potentials.fast.fast_gram_partials`); the teacher's own Gram matrix
``W`` is then needed only for the constant, which a solver computes once.
Autodiff (``jax.grad``) stays the reference: tests compare the two to 1e-12. :class:`earnshaw.Problem`
dispatches to these functions; nothing else needs to.
"""
from __future__ import annotations

import functools
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


def teacher_term(b, w, pot=None):
    """``b' Phi(w, w) b``: the constant of ``L`` and ``G`` (traced once, outside any solver loop); erf's unless
    ``pot`` is relu or a fast table."""
    if pot is not None and _is_builtin_relu(pot):
        return b @ _inner.relu(*_gram_triple(w, w)) @ b
    if pot is not None and _is_table(pot):
        return b @ pot.self_gram(w) @ b
    rq = jax.lax.rsqrt(1.0 + 2.0 * jnp.sum(w * w, -1))
    return b @ _erf_parts(w, w, rq, rq)[0] @ b


def _gram_triple(U, V):
    nu, nv = jnp.sum(U * U, -1), jnp.sum(V * V, -1)
    return nu[:, None], U @ V.T, nv[None, :]


def _objective_terms(value, ga, a, objective, const):
    """``(F, dF/da)`` of ``objective`` from ``a'Ka - 2a'Bb`` and its ``a``-gradient: the teacher's constant for L and
    G, and G's ``|a|^2``."""
    if objective != "reduced":
        value = value + const
    if objective == "G":
        ga = ga + 2.0 * a
        value = value + a @ a
    return value, ga


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
    return _objective_terms(value, ga, a, objective, const) + (gt,)


def _relu_parts(U, V, nu, nv):
    """``(Phi, A, S)`` for ReLU Gram pairs: ``nabla_1 Phi(u, v) = (A v + S u) / (2 pi)`` with ``A = pi - alpha``,
    ``S = |v| sin(alpha) / |u|`` (0 where a unit is 0), so a Gram matrix of gradients is two matrix products."""
    c = U @ V.T
    prod = nu[:, None] * nv[None, :]
    nz = prod > 0
    root = jnp.sqrt(jnp.where(nz, prod, 1.0))
    cos = jnp.clip(jnp.where(nz, c / root, 1.0), -1.0, 1.0)
    sin = jnp.sqrt(jnp.maximum(1.0 - cos * cos, 0.0))
    alpha = jnp.arctan2(sin, cos)
    phi = jnp.where(nz, (root * sin + (jnp.pi - alpha) * c) / (2.0 * jnp.pi), 0.0)
    A = jnp.where(nz, jnp.pi - alpha, 0.0)
    S = jnp.where(nz, jnp.sqrt(jnp.where(nz, nv[None, :] / jnp.where(nz, nu[:, None], 1.0), 0.0)) * sin, 0.0)
    return phi, A, S


def _relu_value_grad(a, th, b, w, objective, const):
    """ReLU's ``L`` / ``G`` / reduced and its gradient: ``nabla_1 Phi(u, v) = ((pi - alpha) v + |v| sin(alpha)
    u / |u|) / (2 pi)``; the self-pair (``alpha = 0``) gives ``u / 2``, the gradient of ``Phi(u, u) = |u|^2 / 2``."""
    nu, nw = jnp.sum(th * th, -1), jnp.sum(w * w, -1)
    K, AK, SK = _relu_parts(th, th, nu, nu)
    eye = jnp.eye(a.shape[0], dtype=bool)
    K = jnp.where(eye, 0.5 * nu[:, None], K)       # exact self-energies |u|^2 / 2, no rounding of the angle
    AK, SK = jnp.where(eye, jnp.pi, AK), jnp.where(eye, 0.0, SK)
    B, AB, SB = _relu_parts(th, w, nu, nw)
    if objective == "reduced":
        off = ~eye
        K, AK, SK = K * off, AK * off, SK * off
    MK, MB = AK * a[None, :], AB * b[None, :]
    Ka, Bb = K @ a, B @ b
    ga = 2.0 * (Ka - Bb)
    value = a @ Ka - 2.0 * (a @ Bb)
    force = (MK @ th - MB @ w + (jnp.sum(SK * a[None, :], -1) - jnp.sum(SB * b[None, :], -1))[:, None] * th)
    gt = 2.0 * a[:, None] * force / (2.0 * jnp.pi)
    return _objective_terms(value, ga, a, objective, const) + (gt,)


def _table_value_grad(pot, a, th, b, w, objective, const):
    """A fast table's objective and gradient from ``Phi`` and its two partials between each student unit and every
    unit of the network (one pass of the series over those pairs; none over the teacher's own)."""
    k = a.shape[0]
    G, GU, GC = pot.partials_fn(th, w)  # (k, k + m): [K | B] and its partials
    eye = jnp.eye(k, G.shape[1], dtype=bool)
    # the diagonal's derivative in |u|^2 moves both arguments of Phi(u, u); nabla_1 is half of it (the symmetric
    # sum's factor 2 holds the other half)
    GU = jnp.where(eye, 0.5 * GU, GU)
    if objective == "reduced":
        G, GU, GC = (jnp.where(eye, 0.0, M) for M in (G, GU, GC))
    charges = jnp.concatenate([a, -b])
    # (K a - B b, K a - 2 B b) in one product
    both = G @ jnp.stack([charges, jnp.concatenate([a, -2.0 * b])], axis=1)
    ga = 2.0 * both[:, 0]
    value = a @ both[:, 1]
    # sum_j q_j nabla_1 Phi(theta_i, v_j) over every unit v_j of charge q_j, nabla_1 = 2 Phi_nu u + Phi_c v
    force = 2.0 * (GU @ charges)[:, None] * th + (GC * charges[None, :]) @ jnp.concatenate([th, w])
    gt = 2.0 * a[:, None] * force
    return _objective_terms(value, ga, a, objective, const) + (gt,)


def _is_table(pot):
    return getattr(pot, "partials_fn", None) is not None


def _is_builtin_erf(pot):
    return pot.kind == "inner" and pot.fn is _inner.erf


def _is_builtin_relu(pot):
    return pot.kind == "inner" and pot.fn is _inner.relu


def has_closed_form(pot, objective) -> bool:
    """Whether a hand-derived gradient serves ``pot`` and ``objective`` (the built-in erf or relu, or a fast
    table's potential; L / G / reduced).

    >>> import earnshaw as es
    >>> has_closed_form(es.potential("erf"), "L"), has_closed_form(es.potential("relu"), "L")
    (True, True)
    >>> has_closed_form(es.potential("tanh"), "L"), has_closed_form(es.potential("tanh", method="quadrature"), "L")
    (True, False)
    """
    return (_is_builtin_erf(pot) or _is_builtin_relu(pot) or _is_table(pot)) and isinstance(objective, str) and \
        objective in ("L", "G", "reduced")


def closed_form_hessian(pot, objective) -> bool:
    """Whether the Hessian is best the forward-mode Jacobian of the hand-derived gradient: erf's is smooth;
    relu's angle is not differentiable at parallel units (the diagonal), so its Hessian stays autodiff."""
    return _is_builtin_erf(pot) and has_closed_form(pot, objective)


def check_gradient(pot, objective, grad: str) -> None:
    """Raise a ValueError naming the valid choices if ``grad`` is unknown or unavailable for ``pot``."""
    if grad not in GRADIENTS:
        raise ValueError(f"unknown grad={grad!r}; valid: {', '.join(GRADIENTS)}")
    if grad == "closed_form" and not has_closed_form(pot, objective):
        raise ValueError(f"no closed-form gradient for {pot!r} with objective {objective!r} "
                         "(known: the built-in erf and relu potentials and the fast tables, with L, G or reduced); "
                         "use grad='autodiff'")


def value_and_gradient(a, theta, b, w, objective: str, const=None, pot=None):
    """erf's (or relu's) objective and its gradient ``(F, dF/da (k,), dF/dtheta (k, d))`` for one problem.

    Args:
      a: ``(k,)``, theta: ``(k, d)``: the student. b: ``(m,)``, w: ``(m, d)``: the teacher.
      objective: ``"L"``, ``"G"`` or ``"reduced"``.
      const: :func:`teacher_term` ``b' Phi(w, w) b`` if already computed (a constant of ``L`` and ``G``).
      pot: the potential (default erf); the built-in relu selects relu's closed form.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2); s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> F, ga, gt = value_and_gradient(s.a, s.theta, t.b, t.w, "L")
    >>> bool(jnp.allclose(F, es.population_loss("erf", t, s), atol=1e-6)), gt.shape
    (True, (2, 3))
    """
    if const is None:
        const = teacher_term(b, w, pot) if objective != "reduced" else 0.0
    return _value_grad(pot)(a, theta, b, w, objective, const)


def _value_grad(pot):
    if pot is not None and _is_table(pot):
        return functools.partial(_table_value_grad, pot)
    return _relu_value_grad if pot is not None and _is_builtin_relu(pot) else _erf_value_grad


def gradient(a, theta, b, w, objective: str, pot=None):
    """``(dF/da, dF/dtheta)`` alone: the value is dead code and XLA drops it; arguments as :func:`value_and_gradient`.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2); s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> ga, gt = gradient(s.a, s.theta, t.b, t.w, "L", pot=es.potential("relu"))
    >>> auto = jax.grad(lambda th: es.population_loss("relu", t, es.Student(a=s.a, theta=th)))(s.theta)
    >>> bool(jnp.allclose(gt, auto, atol=1e-5))
    True
    """
    _, ga, gt = _value_grad(pot)(a, theta, b, w, objective, 0.0)
    return ga, gt
