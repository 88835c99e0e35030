r"""Lemma 13 made concrete: a bounded, realisable potential that is lambda-harmonic for ``r >= eps/2``.

Construction (docs/math.md section 3): take a radial ``psi >= 0`` supported in ``B(0, R)``, ``R = eps/4``;
``rho = psi * psi~`` is supported in ``B(0, eps/2)`` with ``rho^ = |psi^|^2 >= 0``; then

    Phi_eps = (G_lam * rho) / N,   N = (G_lam * rho)(0),   G_lam = Yukawa kernel, (lam - Delta) G = delta.

* ``(Delta - lam) Phi_eps = -rho / N``, which vanishes for ``r >= eps/2``: lambda-harmonic there.
* Exact tail (mean-value property): ``Phi_eps = (M^2 / N) G_lam(r)`` for ``r >= eps/2``,
  ``M = int psi(y) j_d(|y|) dy``, ``j_d(s) = Gamma(d/2) (2/(mu s))^(d/2-1) I_(d/2-1)(mu s)``;
  in ``d = 3`` that is ``A exp(-mu r) / r`` with ``A = M^2 / (4 pi N)``.
* ``Phi^ = |psi^|^2 / (N (lam + k^2)) >= 0`` and integrable: realisable, ``Phi(0) = 1``, ``|Phi| <= 1``.
* Realising activation (a signed root, valid by docs/math.md 1b): ``g = N^(-1/2) B_lam * psi``,
  ``B_lam = F^-1 (lam + k^2)^(-1/2)`` (``mu K_1(mu r) / (2 pi^2 r)`` in ``d = 3``), and
  ``sigma(x, w) = (2 pi)^(d/4) exp(|x|^2/4) g(|x - w|)`` (Fourier convention of docs/math.md section 0:
  with the unitary convention ``g`` would be ``(2 pi)^(d/4)`` too large).

Variants:

* ``"ball"``: ``psi = 1_{B_R}``, any ``d >= 1`` (``d = 3`` and ``d = 7`` checked against docs/math.md).
  ``Phi`` is ``C^3`` and ``Phi'''`` is bounded (``~66 / eps^3``), so the Hessian is Lipschitz, which is
  what Theorem 12's proof actually uses (**correction**, docs/math.md section 8 item 9: the paper's Lemma 13
  bounds derivatives only up to order ``d - 1``). But ``Phi'' < 0`` on ``(0, r*)``, ``r* ~ 0.249 eps``:
  any ``C^2`` radial potential peaking at 0 has ``Phi''(0) <= 0``, so Lemma 13's sign pattern
  "``Phi >= 0, Phi' <= 0, Phi'' >= 0`` for all ``r > 0``" cannot hold (**correction**, item 10).
* ``"cusp"``: ``psi = |x|^-2 1_{B_R}``, ``d = 3``. Satisfies the sign pattern for all ``r > 0`` at the
  price of a cone point at 0 (``Phi'(0+) = -pi^3 / (2 N) < 0``); its ``g ~ pi / (2 sqrt(N) r)`` is
  unbounded (but square-integrable) at 0.

Both are bounded, ``Phi(theta, theta) = 1``, as Theorem 11 tacitly needs (**correction**, item 11:
Theorem 11 needs ``Phi(theta, theta)`` finite, which the unbounded Yukawa kernel is not).

Numerics: on ``[0, eps/2]`` ``Phi`` is built from the exact real-space formula
``U(r) = |S^(d-1)| [G(r) int_0^r rho s^(d-1) j_d ds + j_d(r) int_r^(eps/2) rho s^(d-1) G ds]`` (the spherical
mean of ``G`` is ``G(max(r, s)) j_d(min(r, s))``), its derivative, and ``Phi'' = lam Phi - rho/N - (d-1) Phi'/r``,
with cumulative Gauss-Legendre integrals per grid cell, and stored as a ``C^2`` quintic Hermite table (error
``< 1e-12``); for ``r >= eps/2`` the exact tail is used. Everything is jit/grad-able in ``r``.

**Heavy tails:** ``g ~ exp(-mu r)``, so ``E[sigma^4] = inf`` and sample losses have infinite variance
(docs/math.md section 1b); train on the population loss through ``Phi``.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate as si
import scipy.interpolate as sinterp
import scipy.special as sp
from jax.scipy.special import spence

from earnshaw.potentials import radial
from earnshaw.potentials._potential import Potential
from earnshaw.potentials.realize import PiecewisePoly, sphere_area, translation_activation

__all__ = ["AlmostHarmonic", "construct", "almost_harmonic_potential", "VARIANTS"]

VARIANTS = ("ball", "cusp")
_CELLS = 512     # table cells on [0, eps/2]; divisible by 8 so eps/8, eps/4 are nodes
_GL_NODES = 16   # Gauss-Legendre nodes per cell for the cumulative integrals


# ----------------------------------------------------------------------------------------------
# the radial pieces (numpy)


def _green(d, mu, r):
    nu = d / 2.0 - 1.0
    return (2.0 * math.pi) ** (-d / 2.0) * (mu / r) ** nu * sp.kv(nu, mu * r)


def _green_prime(d, mu, r):
    nu = d / 2.0 - 1.0
    return -(2.0 * math.pi) ** (-d / 2.0) * mu ** (nu + 1.0) * r ** (-nu) * sp.kv(nu + 1.0, mu * r)


def _j(d, mu, s):
    nu = d / 2.0 - 1.0
    x = np.maximum(mu * np.asarray(s, float), 1e-300)
    return math.gamma(d / 2.0) * (2.0 / x) ** nu * sp.iv(nu, x)


def _j_prime(d, mu, s):
    nu = d / 2.0 - 1.0
    x = np.maximum(mu * np.asarray(s, float), 1e-300)
    return math.gamma(d / 2.0) * 2.0 ** nu * mu * x ** (-nu) * sp.iv(nu + 1.0, x)


def _rho_ball(d, R, s):
    s = np.asarray(s, float)
    vol = math.pi ** (d / 2.0) / math.gamma(d / 2.0 + 1.0) * R ** d
    z = np.clip(1.0 - s * s / (4.0 * R * R), 0.0, 1.0)
    return np.where(s < 2.0 * R, vol * sp.betainc((d + 1) / 2.0, 0.5, z), 0.0)


@functools.lru_cache(maxsize=None)
def _jax_spence():
    """``jax.scipy.special.spence`` with an explicit derivative ``log(z) / (1 - z)`` (its autodiff is NaN for z > 1)."""
    @jax.custom_jvp
    def f(z):
        return spence(z)

    @f.defjvp
    def _jvp(primals, tangents):
        (z,), (dz,) = primals, tangents
        near = jnp.abs(1.0 - z) < 1e-8
        denom = jnp.where(near, 1.0, 1.0 - z)
        slope = jnp.where(near, -1.0 + 0.5 * (z - 1.0), jnp.log(z) / denom)
        return f(z), slope * dz

    return f


def _k1_over_r(mu, r):
    """``K_1(mu r) / r`` for ``mu r >= 40`` by the asymptotic series (4 terms; error < 1e-7)."""
    x = mu * r
    series = 1.0 + 3.0 / (8.0 * x) - 15.0 / (128.0 * x ** 2) + 315.0 / (3072.0 * x ** 3)
    return jnp.sqrt(jnp.pi / (2.0 * x)) * jnp.exp(-x) * series / r


def CubicSplineExtrap(x, y):
    """Value at 0 of the cubic through the first points (the cusp remainder's limit at r = 0)."""
    return float(np.polynomial.polynomial.polyval(0.0, np.polynomial.polynomial.polyfit(x, y, 3)))


def _li2(x):
    return sp.spence(1.0 - x)  # valid for x <= 1


def _rho_cusp(R, s):
    """``rho_c = psi * psi~`` for ``psi = |x|^-2 1_{B_R}`` in ``d = 3`` (docs/math.md section 3)."""
    s = np.asarray(s, float)
    out = np.zeros_like(s)
    with np.errstate(all="ignore"):
        a = (s > 0) & (s < R)
        r = s[a]
        q = R / r
        re_li2 = math.pi ** 2 / 3.0 - 0.5 * np.log(q) ** 2 - _li2(r / R)
        out[a] = 2 * math.pi / r * (-sp.spence(q) + np.log(q) * np.log(R / (R - r)) + re_li2)
        b = (s > R) & (s < 2 * R)
        r = s[b]
        out[b] = 2 * math.pi / r * (np.log(R / r) * np.log(R / (r - R)) + _li2(R / r) - _li2((r - R) / r))
    out[s == R] = math.pi ** 3 / (3.0 * R)
    out[s == 0] = np.inf
    return out


# ----------------------------------------------------------------------------------------------
# the construction


@dataclasses.dataclass(frozen=True, eq=False)
class AlmostHarmonic:
    """The numbers and tables of one ``Phi_eps`` (build with :func:`construct`).

    Attributes:
      d, eps, lam, variant: the parameters; ``mu = sqrt(lam)``, ``R = eps / 4``.
      N: normaliser ``(G * rho)(0)``. M: ``int psi j_d``. tail: ``M^2 / N``, so
        ``Phi = tail * G_lam(r)`` for ``r >= eps/2``. A: the ``d = 3`` form ``A exp(-mu r) / r``
        (``tail / (4 pi)``). A_d: coefficient of ``r^(1-d/2) K_(d/2-1)(mu r)``.
      dphi0, d2phi0: ``Phi'(0+)`` and ``Phi''(0+)``.
      grid, values, slopes, curvatures: the ``(n + 1,)`` table on ``[0, eps/2]``.
      table: the quintic Hermite :class:`~earnshaw.potentials.realize.PiecewisePoly`.
    """

    d: int
    eps: float
    lam: float
    variant: str
    N: float
    M: float
    tail: float
    dphi0: float
    d2phi0: float
    grid: np.ndarray
    values: np.ndarray
    slopes: np.ndarray
    curvatures: np.ndarray
    table: PiecewisePoly

    @property
    def mu(self) -> float:
        return math.sqrt(self.lam)

    @property
    def R(self) -> float:
        return self.eps / 4.0

    @property
    def harmonic_radius(self) -> float:
        return self.eps / 2.0

    @property
    def A(self) -> float:
        return self.tail / (4.0 * math.pi)

    @property
    def A_d(self) -> float:
        return (2.0 * math.pi) ** (-self.d / 2.0) * self.mu ** (self.d / 2.0 - 1.0) * self.tail

    def rho(self, s):
        """``rho = psi * psi~`` at distances ``s`` (numpy)."""
        return _rho_cusp(self.R, s) if self.variant == "cusp" else _rho_ball(self.d, self.R, s)

    def psi_hat(self, k):
        """``psi^(k)`` (numpy; ``k = 0`` exact)."""
        k = np.asarray(k, float)
        ks = np.where(k > 0, k, 1.0)
        if self.variant == "cusp":
            return np.where(k > 0, 4 * math.pi * sp.sici(ks * self.R)[0] / ks, 4 * math.pi * self.R)
        d, R = self.d, self.R
        vol = math.pi ** (d / 2.0) / math.gamma(d / 2.0 + 1.0) * R ** d
        return np.where(k > 0, (2 * math.pi * R / ks) ** (d / 2.0) * sp.jv(d / 2.0, ks * R), vol)

    def fourier(self, k):
        """``Phi^(k) = psi^(k)^2 / (N (lam + k^2)) >= 0`` (docs/math.md convention; numpy).

        >>> c = construct(3, 0.5, 1.0)
        >>> round(float(c.fourier(1.0)), 10)
        0.7231698034
        """
        k = np.asarray(k, float)
        return self.psi_hat(k) ** 2 / (self.N * (self.lam + k * k))

    def profile(self, r):
        """``Phi_eps(r)`` in JAX (any shape; jit/grad-able): table below ``eps/2``, exact tail above.

        >>> round(float(construct(3, 0.5, 1.0).profile(1.0)), 12)
        0.042606933073
        """
        r = jnp.asarray(r, jnp.result_type(r, float))
        rh = self.harmonic_radius
        inner = self.table(jnp.where(r < rh, r, rh))   # where, not clip: clip halves gradients at 0
        r_out = jnp.where(r >= rh, r, rh)
        outer = self.tail * radial.yukawa(r_out, d=self.d, lam=self.lam)
        return jnp.where(r < rh, inner, outer)

    # -- the realising activation (d = 3) --------------------------------------------------

    def g(self, r):
        """The realising ``g(r)`` (numpy, ``d = 3``), by ``scipy.integrate.quad`` of docs/math.md's formula.

        ``g(r) = (pi r sqrt(N))^-1 int_0^R w(s) [K_0(mu |r - s|) - K_0(mu (r + s))] ds`` with
        ``w(s) = s`` (ball) or ``1/s`` (cusp); ``g(0)`` in closed form (ball) and ``+inf`` (cusp).
        """
        if self.d != 3:
            raise NotImplementedError("the realising g is implemented for d = 3 (use realize() otherwise)")
        out = []
        for ri in np.atleast_1d(np.asarray(r, float)).ravel():
            out.append(self._g_scalar(float(ri)))
        return np.asarray(out).reshape(np.shape(r))

    def _g_scalar(self, r):
        mu, R, N = self.mu, self.R, self.N
        if r == 0.0:
            if self.variant == "cusp":
                return math.inf
            val, _ = si.quad(lambda s: s * sp.k1(mu * s), 0.0, R, epsabs=1e-14, epsrel=1e-13, limit=200)
            return 2 * mu / (math.pi * math.sqrt(N)) * val
        if self.variant == "cusp":
            def w(s):
                if s == 0.0:
                    return 2 * mu * sp.k1(mu * r)   # the limit of [K0(mu|r-s|) - K0(mu(r+s))] / s
                return (sp.k0(mu * abs(r - s)) - sp.k0(mu * (r + s))) / s
        else:
            def w(s):
                return s * (sp.k0(mu * abs(r - s)) - sp.k0(mu * (r + s)))
        pts = [r] if r < R else None
        val, _ = si.quad(w, 0.0, R, points=pts, epsabs=1e-15, epsrel=1e-12, limit=400)
        return val / (math.pi * r * math.sqrt(N))

    def _g_singular(self, r, xp):
        """The leading part of ``g``: ``N^-1/2 (1/(2 pi^2 |y|^2)) * psi`` in closed form (``xp``: numpy or jnp).

        ``B_lam = 1/(2 pi^2 r^2) + O(log r)``; its convolution with ``psi`` carries the ``(r - R) log|r - R|``
        (ball) and ``1/r`` (cusp) singularities, so the table only holds the smoother remainder.
        Ball: ``(2 pi r sqrt N)^-1 [(R^2 - r^2) log|(R + r)/(R - r)| + 2 r R]``.
        Cusp: ``2 chi_2(R/r) / (pi r sqrt N)``, ``chi_2(x) = (Li_2(x) - Li_2(-x))/2``, ``pi^2/4 - chi_2(1/x)`` for x > 1.
        """
        R, sqn = self.R, math.sqrt(self.N)
        spence = sp.spence if xp is np else _jax_spence()
        if self.variant == "ball":
            delta = xp.abs(R - r)
            d_safe = xp.where(delta > 0, delta, 1.0)
            log_term = xp.where(delta > 0, (R * R - r * r) * (xp.log(R + r) - xp.log(d_safe)), 0.0)
            r_safe = xp.where(r > 1e-8 * R, r, 1.0)
            body = (log_term + 2.0 * r * R) / r_safe
            body = xp.where(r > 1e-8 * R, body, 4.0 * R - (4.0 / 3.0) * r * r / R)
            return body / (2.0 * math.pi * sqn)
        r_safe = xp.where(r > 0, r, 1.0)
        x = R / r_safe
        small = xp.minimum(x, 1.0 / x)               # in (0, 1]
        chi_small = 0.5 * (spence(1.0 - small) - spence(1.0 + small))
        chi = xp.where(x <= 1.0, chi_small, math.pi ** 2 / 4.0 - chi_small)
        return xp.where(r > 0, 2.0 * chi / (math.pi * r_safe * sqn), xp.inf)

    @functools.cached_property
    def _g_table(self):
        R = self.R
        graded = R * np.geomspace(1e-7, 0.5, 80)
        grid = np.unique(np.concatenate([np.linspace(0.0, R, 161), np.linspace(R, 4 * R, 161), R - graded, R + graded,
                                         np.linspace(4 * R, 4.0, 401), np.geomspace(4.0, 40.0, 121)]))
        vals = np.array([self._g_scalar(r) for r in grid])
        sing = self._g_singular(grid, np)
        if self.variant == "cusp":
            with np.errstate(invalid="ignore"):
                rem = np.where(grid > 0, vals - sing, np.nan)
            rem[0] = CubicSplineExtrap(grid[1:6], rem[1:6])
            spline = sinterp.CubicSpline(grid, rem)
        else:
            spline = sinterp.CubicSpline(grid, vals - sing, bc_type=((1, 0.0), "not-a-knot"))
        return PiecewisePoly.from_scipy(spline), float(grid[-1]), float(vals[-1])

    def g_jax(self, r):
        """The realising ``g(r)`` in JAX (``d = 3``): closed-form singular part plus a cubic-spline table
        of the remainder on ``[0, 40]`` (graded towards ``R``), then the asymptotic tail
        ``g(40) K_1(mu r) r_0 / (K_1(mu r_0) r)`` (``r_0 = 40``, where ``g ~ 1e-18``; ``K_1`` by its
        asymptotic series, relative error < 1e-7 there).

        >>> round(float(construct(3, 0.5, 1.0).g_jax(1.0)), 9)
        0.03694305
        """
        table, r_end, v_end = self._g_table
        r = jnp.asarray(r, jnp.result_type(r, float))
        mu = self.mu
        r_out = jnp.where(r > r_end, r, r_end)
        tail = v_end * _k1_over_r(mu, r_out) / (float(sp.k1(mu * r_end)) / r_end)
        r_in = jnp.where(r > r_end, r_end, r)
        inner = table(r_in) + self._g_singular(r_in, jnp)
        return jnp.where(r > r_end, tail, inner)

    @functools.cached_property
    def activation(self):
        """``sigma(x, w) = (2 pi)^(3/4) exp(|x|^2/4) g(|x - w|)``, an Activation of kind ``"translation"``."""
        if self.d != 3:
            return None
        return translation_activation(self.g_jax, 3, f"almost_harmonic_{self.variant}",
                                      (("d", 3), ("eps", self.eps), ("lam", self.lam), ("variant", self.variant)),
                                      smooth=self.variant == "ball")


def _check(d, eps, lam, variant):
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"potential 'almost_harmonic': d must be an integer >= 1, got d={d!r}")
    for key, val in (("eps", eps), ("lam", lam)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not (val > 0 and math.isfinite(val)):
            raise ValueError(f"potential 'almost_harmonic': {key} must be a positive number, got {key}={val!r}")
    if variant not in VARIANTS:
        raise ValueError(f"potential 'almost_harmonic': variant must be one of {VARIANTS}, got variant={variant!r}")
    if variant == "cusp" and d != 3:
        raise ValueError(f"potential 'almost_harmonic': variant='cusp' is implemented for d=3 only, got d={d}")


@functools.lru_cache(maxsize=64)
def _construct(d, eps, lam, variant):
    mu, R = math.sqrt(lam), eps / 4.0
    area = sphere_area(d)
    n = _CELLS
    grid = np.linspace(0.0, 2 * R, n + 1)
    x, w = np.polynomial.legendre.leggauss(_GL_NODES)
    a, b = grid[:-1, None], grid[1:, None]
    s = 0.5 * (b - a) * x + 0.5 * (a + b)
    wt = 0.5 * (b - a) * w
    rho_s = _rho_cusp(R, s) if variant == "cusp" else _rho_ball(d, R, s)
    base = rho_s * s ** (d - 1)
    cell_a = np.sum(wt * base * _j(d, mu, s), axis=1)
    cell_b = np.sum(wt * base * _green(d, mu, s), axis=1)
    A = np.concatenate([[0.0], np.cumsum(cell_a)])
    B = np.concatenate([np.cumsum(cell_b[::-1])[::-1], [0.0]])
    N = area * B[0]
    r = grid[1:]
    U = area * (_green(d, mu, r) * A[1:] + _j(d, mu, r) * B[1:])
    dU = area * (_green_prime(d, mu, r) * A[1:] + _j_prime(d, mu, r) * B[1:])
    rho_r = _rho_cusp(R, r) if variant == "cusp" else _rho_ball(d, R, r)
    if variant == "cusp":
        dphi0 = -math.pi ** 3 / (2 * N)
        d2phi0 = (4 * math.pi / (R * N) + lam) / 3.0
    else:
        dphi0 = 0.0
        d2phi0 = (lam - float(_rho_ball(d, R, 0.0)) / N) / d
    values = np.concatenate([[1.0], U / N])
    slopes = np.concatenate([[dphi0], dU / N])
    curv = np.concatenate([[d2phi0], lam * values[1:] - rho_r / N - (d - 1) * slopes[1:] / r])
    if variant == "cusp":
        M = 4 * math.pi / mu * float(sp.shichi(mu * R)[0])
    elif d == 3:
        M = 4 * math.pi * (mu * R * math.cosh(mu * R) - math.sinh(mu * R)) / mu ** 3
    else:
        M = area * si.quad(lambda t: t ** (d - 1) * float(_j(d, mu, t)), 0.0, R, epsabs=0, epsrel=1e-13)[0]
    table = PiecewisePoly.quintic_hermite(grid, values, slopes, curv)
    return AlmostHarmonic(d, float(eps), float(lam), variant, N, M, M * M / N, dphi0, d2phi0,
                          grid, values, slopes, curv, table)


def construct(d: int, eps: float, lam: float = 1.0, variant: str = "ball") -> AlmostHarmonic:
    """Build ``Phi_eps`` of Lemma 13 (docs/math.md section 3); cached.

    Args:
      d: dimension (``variant="ball"``: any ``d >= 1``; ``"cusp"``: ``d = 3``).
      eps: lambda-harmonic for ``r >= eps/2`` (so certainly for ``r >= eps``, as Lemma 13 asks).
      lam: the eigenvalue, ``Delta Phi = lam Phi`` outside ``B(0, eps/2)``.
      variant: ``"ball"`` (smooth) or ``"cusp"`` (Lemma 13's sign pattern, cone point at 0).

    Returns:
      An :class:`AlmostHarmonic` with ``N``, ``M``, the tail constants, the table and ``profile``.

    Raises:
      ValueError: naming the bad parameter.

    >>> c = construct(3, 0.5, 1.0, "ball")
    >>> f"{c.N:.10e}", f"{c.A:.12f}"
    ('4.6132771273e-05', '0.115817651940')
    """
    _check(d, eps, lam, variant)
    return _construct(int(d), float(eps), float(lam), variant)


def almost_harmonic_potential(*, d=None, eps=None, lam=1.0, variant="ball") -> Potential:
    """The :class:`~earnshaw.potentials.Potential` ``Phi_eps`` (``es.potential("almost_harmonic", ...)``).

    Radial, ``value_at_zero = 1``, ``lam``-harmonic beyond ``harmonic_radius = eps/2``; in ``d = 3``
    it carries its realising activation (kind ``"translation"``; its ``g`` table is built on first use).

    >>> import earnshaw as es
    >>> pot = es.potential("almost_harmonic", d=3, eps=0.5, lam=1.0)
    >>> pot.harmonic_radius, pot.value_at_zero, round(float(pot.profile(0.25)), 10)
    (0.25, 1.0, 0.3607955121)
    """
    missing = [name for name, v in (("d", d), ("eps", eps)) if v is None]
    if missing:
        raise ValueError(f"potential 'almost_harmonic' needs {' and '.join(missing)} (the dimension d, an integer "
                         ">= 1; eps > 0, harmonic for r >= eps/2), e.g. "
                         "es.potential('almost_harmonic', d=3, eps=0.5) or "
                         "`earnshaw potential almost_harmonic -p d=3 -p eps=0.5`")
    c = construct(d, eps, lam, variant)
    return Potential("almost_harmonic", "radial", c.profile,
                     params=(("d", d), ("eps", eps), ("lam", lam), ("variant", variant)),
                     activation=c.activation, d=int(d), value_at_zero=1.0, lam=float(lam),
                     harmonic_radius=eps / 2.0, smooth=variant == "ball")
