"""Record types shared by every module: the teacher and the student networks.

Convention (stated once, used everywhere): the student predicts
``f_hat(x) = sum_i a_i sigma(x, theta_i)`` and the teacher
``f(x) = sum_j b_j sigma(x, w_j)``, so ``a = b`` at the global optimum. The paper
flips the sign of ``a`` (it writes ``f_hat = -sum a_i sigma``); in the
electron-proton picture electron ``i`` therefore carries charge ``-a_i`` against
proton charges ``b_j``. Flip ``a`` when comparing with the paper's formulas.

Units may carry biases, ``sigma(w . x + c)``: the optional ``bias`` field (``(..., k)``). ``None``
(the default) is an empty pytree, so an unbiased network flattens, batches and compiles exactly as
before; a biased one flattens to ``[a, theta, bias]``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax

__all__ = ["Teacher", "Student", "check_pair", "check_unbiased"]


def _check(obj, charge, weights):
    q, x, c = getattr(obj, charge), getattr(obj, weights), obj.bias
    if not (hasattr(q, "shape") and hasattr(x, "shape")):
        return  # placeholders during pytree transformations
    if len(x.shape) < 2 or tuple(q.shape) != tuple(x.shape[:-1]):  # len(): AOT placeholders have no ndim
        raise ValueError(
            f"{type(obj).__name__}: {charge} must have shape (..., k) and {weights} shape (..., k, d) "
            f"with the same leading axes; got {charge} {tuple(q.shape)} and {weights} {tuple(x.shape)}")
    if c is not None and hasattr(c, "shape") and tuple(c.shape) != tuple(q.shape):
        raise ValueError(f"{type(obj).__name__}: bias must have the shape of {charge}, (..., k) = {tuple(q.shape)} "
                         f"(one per unit); got bias {tuple(c.shape)}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Teacher:
    """Teacher network ``f(x) = sum_j b_j sigma(x, w_j)``: the fixed protons.

    Attributes:
      b: output weights (proton charges), ``(..., k)``.
      w: unit weights (proton positions), ``(..., k, d)``.
      bias: unit biases ``c_j`` in ``sigma(w_j . x + c_j)``, ``(..., k)``, or ``None`` (no biases).

    >>> import jax.numpy as jnp
    >>> Teacher(b=jnp.ones(2), w=jnp.zeros((2, 3))).w.shape
    (2, 3)
    >>> Teacher(b=jnp.ones(2), w=jnp.zeros((2, 3)), bias=jnp.array([0.5, -1.0])).bias.shape
    (2,)
    """

    b: jax.Array
    w: jax.Array
    bias: Optional[jax.Array] = None

    def __post_init__(self):
        _check(self, "b", "w")

    @property
    def k(self) -> int:
        return self.w.shape[-2]

    @property
    def d(self) -> int:
        return self.w.shape[-1]

    @property
    def batch_shape(self) -> tuple:
        return tuple(self.w.shape[:-2])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Student:
    """Student network ``f_hat(x) = sum_i a_i sigma(x, theta_i)``: the moving electrons.

    Attributes:
      a: output weights, ``(..., k)``; electron ``i`` has charge ``-a_i`` in the paper's sign.
      theta: unit weights (electron positions), ``(..., k, d)``.
      bias: unit biases, ``(..., k)``, or ``None`` (no biases).

    >>> import jax.numpy as jnp
    >>> Student(a=jnp.ones((8, 2)), theta=jnp.zeros((8, 2, 3))).batch_shape
    (8,)
    """

    a: jax.Array
    theta: jax.Array
    bias: Optional[jax.Array] = None

    def __post_init__(self):
        _check(self, "a", "theta")

    @property
    def k(self) -> int:
        return self.theta.shape[-2]

    @property
    def d(self) -> int:
        return self.theta.shape[-1]

    @property
    def batch_shape(self) -> tuple:
        return tuple(self.theta.shape[:-2])


def check_pair(student: Student, teacher: Teacher):
    """Raise a ValueError naming the arguments if ``student`` and ``teacher`` do not fit together."""
    if not isinstance(student, Student):
        raise TypeError(f"student must be an earnshaw.Student, got {type(student).__name__}")
    if not isinstance(teacher, Teacher):
        raise TypeError(f"teacher must be an earnshaw.Teacher, got {type(teacher).__name__}")
    if student.d != teacher.d:
        raise ValueError(f"student.theta has shape {tuple(student.theta.shape)} and teacher.w "
                         f"{tuple(teacher.w.shape)}: their last axes (d) differ")


def check_unbiased(name: str, *networks) -> None:
    """A ValueError if any network carries biases: for methods written for the paper's bias-free units."""
    if any(getattr(n, "bias", None) is not None for n in networks):
        raise ValueError(f"{name} works on bias-free units (the paper's model); the teacher or student has biases. "
                         "Use the solvers (gradient_descent, gradient_flow, ...), which take biases")
