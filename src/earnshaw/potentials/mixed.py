r"""Per-unit activations: cross potentials ``Phi_{s,t}(u, v) = E[s(u . X) t(v . X)]`` and their Gram matrices.

A network whose units have different activations (student unit ``i`` uses ``s_i``, teacher unit ``j`` uses
``t_j``) has the loss of docs/math.md section 4 with Gram entries ``Phi_{s_i, s_j}(theta_i, theta_j)``,
``Phi_{s_i, t_j}(theta_i, w_j)`` and ``Phi_{t_i, t_j}(w_i, w_j)`` (docs/math.md section 1f). A
:class:`MixedPotential` holds one potential per unit; its Gram matrices are built block-wise: the units are
grouped by activation (static index sets), each block of a pair of groups is one call of a pair function on
the Gram triple ``(nu, c, nv)``, and the blocks are put back in unit order by one static permutation.

Pair functions, in order of preference (each tested against Monte Carlo and quadrature):

* the same activation on both sides: that activation's own potential (closed form, quadrature, ...);
* probit family ``s(z) = a + b E_Z[sign(kappa z - tau Z)]`` (sign, step, erf, normal_cdf) on both sides:
  ``a_s a_t + b_s b_t (2/pi) arcsin(kappa_s kappa_t c / sqrt((kappa_s^2 nu + tau_s^2)(kappa_t^2 nv + tau_t^2)))``;
* piecewise-linear ``s(z) = alpha z + beta |z|`` (linear, relu, abs, leaky_relu, abrelu) on both sides:
  ``alpha_s alpha_t c + beta_s beta_t Phi_abs(nu, c, nv)``;
* a constant plus an odd function, ``s = kappa_0 + odd`` (every odd activation, step, normal_cdf, sigmoid), against
  a linear plus an even function, ``t(z) = alpha z + even`` (the piecewise-linear ones, gelu, silu, softplus,
  quadratic, cos, gauss, even polynomials): ``kappa_0 E[t(V)] + alpha c E[s'(U)]`` (Stein's lemma; an odd
  function of ``U`` times an even one of ``V`` averages to zero). ``E[s']`` and ``E[t]`` are closed forms where
  known, one-dimensional Gauss-Hermite sums for the smooth rest;
* a kinked activation whose mean ``h(m, s^2) = E[s(N(m, s^2))]`` is known (the piecewise-linear and probit ones,
  relu2) against a smooth one: ``E_V[t(V) h(E[U | V], Var[U | V])]``, a one-dimensional Gauss-Hermite sum of a
  smooth function (so its derivatives are right, where Price's theorem would miss the kink);
* anything else: two-dimensional Gauss-Hermite quadrature with the two functions,
  :func:`~earnshaw.potentials.inner.gauss_hermite` (a warning when either is not smooth).

Biased units: the same-activation biased forms (:mod:`earnshaw.potentials.biased`); probit against probit through
the bivariate normal CDF; piecewise-linear against piecewise-linear as four biased relu terms; piecewise-linear
against probit through truncated bivariate moments; the conditional sum above; two-dimensional Gauss-Hermite with
means otherwise.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw import activations as _act
from earnshaw.potentials import biased, inner
from earnshaw.potentials._potential import Potential, _as_array
from earnshaw.potentials._safe import safe_sqrt, safe_where
from earnshaw.potentials.biased import gauss_hermite_biased
from earnshaw.potentials.bvn import bvn_cdf, conditional_cdf, ndtr, normal_pdf

__all__ = ["MixedPotential", "cross", "check_single", "SIDES"]

#: Which units a Gram matrix of a :class:`MixedPotential` is of: the student's, the teacher's, or both stacked
#: (student units first, as the losses stack them).
SIDES = ("student", "teacher", "both")


# --- facts about registry activations ------------------------------------------------------------------------

def _registry(act):
    """``(base name, params)`` of a registry activation (the interned object), or ``None`` for custom ones."""
    base = "hermite" if act.name.startswith("hermite") and act.params else act.name
    try:
        return (base, dict(act.params)) if act is _act.activation(base, **dict(act.params)) else None
    except ValueError:
        return None


#: ``s(z) = a + b E_Z[sign(kappa z - tau Z)]``, ``Z ~ N(0, 1)``: ``(a, b, kappa^2, tau^2)``.
_PROBIT = {"sign": (0.0, 1.0, 1.0, 0.0), "step": (0.5, 0.5, 1.0, 0.0), "erf": (0.0, 1.0, 2.0, 1.0),
           "normal_cdf": (0.5, 0.5, 1.0, 1.0)}


def _piecewise_linear(act):
    """``(alpha, beta)`` with ``s(z) = alpha z + beta |z|``, or ``None``."""
    reg = _registry(act)
    if reg is None:
        return None
    name, p = reg
    if name == "leaky_relu":
        return (1.0 + p["slope"]) / 2.0, (1.0 - p["slope"]) / 2.0
    if name == "abrelu":
        return (p["a"] + p["b"]) / 2.0, (p["b"] - p["a"]) / 2.0
    return {"linear": (1.0, 0.0), "relu": (0.5, 0.5), "abs": (0.0, 1.0)}.get(name)


def _gh1(f, order, var):
    """``E[f(sqrt(var) Z)]``, ``Z ~ N(0, 1)``, by ``order``-point Gauss-Hermite (``var`` any shape)."""
    z, w = inner.gauss_hermite_nodes(order)
    var = jnp.asarray(var)
    dtype = jnp.result_type(var, float)
    return jnp.sum(jnp.asarray(w, dtype) * f(safe_sqrt(var)[..., None] * jnp.asarray(z, dtype)), -1)


def _constant_plus_odd(act, order):
    """``(kappa_0, slope)`` with ``s = kappa_0 + (odd function)`` and ``slope(nu) = E[s'(U)]``, ``U ~ N(0, nu)``;
    ``None`` when ``s`` is not of that form or its mean slope is unknown (a kinked function without a formula)."""
    reg = _registry(act)
    name = reg[0] if reg else None
    rs = lambda x: safe_where(x > 0, jax.lax.rsqrt, x, 0.0)  # noqa: E731  (a zero-weight sign/step unit: s = 0)
    slopes = {"linear": lambda nu: jnp.ones_like(nu),
              "erf": lambda nu: (2.0 / math.sqrt(math.pi)) * jax.lax.rsqrt(1.0 + 2.0 * nu),
              "sign": lambda nu: math.sqrt(2.0 / math.pi) * rs(nu),
              "step": lambda nu: rs(nu) / math.sqrt(2.0 * math.pi),
              "normal_cdf": lambda nu: jax.lax.rsqrt(1.0 + nu) / math.sqrt(2.0 * math.pi),
              "sin": lambda nu: jnp.exp(-0.5 * nu)}
    constants = {"step": 0.5, "normal_cdf": 0.5, "sigmoid": 0.5}
    if not (act.odd or name in constants):
        return None
    kappa0 = constants.get(name, 0.0)
    if name in slopes:
        return kappa0, slopes[name]
    if not act.smooth:
        return None
    df = inner._derivative(act.fn)
    return kappa0, lambda nu: _gh1(df, order, nu)


def _linear_plus_even(act, order):
    """``(alpha, mean)`` with ``t(z) = alpha z + (even function)`` and ``mean(nv) = E[t(V)]``, ``V ~ N(0, nv)``;
    ``None`` when ``t`` is not of that form or its mean is unknown."""
    pl = _piecewise_linear(act)
    if pl is not None:
        alpha, beta = pl
        return alpha, lambda nv: beta * math.sqrt(2.0 / math.pi) * safe_sqrt(nv)
    reg = _registry(act)
    if reg is None:
        return None
    name, p = reg
    means = {"gelu": (0.5, lambda nv: nv * jax.lax.rsqrt(2.0 * math.pi * (1.0 + nv))),
             "quadratic": (0.0, lambda nv: nv * 1.0),
             "cos": (0.0, lambda nv: jnp.exp(-0.5 * nv)),
             "gauss": (0.0, lambda nv: jax.lax.rsqrt(1.0 + nv))}
    if name in means:
        return means[name]
    even = (name in ("hermite", "monomial", "polynomial") and not act.odd
            and all(c == 0.0 for c in _coefficients(name, p)[1::2]))
    if name in ("silu", "softplus") or even:  # silu(z) - z/2 and softplus(z) - z/2 are even
        alpha = 0.0 if even else 0.5
        return alpha, lambda nv: _gh1(act.fn, order, nv)
    return None


def _coefficients(name, p):
    """Power-series coefficients of a polynomial activation (hermite ``h_m`` by parity only)."""
    if name == "monomial":
        return (0.0,) * p["n"] + (1.0,)
    if name == "polynomial":
        return p["coeffs"]
    m = p["m"]
    return tuple(0.0 if (m - i) % 2 else 1.0 for i in range(m + 1))  # h_m has the parity of m


# --- cross pair functions ------------------------------------------------------------------------------------

def _probit_cross(ps, pt):
    a_s, b_s, k_s, t_s = ps
    a_t, b_t, k_t, t_t = pt

    def fn(nu, c, nv):
        den_u, den_v = k_s * nu + t_s, k_t * nv + t_t
        ok = (den_u > 0) & (den_v > 0)
        x = safe_where(ok, jax.lax.rsqrt, den_u * den_v, 0.0) * (math.sqrt(k_s * k_t) * c)
        x = jnp.clip(x, -1.0, 1.0)
        angle = jnp.arctan2(x, safe_sqrt(1.0 - x * x))  # arcsin with a finite derivative at |x| = 1
        # a zero-weight sign or step unit (the only kind with den = 0) is the constant s(0) = 0
        return jnp.where(ok, a_s * a_t + b_s * b_t * (2.0 / math.pi) * angle, 0.0)

    return fn


def _piecewise_cross(ps, pt):
    (al_s, be_s), (al_t, be_t) = ps, pt

    def fn(nu, c, nv):
        return al_s * al_t * c + be_s * be_t * inner.abs_(nu, c, nv)

    return fn


def _stein_cross(cop, lpe):
    (kappa0, slope), (alpha, mean) = cop, lpe

    def fn(nu, c, nv):
        out = jnp.zeros_like(nu * c * nv)
        if kappa0:
            out = out + kappa0 * mean(nv)
        if alpha:
            out = out + alpha * c * slope(nu)
        return out

    return fn


def _swap(fn):
    return lambda nu, c, nv, *b: fn(nv, c, nu, *b[::-1])


# --- kinked activations through a closed-form conditional mean ---------------------------------------------------

def _ratio(m, s):
    """``(m / s, s > 0)`` with finite derivatives where ``s = 0``."""
    pos = s > 0
    return m / jnp.where(pos, s, 1.0), pos


def _abs_mean(m, s2):
    """``E|N(m, s2)|``."""
    s = safe_sqrt(s2)
    t, pos = _ratio(m, s)
    return jnp.where(pos, 2.0 * s * normal_pdf(t) + m * (2.0 * ndtr(t) - 1.0), jnp.abs(m))


def _conditional_mean(act):
    """``h(m, s2) = E[s(N(m, s2))]`` in closed form for the kinked families (piecewise-linear, probit, relu2), or
    ``None``."""
    pl = _piecewise_linear(act)
    if pl is not None:
        alpha, beta = pl
        return lambda m, s2: alpha * m + beta * _abs_mean(m, s2)
    reg = _registry(act)
    name = reg[0] if reg else None
    if name in _PROBIT:
        a, b, k2, t2 = _PROBIT[name]

        def probit(m, s2):
            sd = safe_sqrt(k2 * s2 + t2)
            t, pos = _ratio(math.sqrt(k2) * m, sd)
            return a + b * jnp.where(pos, 2.0 * ndtr(t) - 1.0, jnp.sign(m))
        return probit
    if name == "relu2":
        def relu2(m, s2):
            s = safe_sqrt(s2)
            t, pos = _ratio(m, s)
            return jnp.where(pos, (m * m + s2) * ndtr(t) + m * s * normal_pdf(t), jax.nn.relu(m) ** 2)
        return relu2
    return None


def _conditional_cross(h, g, order):
    """``E[f(U) g(V)] = E_V[g(V) h(E[U | V], Var[U | V])]``: a kinked ``f`` with closed conditional mean ``h``
    against a smooth ``g``, as a one-dimensional Gauss-Hermite sum over ``V`` (smooth integrand; autodiff is exact)."""

    def fn(nu, c, nv, bu=0.0, bv=0.0):
        z, w = inner.gauss_hermite_nodes(order)
        dtype = jnp.result_type(nu, c, nv, bu, bv, float)
        z, w = jnp.asarray(z, dtype), jnp.asarray(w, dtype)
        nu, c, nv, bu, bv = (jnp.asarray(x, dtype)[..., None] for x in (nu, c, nv, bu, bv))
        # V = bv + sqrt(nv) z; U | V ~ N(bu + beta z, nu - beta^2) with beta = c / sqrt(nv)
        beta = safe_where(nv > 0, lambda x: c / jnp.sqrt(x), nv, 0.0)
        vals = g(bv + safe_sqrt(nv) * z) * h(bu + beta * z, jnp.maximum(nu - beta * beta, 0.0))
        return jnp.sum(w * vals, -1)

    return fn


def _conditional_pair(f, g):
    """``(h, smooth g, swapped)`` when one side has a closed conditional mean and the other is smooth, preferring
    to condition a kinked one; ``None`` otherwise."""
    for a, b, swapped in sorted(((f, g, False), (g, f, True)), key=lambda x: x[0].smooth):
        h = _conditional_mean(a)
        if h is not None and b.smooth:
            return h, b.fn, swapped
    return None


# --- biased closed forms of the kinked families ------------------------------------------------------------------

def _probit_parts(k2, t2, n, b):
    """``(h, sd, ok)`` of ``W = kappa U - tau Z`` for ``U ~ N(b, n)``: standardised mean, standard deviation,
    ``sd > 0``."""
    var = k2 * n + t2
    ok = var > 0
    sd = jnp.sqrt(jnp.where(ok, var, 1.0))
    return math.sqrt(k2) * b / sd, sd, ok


def _snap(rho):
    rho = jnp.clip(rho, -1.0, 1.0)
    eps = 8.0 * jnp.finfo(rho.dtype).eps
    return jnp.where(1.0 - jnp.abs(rho) < eps, jnp.sign(rho), rho)


def _probit_cross_biased(ps, pt, f, g):
    (a_s, b_s, k_s, t_s), (a_t, b_t, k_t, t_t) = ps, pt

    def fn(nu, c, nv, bu, bv):
        nu, c, nv, bu, bv = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.result_type(nu, c, nv, bu, bv, float))
                                                   for x in (nu, c, nv, bu, bv)))
        h, sd_s, ok_s = _probit_parts(k_s, t_s, nu, bu)
        k, sd_t, ok_t = _probit_parts(k_t, t_t, nv, bv)
        rho = _snap(math.sqrt(k_s * k_t) * c / (sd_s * sd_t))
        es, et = 2.0 * ndtr(h) - 1.0, 2.0 * ndtr(k) - 1.0
        ess = 4.0 * bvn_cdf(h, k, rho) - 2.0 * ndtr(h) - 2.0 * ndtr(k) + 1.0
        main = a_s * a_t + a_s * b_t * et + b_s * a_t * es + b_s * b_t * ess
        # a zero-weight sign or step unit is the constant s(b)
        fs, ft = f(bu), g(bv)
        return jnp.where(ok_s & ok_t, main, jnp.where(ok_s, (a_s + b_s * es) * ft,
                                                      jnp.where(ok_t, fs * (a_t + b_t * et), fs * ft)))

    return fn


def _relu_combination(pl):
    """``(P, Q)`` with ``alpha z + beta |z| = P relu(z) + Q relu(-z)``."""
    alpha, beta = pl
    return alpha + beta, beta - alpha


def _piecewise_cross_biased(ps, pt):
    (P_s, Q_s), (P_t, Q_t) = _relu_combination(ps), _relu_combination(pt)
    terms = [(P_s * P_t, 1, 1), (P_s * Q_t, 1, -1), (Q_s * P_t, -1, 1), (Q_s * Q_t, -1, -1)]

    def fn(nu, c, nv, bu, bv):
        out = jnp.zeros_like(nu * c * nv * bu * bv)
        for coef, su, sv in terms:  # E[relu(su U) relu(sv V)]: U -> -U flips its mean and the covariance
            if coef:
                out = out + coef * biased.relu(nu, su * sv * c, nv, su * bu, sv * bv)
        return out

    return fn


def _relu_probit_biased(pl, pt, g):
    """``E[(P relu(U) + Q relu(-U)) t(V)]`` for a probit ``t = a + b E sign(kappa V - tau Z)``, biased units."""
    (P, Q), (a_t, b_t, k_t, t_t) = _relu_combination(pl), pt

    def relu_mean(b, s):  # E[relu(N(b, s^2))]
        t, pos = _ratio(b, s)
        return jnp.where(pos, b * ndtr(t) + s * normal_pdf(t), jax.nn.relu(b))

    def fn(nu, c, nv, bu, bv):
        nu, c, nv, bu, bv = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.result_type(nu, c, nv, bu, bv, float))
                                                   for x in (nu, c, nv, bu, bv)))
        ok_u = nu > 0
        su = jnp.sqrt(jnp.where(ok_u, nu, 1.0))
        k, sd_t, ok_t = _probit_parts(k_t, t_t, nv, bv)
        et = 2.0 * ndtr(k) - 1.0
        out = jnp.zeros_like(nu)
        for coef, sgn in ((P, 1.0), (Q, -1.0)):
            if not coef:
                continue
            bs, cs = sgn * bu, sgn * c  # relu(sgn U): U -> sgn U
            h = bs / su
            rho = _snap(math.sqrt(k_t) * cs / (su * sd_t))
            # E[relu(sgn U) 1{W > 0}] = E[(bs - su X) 1{X < h, Y < k}] for standard (X, Y) with correlation rho
            p = bvn_cdf(h, k, rho)
            ex = -normal_pdf(h) * conditional_cdf(h, k, rho) - rho * normal_pdf(k) * conditional_cdf(k, h, rho)
            pos_part = bs * p - su * ex
            mean = relu_mean(bs, su)
            main = a_t * mean + b_t * (2.0 * pos_part - mean)
            const_u = jax.nn.relu(bs) * (a_t + b_t * et)          # w = 0: relu(sgn U) is the constant relu(bs)
            const_t = relu_mean(bs, jnp.where(ok_u, su, 0.0)) * g(bv)  # a zero-weight sign/step unit: t(bv)
            out = out + coef * jnp.where(ok_u & ok_t, main, jnp.where(ok_t, const_u, jnp.where(
                ok_u, const_t, jax.nn.relu(bs) * g(bv))))
        return out

    return fn


@functools.lru_cache(maxsize=None)
def _cross_rule(p: Potential, q: Potential, order: int):
    """``(fn(nu, c, nv), how)`` for ``E[s_p(U) s_q(V)]``; ``how`` names the rule used."""
    if p is q:
        return p.fn, "same"
    f, g = p.activation, q.activation
    rf, rg = _registry(f), _registry(g)
    if rf and rg and rf[0] in _PROBIT and rg[0] in _PROBIT:
        return _probit_cross(_PROBIT[rf[0]], _PROBIT[rg[0]]), "probit"
    pf, pg = _piecewise_linear(f), _piecewise_linear(g)
    if pf is not None and pg is not None:
        return _piecewise_cross(pf, pg), "piecewise-linear"
    cop, lpe = _constant_plus_odd(f, order), _linear_plus_even(g, order)
    if cop is not None and lpe is not None:
        return _stein_cross(cop, lpe), "stein"
    cop, lpe = _constant_plus_odd(g, order), _linear_plus_even(f, order)
    if cop is not None and lpe is not None:
        return _swap(_stein_cross(cop, lpe)), "stein"
    cond = _conditional_pair(f, g)
    if cond is not None:
        h, smooth, swapped = cond
        fn = _conditional_cross(h, smooth, order)
        return (_swap(fn) if swapped else fn), "conditional"
    return functools.partial(inner.gauss_hermite, f.fn, g.fn, order), "quadrature"


@functools.lru_cache(maxsize=None)
def _cross_rule_biased(p: Potential, q: Potential, order: int):
    """``(fn(nu, c, nv, bu, bv), how)`` for biased units (docs/math.md section 12)."""
    if p is q:
        return p.biased()[0], "same"
    f, g = p.activation, q.activation
    rf, rg = _registry(f), _registry(g)
    probit_f, probit_g = (rf and rf[0] in _PROBIT), (rg and rg[0] in _PROBIT)
    if probit_f and probit_g:
        return _probit_cross_biased(_PROBIT[rf[0]], _PROBIT[rg[0]], f.fn, g.fn), "probit"
    pf, pg = _piecewise_linear(f), _piecewise_linear(g)
    if pf is not None and pg is not None:
        return _piecewise_cross_biased(pf, pg), "piecewise-linear"
    if pf is not None and probit_g:
        return _relu_probit_biased(pf, _PROBIT[rg[0]], g.fn), "piecewise-linear x probit"
    if pg is not None and probit_f:
        return _swap(_relu_probit_biased(pg, _PROBIT[rf[0]], f.fn)), "piecewise-linear x probit"
    cond = _conditional_pair(f, g)
    if cond is not None:
        h, smooth, swapped = cond
        fn = _conditional_cross(h, smooth, order)
        return (_swap(fn) if swapped else fn), "conditional"
    return functools.partial(gauss_hermite_biased, f.fn, g.fn, order), "quadrature"


def _check_unit_potential(p, where):
    from earnshaw.potentials import potential  # the registry imports this module

    try:
        if isinstance(p, str):
            _act.activation(p.lower())  # an unknown name: the message lists the activations, not the radial potentials
        p = potential(p)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{where}: {err}") from None
    if p.kind != "inner" or p.activation is None or p.activation.kind != "inner":
        raise ValueError(f"{where}: {p!r} is not the potential of an inner-product activation; per-unit "
                         "activations need activations s(w . x) (names like 'erf', 'relu', 'tanh', an "
                         "Activation, or their potentials)")
    return p


def cross(p, q, *, order: Optional[int] = None):
    """The cross potential ``Phi_{s,t}(u, v) = E[s(u . X) t(v . X)]`` of two activations, as ``fn(nu, c, nv)``.

    Args:
      p: the activation ``s`` of the first argument: a name, an :class:`~earnshaw.activations.Activation` or
        its :class:`Potential`.
      q: the activation ``t`` of the second argument, the same way.
      order: Gauss-Hermite order for pairs without a closed form (default
        :data:`~earnshaw.potentials.DEFAULT_GH_ORDER`).

    Returns:
      ``fn(nu, c, nv)`` of the Gram triple ``(|u|^2, u . v, |v|^2)`` (broadcastable arrays, any shape), which
      is ``p``'s own potential when ``p`` and ``q`` are the same activation.

    >>> import jax.numpy as jnp
    >>> from earnshaw.potentials.mixed import cross
    >>> fn = cross("erf", "relu")             # closed form: u.v / sqrt(pi (1 + 2 |u|^2))
    >>> bool(jnp.isclose(fn(1.0, 0.5, 2.0), 0.5 / jnp.sqrt(3 * jnp.pi)))
    True
    >>> float(cross("tanh", "abs")(1.0, 0.3, 1.0))   # an odd against an even function: exactly 0
    0.0
    """
    from earnshaw.potentials import DEFAULT_GH_ORDER  # the registry imports this module

    p, q = _check_unit_potential(p, "cross: p"), _check_unit_potential(q, "cross: q")
    return _cross_rule(p, q, DEFAULT_GH_ORDER if order is None else int(order))[0]


# --- the record ------------------------------------------------------------------------------------------------

def _groups(labels):
    """``[(group, unit indices)]`` in increasing group order, and the permutation that sorts units by group."""
    labels = np.asarray(labels, int)
    groups = [(int(g), np.flatnonzero(labels == g)) for g in np.unique(labels)]
    perm = np.concatenate([idx for _, idx in groups]) if groups else np.zeros(0, int)
    return groups, perm


def _take(x, idx, axis):
    """``x`` at the static indices ``idx`` along ``axis`` (a slice when they are contiguous)."""
    idx = np.asarray(idx)
    n = x.shape[axis]
    if idx.size == n and np.array_equal(idx, np.arange(n)):
        return x
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return jax.lax.slice_in_dim(x, int(idx[0]), int(idx[0] + idx.size), axis=axis % x.ndim)
    return jnp.take(x, jnp.asarray(idx), axis=axis)


@dataclasses.dataclass(frozen=True, eq=False)
class MixedPotential:
    """Per-unit activations: one inner-product potential per student unit and per teacher unit.

    Build one with :func:`earnshaw.mixed_potential` (or ``es.potential([...])``); identical arguments
    return the same object, so jit caches stay warm. The losses, :class:`~earnshaw.Problem`, the solvers
    built on it (gradient descent and flow, SecondGD, Hessian descent, perturbed GD), ``refine`` and
    ``analyze`` take it wherever they take a :class:`Potential`; the methods written for one potential
    (node-wise descent, order parameters, online SGD, forces, ``census``, ``certify``) refuse it.

    Attributes:
      student: the potential of each student unit, ``(k,)`` (a tuple of :class:`Potential`).
      teacher: the potential of each teacher unit, ``(m,)``.
      order: Gauss-Hermite order of the mixed pairs without a closed form.
      potentials: the distinct potentials, in order of first appearance (student units, then teacher units).
      groups: ``{"student": (k,), "teacher": (m,)}`` index of each unit's potential in ``potentials``.

    ``gram(U, V, bu, bv, sides=("student", "teacher"))``: ``(..., k, d), (..., m, d) -> (..., k, m)``;
    ``self_gram(U, bu, side="student")``: ``(..., k, d) -> (..., k, k)``, where ``side`` says whose units the
    rows are (:data:`SIDES`; ``"both"``: the ``k + m`` student then teacher units stacked).

    >>> import jax.numpy as jnp, earnshaw as es
    >>> pot = es.mixed_potential(student=["erf", "relu"], teacher=["erf", "tanh", "relu"])
    >>> pot.kind, len(pot.student), len(pot.teacher), [p.name for p in pot.potentials]
    ('mixed', 2, 3, ['erf', 'relu', 'tanh'])
    >>> pot.gram(jnp.ones((2, 4)), jnp.ones((3, 4))).shape           # student rows, teacher columns
    (2, 3)
    """

    student: tuple
    teacher: tuple
    order: int
    potentials: tuple = dataclasses.field(init=False)
    groups: dict = dataclasses.field(init=False)

    def __post_init__(self):
        distinct = tuple(dict.fromkeys(self.student + self.teacher))
        index = {id(p): i for i, p in enumerate(distinct)}
        object.__setattr__(self, "potentials", distinct)
        object.__setattr__(self, "groups", {"student": tuple(index[id(p)] for p in self.student),
                                            "teacher": tuple(index[id(p)] for p in self.teacher)})

    # --- what the rest of earnshaw asks of a potential ----------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"mixed"``: not one function of the Gram triple, so the single-potential methods refuse it."""
        return "mixed"

    @property
    def name(self) -> str:
        """``"mixed(erf,relu|erf,tanh)"``: the student's activations, then the teacher's."""
        def names(ps):
            return ",".join(p.name for p in ps)
        return f"mixed({names(self.student)}|{names(self.teacher)})"

    @property
    def bounded(self) -> bool:
        """Always ``True``: inner-product potentials are finite on the diagonal."""
        return True

    @property
    def activation(self):
        """``None``: there is no single activation (see :attr:`student` and :attr:`teacher`)."""
        return None

    @property
    def smooth(self) -> bool:
        return all(p.smooth for p in self.potentials)

    @property
    def odd(self) -> tuple:
        """``((k,), (m,))``: whether each student and each teacher unit's activation is odd."""
        return (tuple(p.activation.odd for p in self.student), tuple(p.activation.odd for p in self.teacher))

    def __repr__(self):
        return f"MixedPotential(student={[p.name for p in self.student]}, teacher={[p.name for p in self.teacher]})"

    def pairs(self, biased: bool = False) -> list:
        """``[(name_s, name_t, rule, fn)]`` for each pair of the distinct activations (a pair with itself
        included): how ``E[s(U) t(V)]`` is evaluated, ``fn(nu, c, nv)`` (``fn(nu, c, nv, bu, bv)`` if ``biased``),
        the rule one of ``"same"``, ``"probit"``, ``"piecewise-linear"``, ``"stein"``, ``"conditional"``,
        ``"piecewise-linear x probit"`` (biased), ``"quadrature"`` (module docstring)."""
        rule = _cross_rule_biased if biased else _cross_rule
        return [(p.name, q.name, *rule(p, q, self.order)[::-1])
                for i, p in enumerate(self.potentials) for q in self.potentials[i:]]

    def rules(self, biased: bool = False) -> dict:
        """``{(name_s, name_t): rule}`` of :meth:`pairs`."""
        return {(a, b): rule for a, b, rule, _ in self.pairs(biased)}

    # --- Gram matrices ----------------------------------------------------------------------------------------
    def labels(self, side: str) -> tuple:
        """The group of each unit of ``side`` (:data:`SIDES`)."""
        if side == "both":
            return self.groups["student"] + self.groups["teacher"]
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; valid: {', '.join(SIDES)}")
        return self.groups[side]

    def check_units(self, side: str, k: int) -> None:
        """A ValueError naming the argument and both lengths unless ``side`` has ``k`` units."""
        n = len(self.labels(side))
        if n != k:
            if side == "both":
                raise ValueError(f"{self!r}: {len(self.student)} student + {len(self.teacher)} teacher activations "
                                 f"= {n}, but {k} units are stacked")
            both = " (one list, for student and teacher alike)" if self.student == self.teacher else ""
            raise ValueError(f"mixed_potential({side}=...) gives {n} activation{'s' * (n != 1)}{both}, but the {side} "
                             f"has {k} unit{'s' * (k != 1)}; give one activation per {side} unit")

    def _pair(self, g: int, h: int, biased: bool):
        p, q = self.potentials[g], self.potentials[h]
        return (_cross_rule_biased if biased else _cross_rule)(p, q, self.order)[0]

    def _gram(self, U, lu, V, lv, bu, bv, symmetric=False):
        """The Gram matrix of units ``U`` (groups ``lu``) against ``V`` (``lv``); ``symmetric``: ``V`` is ``U``
        (same groups and biases), so each block below the diagonal is the transpose of one above it."""
        biased = bu is not None or bv is not None
        if biased:
            bu = jnp.zeros(U.shape[:-1], U.dtype) if bu is None else jnp.asarray(bu)
            bv = jnp.zeros(V.shape[:-1], V.dtype) if bv is None else jnp.asarray(bv)
        nu, nv = jnp.sum(U * U, -1), jnp.sum(V * V, -1)
        C = jnp.einsum("...md,...nd->...mn", U, V)
        gu, perm_u = _groups(lu)
        gv, perm_v = _groups(lv)
        rows, blocks = [], {}
        for a, (g, iu) in enumerate(gu):
            row = []
            for b, (h, iv) in enumerate(gv):
                if symmetric and b < a:  # one trace per pair of activations: half the program
                    row.append(jnp.swapaxes(blocks[b, a], -1, -2))
                    continue
                args = (_take(nu, iu, -1)[..., :, None], _take(_take(C, iu, -2), iv, -1),
                        _take(nv, iv, -1)[..., None, :])
                if biased:
                    args += (_take(bu, iu, -1)[..., :, None], _take(bv, iv, -1)[..., None, :])
                blocks[a, b] = self._pair(g, h, biased)(*args)
                row.append(blocks[a, b])
            rows.append(row[0] if len(row) == 1 else jnp.concatenate(row, -1))
        G = rows[0] if len(rows) == 1 else jnp.concatenate(rows, -2)
        return _take(_take(G, np.argsort(perm_u), -2), np.argsort(perm_v), -1)

    def gram(self, U, V, bu=None, bv=None, *, sides=("student", "teacher")):
        """``Phi_{s_i, t_j}(U_i, V_j)``: ``U`` the units of ``sides[0]``, ``V`` those of ``sides[1]``.

        Args:
          U: ``(..., m, d)``.
          V: ``(..., n, d)``; leading axes broadcast.
          bu: biases of ``U`` ``(..., m)``, or ``None``.
          bv: biases of ``V`` ``(..., n)``, or ``None``.
          sides: whose units ``U`` and ``V`` are (:data:`SIDES`), so ``m`` and ``n`` must match them.

        Returns:
          ``(..., m, n)``.
        """
        U, V = _as_array(U, "U"), _as_array(V, "V")
        if U.ndim < 2 or V.ndim < 2:
            raise ValueError(f"gram needs U (..., m, d) and V (..., n, d), got U {U.shape} and V {V.shape}")
        if U.shape[-1] != V.shape[-1]:
            raise ValueError(f"last axes (the dimension d) must agree: U has shape {U.shape}, V has shape {V.shape}")
        self.check_units(sides[0], U.shape[-2])
        self.check_units(sides[1], V.shape[-2])
        return self._gram(U, self.labels(sides[0]), V, self.labels(sides[1]), bu, bv)

    def self_gram(self, U, bu=None, *, side="student"):
        """``gram(U, U)`` of the units of ``side``, with the exact diagonal ``E[s_i(U_i)^2]`` of biased units.

        Args:
          U: ``(..., m, d)``; ``bu``: ``(..., m)`` or ``None``. Returns ``(..., m, m)``.
        """
        U = _as_array(U, "U")
        self.check_units(side, U.shape[-2])
        lu = self.labels(side)
        G = self._gram(U, lu, U, lu, bu, bu, symmetric=True)
        if bu is None:
            return G
        bu = jnp.asarray(bu, G.dtype)
        nu = jnp.sum(U * U, -1)
        diag, use = jnp.zeros_like(nu), np.zeros(len(lu), bool)
        for g, idx in _groups(lu)[0]:
            self_term = self.potentials[g].biased()[1]
            if self_term is not None:
                use[idx] = True
                diag = diag.at[..., idx].set(self_term(_take(nu, idx, -1), _take(bu, idx, -1)))
        if not use.any():
            return G
        mask = np.eye(len(lu), dtype=bool) & use[None, :]
        return jnp.where(mask, diag[..., None, :], G)

    def units(self, x, w, bias=None, *, side="teacher"):
        """Unit outputs ``s_i(w_i . x_n + bias_i)`` of the units of ``side``: ``x (..., n, d)``, ``w (..., k, d)``,
        ``bias (..., k)`` or ``None`` -> ``(..., n, k)``."""
        self.check_units(side, w.shape[-2])
        z = jnp.einsum("...nd,...kd->...nk", x, w)
        if bias is not None:
            z = z + jnp.asarray(bias)[..., None, :]
        groups, perm = _groups(self.labels(side))
        outs = [self.potentials[g].activation.fn(_take(z, idx, -1)) for g, idx in groups]
        out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, -1)
        return _take(out, np.argsort(perm), -1)


