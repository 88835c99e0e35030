"""Float64 elementary functions cheaper than XLA's, for the hot path of the closed forms.

XLA's float64 ``arcsin`` on CPU costs ~14 ns per element, half of a whole gradient step of
the erf loss at ``k = d = 20``. :func:`asin` here is ~5x cheaper at libm's accuracy (the
tests compare it with a 40-digit reference), using fdlibm's argument reduction.
"""
from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp

__all__ = ["asin"]

# arcsin(y) / y = 1 + sum_{n>=1} C(2n, n) / (4^n (2n + 1)) z^n with z = y^2; on |y| <= 1/2 (z <= 1/4) the terms
# shrink by 4x, so 24 terms leave a truncation error below 1e-17, and all coefficients are positive (stable Horner).
_TAIL = tuple(float(Fraction(math.comb(2 * n, n), 4**n * (2 * n + 1))) for n in range(1, 24))
_PIO2_HI = 0.5 * math.pi
_PIO2_LO = 6.123233995736766e-17  # pi/2 - _PIO2_HI
_PIO4_HI = 0.25 * math.pi  # 2 * _PIO4_HI + _PIO2_LO = pi/2


def _tail(z):
    """``(arcsin(y) / y - 1) / z`` for ``z = y^2 <= 1/4``."""
    p = jnp.full_like(z, _TAIL[-1])
    for c in _TAIL[-2::-1]:
        p = p * z + c
    return p


def _high_half(s):
    """``s`` with the low 32 bits of its mantissa cleared, so ``s_hi * s_hi`` is exact."""
    bits = jax.lax.bitcast_convert_type(s, jnp.uint64) & jnp.uint64(0xFFFFFFFF00000000)
    return jax.lax.bitcast_convert_type(bits, s.dtype)


@jax.custom_jvp
def asin(x):
    """``arcsin(x)`` for float64 arrays (any shape); NaN outside ``[-1, 1]`` like ``jnp.arcsin``.

    ``|x| <= 1/2``: ``x (1 + x^2 T(x^2))`` with ``T`` a Taylor polynomial. ``|x| > 1/2``: the
    half-angle identity ``arcsin(x) = pi/2 - 2 arcsin(s)``, ``s = sqrt((1 - x) / 2) <= 1/2``, with ``s``
    split in a high and a low part so the subtraction loses nothing (as fdlibm does).
    Derivatives are exact (``1 / sqrt(1 - x^2)``), not those of the polynomial.

    >>> import jax.numpy as jnp
    >>> float(asin(jnp.asarray(1.0))) == float(jnp.pi / 2)
    True
    """
    if x.dtype != jnp.float64:
        return jnp.arcsin(x)
    ax = jnp.abs(x)
    big = ax > 0.5
    t = 0.5 - 0.5 * ax  # exact for ax in [1/2, 1]
    z = jnp.where(big, t, ax * ax)
    r = z * _tail(z)
    small = ax + ax * r
    s = jnp.sqrt(t)
    s_hi = _high_half(s)
    c = (t - s_hi * s_hi) / (s + s_hi)  # s = s_hi + c to twice the working precision
    near = _PIO4_HI - ((2.0 * s * r - (_PIO2_LO - 2.0 * c)) - (_PIO4_HI - 2.0 * s_hi))
    far = _PIO2_HI - (2.0 * (s + s * r) - _PIO2_LO)
    out = jnp.where(big, jnp.where(ax < 0.975, near, far), small)
    return jnp.copysign(out, x)


@asin.defjvp
def _asin_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return asin(x), dx * jax.lax.rsqrt(1.0 - x * x)
