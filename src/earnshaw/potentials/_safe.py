"""Functions whose derivatives stay finite at the points the potentials touch.

``sqrt`` at 0 (co-linear ``u, v`` in arc-cosine kernels; coincident charges in
radial potentials) and ``arctan2`` at the origin (a zero weight vector) have
infinite or undefined derivatives. Here their derivative at those points is the
one-sided limit the potentials need, 0, in the spirit of Neural Tangents'
``_sqrt`` and JAX MD's ``safe_mask``. Every guard lives in this module and is
tested at exactly those points.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["safe_sqrt", "safe_norm", "safe_where"]


@jax.custom_jvp
def safe_sqrt(x):
    """``sqrt(max(x, 0))`` with derivative 0 where ``x <= 0`` (any shape)."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = safe_sqrt(x)
    pos = x > 0
    return y, jnp.where(pos, dx / (2.0 * jnp.where(pos, y, 1.0)), 0.0)


def safe_norm(x, axis=-1):
    """Euclidean norm over ``axis`` with zero gradient at ``x = 0``."""
    return safe_sqrt(jnp.sum(x * x, axis=axis))


def safe_where(cond, fn, x, fill):
    """``where(cond, fn(x), fill)`` without NaN gradients leaking from ``fn`` where not ``cond``.

    ``fn`` is evaluated at a harmless ``x = 1`` where ``cond`` is false (the double-where trick).
    """
    safe_x = jnp.where(cond, x, jnp.ones_like(x))
    return jnp.where(cond, fn(safe_x), fill)