@functools.lru_cache(maxsize=None)
def _cached(student, teacher, order):
    pot = MixedPotential(student, teacher, order)
    plain, with_bias = [], []
    for i, p in enumerate(pot.potentials):
        for q in pot.potentials[i + 1:]:
            if p.activation.smooth and q.activation.smooth:
                continue
            if _cross_rule(p, q, order)[1] == "quadrature":
                plain.append(f"{p.name} x {q.name}")
            elif _cross_rule_biased(p, q, order)[1] == "quadrature":
                with_bias.append(f"{p.name} x {q.name}")
    if plain or with_bias:
        pairs = ", ".join(plain + [f"{x} (biased units)" for x in with_bias])
        warnings.warn(f"mixed potential: {pairs} by Gauss-Hermite quadrature; a non-smooth activation makes it "
                      "converge slowly and its derivatives miss the kinks", stacklevel=4)
    return pot


def _as_units(acts, where):
    if isinstance(acts, (str, bytes)) or not hasattr(acts, "__len__"):
        raise TypeError(f"{where} must be a list of activations, one per unit (e.g. ['erf', 'relu']), "
                        f"got {acts!r}")
    if len(acts) == 0:
        raise ValueError(f"{where} must name at least one activation")
    return tuple(_check_unit_potential(a, f"{where}[{i}]") for i, a in enumerate(acts))


