r"""Hermite coefficients of activations, their truncation tails, and Hermite-series potentials.

For ``Z ~ N(0, 1)`` and the normalised Hermite polynomials ``h_n`` (``E[h_m h_n] = delta_mn``), an activation
at scale ``r`` has coefficients ``c_n(r) = E[s(r Z) h_n(Z)]`` and, by Mehler's formula, for ``|u| = a``,
``|v| = b`` and ``rho = u.v / (a b)``

    ``Phi(u, v) = sum_n c_n(a) c_n(b) rho^n``                      (docs/math.md section 1d)

which on unit vectors is ``Phi(rho) = sum_n c_n^2 rho^n`` (``c_n = c_n(1)``), the potential of the paper's
sphere manifold. The truncation after ``n = N`` leaves, by Cauchy-Schwarz and ``|rho| <= 1``,

    ``|tail| <= |rho|^(N+1) sqrt(T_N(a) T_N(b))``,   ``T_N(r) = sum_{n > N} c_n(r)^2 = E[s(rZ)^2] - sum_{n <= N} c_n(r)^2``

and its ``rho``-derivative ``|tail'| <= |rho|^N sqrt(T'_N(a) T'_N(b))`` with ``T'_N(r) = sum_{n > N} n c_n(r)^2``
(``sum_n n c_n(r)^2 = r^2 E[s'(rZ)^2]``). :func:`hermite_coefficients` computes ``c_n`` by composite
Gauss-Legendre quadrature (panels split at 0, so ELU-like kinks are resolved) on Hermite *functions*
(stable for ``n`` in the hundreds) and reports a bound ``eps`` on each coefficient's error (the difference
from a rule with twice the nodes); :func:`tail_bound` adds the effect of those errors, so it bounds the true tail.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["HermiteCoefficients", "hermite_coefficients", "tail_bound", "powers", "series", "sphere_laplacian"]


@dataclasses.dataclass(frozen=True)
class HermiteCoefficients:
    """``c_n(r)`` for ``n = 0..n_max`` at scales ``r``, with the facts the tail bounds need.

    Attributes:
      r: scales ``(R,)``.
      c: coefficients ``(R, n_max + 1)``.
      second_moment: ``E[s(rZ)^2]``, ``(R,)``.
      slope_moment: ``r^2 E[s'(rZ)^2] = sum_n n c_n(r)^2``, ``(R,)``.
      eps: bound on each coefficient's absolute error (and the moments'), a float.
    """

    r: np.ndarray
    c: np.ndarray
    second_moment: np.ndarray
    slope_moment: np.ndarray
    eps: float


@functools.lru_cache(maxsize=None)
def _panel_rule(n_max, per_panel):
    """Composite Gauss-Legendre nodes and weights on ``[-L, L]`` with panel edges at the integers / 2 (0 among them)."""
    half_width = math.ceil(2.0 * math.sqrt(n_max + 1.0) + 12.0)
    edges = np.arange(-half_width, half_width + 0.25, 0.5)
    x, w = np.polynomial.legendre.leggauss(per_panel)
    mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.25
    z = (mid[:, None] + half * x[None, :]).ravel()
    wz = (half * w[None, :] * np.ones_like(mid)[:, None]).ravel()
    return z, wz


@functools.lru_cache(maxsize=None)
def _hermite_functions(n_max, per_panel):
    """``h_n(z) phi(z)`` times the rule's weights, ``(n_max + 1, Z)``: the projection onto ``h_n``."""
    z, wz = _panel_rule(n_max, per_panel)
    out = np.empty((n_max + 1, z.size))
    # h_n(z) sqrt(phi(z)) is bounded by ~1 for every n (Hermite functions), so the recurrence cannot overflow
    f_prev = np.exp(-0.25 * z * z) / (2.0 * math.pi) ** 0.25
    out[0] = f_prev
    if n_max >= 1:
        f = z * f_prev
        out[1] = f
        for n in range(1, n_max):
            f_prev, f = f, (z * f - math.sqrt(n) * f_prev) / math.sqrt(n + 1.0)
            out[n + 1] = f
    root_phi = np.exp(-0.25 * z * z) / (2.0 * math.pi) ** 0.25
    return out * (root_phi * wz)[None, :], z, wz * root_phi**2


