r"""Fast potentials for activations without a closed form: a Hermite series with tabulated norm coefficients.

``Phi(u, v) = sum_{n <= N} c_n(|u|) c_n(|v|) rho^n`` (docs/math.md section 1d) with each ``c_n(r)`` a Chebyshev
interpolant of degree 8 on each of 64 panels of ``[0, radius]``, built once per activation from
:func:`~earnshaw.potentials.hermite.hermite_coefficients`. Per unit the cost is one panel's small matrix product
(Chebyshev values times the table, with ``c_n'`` alongside when a derivative is asked for); per pair it is a few
multiply-adds per kept degree (``N / 2`` of them for odd or even activations). Derivatives are exact derivatives
of this approximant, computed with the value in one pass (a ``custom_jvp`` that skips the partials of arguments
without a tangent, such as the teacher's).

Every evaluation checks the rigorous truncation bound ``|rho|^N sqrt(T'_N(|u|) T'_N(|v|)) <= tol`` of
:mod:`~earnshaw.potentials.hermite` (which bounds the error of ``Phi`` and of its ``rho``-derivative) on every
pair. Where every pair passes, the table of ``N`` terms runs; otherwise, while every norm is at most ``radius``,
the wide table of the same panels with every degree up to 399 (its error is that tail bound at ``N = 399``:
below 1e-13 for norms up to 1.7 at any angle, 1e-11 at 2, 2e-7 at 3 for tanh, far below order-128
quadrature's); beyond ``radius``, Gauss-Hermite quadrature (``lax.switch``; under ``vmap`` the choice covers the
whole batch, so still only one branch runs). Unit-norm pairs are inside the bound at every angle by
construction of ``N``; long vectors at nearly parallel angles are not.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from earnshaw.potentials import hermite as _hermite
from earnshaw.potentials import inner
from earnshaw.potentials._safe import safe_sqrt

__all__ = ["FastTable", "build_table", "fast_potential_fn", "table_cache_folder", "tier"]

# c_n(r) on [0, radius] is a Chebyshev interpolant of this degree on each of this many equal panels: a unit
# evaluates one panel (9 x K multiply-adds), not a global degree-63 series (64 x K)
_PANELS = 64
_DEGREE = 8
_TAIL_GRID = 512
_MAX_TERMS = 400
# norms up to this are on the fast path at every angle with the default number of terms
_UNIT_COVER = 1.1
# Horner steps per iteration of the loop over degrees
_UNROLL = 8
# part of the cached tables' identity (with the source of this module and of hermite.py, which changes anyway
# when the construction does): bump it to retire every table on disk
_TABLE_FORMAT = 1


@dataclasses.dataclass(frozen=True, eq=False)
class FastTable:
    """A built table (identity-hashed, so jit caches on it).

    Attributes:
      degrees: the Hermite degrees kept, ``(K,)`` (one parity for odd/even activations).
      cheb: per-panel Chebyshev coefficients, ``(P, Q, K)``: on panel ``p`` (``r`` in ``[p h, (p + 1) h]``,
        ``h = radius / P``) ``c_{degrees[k]}(r) = sum_q cheb[p, q, k] T_q(2 (r - p h) / h - 1)``.
      radius: the table covers ``0 <= r <= radius``.
      log_tail: ``log T'_N`` upper bounds on a uniform grid of ``r`` (running maximum), ``(G,)``.
      terms: ``N``, the truncation degree.
      tol: the accuracy checked on every pair.
      table_error: max interpolation error of the ``c_n`` measured on a grid 4x finer than the nodes.
      order: the Gauss-Hermite order of the fallback beyond ``radius``.
      wide_degrees, wide_cheb: the same for every degree up to ``wide_terms`` (the table used where a pair
        leaves the certified region of ``terms`` but every norm is within ``radius``); ``None`` when
        ``terms`` is already the largest.
      wide_terms: its truncation degree (0 when there is none); its error is the tail bound of
        :mod:`~earnshaw.potentials.hermite` at that degree.
    """

    degrees: np.ndarray
    cheb: np.ndarray
    radius: float
    log_tail: np.ndarray
    terms: int
    tol: float
    table_error: float
    order: int
    wide_degrees: np.ndarray | None = None
    wide_cheb: np.ndarray | None = None
    wide_terms: int = 0


def _cheb_points(m):
    return np.cos(np.pi * (np.arange(m) + 0.5) / m)


def _cheb_values(x, m, xp=np):
    """``T_0..T_{m-1}`` at ``x``, ``(..., m)``."""
    out = [xp.ones_like(x), x]
    for _ in range(m - 2):
        out.append(2.0 * x * out[-1] - out[-2])
    return xp.stack(out[:m], axis=-1)


def _panel_of(r, radius, xp=np):
    """Panel index and local coordinate in ``[-1, 1]`` of each ``r`` (clipped to ``[0, radius]``)."""
    h = radius / _PANELS
    r = xp.clip(r, 0.0, radius)
    idx = xp.clip(xp.floor(r / h), 0, _PANELS - 1).astype(np.int32)
    return idx, 2.0 * (r - idx * h) / h - 1.0


@functools.lru_cache(maxsize=None)
def build_table(fn, *, odd=None, tol=1e-12, terms=None, radius=3.0, order=128, cache_key=None) -> FastTable:
    """Build the fast table of activation ``fn`` (cached per arguments in memory, and on disk under ``cache_key``;
    ~1-3 s to build, milliseconds to load).

    Args:
      fn: jax-traceable elementwise activation (hashable).
      odd: ``True``/``False`` if ``fn`` is odd/even (halves the terms); ``None`` keeps all degrees.
      tol: accuracy bound checked per pair (default ``1e-12``).
      terms: truncation degree ``N``; default the smallest with ``T'_N(1.1) <= tol / 2``, so pairs of norms
        up to about 1.1 are always on the fast path.
      radius: largest norm tabulated.
      order: Gauss-Hermite order of the fallback.
      cache_key: a string naming ``fn`` for good (``es.potential`` passes the registry name and parameters of
        its activations); the table is then kept in :func:`table_cache_folder` and read back by later
        processes. ``None`` (any other function) builds it in every process.

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
    radius = float(radius)
    path, ident = _cache_file(cache_key, fn, odd=odd, tol=tol, terms=terms, radius=radius, order=order)
    table = _load_table(path, ident) if path is not None else None
    if table is None:
        table = _build_table(fn, odd=odd, tol=tol, terms=terms, radius=radius, order=order)
        if path is not None:
            _save_table(path, ident, table)
    return table