def mixed_potential(student, teacher=None, *, order: Optional[int] = None) -> MixedPotential:
    """Per-unit activations for the student and the teacher: a :class:`MixedPotential`.

    Args:
      student: one activation per student unit, ``k`` entries: names (``"erf"``), :class:`Activation` objects
        or their :class:`Potential` (``es.potential("leaky_relu", slope=0.1)``, ``es.potential("tanh", order=64)``:
        a potential carries its parameters and how it is computed).
      teacher: one per teacher unit, ``m`` entries; default: the student's list.
      order: Gauss-Hermite order of the mixed pairs without a closed form (default
        :data:`~earnshaw.potentials.DEFAULT_GH_ORDER`).

    Returns:
      A cached :class:`MixedPotential`; ``es.potential(["erf", "relu"])`` is ``mixed_potential(["erf", "relu"])``.

    Raises:
      ValueError: an unknown name (the message lists the valid ones), a potential that is not an activation's.
      The lengths are checked where the networks meet the potential: a student with ``k`` units needs ``k``
      student activations (the error names the argument and both lengths).

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> pot = es.mixed_potential(["erf", "relu"])         # unit 1 erf, unit 2 relu, for student and teacher
    >>> float(es.population_loss(pot, t, es.Student(a=t.b, theta=t.w)))
    0.0
    >>> s = es.Student(a=-t.b, theta=t.w)
    >>> bool(es.population_loss(["erf", "erf"], t, s) == es.population_loss("erf", t, s))  # the plain loss
    True
    """
    from earnshaw.potentials import DEFAULT_GH_ORDER  # the registry imports this module

    order = DEFAULT_GH_ORDER if order is None else order
    if isinstance(order, bool) or not isinstance(order, int):
        raise ValueError(f"mixed_potential: order must be an integer, got {order!r}")
    inner.gauss_hermite_nodes(order)  # validates it
    s = _as_units(student, "student")
    t = s if teacher is None else _as_units(teacher, "teacher")
    return _cached(s, t, order)


def check_single(name: str, pot) -> None:
    """A ValueError if ``pot`` is a :class:`MixedPotential`: for the methods whose formulas use one potential."""
    if isinstance(pot, MixedPotential):
        raise ValueError(f"{name} works with one potential for all units; {pot!r} gives units different "
                         "activations. Use the solvers (gradient_descent, gradient_flow, second_gd, hessian_descent, "
                         "perturbed_gd), refine and analyze, which take per-unit activations")
