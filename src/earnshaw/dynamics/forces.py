r"""Electron-proton forces (paper Definition 4) and Theorem 5 in its corrected form.

Electron ``i`` sits at ``theta_i`` with charge ``q_i = -a_i`` (the paper's sign;
see :mod:`earnshaw._typing`); proton ``j`` sits at ``w_j`` with charge ``b_j``. The
force of a charge ``q`` at ``y`` on electron ``i`` under a pair potential ``P`` is
``F = q_i q nabla_1 P(theta_i, y)``, and the electrons move with velocity
``-sum F`` (gradient descent reads forces as velocities).

**Theorem 5, corrected** (docs/math.md sections 4 and 8): gradient flow
``dtheta/dt = -nabla_theta L`` on the loss ``L`` of eq. (1) *is* electron-proton
dynamics under ``2 Phi`` (the paper says flow on ``L/2``, which is dynamics under
``Phi``, off by a factor of 2); inner-product potentials add the self-energy force
``-2 q_i^2 nabla_1 Phi(theta_i, theta_i)``, since their ``Phi(theta, theta)``
depends on ``theta``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from earnshaw._typing import Student, Teacher, check_pair, check_unbiased
from earnshaw.loss import population_loss, reduced_loss
from earnshaw.potentials import potential as _potential
from earnshaw.potentials.mixed import check_single
from earnshaw.problem import as_student, as_teacher, vmap_batch

__all__ = ["electron_velocity", "theorem5_residual"]


def _pair_grad1(pot, X, Y):
    """``nabla_1 Phi(X_i, Y_j)`` for ``X (k, d)``, ``Y (m, d)`` -> ``(k, m, d)``."""
    g = jax.grad(lambda u, v: pot(u, v))
    return jax.vmap(jax.vmap(g, (None, 0)), (0, None))(X, Y)


def _velocity_single(pot, a, theta, b, w, include_self):
    q = -a
    k = theta.shape[0]
    eye = jnp.eye(k, dtype=bool)
    # Pairs i != j only: move the diagonal partner away so singular potentials stay finite.
    partner = jnp.where(eye[..., None], theta[:, None, :] + 1.0, theta[None, :, :])
    g_ee = jax.vmap(lambda x, ys: jax.vmap(lambda y: jax.grad(lambda u: pot(u, y))(x))(ys))(theta, partner)
    g_ee = jnp.where(eye[..., None], 0.0, g_ee)
    g_ep = _pair_grad1(pot, theta, w)
    # Forces under the doubled potential 2 Phi.
    force = (q[:, None, None] * q[None, :, None] * 2.0 * g_ee).sum(1) \
        + (q[:, None, None] * b[None, :, None] * 2.0 * g_ep).sum(1)
    if include_self and pot.kind == "inner":
        g_self = jax.vmap(lambda x: jax.grad(lambda u: pot(u, x))(x))(theta)
        force = force + 2.0 * (q**2)[:, None] * g_self
    return -force


def electron_velocity(pot, teacher: Teacher, student: Student, *, include_self: bool = True):
    r"""Electron velocities under electron-proton dynamics with potential ``2 Phi`` (Def. 4).

    ``v_i = -sum_{j != i} q_i q_j nabla_1(2 Phi)(theta_i, theta_j)
            - sum_j q_i b_j nabla_1(2 Phi)(theta_i, w_j)
            [- 2 q_i^2 nabla_1 Phi(theta_i, theta_i), inner-product potentials]``
    with ``q = -a``. Computed pair by pair from ``nabla_1 Phi``, independently of the loss.

    Args:
      pot: potential or name. teacher, student: optional leading batch axes (same on both or teacher unbatched).
      include_self: add the self-energy force of inner-product potentials.

    Returns:
      ``(..., k, d)``, equal to ``-nabla_theta L`` (Theorem 5, corrected).

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> v = es.electron_velocity("erf", t, s)
    >>> g = jax.grad(lambda th: es.population_loss("erf", t, es.Student(a=s.a, theta=th)))(s.theta)
    >>> v.shape, bool(jax.numpy.abs(v + g).max() < 1e-5)
    ((2, 3), True)
    """
    pot = _potential(pot)
    check_single("electron_velocity", pot)
    teacher, student = as_teacher(teacher), as_student(student)
    check_pair(student, teacher)
    check_unbiased("electron_velocity", teacher, student)
    return _velocity_program(pot, bool(include_self), student.a, student.theta, teacher.b, teacher.w)


@functools.partial(jax.jit, static_argnames=("pot", "include_self"))
def _velocity_program(pot, include_self, a, theta, b, w):
    # one compiled program: run op by op, the pairwise vmaps of grads took seconds per call
    fn = lambda a, th, b, w: _velocity_single(pot, a, th, b, w, include_self)  # noqa: E731
    tb = 0 if b.ndim > 1 else None
    return vmap_batch(fn, a.ndim - 1, (0, 0, tb, tb))(a, theta, b, w)


def theorem5_residual(pot, teacher: Teacher, student: Student):
    """Max-abs difference between ``-nabla_theta L`` (autodiff of eq. 1) and :func:`electron_velocity`.

    Uses the reduced loss (eq. 2) for unbounded potentials, whose gradient in
    ``theta`` is the same. Returns ``(residual, scale)`` where ``scale`` is the
    max-abs velocity, so ``residual / scale`` is the relative disagreement.

    >>> import jax, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2); s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> res, scale = es.theorem5_residual("erf", t, s)
    >>> bool(res < 1e-12 * max(scale, 1.0))
    True
    >>> jax.config.update("jax_enable_x64", False)
    """
    pot = _potential(pot)
    check_single("theorem5_residual", pot)
    teacher, student = as_teacher(teacher), as_student(student)
    check_pair(student, teacher)
    check_unbiased("theorem5_residual", teacher, student)
    res, scale = _residual_program(pot, teacher, student)
    return float(res), float(scale)


@functools.partial(jax.jit, static_argnames=("pot",))
def _residual_program(pot, teacher, student):
    loss = population_loss if pot.bounded else reduced_loss
    grad_theta = jax.grad(lambda th: jnp.sum(loss(pot, teacher, Student(a=student.a, theta=th))))(student.theta)
    vel = _velocity_program(pot, True, student.a, student.theta, teacher.b, teacher.w)
    return jnp.max(jnp.abs(-grad_theta - vel)), jnp.max(jnp.abs(vel))