def _build_table(fn, *, odd, tol, terms, radius, order) -> FastTable:
    q = _DEGREE + 1
    x = _cheb_points(q)
    h = radius / _PANELS
    nodes = (np.arange(_PANELS)[:, None] * h + 0.5 * h * (x[None, :] + 1.0)).ravel()
    n_nodes = nodes.size
    grid = np.linspace(0.0, radius, _TAIL_GRID)
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
    wide_terms = _MAX_TERMS - 1 if terms < _MAX_TERMS - 1 else 0
    check_r = np.linspace(0.0, radius, 4 * n_nodes + 1)
    check = _hermite.hermite_coefficients(fn, check_r, max(terms, wide_terms))
    inverse = np.linalg.inv(_cheb_values(x, q))
    idx, t = _panel_of(check_r, radius)

    def interpolate(n):
        """Degrees kept up to ``n``, their per-panel Chebyshev coefficients and their interpolation error."""
        degrees = np.arange(n + 1)
        if odd is True:
            degrees = degrees[1::2]
        elif odd is False:
            degrees = degrees[0::2]
        vals = hc.c[:n_nodes][:, degrees].reshape(_PANELS, q, degrees.size)
        # Chebyshev interpolation at the first-kind points of each panel (a discrete cosine transform)
        cheb = np.einsum("qm,pmk->pqk", inverse, vals)
        approx = np.einsum("rq,rqk->rk", _cheb_values(t, q), cheb[idx])
        return degrees, cheb, float(np.abs(approx - check.c[:, degrees]).max() + check.eps)

    degrees, cheb, table_error = interpolate(terms)
    wide = {}
    if wide_terms:
        w_degrees, w_cheb, _ = interpolate(wide_terms)
        wide = dict(wide_degrees=w_degrees, wide_cheb=w_cheb, wide_terms=wide_terms)
    tails = _hermite.tail_bound(_slice(hc, slice(n_nodes, n_nodes + _TAIL_GRID)), terms, weighted=True)
    # the interpolation error adds at most table_error * sum_n (|c_n(a)| + |c_n(b)| + table_error) to the sum
    extra = 2.0 * table_error * (np.abs(hc.c[n_nodes:n_nodes + _TAIL_GRID][:, degrees]).sum(1).max() + 1.0)
    if extra > 0.5 * tol:
        raise ValueError(f"fast potential: the table's own error ({extra:.1e}) exceeds tol/2 at radius={radius}; "
                         "lower radius or raise tol")
    log_tail = np.log(np.maximum.accumulate(tails) + 1e-300)
    return FastTable(degrees=degrees, cheb=cheb, radius=radius, log_tail=log_tail, terms=terms,
                     tol=float(tol) - extra, table_error=table_error, order=int(order), **wide)


