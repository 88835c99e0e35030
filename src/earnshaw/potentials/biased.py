r"""Potentials of biased units ``sigma(x, w, c) = s(w . x + c)``, ``x ~ N(0, I_d)``.

``U = u . X + b_u`` and ``V = v . X + b_v`` are jointly normal with means ``(b_u, b_v)`` and
covariance ``[[|u|^2, u.v], [u.v, |v|^2]]``, so the potential of two biased units is a function
of the five numbers ``(nu, c, nv, bu, bv)`` (docs/math.md section 12). Every function here takes
those five broadcastable arrays.

Closed forms, with ``h = b_u / |u|``, ``k = b_v / |v|``, ``rho = u.v / (|u||v|)`` and the
bivariate normal CDF ``Phi_2`` of :mod:`earnshaw.potentials.bvn`:

==========  ===========================================================================
step        ``Phi_2(h, k; rho)``
sign        ``4 Phi_2(h, k; rho) - 2 Phi(h) - 2 Phi(k) + 1``
normal_cdf  ``Phi_2(b_u / sqrt(1 + nu), b_v / sqrt(1 + nv); u.v / sqrt((1 + nu)(1 + nv)))``
erf         ``4 Phi_2(h', k'; rho') - 2 Phi(h') - 2 Phi(k') + 1`` with ``h' = sqrt(2) b_u / sqrt(1 + 2 nu)``,
            ``rho' = 2 u.v / sqrt((1 + 2 nu)(1 + 2 nv))``
relu        the truncated second moment of a bivariate normal (:func:`relu`)
==========  ===========================================================================

Every other activation goes through :func:`gauss_hermite_biased`, a two-dimensional
Gauss-Hermite rule with means whose derivatives follow Price's theorem and its mean
version, ``d/db_u E[f(U) g(V)] = E[f'(U) g(V)]``. With zero biases every formula reduces to
the unbiased closed form of :mod:`earnshaw.potentials.inner` (tested).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from earnshaw.potentials.bvn import bvn_cdf, conditional_cdf, ndtr, normal_pdf
from earnshaw.potentials.inner import _derivative, gauss_hermite_nodes
from earnshaw.potentials._safe import safe_sqrt, safe_where

__all__ = ["BIASED_CLOSED_FORMS", "SELF_TERMS", "gauss_hermite_biased", "gauss_hermite_self"]


def _standard(nu, c, nv, bu, bv):
    """``(h, k, rho, su, sv, zu, zv)``: standardised biases and correlation; ``zu``: ``|u| > 0``."""
    nu, c, nv, bu, bv = jnp.broadcast_arrays(*(jnp.asarray(t, jnp.result_type(nu, c, nv, bu, bv, float))
                                              for t in (nu, c, nv, bu, bv)))
    zu, zv = nu > 0, nv > 0
    su = jnp.sqrt(jnp.where(zu, nu, 1.0))
    sv = jnp.sqrt(jnp.where(zv, nv, 1.0))
    rho = jnp.clip(c / (su * sv), -1.0, 1.0)
    # u = v rounds rho to within a few ulps of 1, and the kinked forms move like sqrt(1 - rho) there (1e-8 for
    # 1e-16): snap those to the exact +-1, so a student on its teacher has exactly zero loss
    snap = 8.0 * jnp.finfo(rho.dtype).eps
    rho = jnp.where(1.0 - jnp.abs(rho) < snap, jnp.sign(rho), rho)
    return bu / su, bv / sv, rho, su, sv, zu, zv, bu, bv


def _degenerate(main, zu, zv, fu, fv, mean_u, mean_v):
    """``main`` where both weight vectors are nonzero; a unit with ``w = 0`` is the constant ``s(b)``."""
    return jnp.where(zu & zv, main, jnp.where(zu, mean_u * fv, jnp.where(zv, fu * mean_v, fu * fv)))


def step(nu, c, nv, bu, bv):
    h, k, rho, _, _, zu, zv, bu, bv = _standard(nu, c, nv, bu, bv)
    one = lambda b: (b > 0).astype(h.dtype)  # noqa: E731
    return _degenerate(bvn_cdf(h, k, rho), zu, zv, one(bu), one(bv), ndtr(h), ndtr(k))


def sign(nu, c, nv, bu, bv):
    h, k, rho, _, _, zu, zv, bu, bv = _standard(nu, c, nv, bu, bv)
    main = 4.0 * bvn_cdf(h, k, rho) - 2.0 * ndtr(h) - 2.0 * ndtr(k) + 1.0
    return _degenerate(main, zu, zv, jnp.sign(bu), jnp.sign(bv), 2.0 * ndtr(h) - 1.0, 2.0 * ndtr(k) - 1.0)


def relu(nu, c, nv, bu, bv):
    # E[(bu + su X)(bv + sv Y) 1{X > -h, Y > -k}]; flip X, Y to the lower orthant {X < h, Y < k}
    h, k, rho, su, sv, zu, zv, bu, bv = _standard(nu, c, nv, bu, bv)
    p = bvn_cdf(h, k, rho)
    gh, gk = normal_pdf(h) * conditional_cdf(h, k, rho), normal_pdf(k) * conditional_cdf(k, h, rho)
    ex = -gh - rho * gk                    # E[X 1]
    ey = -gk - rho * gh                    # E[Y 1]
    r = safe_sqrt(1.0 - rho * rho)
    # r phi(h) phi((k - rho h) / r) = r^2 phi_2(h, k; rho), which vanishes at |rho| = 1
    dens = safe_where(r > 0, lambda rr: rr * normal_pdf(h) * normal_pdf((k - rho * h) / rr), r, 0.0)
    exy = rho * p - rho * h * gh - rho * k * gk + dens
    main = bu * bv * p - bu * sv * ey - su * bv * ex + su * sv * exy
    mean = lambda b, s, t: b * ndtr(t) + s * normal_pdf(t)  # noqa: E731  E[relu(N(b, s^2))]
    return _degenerate(main, zu, zv, jax.nn.relu(bu), jax.nn.relu(bv), mean(bu, su, h), mean(bv, sv, k))


def normal_cdf(nu, c, nv, bu, bv):
    pu, pv = 1.0 + nu, 1.0 + nv
    return bvn_cdf(bu * jax.lax.rsqrt(pu), bv * jax.lax.rsqrt(pv), c * jax.lax.rsqrt(pu) * jax.lax.rsqrt(pv))


def erf(nu, c, nv, bu, bv):
    # erf(z) = 2 Phi(sqrt(2) z) - 1, and E[Phi(sqrt(2) U) Phi(sqrt(2) V)] is normal_cdf's orthant probability
    ru, rv = jax.lax.rsqrt(1.0 + 2.0 * nu), jax.lax.rsqrt(1.0 + 2.0 * nv)
    h, k = math.sqrt(2.0) * bu * ru, math.sqrt(2.0) * bv * rv
    return 4.0 * bvn_cdf(h, k, 2.0 * c * ru * rv) - 2.0 * ndtr(h) - 2.0 * ndtr(k) + 1.0


#: Closed-form potentials of biased units by activation name: ``fn(nu, c, nv, bu, bv)``.
BIASED_CLOSED_FORMS = {"step": step, "sign": sign, "relu": relu, "normal_cdf": normal_cdf, "erf": erf}


def _relu_self(nu, bu):
    zu = nu > 0
    su = jnp.sqrt(jnp.where(zu, nu, 1.0))
    h = bu / su
    return jnp.where(zu, (bu * bu + nu) * ndtr(h) + bu * su * normal_pdf(h), jax.nn.relu(bu) ** 2)


def _step_self(nu, bu):
    zu = nu > 0
    return jnp.where(zu, ndtr(bu / jnp.sqrt(jnp.where(zu, nu, 1.0))), (bu > 0).astype(jnp.result_type(bu, float)))


def _sign_self(nu, bu):
    return jnp.where(nu > 0, 1.0, jnp.sign(bu) ** 2)


#: ``E[s(U)^2]``, ``U ~ N(b, nu)``, for the kinked closed forms, whose pair formula sits on ``|rho| = 1`` there:
#: the diagonal of a Gram matrix uses these (``fn(nu, bu)``).
SELF_TERMS = {"relu": _relu_self, "step": _step_self, "sign": _sign_self}


def _gh_core(f, g, order, nu, c, nv, bu, bv):
    z, w = gauss_hermite_nodes(order)
    dtype = jnp.result_type(nu, c, nv, bu, bv, float)
    z, w = jnp.asarray(z, dtype), jnp.asarray(w, dtype)
    nu, c, nv, bu, bv = (jnp.asarray(t, dtype)[..., None, None] for t in (nu, c, nv, bu, bv))
    su = safe_sqrt(nu)
    beta = safe_where(nu > 0, lambda x: c / jnp.sqrt(x), nu, 0.0)
    gamma = safe_sqrt(nv - beta * beta)
    z1, z2 = z[:, None], z[None, :]
    vals = f(bu + su * z1) * g(bv + beta * z1 + gamma * z2)
    return jnp.sum(w[:, None] * w[None, :] * vals, axis=(-2, -1))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def gauss_hermite_biased(f, g, order, nu, c, nv, bu, bv):
    """``E[f(U) g(V)]`` for normal ``(U, V)`` with means ``(bu, bv)`` and covariance ``[[nu, c], [c, nv]]``.

    The variable with the smaller variance is integrated on the outside (as in
    :func:`earnshaw.potentials.inner.gauss_hermite`, which this reduces to at zero means).

    Args:
      f: elementwise jax-traceable scalar function (hashable).
      g: the same for ``V``.
      order: Gauss-Hermite order per dimension.
      nu: ``|u|^2``, any shape broadcastable with the others.
      c: ``u . v``.
      nv: ``|v|^2``.
      bu: the mean of ``U`` (the bias of ``u``).
      bv: the mean of ``V``.

    Returns:
      The broadcast shape. Derivatives follow ``d/db_u = E[f' g]``, ``d/dc = E[f' g']``,
      ``d/dnu = E[f'' g] / 2`` (Price's theorem), so they are exact for smooth ``f``, ``g``.

    >>> import jax.numpy as jnp
    >>> # E[sin(U) sin(V)] = (cos(bu - bv) e^{-(nu + nv - 2c)/2} - cos(bu + bv) e^{-(nu + nv + 2c)/2}) / 2
    >>> v = gauss_hermite_biased(jnp.sin, jnp.sin, 40, 1.0, 0.5, 1.0, 0.3, -0.2)
    >>> exact = (jnp.cos(0.5) * jnp.exp(-0.5) - jnp.cos(0.1) * jnp.exp(-1.5)) / 2
    >>> bool(abs(v - exact) < 1e-6)
    True
    """
    if f is g:
        swap = nu > nv
        return _gh_core(f, f, order, jnp.where(swap, nv, nu), c, jnp.where(swap, nu, nv),
                        jnp.where(swap, bv, bu), jnp.where(swap, bu, bv))
    return jnp.where(nu <= nv, _gh_core(f, g, order, nu, c, nv, bu, bv), _gh_core(g, f, order, nv, c, nu, bv, bu))


@gauss_hermite_biased.defjvp
def _gh_biased_jvp(f, g, order, primals, tangents):
    nu, c, nv, bu, bv = primals
    dnu, dc, dnv, dbu, dbv = tangents
    out = gauss_hermite_biased(f, g, order, nu, c, nv, bu, bv)
    df, dg = _derivative(f), _derivative(g)
    E = lambda p, q: gauss_hermite_biased(p, q, order, nu, c, nv, bu, bv)  # noqa: E731
    tangent = (E(df, dg) * dc + 0.5 * E(_derivative(df), g) * dnu + 0.5 * E(f, _derivative(dg)) * dnv
               + E(df, g) * dbu + E(f, dg) * dbv)
    return out, tangent


def _square(f):
    return _SQUARES.setdefault(f, lambda z: f(z) ** 2)


_SQUARES: dict = {}


def gauss_hermite_self(f, order, nu, bu):
    """``E[f(U)^2]``, ``U ~ N(bu, nu)``: the diagonal of a Gram matrix, one-dimensional (shapes broadcast).

    >>> import jax.numpy as jnp
    >>> round(float(gauss_hermite_self(jnp.sin, 40, 1.0, 0.0)), 6)   # (1 - e^-2) / 2 = 0.432332...
    0.432332
    """
    return _gh_self(_square(f), order, nu, bu)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _gh_self(f2, order, nu, bu):
    z, w = gauss_hermite_nodes(order)
    dtype = jnp.result_type(nu, bu, float)
    z, w = jnp.asarray(z, dtype), jnp.asarray(w, dtype)
    nu, bu = (jnp.asarray(t, dtype)[..., None] for t in (nu, bu))
    return jnp.sum(w * f2(bu + safe_sqrt(nu) * z), -1)


@_gh_self.defjvp
def _gh_self_jvp(f2, order, primals, tangents):
    nu, bu = primals
    dnu, dbu = tangents
    d1 = _derivative(f2)
    return (_gh_self(f2, order, nu, bu),
            _gh_self(d1, order, nu, bu) * dbu + 0.5 * _gh_self(_derivative(d1), order, nu, bu) * dnu)


@functools.lru_cache(maxsize=None)
def biased_functions(pot):
    """``(pair, self_term)`` for a potential's biased units: ``pair(nu, c, nv, bu, bv)`` and
    ``self_term(nu, bu) = E[s(U)^2]`` (``None``: the pair function is exact on the diagonal).

    Closed forms for the built-in step, sign, relu, normal_cdf and erf; two-dimensional
    Gauss-Hermite (the potential's ``order``, else the default) for any other activation.

    Raises:
      ValueError: radial potentials and potentials without a known activation have no biased form.
    """
    from earnshaw.potentials import DEFAULT_GH_ORDER  # the registry imports this module
    from earnshaw.potentials import inner

    if pot.kind != "inner" or pot.activation is None or pot.activation.kind != "inner":
        raise ValueError(f"{pot!r} has no biased form: biases (and a nonzero input mean) need an inner-product "
                         "potential built from an activation, e.g. es.potential('relu') or es.potential('tanh')")
    if pot.name in BIASED_CLOSED_FORMS and pot.fn is inner.CLOSED_FORMS.get(pot.name):
        return BIASED_CLOSED_FORMS[pot.name], SELF_TERMS.get(pot.name)
    order = dict(pot.params).get("order", DEFAULT_GH_ORDER)
    f = pot.activation.fn
    return (functools.partial(gauss_hermite_biased, f, f, order),
            functools.partial(gauss_hermite_self, f, order))
