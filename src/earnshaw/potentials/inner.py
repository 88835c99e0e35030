r"""Potentials of inner-product activations ``sigma(x, w) = s(w . x)``, ``x ~ N(0, I_d)``.

``(u . X, v . X)`` is bivariate normal with covariance ``[[|u|^2, u.v], [u.v, |v|^2]]``,
so every potential here is a function of the Gram triple ``(nu, c, nv) =
(|u|^2, u.v, |v|^2)``; all functions below take those three arrays (any
broadcastable shapes) and return ``Phi`` with the broadcast shape.

Closed forms (docs/math.md section 1a; ``alpha`` is the angle between ``u`` and ``v``):

=============  =================================================================
linear         ``u.v``
quadratic      ``|u|^2 |v|^2 + 2 (u.v)^2``
erf            ``(2/pi) arcsin(2 u.v / sqrt((1 + 2|u|^2)(1 + 2|v|^2)))``
sign           ``1 - 2 alpha / pi``                       (0 if ``|u||v| = 0``)
step           ``(pi - alpha) / (2 pi)``                  (0 if ``|u||v| = 0``)
relu           ``(|u||v| sin alpha + (pi - alpha) u.v) / (2 pi)``
hermite m      ``sum_k m! / (k!^2 (m-2k)! 4^k) (u.v)^(m-2k) ((|u|^2-1)(|v|^2-1))^k``
abs            ``(2 |u||v| sin alpha + (pi - 2 alpha) u.v) / pi``
leaky_relu     ``(1 + l^2) Phi_relu(u, v) - 2 l Phi_relu(u, -v)`` (slope ``l``)
relu2          ``|u|^2 |v|^2 (3 sin alpha cos alpha + (pi - alpha)(1 + 2 cos^2 alpha)) / (2 pi)``
normal_cdf     ``1/4 + arcsin(u.v / sqrt((1 + |u|^2)(1 + |v|^2))) / (2 pi)``
sin, cos       ``exp(-(|u|^2 + |v|^2) / 2) sinh(u.v)``, ``... cosh(u.v)``
gauss          ``((1 + |u|^2)(1 + |v|^2) - (u.v)^2)^(-1/2)``   (``s = exp(-z^2 / 2)``)
exp            ``exp((|u|^2 + |v|^2) / 2 + u.v)``
=============  =================================================================

``relu2`` is the order-2 arc-cosine kernel (Cho and Saul, 2009; ``step`` and ``relu`` are orders 0 and 1);
``abs`` and ``leaky_relu`` follow from ``relu`` since ``|z| = relu(z) + relu(-z)`` and
``leaky(z) = relu(z) - l relu(-z)``, and ``(U, -V)`` has covariance ``-u.v``; ``normal_cdf`` is
``P(Z_1 <= U, Z_2 <= V)`` for independent standard ``Z``, an orthant probability.

The Hermite row is ``E[h_m(U) h_m(V)]`` for general norms (expand ``He_m(a z)`` in
``He_{m-2k}(z)``); on unit vectors it is ``rho^m``. Any other ``s`` (tanh,
``sigmoid_pm1``, custom) goes through :func:`gauss_hermite`, whose derivatives
come from Price's theorem (``dPhi/dc = E[s'(U) s'(V)]``, ``dPhi/dnu =
E[s''(U) s(V)] / 2``) so they stay exact at ``u || v``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw.potentials._fastmath import asin
from earnshaw.potentials._safe import safe_sqrt, safe_where

__all__ = ["CLOSED_FORMS", "gauss_hermite", "gauss_hermite_nodes"]


def linear(nu, c, nv):
    return c * jnp.ones_like(nu * nv)


def quadratic(nu, c, nv):
    return nu * nv + 2.0 * c * c


def erf(nu, c, nv):
    # one rsqrt per unit (nu, nv broadcast against c in a Gram matrix), not one sqrt per pair
    return (2.0 / jnp.pi) * asin(2.0 * c * jax.lax.rsqrt(1.0 + 2.0 * nu) * jax.lax.rsqrt(1.0 + 2.0 * nv))


def _angle_parts(nu, c, nv):
    """``(s, c, alpha, nonzero)`` with ``s = |u||v| sin(alpha)``, safe at ``u || v`` and at 0."""
    nonzero = nu * nv > 0
    s = safe_sqrt(nu * nv - c * c)
    # arctan2 has an undefined derivative at (0, 0): evaluate it at (0, 1) there.
    c_safe = jnp.where(nonzero, c, 1.0)
    s_safe = jnp.where(nonzero, s, 0.0)
    alpha = jnp.arctan2(s_safe, c_safe)
    return s, c, alpha, nonzero


def sign(nu, c, nv):
    _, _, alpha, nonzero = _angle_parts(nu, c, nv)
    return jnp.where(nonzero, 1.0 - 2.0 * alpha / jnp.pi, 0.0)


def step(nu, c, nv):
    _, _, alpha, nonzero = _angle_parts(nu, c, nv)
    return jnp.where(nonzero, (jnp.pi - alpha) / (2.0 * jnp.pi), 0.0)


def relu(nu, c, nv):
    s, c, alpha, nonzero = _angle_parts(nu, c, nv)
    return jnp.where(nonzero, (s + (jnp.pi - alpha) * c) / (2.0 * jnp.pi), 0.0)


def hermite(m, nu, c, nv):
    out = jnp.zeros_like(nu * c * nv)
    prod = (nu - 1.0) * (nv - 1.0)
    for k in range(m // 2 + 1):
        coef = math.factorial(m) / (math.factorial(k) ** 2 * math.factorial(m - 2 * k) * 4**k)
        out = out + coef * c ** (m - 2 * k) * prod**k
    return out


def _relu_pair(nu, c, nv):
    """``(Phi_relu(u, v), Phi_relu(u, -v))`` from one angle computation."""
    s, c, alpha, nonzero = _angle_parts(nu, c, nv)
    plus = (s + (jnp.pi - alpha) * c) / (2.0 * jnp.pi)
    minus = (s - alpha * c) / (2.0 * jnp.pi)  # the angle to -v is pi - alpha
    return jnp.where(nonzero, plus, 0.0), jnp.where(nonzero, minus, 0.0)


def abs_(nu, c, nv):
    plus, minus = _relu_pair(nu, c, nv)
    return 2.0 * (plus + minus)


def leaky_relu(slope, nu, c, nv):
    plus, minus = _relu_pair(nu, c, nv)
    return (1.0 + slope * slope) * plus - 2.0 * slope * minus


def relu2(nu, c, nv):
    s, c, alpha, nonzero = _angle_parts(nu, c, nv)
    # |u|^2 |v|^2 (3 sin a cos a + (pi - a)(1 + 2 cos^2 a)) with |u||v| sin a = s and |u||v| cos a = c
    val = (3.0 * s * c + (jnp.pi - alpha) * (nu * nv + 2.0 * c * c)) / (2.0 * jnp.pi)
    return jnp.where(nonzero, val, 0.0)


def normal_cdf(nu, c, nv):
    return 0.25 + asin(c * jax.lax.rsqrt(1.0 + nu) * jax.lax.rsqrt(1.0 + nv)) / (2.0 * jnp.pi)


def sin(nu, c, nv):
    return jnp.exp(-0.5 * (nu + nv)) * jnp.sinh(c)


def cos(nu, c, nv):
    return jnp.exp(-0.5 * (nu + nv)) * jnp.cosh(c)


def gauss(nu, c, nv):
    return jax.lax.rsqrt((1.0 + nu) * (1.0 + nv) - c * c)


def exp(nu, c, nv):
    return jnp.exp(0.5 * (nu + nv) + c)


#: Closed-form potentials by activation name.
CLOSED_FORMS = {
    "linear": linear,
    "quadratic": quadratic,
    "erf": erf,
    "sign": sign,
    "step": step,
    "relu": relu,
    "abs": abs_,
    "relu2": relu2,
    "normal_cdf": normal_cdf,
    "sin": sin,
    "cos": cos,
    "gauss": gauss,
    "exp": exp,
}


@functools.lru_cache(maxsize=None)
def gauss_hermite_nodes(order: int):
    """Nodes ``z`` and weights ``w`` (``sum w = 1``) for ``E[f(Z)]``, ``Z ~ N(0, 1)``.

    Exact for polynomials of degree ``<= 2 order - 1``. numpy overflows above 300.
    """
    if not 1 <= order <= 300:
        raise ValueError(f"Gauss-Hermite order must be in [1, 300], got {order}")
    z, w = np.polynomial.hermite_e.hermegauss(order)
    return z, w / math.sqrt(2.0 * math.pi)


@functools.lru_cache(maxsize=None)
def _derivative(f):
    """Elementwise derivative of an elementwise scalar function (cached for stable identity)."""
    def df(z):
        return jax.jvp(f, (z,), (jnp.ones_like(z),))[1]
    return df


def _gh_setup(order, nu, c, nv):
    z, w = gauss_hermite_nodes(order)
    dtype = jnp.result_type(nu, c, nv, float)
    nu, c, nv = (jnp.asarray(t, dtype) for t in (nu, c, nv))
    su = safe_sqrt(nu)
    # V = beta Z1 + gamma Z2 with U = su Z1: beta = c / |u|, gamma^2 = nv - beta^2.
    beta = safe_where(nu > 0, lambda x: c / jnp.sqrt(x), nu, 0.0)
    gamma = safe_sqrt(nv - beta * beta)
    return jnp.asarray(z, dtype), jnp.asarray(w, dtype), su, beta, gamma


def _gh_core(f, g, order, nu, c, nv):
    z, w, su, beta, gamma = _gh_setup(order, nu, c, nv)
    su, beta, gamma = (t[..., None, None] for t in (su, beta, gamma))
    z1, z2 = z[:, None], z[None, :]
    vals = f(su * z1) * g(beta * z1 + gamma * z2)
    return jnp.sum(w[:, None] * w[None, :] * vals, axis=(-2, -1))


def _gh_core_rows(f, g, order, nu, c, nv):
    """:func:`_gh_core` one outer node at a time (``lax.scan``): temporaries of ``pairs x order``, not
    ``pairs x order^2`` (the same sum in another order)."""
    z, w, su, beta, gamma = _gh_setup(order, nu, c, nv)

    def row(acc, zw):
        zi, wi = zw
        inner_sum = jnp.sum(w * g(beta[..., None] * zi + gamma[..., None] * z), axis=-1)
        return acc + wi * f(su * zi) * inner_sum, None
    shape = jnp.broadcast_shapes(su.shape, beta.shape, gamma.shape)
    return jax.lax.scan(row, jnp.zeros(shape, z.dtype), (z, w))[0]


def _ordered(core, f, g, order, nu, c, nv):
    """The variable with the smaller variance on the outside."""
    if f is g:
        return core(f, f, order, jnp.minimum(nu, nv), c, jnp.maximum(nu, nv))
    return jnp.where(nu <= nv, core(f, g, order, nu, c, nv), core(g, f, order, nv, c, nu))


def _price_jvp(fun, f, g, order, primals, tangents):
    """Price's theorem: ``d E[f(U) g(V)] = E[f' g'] dc + E[f'' g] dnu / 2 + E[f g''] dnv / 2``."""
    nu, c, nv = primals
    dnu, dc, dnv = tangents
    out = fun(f, g, order, nu, c, nv)
    df, dg = _derivative(f), _derivative(g)
    tangent = (
        fun(df, dg, order, nu, c, nv) * dc
        + 0.5 * fun(_derivative(df), g, order, nu, c, nv) * dnu
        + 0.5 * fun(f, _derivative(dg), order, nu, c, nv) * dnv
    )
    return out, tangent


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def gauss_hermite(f, g, order, nu, c, nv):
    """``E[f(U) g(V)]`` for centred normal ``(U, V)`` with covariance ``[[nu, c], [c, nv]]``.

    The variable with the smaller variance is integrated on the outside, which is
    both the more accurate order and makes ``Phi(u, v) = Phi(v, u)`` exact.

    Args:
      f, g: elementwise jax-traceable scalar functions (hashable).
      order: Gauss-Hermite order per dimension (``order**2`` evaluations per pair).
      nu, c, nv: broadcastable arrays, the Gram triple.

    Returns:
      Array of the broadcast shape. Derivatives of any order follow Price's theorem.

    >>> import jax.numpy as jnp
    >>> round(float(gauss_hermite(jnp.sin, jnp.sin, 40, 1.0, 0.5, 1.0)), 10)   # e^-1 sinh(0.5)
    0.1916700063
    """
    return _ordered(_gh_core, f, g, order, nu, c, nv)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def gauss_hermite_rows(f, g, order, nu, c, nv):
    """:func:`gauss_hermite` one outer node at a time, for a program that must stay small in memory.

    The same numbers up to rounding; temporaries hold ``order`` values per pair instead of ``order^2``, at the
    cost of a loop of ``order`` steps (1.5x slower in a GD loop at ``k = d = 3`` or ``10``). A fast
    potential's quadrature fallback uses it: XLA sizes one temporary arena for a whole program, the branch of a
    ``lax.cond`` not taken included, and ``pairs x order^2`` would tax every call of the fast branch.

    >>> import jax.numpy as jnp
    >>> round(float(gauss_hermite_rows(jnp.sin, jnp.sin, 40, 1.0, 0.5, 1.0)), 10)
    0.1916700063
    """
    return _ordered(_gh_core_rows, f, g, order, nu, c, nv)


gauss_hermite.defjvp(functools.partial(_price_jvp, gauss_hermite))
gauss_hermite_rows.defjvp(functools.partial(_price_jvp, gauss_hermite_rows))