def table_cache_folder() -> pathlib.Path | None:
    """Where :func:`build_table` keeps tables with a ``cache_key``: ``$EARNSHAW_TABLE_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/earnshaw/tables`` (``~/.cache`` without ``XDG_CACHE_HOME``); ``None`` when
    ``EARNSHAW_TABLE_CACHE=0`` turns the cache off.

    The files are ``.npz`` archives of plain arrays (read with ``allow_pickle=False``: data, never code), named
    by a hash of everything the table depends on (the key, the arguments, the activation's values at fixed
    points, the source of the code that builds tables, the table's format and earnshaw's version), and written
    atomically, so concurrent processes at worst build the same table twice. A file that cannot be read, has
    the wrong shapes or does not match is rebuilt; a folder that cannot be written is skipped. As with any
    cache, whoever can write the folder can change the tables a later run uses.

    >>> import os
    >>> before = os.environ.pop("EARNSHAW_TABLE_CACHE", None)
    >>> os.environ["EARNSHAW_TABLE_CACHE"] = "0"
    >>> table_cache_folder() is None
    True
    >>> _ = os.environ.pop("EARNSHAW_TABLE_CACHE") if before is None else os.environ.update(EARNSHAW_TABLE_CACHE=before)
    """
    if os.environ.get("EARNSHAW_TABLE_CACHE", "1") == "0":
        return None
    folder = os.environ.get("EARNSHAW_TABLE_CACHE_DIR")
    if folder:
        return pathlib.Path(folder)
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "earnshaw" / "tables"


_ARRAYS = ("degrees", "cheb", "log_tail", "wide_degrees", "wide_cheb")
_SCALARS = ("radius", "terms", "tol", "table_error", "order", "wide_terms")


@functools.lru_cache(maxsize=None)
def _code_digest() -> str:
    """A hash of the source that builds tables, so that changing it retires the tables it built."""
    digest = hashlib.sha256()
    for module_file in (__file__, _hermite.__file__):
        digest.update(pathlib.Path(module_file).read_bytes())
    return digest.hexdigest()[:20]


