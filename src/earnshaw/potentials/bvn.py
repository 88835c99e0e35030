r"""The bivariate normal CDF ``Phi_2(h, k; rho) = P(X <= h, Y <= k)``, jit-able and exactly differentiable.

The potentials of biased step, sign, relu, erf and normal_cdf units are orthant probabilities
and truncated moments of a bivariate normal (docs/math.md section 12), so they all reduce to
this one function. The value follows Genz's algorithm (Drezner and Wesolowsky's integral over
``arcsin rho`` for ``|rho| < 0.925``, an expansion around ``|rho| = 1`` above), both halves
evaluated with one fixed 20-point Gauss-Legendre rule so the function is a pure array program;
it is accurate to about 1e-15 in float64. Its derivatives are not differentiated through the
quadrature but given exactly (a ``custom_jvp``):

* ``d Phi_2 / dh = phi(h) Phi((k - rho h) / sqrt(1 - rho^2))`` (and symmetrically in ``k``);
* ``d Phi_2 / d rho = phi_2(h, k; rho)``, the bivariate density;

both are elementary, so Hessians of the potentials are exact too. At ``|rho| = 1`` the
conditional CDF becomes a step and the density zero, their limits off the line ``k = rho h``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
__all__ = ["bvn_cdf", "ndtr", "normal_pdf", "conditional_cdf"]

_TWO_PI = 2.0 * math.pi


@functools.lru_cache(maxsize=None)
def _nodes():
    # Genz's rule for |rho| >= 0.75: the 20-point Gauss-Legendre rule on [0, 2] (x = 1 + t)
    t, w = np.polynomial.legendre.leggauss(20)
    return 1.0 + t, w


def ndtr(x):
    """Standard normal CDF ``Phi(x)`` as one ``erfc`` (``jax.scipy.special.ndtr`` branches on ``|x|``; the biased
    potentials call it a dozen times, and the branches triple what their derivatives compile to)."""
    return 0.5 * jax.lax.erfc(-x * (1.0 / math.sqrt(2.0)))


def normal_pdf(x):
    """Standard normal density ``phi(x)`` (any shape)."""
    return jnp.exp(-0.5 * x * x) / math.sqrt(_TWO_PI)


def conditional_cdf(h, k, rho):
    """``Phi((k - rho h) / sqrt(1 - rho^2))``, with its limit ``1[k > rho h]`` (1/2 on the line) at ``|rho| = 1``."""
    r2 = 1.0 - rho * rho
    ok = r2 > 0
    r = jnp.sqrt(jnp.where(ok, r2, 1.0))
    t = k - rho * h
    return jnp.where(ok, ndtr(t / r), 0.5 * (1.0 + jnp.sign(t)))


def _bvn_value(h, k, rho):
    """Genz's ``P(X <= h, Y <= k)``: the upper orthant ``P(X > -h, Y > -k)`` of his BVNU."""
    x, w = _nodes()
    dtype = jnp.result_type(h, k, rho, float)
    x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    h, k, rho = (jnp.asarray(v, dtype)[..., None] for v in jnp.broadcast_arrays(h, k, rho))
    h, k = -h, -k
    hk = h * k
    # |rho| < 0.925: integrate exp((sin(t) hk - (h^2 + k^2)/2) / cos^2 t) over t in [0, arcsin rho]
    rho_lo = jnp.where(jnp.abs(rho) < 0.925, rho, 0.0)
    asr = jnp.arcsin(rho_lo) / 2.0
    sn = jnp.sin(asr * x)
    lo = jnp.sum(w * jnp.exp((sn * hk - (h * h + k * k) / 2.0) / (1.0 - sn * sn)), -1) * asr[..., 0] / _TWO_PI
    lo = lo + ndtr(-h[..., 0]) * ndtr(-k[..., 0])
    # |rho| >= 0.925: Genz's expansion about |rho| = 1
    neg = rho < 0
    kk = jnp.where(neg, -k, k)
    hk2 = jnp.where(neg, -hk, hk)
    rho_hi = jnp.clip(jnp.where(jnp.abs(rho) < 0.925, 0.95, jnp.abs(rho)), 0.0, 1.0)
    as_ = 1.0 - rho_hi * rho_hi
    inside = as_ > 0
    as_s = jnp.where(inside, as_, 1.0)
    a = jnp.sqrt(as_s)
    bs = (h - kk) ** 2
    c = (4.0 - hk2) / 8.0
    d = (12.0 - hk2) / 80.0
    asr2 = -(bs / as_s + hk2) / 2.0
    bvn = jnp.where(asr2 > -100.0, a * jnp.exp(jnp.maximum(asr2, -100.0))
                    * (1.0 - c * (bs - as_s) * (1.0 - d * bs) / 3.0 + c * d * as_s * as_s), 0.0)
    b = jnp.sqrt(bs)
    sp = math.sqrt(_TWO_PI) * ndtr(-b / a)
    bvn = jnp.where(hk2 > -100.0, bvn - jnp.exp(-jnp.minimum(hk2, 100.0) / 2.0) * sp * b
                    * (1.0 - c * bs * (1.0 - d * bs) / 3.0), bvn)
    a2 = a / 2.0
    xs = (a2 * x) ** 2
    asr3 = -(bs / xs + hk2) / 2.0
    keep = asr3 > -100.0
    sp2 = 1.0 + c * xs * (1.0 + 5.0 * d * xs)
    rs = jnp.sqrt(1.0 - xs)
    ep = jnp.exp(-(hk2 / 2.0) * xs / (1.0 + rs) ** 2) / rs
    terms = jnp.where(keep, jnp.exp(jnp.maximum(asr3, -100.0)) * (sp2 - ep), 0.0)
    bvn = (a2[..., 0] * jnp.sum(terms * w, -1) - bvn[..., 0]) / _TWO_PI
    bvn = jnp.where(inside[..., 0], bvn, 0.0)
    h0, k0 = h[..., 0], kk[..., 0]
    pos = bvn + ndtr(-jnp.maximum(h0, k0))
    other = jnp.where(h0 < 0, ndtr(k0) - ndtr(h0), ndtr(-h0) - ndtr(-k0))
    negv = jnp.where(h0 >= k0, -bvn, other - bvn)
    hi = jnp.where(neg[..., 0], negv, pos)
    out = jnp.where(jnp.abs(rho[..., 0]) < 0.925, lo, hi)
    return jnp.clip(out, 0.0, 1.0)


