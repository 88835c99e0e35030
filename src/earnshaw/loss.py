r"""Losses of a student against a teacher, written through the potential.

With ``K = Phi(theta, theta)``, ``B = Phi(theta, w)`` and ``W = Phi(w, w)``
(docs/math.md section 4) and the natural sign (the student predicts ``+sum a_i
sigma(x, theta_i)``; the paper's eq. (1) uses ``-a``):

* population (eq. 1): ``L = E[(f - f_hat)^2] = a'Ka - 2 a'Bb + b'Wb``, exact;
* reduced (eq. 2): ``L_bar = sum_{i != j} a_i a_j K_ij - 2 a'Bb``, which drops the
  self-energies and the constant, so it is finite for unbounded potentials
  (coulomb, yukawa); ``L = L_bar + sum_i a_i^2 K_ii + b'Wb``;
* regularised: ``G = L + |a|^2``;
* empirical: the sample mean of ``(f(x) - f_hat(x))^2`` (no 1/2 anywhere).

Every function accepts leading batch axes on the student, the teacher or both. Biased units
(``Student.bias``, ``Teacher.bias``) enter through the potential of biased units
(:meth:`earnshaw.Potential.gram` with biases); without biases nothing changes. Per-unit activations
(a :class:`~earnshaw.potentials.MixedPotential`, e.g. ``pot = ["erf", "relu"]``) give ``K``, ``B`` and ``W``
with cross potentials ``Phi_{s_i, t_j}`` (docs/math.md section 1f).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from earnshaw._typing import Student, Teacher, check_pair
from earnshaw.network import predict
from earnshaw.potentials import MixedPotential, Potential, potential as _potential

__all__ = ["population_loss", "reduced_loss", "regularised_loss", "empirical_loss", "optimal_a",
           "optimal_loss", "OBJECTIVES", "objective"]


def _quad(x, M, y):
    return jnp.sum(x[..., :, None] * M * y[..., None, :], axis=(-2, -1))


def _parts(pot, teacher, student):
    """``(pot, K, B, W)``; ``W`` is ``None`` (computed on demand) for bias-free units."""
    pot = _potential(pot)
    check_pair(student, teacher)
    mixed = isinstance(pot, MixedPotential)
    if mixed:
        pot.check_units("student", student.k)
        pot.check_units("teacher", teacher.k)
    if student.bias is None and teacher.bias is None:
        if mixed:  # the same three Gram matrices as below, each with its units' activations
            return (pot, pot.self_gram(student.theta, side="student"), pot.gram(student.theta, teacher.w),
                    pot.self_gram(teacher.w, side="teacher"))
        if pot.grams_fn is not None:  # one evaluation of all three (the fast tables)
            return (pot, *pot.grams((student.theta, teacher.w), ((0, 0), (0, 1), (1, 1))))
        return pot, pot.self_gram(student.theta), pot.gram(student.theta, teacher.w), None
    # one Gram matrix of all units: the biased forms are long programs, and one copy compiles 3x faster than three
    k = student.k
    batch = jnp.broadcast_shapes(student.a.shape[:-1], teacher.b.shape[:-1])
    cs = student.bias if student.bias is not None else jnp.zeros_like(student.theta[..., 0])
    ct = teacher.bias if teacher.bias is not None else jnp.zeros_like(teacher.w[..., 0])
    units = jnp.concatenate([jnp.broadcast_to(student.theta, batch + student.theta.shape[-2:]),
                             jnp.broadcast_to(teacher.w, batch + teacher.w.shape[-2:])], axis=-2)
    c = jnp.concatenate([jnp.broadcast_to(cs, batch + cs.shape[-1:]), jnp.broadcast_to(ct, batch + ct.shape[-1:])], -1)
    G = pot.self_gram(units, c, side="both") if mixed else pot.self_gram(units, c)
    return pot, G[..., :k, :k], G[..., :k, k:], G[..., k:, k:]


def population_loss(pot, teacher: Teacher, student: Student):
    """Exact population loss ``E_X[(f(X) - f_hat(X))^2]`` (paper eq. 1, natural sign).

    Args:
      pot: a :class:`Potential` or a name. teacher, student: with optional leading batch axes.

    Returns:
      Loss with the broadcast batch shape.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> float(es.population_loss("erf", t, es.Student(a=t.b, theta=t.w)))
    0.0
    """
    pot = _potential(pot)
    check_pair(student, teacher)
    return _population_loss(pot, teacher, student)


# Compiled once per potential and shapes: run eagerly, a first call would compile each operation on its own.
@functools.partial(jax.jit, static_argnums=0)
def _population_loss(pot, teacher: Teacher, student: Student):
    pot, K, B, W = _parts(pot, teacher, student)
    if W is None:
        W = pot.self_gram(teacher.w)
    return _quad(student.a, K, student.a) - 2.0 * _quad(student.a, B, teacher.b) + _quad(teacher.b, W, teacher.b)


def reduced_loss(pot, teacher: Teacher, student: Student):
    """Reduced loss ``L_bar = sum_{i != j} a_i a_j Phi_ij - 2 sum_ij a_i b_j Phi(theta_i, w_j)`` (eq. 2).

    Finite for potentials that are infinite at 0 (coulomb, yukawa), unless two
    charges coincide. Batch axes as in :func:`population_loss`.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> phi = es.potential("erf")
    >>> own = (s.a**2 * phi(s.theta, s.theta)).sum() + t.b @ phi.gram(t.w, t.w) @ t.b
    >>> bool(abs(es.population_loss(phi, t, s) - es.reduced_loss(phi, t, s) - own) < 1e-5)
    True
    """
    pot = _potential(pot)
    check_pair(student, teacher)
    return _reduced_loss(pot, teacher, student)


@functools.partial(jax.jit, static_argnums=0)
def _reduced_loss(pot, teacher: Teacher, student: Student):
    pot, K, B, _ = _parts(pot, teacher, student)
    k = K.shape[-1]
    off = jnp.where(jnp.eye(k, dtype=bool), 0.0, K)
    return _quad(student.a, off, student.a) - 2.0 * _quad(student.a, B, teacher.b)


def regularised_loss(pot, teacher: Teacher, student: Student):
    """``G = L + |a|^2`` (Section 4 of the paper); batch axes as in :func:`population_loss`.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> bool(abs(es.regularised_loss("erf", t, s) - es.population_loss("erf", t, s) - (s.a**2).sum()) < 1e-6)
    True
    """
    return population_loss(pot, teacher, student) + jnp.sum(student.a**2, axis=-1)


def empirical_loss(act, teacher: Teacher, student: Student, x):
    """Sample mean of ``(f(x) - f_hat(x))^2``.

    Args:
      act: activation (or name, or a Potential carrying its activation; a :class:`MixedPotential` or a list
        of names gives each unit its own activation).
      x: inputs ``(..., n, d)``.

    Returns:
      Loss with the batch shape.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> x = jax.random.normal(jax.random.key(2), (200_000, 3))
    >>> mc, exact = es.empirical_loss("erf", t, s, x), es.population_loss("erf", t, s)
    >>> bool(abs(mc - exact) < 0.02 * exact)  # the sample mean estimates the population loss
    True
    """
    if isinstance(act, (list, tuple)):
        act = _potential(act)
    check_pair(student, teacher)
    if isinstance(act, MixedPotential):
        f = jnp.einsum("...nk,...k->...n", act.units(x, teacher.w, teacher.bias, side="teacher"), teacher.b)
        f_hat = jnp.einsum("...nk,...k->...n", act.units(x, student.theta, student.bias, side="student"), student.a)
        return jnp.mean((f - f_hat) ** 2, axis=-1)
    if isinstance(act, Potential):
        if act.activation is None:
            raise ValueError(f"{act!r} has no known activation; pass one, or use realize()")
        act = act.activation
    err = predict(act, teacher.b, teacher.w, x, teacher.bias) - predict(act, student.a, student.theta, x, student.bias)
    return jnp.mean(err * err, axis=-1)


def optimal_a(pot, teacher: Teacher, theta, *, reg: float = 0.0, bias=None):
    """Best output weights for fixed ``theta``: ``argmin_a L + reg |a|^2``.

    ``a* = (K + reg I)^+ B b`` (natural sign; pseudo-inverse when units coincide).
    ``reg=1`` gives the optimum of ``G``.

    Args:
      pot: a :class:`Potential` or a name.
      teacher: with optional batch axes.
      theta: ``(..., k, d)``.
      reg: the weight of ``|a|^2``.
      bias: the student's biases ``(..., k)``, or ``None``.

    Returns:
      ``(..., k)``.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> bool(jax.numpy.allclose(es.optimal_a("erf", t, t.w), t.b))  # at the teacher's units: its charges
    True
    """
    pot = _potential(pot)
    theta = jnp.asarray(theta)
    K = pot.self_gram(theta, bias)
    rhs = jnp.einsum("...kj,...j->...k", pot.gram(theta, teacher.w, bias, teacher.bias), teacher.b)
    A = K + reg * jnp.eye(K.shape[-1], dtype=K.dtype)
    if reg > 0:
        return jnp.linalg.solve(A, rhs[..., None])[..., 0]
    return jnp.einsum("...ij,...j->...i", jnp.linalg.pinv(A, hermitian=True), rhs)


def optimal_loss(pot, teacher: Teacher, theta, *, reg: float = 0.0, bias=None):
    """``min_a L + reg |a|^2`` for fixed ``theta`` (shape: the batch shape).

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> bool(abs(es.optimal_loss("erf", t, t.w)) < 1e-5), bool(es.optimal_loss("erf", t, s.theta) > 0)
    (True, True)
    """
    a = optimal_a(pot, teacher, theta, reg=reg, bias=bias)
    student = Student(a=a, theta=jnp.broadcast_to(theta, a.shape + theta.shape[-1:]),
                      bias=None if bias is None else jnp.broadcast_to(bias, a.shape))
    return population_loss(pot, teacher, student) + reg * jnp.sum(a**2, axis=-1)


#: Objectives by name, as used by the solvers' ``objective=`` keyword.
OBJECTIVES = {"L": population_loss, "G": regularised_loss, "reduced": reduced_loss}


def objective(name):
    """The loss function called ``name`` (one of :data:`OBJECTIVES`), or ``name`` if callable.

    >>> import earnshaw as es
    >>> es.objective("G") is es.regularised_loss
    True
    >>> es.objective("H")
    Traceback (most recent call last):
    ValueError: unknown objective 'H'; valid: L, G, reduced
    """
    if callable(name):
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def loss_grad(pot, teacher, student, name="L"):
    """Gradient of objective ``name`` w.r.t. the student (a :class:`Student` of gradients)."""
    fn = objective(name)
    return jax.grad(lambda s: jnp.sum(fn(pot, teacher, s)))(student)
