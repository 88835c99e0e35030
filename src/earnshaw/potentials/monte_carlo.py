"""Monte Carlo estimates of potentials: the reference the closed forms are tested against."""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from earnshaw.activations import Activation, activation as _activation
from earnshaw.potentials._potential import Potential

__all__ = ["monte_carlo"]


def monte_carlo(key, act, u, v, n: int = 1_000_000, *, chunk: int = 200_000):
    """Estimate ``E[sigma(X, u) sigma(X, v)]``, ``X ~ N(0, I_d)``, with its standard error.

    Args:
      key: PRNG key (first, as in JAX).
      act: activation, its name, or a potential carrying its activation.
      u, v: ``(d,)`` weight vectors.
      n: number of samples (drawn in chunks of ``chunk``).

    Returns:
      ``(mean, stderr)`` as Python floats.

    >>> import jax, jax.numpy as jnp
    >>> m, se = monte_carlo(jax.random.key(0), "linear", jnp.ones(2), jnp.ones(2), 100_000)
    >>> abs(m - 2.0) < 5 * se
    True
    """
    if isinstance(act, Potential):
        if act.activation is None:
            raise ValueError(f"{act!r} has no known activation to sample")
        act = act.activation
    act = act if isinstance(act, Activation) else _activation(act)
    u, v = jnp.asarray(u), jnp.asarray(v)
    W = jnp.stack([u, v])
    moments = _moments(act, int(chunk))
    total, total2, m = 0.0, 0.0, 0
    for k in jax.random.split(key, math.ceil(n / chunk)):
        s1, s2 = moments(k, W)
        total, total2, m = total + float(s1), total2 + float(s2), m + chunk
    mean = total / m
    var = max(total2 / m - mean * mean, 0.0)
    return mean, math.sqrt(var / m)


@functools.lru_cache(maxsize=None)
def _moments(act: Activation, chunk: int):
    """Sum of ``s(x.u) s(x.v)`` and of its square over ``chunk`` draws; compiled once per activation and
    shape (with ``u, v`` baked in as constants, every estimate recompiled)."""

    @jax.jit
    def moments(k, W):
        x = jax.random.normal(k, (chunk, W.shape[-1]), W.dtype)
        s = act.units(x, W)
        p = s[:, 0] * s[:, 1]
        return jnp.sum(p), jnp.sum(p * p)

    return moments
