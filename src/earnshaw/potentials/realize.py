r"""Theorem 3: is a translation-invariant radial potential realisable, and by which activation?

Under Gaussian inputs ``X ~ N(0, I_d)`` a translation-invariant activation
``sigma(x, w) = (2 pi)^(d/4) exp(|x|^2 / 4) g(x - w)`` has the potential
``Phi(u, v) = int g(x - u) g(x - v) dx = (g * g~)(u - v)``: the Gaussian density
cancels the ``exp(|x|^2/4)`` factors exactly (docs/math.md section 1b). Hence (Bochner)
a radial ``Phi`` is realisable iff its ``d``-dimensional Fourier transform
``Phi^`` is ``>= 0`` (and integrable: ``Phi(0) = E[sigma^2]`` must be finite), and
``g = F^{-1} sqrt(Phi^)`` (or any other root ``|g^|^2 = Phi^``) realises it.

**Fourier convention** (docs/math.md section 0): ``f^(w) = int f(x) exp(-i w.x) dx``, inverse
``(2 pi)^(-d) int f^ exp(i w.x) dw``. With it, Theorem 3 holds exactly as printed; with
the unitary convention the resulting ``g`` is ``(2 pi)^(d/4)`` too large. For radial
functions both directions are Hankel transforms with the kernel
``Lambda_d(t) = Gamma(d/2) (2/t)^(d/2-1) J_(d/2-1)(t)`` (the spherical mean of
``exp(i t e.x)``; ``cos t`` in ``d = 1``, ``sin t / t`` in ``d = 3``, ``1`` at ``t = 0``)::

    Phi^(k) = |S^(d-1)| int_0^inf Phi(r) r^(d-1) Lambda_d(k r) dr
    g(r)    = (2 pi)^(-d) |S^(d-1)| int_0^inf sqrt(Phi^(k)) k^(d-1) Lambda_d(k r) dk

The ``k -> 0`` limit ``Lambda_d(0) = 1`` is written explicitly (a NaN there once
crashed scipy's ``quad(weight='sin')``).

:func:`realize` returns the potential with its realising activation attached
(``dataclasses.replace(pot, activation=act)``), so ``es.empirical_loss`` and
``es.monte_carlo`` accept it directly. Closed forms are used where known:

* ``gaussian``: ``g = c exp(-|y|^2 / ell^2)``, ``c^2 = (2 / (pi ell^2))^(d/2)``;
* ``yukawa`` in ``d = 1`` (``e^{-mu r} / (2 mu)``): ``g = K_0(mu |y|) / pi``;
* ``almost_harmonic``: its own activation (:mod:`earnshaw.potentials.almost_harmonic`).

Everything else goes through the numerical Hankel transforms (``scipy.integrate.quad_vec``)
and a cubic-spline table of ``g`` (evaluated in JAX). Unbounded potentials (``coulomb``,
``yukawa`` in ``d >= 2``) are refused: ``Phi(0) = inf`` would be ``E[sigma^2]``, and their
transforms ``c / k^2``, ``1 / (lam + k^2)`` are positive but not integrable (Theorem 11 tacitly
needs ``Phi(0)`` finite, docs/math.md section 8 item 11).

**Heavy tails.** ``E[sigma^2] = Phi(0)`` is finite, but ``E[sigma^4]`` is finite only when ``g``
decays faster than ``exp(-|y|^2/8)`` (docs/math.md section 1b); for every lambda-harmonic-type
potential it is infinite, so sample (empirical) losses have infinite variance. Train such
models on the population loss through ``Phi``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw.activations import Activation
from earnshaw.potentials._bessel import kv
from earnshaw.potentials._potential import Potential
from earnshaw.potentials._safe import safe_norm

__all__ = ["realize", "NotRealizableError", "fourier_transform", "radial_kernel", "sphere_area",
           "translation_activation", "PiecewisePoly"]


class NotRealizableError(ValueError):
    """A potential that no activation realises under Gaussian inputs (Theorem 3 fails).

    The message says why: where the Fourier transform is negative (the ``k`` range
    and the most negative value), or that ``Phi(0)`` is infinite / the transform is
    not integrable.

    >>> import earnshaw as es
    >>> es.realize(es.potential("coulomb", d=3), d=3)
    Traceback (most recent call last):
    earnshaw.potentials.realize.NotRealizableError: Potential('coulomb', d=3) is not realisable in d=3: Phi(0) = inf (unbounded at r = 0)...
    """


# ----------------------------------------------------------------------------------------------
# Radial Fourier (Hankel) transforms, numpy/scipy (build time)


def sphere_area(d: int) -> float:
    """``|S^(d-1)| = 2 pi^(d/2) / Gamma(d/2)``; ``2`` for ``d = 1``, ``4 pi`` for ``d = 3``.

    >>> round(sphere_area(3) / math.pi, 12)
    4.0
    """
    return 2.0 * math.pi ** (d / 2.0) / math.gamma(d / 2.0)


def radial_kernel(d: int, t):
    """``Lambda_d(t) = Gamma(d/2) (2/t)^(d/2-1) J_(d/2-1)(t)``, with ``Lambda_d(0) = 1`` explicitly.

    The spherical mean of ``exp(i t e.x)`` over the unit sphere of ``R^d``; ``t`` any shape (numpy).

    >>> float(radial_kernel(3, 0.0)), round(float(radial_kernel(3, np.pi / 2)), 12)
    (1.0, 0.636619772368)
    """
    import scipy.special as sp  # here, not at import: scipy's integrate, interpolate and special take ~0.8 s
    t = np.abs(np.asarray(t, float))
    nu = d / 2.0 - 1.0
    if d == 1:
        return np.cos(t)
    small = t < 1e-6
    ts = np.where(small, 1.0, t)
    if d == 3:
        out = np.sin(ts) / ts
    else:
        out = math.gamma(nu + 1.0) * (2.0 / ts) ** nu * sp.jv(nu, ts)
    return np.where(small, 1.0 - t * t / (4.0 * (nu + 1.0)), out)


def _hankel(f: Callable, y, d: int, upper: float, *, scale: float, epsabs: float, epsrel: float = 1e-10,
            points=None):
    """``|S^(d-1)| int_0^upper f(t) t^(d-1) Lambda_d(y t) dt`` for all ``y`` at once (quad_vec)."""
    import scipy.integrate as si
    y = np.asarray(y, float)
    area = sphere_area(d)

    def integrand(t):
        return (area * scale * f(t) * t ** (d - 1)) * radial_kernel(d, y * t)

    val, err = si.quad_vec(integrand, 0.0, upper, epsabs=epsabs, epsrel=epsrel, norm="max", limit=20000,
                           points=points)
    return val, err


def fourier_transform(pot, k, d=None, *, r_max=None, epsabs=None):
    """The ``d``-dimensional Fourier transform ``Phi^(k)`` of a radial potential (docs/math.md convention).

    ``Phi^(k) = int Phi(|x|) exp(-i k.x) dx = |S^(d-1)| int_0^inf Phi(r) r^(d-1) Lambda_d(k r) dr``,
    computed with ``scipy.integrate.quad_vec`` on ``[0, r_max]``, all ``k`` at once.

    Args:
      pot: a radial :class:`Potential`, or a jax/numpy callable ``phi(r)``.
      k: wave numbers ``(n,)`` (``k >= 0``; ``k = 0`` handled exactly).
      d: the dimension (default ``pot.d``).
      r_max: truncation radius (default: where ``|Phi|`` has fallen below ``1e-17 Phi(0)``).
      epsabs: absolute tolerance (default ``1e-13`` times ``int |Phi|``).

    Returns:
      ``(n,)`` numpy array.

    >>> import earnshaw as es
    >>> ft = fourier_transform(es.potential("gaussian"), [0.0, 1.0], d=3)
    >>> np.allclose(ft, (2 * np.pi) ** 1.5 * np.exp(-np.array([0.0, 1.0]) ** 2 / 2))
    True
    """
    pot = _as_potential(pot, d)
    d = _dimension(pot, d)
    phi = _numpy_profile(pot)
    scales = _scales(pot, d, phi)
    r_max = scales["r_cut"] if r_max is None else float(r_max)
    epsabs = 1e-13 * scales["l1"] if epsabs is None else float(epsabs)
    val, _ = _hankel(phi, np.atleast_1d(np.asarray(k, float)), d, r_max, scale=1.0, epsabs=epsabs)
    return val.reshape(np.shape(k))


# ----------------------------------------------------------------------------------------------
# JAX-side tables


@dataclasses.dataclass(frozen=True, eq=False)
class PiecewisePoly:
    """A piecewise polynomial on breakpoints ``x_0 < ... < x_n``, evaluated in JAX.

    ``p(x) = sum_j coef[i, j] (x - x_i)^j`` on ``[x_i, x_(i+1))``; outside the range the end
    pieces are extrapolated (callers switch to exact tails there). jit/grad/vmap-able in ``x``.

    Attributes:
      breaks: ``(n + 1,)`` numpy breakpoints. coef: ``(n, p + 1)`` ascending powers.
      uniform: breakpoints are equally spaced (then the piece is found by division).

    >>> import scipy.interpolate as sinterp
    >>> pp = PiecewisePoly.from_scipy(sinterp.CubicSpline([0.0, 1.0, 2.0], [0.0, 1.0, 4.0]))
    >>> round(float(pp(jnp.asarray(1.5))), 12)
    2.25
    """

    breaks: np.ndarray
    coef: np.ndarray
    uniform: bool = False

    @classmethod
    def from_scipy(cls, spline):
        """From a scipy ``PPoly`` / ``CubicSpline`` (``c`` in descending powers)."""
        x = np.asarray(spline.x, float)
        coef = np.asarray(spline.c, float)[::-1].T.copy()
        h = np.diff(x)
        return cls(x, coef, bool(np.allclose(h, h[0], rtol=1e-12, atol=0)))

    @classmethod
    def quintic_hermite(cls, x, f, df, d2f):
        """C^2 quintic Hermite interpolant through values, first and second derivatives at ``x``."""
        x, f, df, d2f = (np.asarray(a, float) for a in (x, f, df, d2f))
        h = np.diff(x)
        f0, f1, g0, g1, c0, c1 = f[:-1], f[1:], df[:-1] * h, df[1:] * h, d2f[:-1] * h * h, d2f[1:] * h * h
        # ascending powers of t = (x - x_i) / h
        a0, a1, a2 = f0, g0, c0 / 2.0
        a3 = 10 * (f1 - f0) - 6 * g0 - 4 * g1 - 1.5 * c0 + 0.5 * c1
        a4 = -15 * (f1 - f0) + 8 * g0 + 7 * g1 + 1.5 * c0 - c1
        a5 = 6 * (f1 - f0) - 3 * g0 - 3 * g1 - 0.5 * c0 + 0.5 * c1
        coef = np.stack([a0, a1, a2, a3, a4, a5], axis=1) / h[:, None] ** np.arange(6)
        return cls(x, coef, bool(np.allclose(h, h[0], rtol=1e-12, atol=0)))

    def __call__(self, x):
        x = jnp.asarray(x, jnp.result_type(x, float))
        breaks = jnp.asarray(self.breaks, x.dtype)
        n = self.coef.shape[0]
        if self.uniform:
            h = (self.breaks[-1] - self.breaks[0]) / n
            idx = jnp.floor((x - self.breaks[0]) / h).astype(jnp.int32)
        else:
            idx = jnp.searchsorted(breaks, x, side="right") - 1
        idx = jnp.clip(idx, 0, n - 1)
        dx = x - breaks[idx]
        c = jnp.asarray(self.coef, x.dtype)[idx]
        out = c[..., -1]
        for j in range(self.coef.shape[1] - 2, -1, -1):
            out = out * dx + c[..., j]
        return out


def translation_activation(g: Callable, d, name: str, params: tuple = (), *, log_g: Callable | None = None,
                           smooth: bool = True) -> Activation:
    """The Theorem 3 activation ``sigma(x, w) = (2 pi)^(d/4) exp(|x|^2 / 4) g(|x - w|)``.

    Args:
      g: jax-traceable radial profile ``g(r)`` (any shape).
      d: the dimension, or ``None`` to read it from ``x.shape[-1]``.
      name: the activation's name. params: recorded parameters.
      log_g: optional ``(log|g(r)|, sign)`` for overflow-free evaluation at large ``|x|``.

    Returns:
      An :class:`~earnshaw.activations.Activation` of kind ``"translation"``:
      ``fn(x, w)`` with ``x``, ``w`` of shape ``(..., d)`` broadcasting to ``(...)``.

    >>> act = translation_activation(lambda r: jnp.exp(-r * r), 1, "demo")
    >>> act.units(jnp.zeros((5, 1)), jnp.zeros((2, 1))).shape
    (5, 2)
    """

    def fn(x, w):
        x = jnp.asarray(x)
        w = jnp.asarray(w)
        dim = x.shape[-1] if d is None else d
        pref = (2.0 * math.pi) ** (dim / 4.0)
        r = safe_norm(x - w)
        quarter = 0.25 * jnp.sum(x * x, axis=-1)
        if log_g is not None:
            lg, sgn = log_g(r)
            return pref * sgn * jnp.exp(quarter + lg)
        return pref * jnp.exp(quarter) * g(r)

    return Activation(name, fn, odd=False, smooth=smooth, params=tuple(params), kind="translation")


# ----------------------------------------------------------------------------------------------
# helpers


def _as_potential(pot, d):
    if isinstance(pot, Potential):
        return pot
    if isinstance(pot, str):
        from earnshaw.potentials import potential  # here: earnshaw.potentials imports this module

        try:
            return potential(pot, d=d)
        except (ValueError, TypeError):
            return potential(pot)
    if callable(pot):
        name = getattr(pot, "__name__", "custom")
        v0 = float(np.asarray(pot(jnp.asarray(0.0))))
        return Potential(name, "radial", pot, d=d, value_at_zero=v0)
    raise TypeError(f"realize() takes a radial Potential, a name or a callable phi(r), got {type(pot).__name__}")


def _dimension(pot, d):
    if pot.kind != "radial":
        raise ValueError(f"{pot!r} is an inner-product potential; it is realised by its activation "
                         f"{pot.activation!r} (realize() is for translation-invariant radial potentials)")
    if d is None:
        d = pot.d
    if d is None:
        raise ValueError(f"realize({pot!r}) needs the dimension d (an integer >= 1)")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got d={d!r}")
    if pot.d is not None and pot.d != d:
        raise ValueError(f"{pot!r} lives in d={pot.d}, not d={d}")
    return int(d)


def _numpy_profile(pot):
    prof = jax.jit(pot.fn)

    def phi(r):
        return np.asarray(prof(jnp.asarray(r, jnp.float64)))

    return phi


def _refuse_unbounded(pot, d):
    if pot.value_at_zero is not None and math.isfinite(pot.value_at_zero):
        return
    if pot.lam == 0.0:
        why = "its transform c/k^2 is positive but not integrable (harmonic potentials are never realisable)"
    elif pot.lam is not None:
        why = f"its transform 1/(lam + k^2) is positive but not integrable in d={d} >= 2"
    else:
        why = "its transform is not integrable"
    raise NotRealizableError(
        f"{pot!r} is not realisable in d={d}: Phi(0) = inf (unbounded at r = 0), so E[sigma^2] = Phi(0) "
        f"would be infinite and {why}. Use it with the reduced loss (eq. 2), or use a bounded potential "
        f"such as 'almost_harmonic'.")


@functools.lru_cache(maxsize=64)
def _scales_cached(pot, d):
    return _compute_scales(pot, d, _numpy_profile(pot))


def _scales(pot, d, phi):
    return _scales_cached(pot, d)


def _compute_scales(pot, d, phi):
    """``Phi(0)``, half-width, cut radius, ``int |Phi|``; refuses what cannot be realised."""
    import scipy.integrate as si
    r = np.concatenate([[0.0], np.geomspace(1e-6, 1e4, 4001)])
    with np.errstate(all="ignore"):
        vals = phi(r)
    phi0 = float(vals[0]) if pot.value_at_zero is None else float(pot.value_at_zero)
    if not math.isfinite(phi0) or not np.all(np.isfinite(vals[1:])):
        raise NotRealizableError(f"{pot!r} is not realisable in d={d}: Phi is not finite everywhere "
                                 "(Phi(0) = E[sigma^2] must be finite)")
    if phi0 <= 0:
        raise NotRealizableError(f"{pot!r} is not realisable: Phi(0) = {phi0:.6g} <= 0, but Phi(0) = E[sigma^2] > 0")
    worst = int(np.argmax(np.abs(vals)))
    if abs(vals[worst]) > phi0 * (1.0 + 1e-9):
        raise NotRealizableError(
            f"{pot!r} is not realisable: |Phi(r)| = {abs(vals[worst]):.6g} at r = {r[worst]:.6g} exceeds "
            f"Phi(0) = {phi0:.6g}, impossible for a positive-definite function (|Phi(r)| <= Phi(0))")
    tail = np.abs(vals) > 1e-17 * phi0
    if tail[-1]:
        l2_far, l2_mid = abs(vals[-1]) * r[-1] ** (d / 2), abs(vals[2001]) * r[2001] ** (d / 2)
        if l2_far >= l2_mid:
            raise NotRealizableError(
                f"{pot!r} is not realisable in d={d}: Phi does not decay (|Phi(1e4)| = {abs(vals[-1]):.3g}), so it "
                "is not square-integrable and its Fourier transform is not an integrable function (Theorem 3)")
        raise ValueError(f"{pot!r} decays too slowly (|Phi(1e4)| = {abs(vals[-1]):.3g}) for the numerical "
                         "Hankel transform; realize() handles potentials that decay exponentially or faster")
    r_cut = float(r[np.nonzero(tail)[0][-1] + 1])
    below = np.nonzero(np.abs(vals) < 0.5 * phi0)[0]
    half = float(r[below[0]]) if below.size else r_cut
    half = max(half, 1e-6)
    l1, _ = si.quad(lambda t: abs(float(phi(t))) * t ** (d - 1), 0.0, r_cut, limit=500,
                    points=[half] if half < r_cut else None)
    return dict(phi0=phi0, half=half, r_cut=r_cut, l1=sphere_area(d) * l1)


def _ppoly_moment(spline, power, upper):
    """``int_0^upper spline(t)^2 t^power dt``, exact for the piecewise cubic (Gauss-Legendre per piece)."""
    x = np.asarray(spline.x)
    x = x[x <= upper]
    nodes, weights = np.polynomial.legendre.leggauss(8 + power)
    a, b = x[:-1, None], x[1:, None]
    t = 0.5 * (b - a) * nodes + 0.5 * (a + b)
    return float(np.sum(0.5 * (b - a) * weights * spline(t) ** 2 * t ** power))


def _negative_intervals(k, ft, thr):
    neg = ft < -thr
    out = []
    i = 0
    while i < len(k):
        if neg[i]:
            j = i
            while j + 1 < len(k) and neg[j + 1]:
                j += 1
            out.append((k[i], k[j]))
            i = j + 1
        else:
            i += 1
    return out


# ----------------------------------------------------------------------------------------------
# realisations


def _gaussian_activation(ell, d):
    """Closed form: ``g = c exp(-|y|^2 / ell^2)``, ``c^2 = (2 / (pi ell^2))^(d/2)``; any ``d`` if ``None``."""

    def fn(x, w):
        x = jnp.asarray(x)
        dim = x.shape[-1] if d is None else d
        log_c = (dim / 4.0) * math.log(2.0 / (math.pi * ell * ell))
        r = safe_norm(x - w)
        # (2 pi)^(d/4) exp(|x|^2/4) g(r), combined in the exponent (no overflow at large |x|)
        return (2.0 * math.pi) ** (dim / 4.0) * jnp.exp(0.25 * jnp.sum(x * x, axis=-1) + log_c - (r * r) / (ell * ell))

    params = (("ell", ell),) + ((("d", d),) if d is not None else ())
    return Activation("gaussian_rbf", fn, params=params, kind="translation")


def _yukawa1_activation(lam):
    mu = math.sqrt(lam)

    def g(r):
        return kv(0.0, mu * jnp.maximum(r, 1e-300)) / math.pi

    return translation_activation(g, 1, "yukawa_d1", (("lam", lam), ("d", 1)))


def _numeric_activation(pot, d, *, n_table=1024):
    """Tabulated ``g`` from the numerical Hankel transforms; see :func:`realize`."""
    import scipy.interpolate as sinterp
    phi = _numpy_profile(pot)
    sc = _scales(pot, d, phi)
    phi0, r_cut, L = sc["phi0"], sc["r_cut"], sc["half"]
    epsabs = 1e-15 * sc["l1"]
    area = sphere_area(d)
    cdim = (2.0 * math.pi) ** (-d) * area
    dk = 1.0 / (16.0 * r_cut)
    K = 40.0 / L
    ks = np.arange(0.0, K + dk, dk)
    ft, _ = _hankel(phi, ks, d, r_cut, scale=1.0, epsabs=epsabs)
    thr = 1e-9 * max(sc["l1"], float(np.max(np.abs(ft))))
    for _ in range(4):
        spl = sinterp.CubicSpline(ks, ft * ks ** (d - 1))
        mass = cdim * float(spl.integrate(0.0, ks[-1]))
        if abs(mass - phi0) <= 1e-10 * phi0 or np.any(ft < -thr):
            break
        new = np.arange(ks[-1] + dk, 2.0 * ks[-1] + dk, dk)
        more, _ = _hankel(phi, new, d, r_cut, scale=1.0, epsabs=epsabs)
        ks, ft = np.concatenate([ks, new]), np.concatenate([ft, more])
    spans = _negative_intervals(ks, ft, thr)
    if spans:
        i = int(np.argmin(ft))
        where = ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in spans[:3]) + (" ..." if len(spans) > 3 else "")
        raise NotRealizableError(
            f"{pot!r} is not realisable in d={d}: its Fourier transform is negative for k in {where} "
            f"(most negative value {ft[i]:.6g} at k = {ks[i]:.4g}); Theorem 3 needs Phi^ >= 0")
    spl = sinterp.CubicSpline(ks, ft * ks ** (d - 1))
    mass = cdim * float(spl.integrate(0.0, ks[-1]))
    if abs(mass - phi0) > 1e-6 * phi0:
        warnings.warn(f"{pot!r}: the Fourier transform decays slowly; up to k = {ks[-1]:.4g} it carries "
                      f"{mass:.10g} of Phi(0) = {phi0:.10g}, so the tabulated g is accurate only to about "
                      f"{math.sqrt(abs(phi0 - mass) / phi0):.1e} (L2, relative)", stacklevel=3)
    # sqrt() amplifies quadrature noise: stop the inverse transform where Phi^ reaches the noise floor
    # (what lies beyond carries less than ~1e-12 of Phi(0)).
    above = np.nonzero(ft > 1e-14 * sc["l1"])[0]
    k_top = float(ks[min(above[-1] + 2, len(ks) - 1)])
    root = sinterp.CubicSpline(ks, np.sqrt(np.maximum(ft, 0.0)))
    g_eps = 1e-13 * math.sqrt(phi0 / max(L, 1e-300) ** d)
    r_tab = np.linspace(0.0, r_cut, n_table + 1)
    gvals, _ = _hankel(lambda k: root(k), r_tab, d, k_top, scale=(2.0 * math.pi) ** (-d), epsabs=g_eps)
    gmax = float(np.max(np.abs(gvals)))
    if abs(gvals[-1]) * r_cut ** (d / 2.0) > 1e-9 * gmax * L ** (d / 2.0):
        # g decays more slowly than Phi (a kink of sqrt(Phi^) where Phi^ touches 0): extend the table.
        far = np.geomspace(r_cut, 64.0 * r_cut, 385)[1:]
        gfar, _ = _hankel(lambda k: root(k), far, d, k_top, scale=(2.0 * math.pi) ** (-d), epsabs=g_eps)
        r_tab, gvals = np.concatenate([r_tab, far]), np.concatenate([gvals, gfar])
    # beyond the last value above the quadrature noise, g is set to 0 (exp(|x|^2/4) would amplify noise)
    keep = np.nonzero(np.abs(gvals) > 1e-11 * gmax)[0]
    r_end = float(r_tab[min(keep[-1] + 1, len(r_tab) - 1)])
    spline = sinterp.CubicSpline(r_tab, gvals, bc_type=((1, 0.0), "not-a-knot"))
    norm2 = sphere_area(d) * _ppoly_moment(spline, d - 1, r_end)
    if abs(norm2 - phi0) > 1e-5 * phi0:
        warnings.warn(f"{pot!r}: the tabulated g has |g|^2 = {norm2:.8g} against Phi(0) = {phi0:.8g}; "
                      "its slow decay limits the accuracy of the realisation", stacklevel=3)
    table = PiecewisePoly.from_scipy(spline)

    def g(r):
        return jnp.where(r <= r_end, table(r), 0.0)

    return translation_activation(g, d, f"realized_{pot.name}", (("d", d), ("potential", pot.name)))


@functools.lru_cache(maxsize=64)
def _realize_cached(pot, d, method):
    _refuse_unbounded(pot, d)
    params = dict(pot.params)
    act = None
    if method == "auto":
        if pot.activation is not None and pot.activation.kind == "translation":
            return pot if pot.d == d else dataclasses.replace(pot, d=d)
        if pot.name == "gaussian":
            act = _gaussian_activation(float(params.get("ell", 1.0)), d)
        elif pot.name == "yukawa" and d == 1:
            act = _yukawa1_activation(float(params.get("lam", 1.0)))
    if act is None:
        act = _numeric_activation(pot, d)
    return dataclasses.replace(pot, activation=act, d=d)


def realize(pot, d=None, *, method: str = "auto") -> Potential:
    """Theorem 3: the activation realising a translation-invariant radial potential.

    Decides realisability under ``X ~ N(0, I_d)`` (``Phi^ >= 0`` and integrable, docs/math.md
    section 1b) and builds ``sigma(x, w) = (2 pi)^(d/4) exp(|x|^2 / 4) g(|x - w|)`` with
    ``|g^|^2 = Phi^``, so that ``E[sigma(X, u) sigma(X, v)] = Phi(|u - v|)``.

    Args:
      pot: a radial :class:`Potential` (kind ``"radial"``), a radial potential's name, or a
        jax-traceable callable ``phi(r)`` (wrapped with ``value_at_zero = phi(0)``).
      d: the dimension (default ``pot.d``; required when the potential has none).
      method: ``"auto"`` (closed forms for ``gaussian``, ``yukawa`` in ``d = 1`` and
        ``almost_harmonic``; numerical otherwise) or ``"numeric"`` (always the Hankel-transform
        path: ``Phi^`` by ``scipy.integrate.quad_vec`` on a ``k`` grid up to where it carries
        ``Phi(0)`` to ``1e-10``, then ``g`` as the inverse transform of ``sqrt(Phi^)``, tabulated on
        ``[0, r_cut]`` with a cubic spline; ``g = 0`` beyond ``r_cut``, where ``|Phi| < 1e-17 Phi(0)``).

    Returns:
      ``dataclasses.replace(pot, activation=act, d=d)``: the same potential with its realising
      :class:`~earnshaw.activations.Activation` (kind ``"translation"``; ``act.fn(x, w)`` for ``x``,
      ``w`` of shape ``(..., d)`` broadcasting to ``(...)``) attached, so ``es.empirical_loss`` and
      ``es.monte_carlo`` take it. Cached: the same arguments return the same object.

    Raises:
      NotRealizableError: ``Phi(0)`` infinite (coulomb, yukawa in ``d >= 2``), ``|Phi| > Phi(0)``
        somewhere, ``Phi`` not decaying, or ``Phi^ < 0`` somewhere (the message gives the ``k`` ranges
        and the most negative value).
      ValueError: not a radial potential, no dimension, or a tail too slow for the numerics.

    >>> import jax.numpy as jnp, earnshaw as es
    >>> pot = es.realize(es.potential("gaussian", ell=1.0), d=1)
    >>> pot.activation.kind
    'translation'
    >>> mean, se = es.monte_carlo(jax.random.key(0), pot, jnp.array([0.3]), jnp.array([-0.2]), 200_000)
    >>> abs(mean - float(pot(jnp.array([0.3]), jnp.array([-0.2])))) < 5 * se
    True
    """
    if method not in ("auto", "numeric"):
        raise ValueError(f"method must be 'auto' or 'numeric', got method={method!r}")
    pot = _as_potential(pot, d)
    d = _dimension(pot, d)
    return _realize_cached(pot, d, method)