@functools.partial(jax.jit, static_argnums=0)
def _values_and_slopes(fn, zz):
    """``s(z)`` and ``s'(z)`` at every entry of ``zz``: one compiled forward-mode pass (``s`` is elementwise, so a
    tangent of ones gives each entry's own derivative), where op-by-op calls compiled each operation."""
    return jax.jvp(fn, (zz,), (jnp.ones_like(zz),))


def _moments(fn, r, n_max, per_panel):
    proj, z, wphi = _hermite_functions(n_max, per_panel)
    with jax.enable_x64(True):
        vals, slopes = (np.asarray(x, np.float64) for x in _values_and_slopes(
            fn, jnp.asarray(r[:, None] * z[None, :], jnp.float64)))
    c = vals @ proj.T
    second = (vals * vals) @ wphi
    slope = r * r * ((slopes * slopes) @ wphi)
    return c, second, slope


def hermite_coefficients(fn, r, n_max: int) -> HermiteCoefficients:
    """Hermite coefficients ``c_n(r) = E[s(rZ) h_n(Z)]`` of an activation, ``n = 0..n_max``.

    Args:
      fn: the activation, a jax-traceable elementwise function (analytic on each side of 0).
      r: scales, a float or ``(R,)`` array of non-negative numbers.
      n_max: the highest degree (``<= 1000``).

    Returns:
      :class:`HermiteCoefficients` with ``c`` of shape ``(R, n_max + 1)`` and an error bound ``eps``.

    >>> import jax.numpy as jnp
    >>> hc = hermite_coefficients(jnp.tanh, 1.0, 8)
    >>> [abs(round(float(x), 6)) for x in hc.c[0, :4]], hc.eps < 1e-13    # odd: even coefficients vanish
    ([0.0, 0.605706, 0.0, 0.148437], True)
    """
    r = np.atleast_1d(np.asarray(r, np.float64))
    if r.ndim != 1 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"hermite_coefficients: r must be finite, non-negative scales (R,), got {r!r}")
    if not isinstance(n_max, int) or not 0 <= n_max <= 1000:
        raise ValueError(f"hermite_coefficients: n_max must be an integer in [0, 1000], got {n_max!r}")
    c, second, slope = _moments(fn, r, n_max, 24)
    c2, second2, slope2 = _moments(fn, r, n_max, 48)
    eps = float(max(np.abs(c - c2).max(), np.abs(second - second2).max(), 1e-16))
    return HermiteCoefficients(r=r, c=c2, second_moment=second2, slope_moment=slope2, eps=eps)


def tail_bound(hc: HermiteCoefficients, n: int, *, weighted: bool = False) -> np.ndarray:
    """Upper bound on ``T_n(r) = sum_{m > n} c_m(r)^2`` (or ``T'_n = sum_{m > n} m c_m^2`` if ``weighted``).

    ``E[s^2] - sum_{m <= n} c_m^2``, plus what the errors (each ``<= eps``) of the computed ``c~_m`` and of the
    moment can hide: ``|c~_m^2 - c_m^2| <= eps (2 |c~_m| + eps)``, summed with the weights.

    Args:
      hc: coefficients from :func:`hermite_coefficients`.
      n: truncation degree, ``<= n_max``.
      weighted: bound the ``m``-weighted tail (the ``rho``-derivative's).

    Returns:
      ``(R,)`` array of non-negative bounds.

    >>> import jax.numpy as jnp
    >>> hc = hermite_coefficients(lambda z: z ** 3, 1.0, 5)   # z^3 = sqrt(6) h_3 + 3 h_1: nothing above n = 3
    >>> bool(tail_bound(hc, 3)[0] < 1e-12), round(float(tail_bound(hc, 2)[0]), 9)
    (True, 6.0)
    """
    if not 0 <= n < hc.c.shape[1]:
        raise ValueError(f"tail_bound: n must be in [0, {hc.c.shape[1] - 1}], got {n}")
    m = np.arange(n + 1)
    weight = m if weighted else np.ones_like(m)
    total = hc.slope_moment if weighted else hc.second_moment
    head = (hc.c[:, : n + 1] ** 2) @ weight
    slack = (np.abs(hc.c[:, : n + 1]) * 2.0 * hc.eps + hc.eps**2) @ weight + hc.eps
    # rounding of the subtraction: a few ulps of the total
    slack = slack + 8.0 * np.finfo(float).eps * np.abs(total)
    return np.maximum(total - head, 0.0) + slack