def _cache_file(cache_key, fn, **args):
    """The file of a table and the identity stored in it (``(None, None)`` when it is not to be cached)."""
    folder = table_cache_folder() if cache_key is not None else None
    if folder is None:
        return None, None
    from earnshaw import __version__

    # the activation's values at fixed points: a registry function whose definition changed gets a new file
    with jax.enable_x64(True):
        samples = np.asarray(fn(jnp.linspace(-4.0, 4.0, 17, dtype=jnp.float64)), np.float64)
    ident = json.dumps(dict(key=str(cache_key), format=_TABLE_FORMAT, version=__version__, code=_code_digest(),
                            samples=hashlib.sha256(samples.tobytes()).hexdigest(),
                            panels=_PANELS, degree=_DEGREE, tail_grid=_TAIL_GRID, max_terms=_MAX_TERMS,
                            unit_cover=_UNIT_COVER, **args), sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(cache_key)).strip("_")[:40]
    return folder / f"{slug}-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.npz", ident


def _load_table(path, ident):
    """The table in ``path`` if it is readable, carries ``ident`` and has consistent shapes; else ``None``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["ident"]) != ident:  # a hash collision or a foreign file: rebuild
                return None
            arrays = {k: (np.array(data[k]) if k in data else None) for k in _ARRAYS}
            scalars = json.loads(str(data["scalars"]))
        table = FastTable(**arrays, **scalars)
        wide_ok = (table.wide_cheb is None if not table.wide_terms else
                   table.wide_cheb.shape == (_PANELS, _DEGREE + 1, table.wide_degrees.size))
        if (set(scalars) != set(_SCALARS) or table.cheb.shape != (_PANELS, _DEGREE + 1, table.degrees.size)
                or table.log_tail.shape != (_TAIL_GRID,) or not wide_ok):
            return None
        return table
    # any failure to read a cached file (a damaged archive raises zlib, zipfile, EOF, value or key errors) only
    # means building the table again
    except Exception:
        return None


def _save_table(path, ident, table):
    from earnshaw.store import _tmp, write_npz_atomic

    arrays = {k: getattr(table, k) for k in _ARRAYS if getattr(table, k) is not None}
    scalars = {k: getattr(table, k) for k in _SCALARS}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_npz_atomic(path, dict(arrays, ident=np.array(ident), scalars=np.array(json.dumps(scalars))))
    except OSError:  # a read-only home or a full disk costs a rebuild next time, nothing else
        _tmp(path).unlink(missing_ok=True)


def _slice(hc, idx):
    idx = idx if isinstance(idx, slice) else slice(idx, idx + 1 if idx != -1 else None)
    return _hermite.HermiteCoefficients(r=hc.r[idx], c=hc.c[idx], second_moment=hc.second_moment[idx],
                                        slope_moment=hc.slope_moment[idx], eps=hc.eps)


def _coefficients(cheb, radius, r, derivative):
    """``c_n(r)`` for the kept degrees, degree-major ``(K, ...)``, and ``c_n'(r)`` if ``derivative`` (else ``None``).

    Degree-major, so that each Horner step below reads a contiguous slice. The derivative contracts the same
    gathered panel with ``T_q'``: the gather, not the arithmetic, is what a unit costs.
    """
    idx, t = _panel_of(r, radius, jnp)
    q = _DEGREE + 1
    block = jnp.asarray(cheb, r.dtype)[idx]
    basis = _cheb_values(t, q, jnp)
    if not derivative:
        return jnp.einsum("...q,...qk->k...", basis, block), None
    # c = sum_q T_q(t) C_q and c' = sum_q T_q'(t) C_q dt/dr from the same gathered panel
    dbasis = (2.0 * _PANELS / radius) * _cheb_derivatives(t, q, jnp)
    return jnp.einsum("...q,...qk->k...", basis, block), jnp.einsum("...q,...qk->k...", dbasis, block)


def _cheb_derivatives(x, m, xp=np):
    """``T_0'..T_{m-1}'`` at ``x``, ``(..., m)``, by ``T_q' = q U_{q-1}``."""
    out = [xp.zeros_like(x), xp.ones_like(x)]
    u_prev, u = xp.ones_like(x), 2.0 * x
    for q in range(2, m):
        out.append(q * u)
        u_prev, u = u, 2.0 * x * u - u_prev
    return xp.stack(out[:m], axis=-1)


