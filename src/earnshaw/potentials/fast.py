r"""Fast potentials for activations without a closed form: a Hermite series with tabulated norm coefficients.

``Phi(u, v) = sum_{n <= N} c_n(|u|) c_n(|v|) rho^n`` (docs/math.md section 1d) with each ``c_n(r)`` a Chebyshev
interpolant in ``r`` on ``[0, radius]``, built once per activation from :func:`~earnshaw.potentials.hermite.
hermite_coefficients`. Per unit the cost is one small matrix product (Chebyshev values times the table); per
pair it is ``N`` (``N / 2`` for odd or even activations) multiply-adds, about the cost of the arcsine in the
erf closed form. Derivatives are JAX's derivatives of this approximant.

Every evaluation checks the rigorous truncation bound ``|rho|^N sqrt(T'_N(|u|) T'_N(|v|)) <= tol`` of
:mod:`~earnshaw.potentials.hermite` (which bounds the error of ``Phi`` and of its ``rho``-derivative) on every
pair, plus ``|u|, |v| <= radius``; if any pair fails, the whole call falls back to Gauss-Hermite quadrature
(``lax.cond``; under ``vmap`` the check covers the whole batch, so still only one branch runs). Unit-norm pairs are inside the bound at every angle
by construction of ``N``; long vectors at nearly parallel angles are not.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw.potentials import hermite as _hermite
from earnshaw.potentials import inner
from earnshaw.potentials._safe import safe_sqrt

__all__ = ["FastTable", "build_table", "fast_potential_fn"]

_CHEB_NODES = 64
_TAIL_GRID = 512
_MAX_TERMS = 400
# norms up to this are on the fast path at every angle with the default number of terms
_UNIT_COVER = 1.1


@dataclasses.dataclass(frozen=True, eq=False)
class FastTable:
    """A built table (identity-hashed, so jit caches on it).

    Attributes:
      degrees: the Hermite degrees kept, ``(K,)`` (one parity for odd/even activations).
      cheb: Chebyshev coefficients, ``(M, K)``: ``c_{degrees[k]}(r) = sum_m cheb[m, k] T_m(2 r / radius - 1)``.
      radius: the table covers ``0 <= r <= radius``.
      log_tail: ``log T'_N`` upper bounds on a uniform grid of ``r`` (running maximum), ``(G,)``.
      terms: ``N``, the truncation degree.
      tol: the accuracy checked on every pair.
      table_error: max interpolation error of the ``c_n`` measured on a grid 8x finer than the nodes.
      order: the Gauss-Hermite order of the fallback.
    """

    degrees: np.ndarray
    cheb: np.ndarray
    radius: float
    log_tail: np.ndarray
    terms: int
    tol: float
    table_error: float
    order: int


def _cheb_points(m, radius):
    x = np.cos(np.pi * (np.arange(m) + 0.5) / m)
    return x, 0.5 * radius * (x + 1.0)


def _cheb_values(x, m, xp=np):
    """``T_0..T_{m-1}`` at ``x``, ``(..., m)``."""
    out = [xp.ones_like(x), x]
    for _ in range(m - 2):
        out.append(2.0 * x * out[-1] - out[-2])
    return xp.stack(out[:m], axis=-1)


@functools.lru_cache(maxsize=None)
def build_table(fn, *, odd=None, tol=1e-12, terms=None, radius=3.0, order=128) -> FastTable:
    """Build the fast table of activation ``fn`` (cached per arguments; ~1-3 s once).

    Args:
      fn: jax-traceable elementwise activation (hashable).
      odd: ``True``/``False`` if ``fn`` is odd/even (halves the terms); ``None`` keeps all degrees.
      tol: accuracy bound checked per pair (default ``1e-12``).
      terms: truncation degree ``N``; default the smallest with ``T'_N(1.1) <= tol / 2``, so pairs of norms
        up to about 1.1 are always on the fast path.
      radius: largest norm tabulated.
      order: Gauss-Hermite order of the fallback.

    Returns:
      A :class:`FastTable`.

    >>> import jax.numpy as jnp
    >>> table = build_table(jnp.tanh, odd=True)
    >>> table.terms, table.table_error < 1e-14
    (147, True)
    """
    if not (isinstance(tol, float) and 0 < tol < 1):
        raise ValueError(f"fast potential: tol must be a float in (0, 1), got tol={tol!r}")
    if not (isinstance(radius, (int, float)) and 0 < radius <= 10):
        raise ValueError(f"fast potential: radius must be in (0, 10], got radius={radius!r}")
    x, nodes = _cheb_points(_CHEB_NODES, float(radius))
    grid = np.linspace(0.0, float(radius), _TAIL_GRID)
    hc = _hermite.hermite_coefficients(fn, np.concatenate([nodes, grid, [_UNIT_COVER]]), _MAX_TERMS)
    if terms is None:
        unit = np.array([_hermite.tail_bound(_slice(hc, -1), n, weighted=True)[0] for n in range(_MAX_TERMS)])
        ok = np.nonzero(unit <= 0.5 * tol)[0]
        if ok.size == 0:
            raise ValueError(f"fast potential: no truncation up to {_MAX_TERMS} reaches tol={tol} at unit norm; "
                             "use method='quadrature'")
        terms = int(ok[0])
    if not (isinstance(terms, int) and 1 <= terms < _MAX_TERMS):
        raise ValueError(f"fast potential: terms must be an integer in [1, {_MAX_TERMS - 1}], got {terms!r}")
    degrees = np.arange(terms + 1)
    if odd is True:
        degrees = degrees[1::2]
    elif odd is False:
        degrees = degrees[0::2]
    vals = hc.c[:_CHEB_NODES][:, degrees]
    # Chebyshev interpolation at the first-kind points (a discrete cosine transform)
    T = _cheb_values(x, _CHEB_NODES)
    cheb = np.linalg.solve(T, vals)
    check_r = np.linspace(0.0, float(radius), 8 * _CHEB_NODES + 1)
    check = _hermite.hermite_coefficients(fn, check_r, int(degrees[-1]))
    approx = _cheb_values(2.0 * check_r / radius - 1.0, _CHEB_NODES) @ cheb
    table_error = float(np.abs(approx - check.c[:, degrees]).max() + check.eps)
    tails = _hermite.tail_bound(_slice(hc, slice(_CHEB_NODES, _CHEB_NODES + _TAIL_GRID)), terms, weighted=True)
    # the interpolation error adds at most table_error * sum_n (|c_n(a)| + |c_n(b)| + table_error) to the sum
    extra = 2.0 * table_error * (np.abs(hc.c[_CHEB_NODES:_CHEB_NODES + _TAIL_GRID][:, degrees]).sum(1).max() + 1.0)
    if extra > 0.5 * tol:
        raise ValueError(f"fast potential: the table's own error ({extra:.1e}) exceeds tol/2 at radius={radius}; "
                         "lower radius or raise tol")
    log_tail = np.log(np.maximum.accumulate(tails) + 1e-300)
    return FastTable(degrees=degrees, cheb=cheb, radius=float(radius), log_tail=log_tail, terms=terms,
                     tol=float(tol) - extra, table_error=table_error, order=int(order))


def _slice(hc, idx):
    idx = idx if isinstance(idx, slice) else slice(idx, idx + 1 if idx != -1 else None)
    return _hermite.HermiteCoefficients(r=hc.r[idx], c=hc.c[idx], second_moment=hc.second_moment[idx],
                                        slope_moment=hc.slope_moment[idx], eps=hc.eps)


def _coefficients(table, r):
    """``c_n(r)`` for the kept degrees, ``(..., K)``."""
    dtype = r.dtype
    x = 2.0 * jnp.minimum(r, table.radius) / table.radius - 1.0
    return _cheb_values(x, _CHEB_NODES, jnp) @ jnp.asarray(table.cheb, dtype)


def _log_tail(table, r):
    g = table.log_tail.size - 1
    idx = jnp.clip(jnp.ceil(r * (g / table.radius)).astype(jnp.int32), 0, g)
    return jnp.asarray(table.log_tail, r.dtype)[idx]


def _fast(table, nu, c, nv):
    a, b = safe_sqrt(nu), safe_sqrt(nv)
    ab = a * b
    rho = c / jnp.where(ab > 0, ab, 1.0)
    ca, cb = _coefficients(table, a), _coefficients(table, b)
    step = int(table.degrees[1] - table.degrees[0]) if table.degrees.size > 1 else 1
    x = rho * rho if step == 2 else rho
    out = _hermite.series(ca, cb, x)
    if table.degrees[0] == 1:
        out = out * rho
    return out


@jax.custom_batching.custom_vmap
def _all(x):
    return jnp.all(x)


@_all.def_vmap
def _all_batched(axis_size, in_batched, x):
    # reduce over the batch too, so that lax.cond keeps an unbatched predicate and runs one branch under vmap
    return jnp.all(x), False


def fast_potential_fn(fn, table: FastTable, nu, c, nv):
    """``Phi`` from the table where every pair is within ``table.tol``; Gauss-Hermite quadrature otherwise.

    Args:
      fn: the activation (for the fallback).
      table: from :func:`build_table`.
      nu: ``|u|^2``, broadcastable.
      c: ``u.v``, broadcastable.
      nv: ``|v|^2``, broadcastable.

    Returns:
      ``Phi`` of the broadcast shape.

    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     t = build_table(jnp.tanh, odd=True)
    ...     fast = fast_potential_fn(jnp.tanh, t, 1.0, 0.3, 0.8)
    ...     quad = inner.gauss_hermite(jnp.tanh, jnp.tanh, 200, 1.0, 0.3, 0.8)
    ...     print(abs(float(fast - quad)) < 1e-13)
    True
    """
    dtype = jnp.result_type(nu, c, nv, float)
    nu, c, nv = (jnp.asarray(t, dtype) for t in (nu, c, nv))
    a, b = jax.lax.stop_gradient(safe_sqrt(nu)), jax.lax.stop_gradient(safe_sqrt(nv))
    rho = jax.lax.stop_gradient(jnp.abs(c)) / jnp.maximum(a * b, 1e-300)
    log_bound = table.terms * jnp.log(jnp.minimum(rho, 1.0) + 1e-300) + 0.5 * (_log_tail(table, a) +
                                                                               _log_tail(table, b))
    inside = _all((log_bound <= math.log(table.tol)) & (a <= table.radius) & (b <= table.radius))
    shape = jnp.broadcast_shapes(nu.shape, c.shape, nv.shape)
    return jax.lax.cond(inside,
                        lambda: jnp.broadcast_to(_fast(table, nu, c, nv), shape),
                        lambda: jnp.broadcast_to(inner.gauss_hermite(fn, fn, table.order, nu, c, nv), shape))