@jax.custom_jvp
def bvn_cdf(h, k, rho):
    """``P(X <= h, Y <= k)`` for standard normal ``X, Y`` with correlation ``rho`` in ``[-1, 1]``.

    Args:
      h, k, rho: broadcastable float arrays (``h``, ``k`` finite).

    Returns:
      The broadcast shape; derivatives of any order are exact (see the module docstring).

    >>> import jax
    >>> from jax.scipy.special import ndtr
    >>> from earnshaw.potentials.bvn import bvn_cdf
    >>> round(float(bvn_cdf(0.0, 0.0, 0.5)), 6)            # 1/4 + arcsin(1/2) / (2 pi) = 1/3
    0.333333
    >>> bool(abs(bvn_cdf(0.3, -0.2, 0.0) - ndtr(0.3) * ndtr(-0.2)) < 1e-7)
    True
    """
    return _bvn_value(h, k, rho)


@bvn_cdf.defjvp
def _bvn_jvp(primals, tangents):
    h, k, rho = primals
    dh, dk, drho = tangents
    out = bvn_cdf(h, k, rho)
    r2 = 1.0 - rho * rho
    ok = r2 > 0
    r2s = jnp.where(ok, r2, 1.0)
    dens = jnp.where(ok, jnp.exp(-(h * h - 2.0 * rho * h * k + k * k) / (2.0 * r2s)) / (_TWO_PI * jnp.sqrt(r2s)), 0.0)
    tan = (normal_pdf(h) * conditional_cdf(h, k, rho) * dh + normal_pdf(k) * conditional_cdf(k, h, rho) * dk
           + dens * drho)
    return out, tan