def _polynomials(x, coeffs, count):
    """``sum_j coeffs(j)[i] x^j`` for ``j < count``, for every ``i``: Horner's rule in a ``fori_loop`` unrolled
    by ``_UNROLL`` (``coeffs`` takes a traced index).

    Fully unrolled (74 steps per sum for tanh, as two chains in ``x^2``), a Hessian of tanh's loss at ``k = 3``
    compiled in 13 s and GD ran at 13-24k steps/s (``k = d = 10``); the loop compiles the Hessian in 6.5 s and
    runs GD at 31k steps/s, with one instance's value and gradient as fast and a batch's 10% slower.
    """
    def step(i, acc):
        return [p * x + t for p, t in zip(acc, coeffs(count - 2 - i))]
    return jax.lax.fori_loop(0, count - 1, step, [jnp.broadcast_to(t, x.shape) for t in coeffs(count - 1)],
                             unroll=min(_UNROLL, max(count - 1, 1)))


def _reach(table, n):
    """``s(r) = r (tol / T'_N(r))^(1 / 2N)`` at ``r = sqrt(n)`` (computed on the flattened ``n``), ``n.shape``:
    a pair is inside the certified bound iff ``|u.v| <= s(|u|) s(|v|)``."""
    r = safe_sqrt(n.reshape(-1))
    g = table.log_tail.size - 1
    idx = jnp.clip(jnp.ceil(r * (g / table.radius)).astype(jnp.int32), 0, g)
    log_tail = jnp.asarray(table.log_tail, r.dtype)[idx]
    return (r * jnp.exp((math.log(table.tol) - log_tail) / (2.0 * table.terms))).reshape(n.shape)


def _unit_coefficients(table, n, derivative, wide=False):
    """:func:`_coefficients` at ``sqrt(n)`` for squared norms ``n`` broadcast along one axis, ``(K,) + n.shape``
    (of the wide table if ``wide``).

    Evaluated on the flattened norms: the student's units then give the same program in every Gram matrix
    (rows of one, columns of the next), which XLA computes once.
    """
    flat = jnp.sqrt(jnp.maximum(n.reshape(-1), 0.0))
    cheb = table.wide_cheb if wide else table.cheb
    c, dc = _coefficients(cheb, table.radius, flat, derivative)
    k = cheb.shape[-1]
    return c.reshape((k,) + n.shape), None if dc is None else dc.reshape((k,) + n.shape)


