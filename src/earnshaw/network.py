"""Random teachers and students, and the network function they define.

Both samplers take a PRNG key first and an optional ``batch`` shape that becomes
the leading axes, so a thousand seeds are one call.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from earnshaw._typing import Student, Teacher
from earnshaw.activations import Activation, activation as _activation

__all__ = ["random_teacher", "random_student", "predict", "TEACHER_CONVENTIONS"]

#: ``"standard"``: ``w ~ N(0, scale^2 I)``, ``b ~ N(0, 1)`` (paper Section 5 with scale 1).
#: ``"thm12"``: ``w ~ N(0, c d log d I)``, ``b ~ U[-1, 1]`` (Theorem 12).
TEACHER_CONVENTIONS = ("standard", "thm12")


def _shape(batch):
    if batch is None:
        return ()
    return (batch,) if isinstance(batch, int) else tuple(batch)


def _check_sizes(d, k):
    for name, v in (("d", d), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={v!r}")


def _bias(key, bias_scale, shape, dtype):
    """``None``, or biases ``N(0, bias_scale^2)`` from a key folded off ``key`` (the other draws are unchanged)."""
    if bias_scale is None:
        return None
    if isinstance(bias_scale, bool) or not isinstance(bias_scale, (int, float)) or bias_scale < 0:
        raise ValueError(f"bias_scale must be a non-negative number or None, got {bias_scale!r}")
    # a fold_in constant no split() of key produces ("bias"), so the weights and charges draw as before
    return bias_scale * jax.random.normal(jax.random.fold_in(key, 0x62696173), shape, dtype)


def random_teacher(key, d: int, k: int, *, convention: str = "standard", scale: float = 1.0, c: float = 1.0,
                   batch=None, dtype=None, bias_scale=None) -> Teacher:
    """A random teacher.

    Args:
      key: PRNG key.
      d: input dimension.
      k: number of units.
      convention: one of :data:`TEACHER_CONVENTIONS`.
      scale: standard deviation of each ``w`` entry for ``"standard"``.
      c: the constant in Theorem 12's variance ``c d log d``.
      batch: leading batch shape (int or tuple), or None.
      dtype: float dtype (default: JAX's default float).
      bias_scale: ``None`` (no biases) or the standard deviation of biases drawn ``N(0, bias_scale^2)``;
        ``b`` and ``w`` are the same draws either way.

    Returns:
      ``Teacher(b (*batch, k), w (*batch, k, d), bias (*batch, k) or None)``.

    >>> import jax
    >>> random_teacher(jax.random.key(0), d=10, k=5, batch=3).w.shape
    (3, 5, 10)
    >>> random_teacher(jax.random.key(0), d=10, k=5, bias_scale=0.5).bias.shape
    (5,)
    """
    _check_sizes(d, k)
    shape = _shape(batch)
    dtype = dtype or jnp.result_type(float)
    kw, kb = jax.random.split(key)
    if convention == "standard":
        w = scale * jax.random.normal(kw, (*shape, k, d), dtype)
        b = jax.random.normal(kb, (*shape, k), dtype)
    elif convention == "thm12":
        var = c * d * math.log(d) if d > 1 else c
        w = math.sqrt(var) * jax.random.normal(kw, (*shape, k, d), dtype)
        b = jax.random.uniform(kb, (*shape, k), dtype, -1.0, 1.0)
    else:
        raise ValueError(f"unknown teacher convention {convention!r}; valid: {', '.join(TEACHER_CONVENTIONS)}")
    return Teacher(b=b, w=w, bias=_bias(key, bias_scale, (*shape, k), dtype))


def random_student(key, d: int, k: int, *, scale: float = 1.0, a_scale: float = 1.0, batch=None,
                   dtype=None, bias_scale=None) -> Student:
    """A random student: ``theta ~ N(0, scale^2 I)``, ``a ~ N(0, a_scale^2)``.

    Args:
      key: PRNG key.
      d: input dimension.
      k: number of units.
      scale: standard deviation of each ``theta`` entry.
      a_scale: standard deviation of each ``a``.
      batch: leading batch shape.
      dtype: float dtype.
      bias_scale: ``None`` (no biases) or the standard deviation of biases ``N(0, bias_scale^2)``
        (``0.0``: biases that start at zero and train).

    Returns:
      ``Student(a (*batch, k), theta (*batch, k, d), bias (*batch, k) or None)``.

    >>> import jax
    >>> random_student(jax.random.key(1), d=4, k=2).theta.shape
    (2, 4)
    """
    _check_sizes(d, k)
    shape = _shape(batch)
    dtype = dtype or jnp.result_type(float)
    kt, ka = jax.random.split(key)
    return Student(a=a_scale * jax.random.normal(ka, (*shape, k), dtype),
                   theta=scale * jax.random.normal(kt, (*shape, k, d), dtype),
                   bias=_bias(key, bias_scale, (*shape, k), dtype))


def predict(act, charges, weights, x, bias=None):
    """Network output ``sum_i charges_i sigma(x, weights_i)`` (``sigma(weights_i . x + bias_i)`` with biases).

    Args:
      act: an :class:`Activation` or its name.
      charges: ``(..., k)``.
      weights: ``(..., k, d)``.
      x: inputs ``(..., n, d)``.
      bias: ``(..., k)`` or ``None`` (inner-product activations only).

    Returns:
      ``(..., n)``.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0]])                 # two inputs in d = 2
    >>> es.predict("linear", jnp.array([1.0, -1.0]), jnp.eye(2), x).tolist()  # x_1 - x_2
    [1.0, -2.0]
    """
    act = act if isinstance(act, Activation) else _activation(act)
    if bias is None:
        return jnp.einsum("...nk,...k->...n", act.units(x, weights), charges)
    if act.kind != "inner":
        raise ValueError(f"{act!r} is not an inner-product activation: its units take no bias")
    units = act.fn(jnp.einsum("...nd,...kd->...nk", x, weights) + jnp.asarray(bias)[..., None, :])
    return jnp.einsum("...nk,...k->...n", units, charges)