def powers(x, n):
    """``[1, x, x^2, ..., x^(n-1)]`` along a new last axis, by doubling (a handful of fused ops, not ``n``).

    >>> import jax.numpy as jnp
    >>> powers(jnp.asarray(2.0), 5).tolist()
    [1.0, 2.0, 4.0, 8.0, 16.0]
    """
    x = jnp.asarray(x)[..., None]
    out, top = jnp.ones_like(x), x  # top = x^len(out)
    while out.shape[-1] < n:
        out = jnp.concatenate([out, out * top], axis=-1)
        top = top * top
    return out[..., :n]


def series(coeffs_u, coeffs_v, rho):
    """``sum_n coeffs_u[..., n] coeffs_v[..., n] rho^n`` (any broadcastable shapes).

    Args:
      coeffs_u: ``(..., N + 1)``.
      coeffs_v: ``(..., N + 1)``.
      rho: ``(...)``.

    Returns:
      ``(...)``, differentiable in all three (the exact derivative of the truncated series).

    >>> import jax.numpy as jnp
    >>> float(series(jnp.array([1.0, 2.0]), jnp.array([3.0, 0.5]), jnp.asarray(2.0)))   # 3 + 1 * 2
    5.0
    """
    n = jnp.broadcast_shapes(coeffs_u.shape[-1:], coeffs_v.shape[-1:])[0]
    return jnp.sum(coeffs_u * coeffs_v * powers(rho, n), axis=-1)


def sphere_laplacian(weights, rho, d: int):
    """Laplace-Beltrami operator of ``S^(d-1)`` applied to the zonal series ``Phi(rho) = sum_n weights[n] rho^n``.

    ``rho = theta . w`` for unit ``theta, w``; ``Delta_S rho^n = n (n - 1) rho^(n-2) - n (n + d - 2) rho^n``
    (docs/math.md section 6). With ``weights = c_n^2`` (the Hermite coefficients of an activation at norm 1)
    this is the sphere Laplacian of the activation's potential; Theorem 30's ``(theta . w)^l`` is the single
    term ``n = l`` (the activation ``h_l``).

    Args:
      weights: ``(..., N + 1)`` coefficients of ``rho^0 .. rho^N``.
      rho: ``(...)``, in ``[-1, 1]``.
      d: the dimension of the ambient space (the sphere is ``S^(d-1)``).

    Returns:
      ``(...)``.

    >>> import jax.numpy as jnp
    >>> float(sphere_laplacian(jnp.array([0.0, 0.0, 0.0, 1.0]), jnp.asarray(0.5), 3))  # 6 rho - 12 rho^3
    1.5
    """
    weights = jnp.asarray(weights)
    n = jnp.arange(weights.shape[-1], dtype=weights.dtype)
    pw = powers(rho, weights.shape[-1])
    lower = jnp.sum((weights * n * (n - 1.0))[..., 2:] * pw[..., : max(weights.shape[-1] - 2, 0)], axis=-1)
    return lower - jnp.sum(weights * n * (n + d - 2.0) * pw, axis=-1)