def _fast(deg, nu, c, nv, need, units):
    """``Phi`` and, where ``need`` says, its partials in ``(nu, c, nv)`` from the truncated series.

    With ``a = |u|``, ``b = |v|``, ``rho = c / (a b)`` and kept degrees ``n_j = n_0 + s j``:
    ``Phi = rho^n_0 sum_j c_j(a) c_j(b) x^j`` with ``x = rho^s``; the partials in ``a``, ``b`` use the
    tabulated ``c_n'``, the one in ``rho`` the series' own derivative, and the chain rule maps them to the
    Gram triple. Every sum shares the powers ``x^j``, so a pair costs a few multiply-adds per kept degree.
    Horner's rule runs as a loop over the degrees (:func:`_polynomials`): unrolled, the wide table's ~200
    steps per sum made a Hessian compile for 48 s.
    """
    need_u, need_c, need_v = need
    shape = jnp.broadcast_shapes(nu.shape, c.shape, nv.shape)
    a, b = jnp.sqrt(jnp.maximum(nu, 0.0)), jnp.sqrt(jnp.maximum(nv, 0.0))
    ab = a * b
    pos = ab > 0
    rho = c / jnp.where(pos, ab, 1.0)
    (ca, dca), (cb, dcb) = units
    n0, step, count = int(deg[0]), (int(deg[1] - deg[0]) if deg.size > 1 else 1), deg.size
    x = rho * rho if step == 2 else rho
    lead = rho if n0 == 1 else 1.0
    any_need = need_u or need_c or need_v
    # d Phi / d rho = sum_j n_j c_j(a) c_j(b) rho^(n_j - 1), in the same Horner chains: for odd activations
    # (n_0 = 1) a polynomial in x; otherwise the n_0 = 0 term drops, the rest is x^(j-1) (times rho if s = 2)

    degf = jnp.asarray(deg, x.dtype)

    def coeffs(j):  # j indexes the degrees (traced inside the loop)
        a_j = ca[j] * cb[j]
        out = [a_j]
        if any_need:
            if n0 == 1:
                out.append(degf[j] * a_j)
            else:
                nxt = jnp.minimum(j + 1, count - 1)
                out.append(jnp.where(j + 1 < count, degf[nxt] * ca[nxt] * cb[nxt], 0.0))
        if need_u:
            out.append(dca[j] * cb[j])
        if need_v:
            out.append(ca[j] * dcb[j])
        return out
    sums = iter(_polynomials(x, coeffs, count))
    phi = lead * next(sums)
    out = [jnp.broadcast_to(phi, shape), None, None, None]
    if not any_need:
        return out
    d_rho = next(sums)
    if n0 == 0 and step == 2:
        d_rho = d_rho * rho
    d_a = lead * next(sums) if need_u else None
    d_b = lead * next(sums) if need_v else None
    inv_ab = jnp.where(pos, 1.0 / jnp.where(pos, ab, 1.0), 0.0)
    if need_c:
        out[2] = jnp.broadcast_to(d_rho * inv_ab, shape)
    if need_u:
        safe_a = jnp.where(a > 0, a, 1.0)
        out[1] = jnp.broadcast_to(jnp.where(a > 0, (d_a - d_rho * rho / safe_a) / (2.0 * safe_a), 0.0), shape)
    if need_v:
        safe_b = jnp.where(b > 0, b, 1.0)
        out[3] = jnp.broadcast_to(jnp.where(b > 0, (d_b - d_rho * rho / safe_b) / (2.0 * safe_b), 0.0), shape)
    return out


def _quadrature(fn, order, nu, c, nv, need):
    """The same as :func:`_fast` by Gauss-Hermite quadrature, the partials by Price's theorem
    (``dPhi/dc = E[s'(U) s'(V)]``, ``dPhi/d|u|^2 = E[s''(U) s(V)] / 2``).

    Each term is :func:`~earnshaw.potentials.inner.gauss_hermite_rows` (custom JVP, so higher derivatives
    follow the same theorem), whose temporaries are ``pairs x order``: the fast branch pays for the arena of
    the branch not taken, which at ``pairs x order^2`` cost more than the fast branch itself.
    """
    shape = jnp.broadcast_shapes(nu.shape, c.shape, nv.shape)
    df = inner._derivative(fn)
    ddf = inner._derivative(df)
    terms = ((fn, fn, 1.0), (ddf, fn, 0.5), (df, df, 1.0), (fn, ddf, 0.5))
    return [jnp.broadcast_to(scale * inner.gauss_hermite_rows(f, g, order, nu, c, nv), shape)
            if wanted else None for (f, g, scale), wanted in zip(terms, (True, *need))]


@jax.custom_batching.custom_vmap
def _all(x):
    return jnp.all(x)


@_all.def_vmap
def _all_batched(axis_size, in_batched, x):
    # reduce over the batch too, so that lax.cond keeps an unbatched predicate and runs one branch under vmap
    return jnp.all(x), False


def tier(table: FastTable, nu, c, nv):
    """Which evaluation a call gets: 0, the table of ``table.terms`` (every pair within its certified bound);
    1, the wide table (every norm at most ``table.radius``); 2, Gauss-Hermite quadrature of ``table.order``.

    One index for the whole call, a batch under ``vmap`` included (its most demanding instance decides), so
    that only that branch runs.

    Args:
      table: from :func:`build_table`.
      nu, c, nv: ``|u|^2``, ``u.v``, ``|v|^2``, broadcastable.

    Returns:
      An int32 scalar.

    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     t = build_table(jnp.tanh, odd=True)
    ...     [int(tier(t, *x)) for x in ((1.0, 0.99, 1.0), (2.25, 2.2, 2.25), (16.0, 0.0, 1.0))]
    [0, 1, 2]
    """
    nu, c, nv = (jnp.asarray(x) for x in (nu, c, nv))
    # |rho|^N sqrt(T'_N(a) T'_N(b)) <= tol  <=>  |c| <= s(a) s(b) with s(r) = r (tol / T'_N(r))^(1 / 2N): a
    # product per pair instead of a logarithm, and s per unit (shared between Gram matrices)
    within = _all((nu <= table.radius**2) & (nv <= table.radius**2))
    inside = within & _all(jnp.abs(c) <= _reach(table, nu) * _reach(table, nv))
    return jnp.where(inside, 0, jnp.where(within & (table.wide_terms > 0), 1, 2)).astype(jnp.int32)


def fast_potential_fn(fn, table: FastTable, nu, c, nv):
    """``Phi`` from the table where every pair is within ``table.tol``, from the wide table where a pair is not
    but every norm is within ``table.radius``, by Gauss-Hermite quadrature beyond (:func:`tier`).

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
    return _potential(fn, table, *(jnp.asarray(t, dtype) for t in (nu, c, nv)))


# compiled as one program even when called eagerly (tests, notebooks): op by op, the unrolled Horner chains
# alone would dispatch hundreds of small computations
@functools.partial(jax.jit, static_argnums=(0, 1, 5))
def _evaluate(fn, table, nu, c, nv, need):
    shape = jnp.broadcast_shapes(nu.shape, c.shape, nv.shape)
    zero = jnp.zeros(shape, nu.dtype)
    # outside the switch, where XLA can share them between the Gram matrices of one loss
    units = (_unit_coefficients(table, nu, need[0]), _unit_coefficients(table, nv, need[2]))

    def branch(parts):
        return [p if p is not None else zero for p in parts]

    def wide():
        if not table.wide_terms:  # never chosen: tier() skips it
            return branch([zero] * 4)
        units = (_unit_coefficients(table, nu, need[0], wide=True), _unit_coefficients(table, nv, need[2], wide=True))
        return branch(_fast(table.wide_degrees, nu, c, nv, need, units))
    branches = [lambda: branch(_fast(table.degrees, nu, c, nv, need, units)), wide,
                lambda: branch(_quadrature(fn, table.order, nu, c, nv, need))]
    return jax.lax.switch(tier(table, nu, c, nv), branches)


# The partials are computed inside the branch that runs and applied outside it, so reverse mode never
# differentiates the lax.cond: JAX would keep residuals for both branches, the quadrature's zero-filled ones
# included (with the all-nodes-at-once quadrature they cost 4x the whole fast evaluation).
@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _potential(fn, table, nu, c, nv):
    return _evaluate(fn, table, nu, c, nv, (False, False, False))[0]


def _potential_jvp(fn, table, primals, tangents):
    need = tuple(not isinstance(t, SymbolicZero) for t in tangents)
    out, *parts = _evaluate(fn, table, *primals, need)
    tangent = jnp.zeros_like(out)
    for wanted, part, t in zip(need, parts, tangents):
        if wanted:
            tangent = tangent + part * t
    return out, tangent


_potential.defjvp(_potential_jvp, symbolic_zeros=True)
