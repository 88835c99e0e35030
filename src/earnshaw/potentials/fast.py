r"""Fast potentials for activations without a closed form: a Hermite series with tabulated norm coefficients.

``Phi(u, v) = sum_n c_n(|u|) c_n(|v|) rho^n`` (docs/math.md section 1d) with each ``c_n(r)`` a Chebyshev
interpolant of degree 8 on each of 64 panels of ``[0, radius]`` (radius 5 by default), built once per activation
from :func:`~earnshaw.potentials.hermite.hermite_coefficients` for every degree up to ``terms`` (399). Per unit the
cost is one panel's small matrix product (Chebyshev values times the table, with ``c_n'`` alongside when a
derivative is asked for); per pair it is a few multiply-adds per degree used (one parity for odd or even
activations). Derivatives are exact derivatives of this approximant, computed with the value in one pass (a
``custom_jvp`` that skips the partials of arguments without a tangent, such as the teacher's).

A call uses as few degrees as its pairs need. The degrees run in blocks of 8 (Horner's rule, highest block
first, in a loop whose length is decided at run time), and each call checks the rigorous truncation bound
``|rho|^N sqrt(T'_N(|u|) T'_N(|v|)) <= tol`` of :mod:`~earnshaw.potentials.hermite` (which bounds the error of
``Phi`` and of its ``rho``-derivative) on every pair for a ladder of truncations ``N``, and runs the shortest
one that every pair passes: pairs at moderate angles need a few blocks, parallel units of norm 1.1 ten (tanh).
Where no truncation passes but every norm is at most ``radius``, every degree runs (its error is that tail
bound at ``N = 399``: below 1e-13 for norms up to 1.7 at any angle, 1e-11 at 2, 2e-7 at 3 for tanh, far below
order-128 quadrature's). The pairs of a unit beyond ``radius`` take Gauss-Hermite quadrature instead, value and
derivatives; it runs (``lax.cond``) only when the call has such a unit, and every other pair keeps the series, so
a pair's value does not depend on the other pairs of its call. The number of blocks, and whether the quadrature
runs, are one choice for the call; under ``vmap`` the quadrature's branch is one for the whole batch, and the
batch is sorted by the blocks each instance needs and run in a few segments, each at its own longest
truncation (:func:`_split_series`).

A unit's potential with itself, ``Phi(u, u) = E[s(|u| Z)^2]``, is a table of its own in ``|u|^2`` (no series: at
``rho = 1`` the series would set the length of every call). :func:`fast_grams` evaluates the Gram matrices of
a loss in one program: the student's and the teacher's symmetric ones on their upper triangles, all three in
one loop.
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

__all__ = ["FastTable", "build_table", "fast_potential_fn", "fast_grams", "fast_gram_partials", "table_cache_folder",
           "tier", "degrees_used", "grams_plan"]

# c_n(r) on [0, radius] is a Chebyshev interpolant of this degree on each of this many equal panels: a unit
# evaluates one panel (9 x K multiply-adds), not a global degree-63 series (64 x K)
_PANELS = 64
_DEGREE = 8
_TAIL_GRID = 512
_MAX_TERMS = 400
# degrees per block: the unit of a call's length, and the Horner steps per iteration of its loop
_BLOCK = 8
# the block counts a call may stop at (the checks cost a product and a comparison per pair each)
_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
# the norms a default table covers (radius=None): the first of these at which its own interpolation error leaves
# tol/2. Random students in d = 10 start at norms of about 3 (sqrt(d) for unit-variance entries), so 5 keeps
# nearly every start on the series; at 6 the error of tanh's and softplus's tables passes 1e-12 with these
# panels, and a function growing faster (log cosh) stops at 4 or 3
_DEFAULT_RADII = (5.0, 4.0, 3.0)
# a batch under vmap runs its series in at most this many segments of instances, each of at least this many
_SEGMENTS = 4
_SEGMENT_MIN = 8
# pairs per step of the quadrature fallback's loop
_FALLBACK_CHUNK = 16
# part of the cached tables' identity (with the source of this module and of hermite.py, which changes anyway
# when the construction does): bump it to retire every table on disk
_TABLE_FORMAT = 2


@dataclasses.dataclass(frozen=True, eq=False)
class FastTable:
    """A built table (identity-hashed, so jit caches on it).

    Attributes:
      degrees: the Hermite degrees kept, ``(K,)`` (one parity for odd/even activations), up to ``terms``.
      cheb: per-panel Chebyshev coefficients, ``(P, Q, K)``: on panel ``p`` (``r`` in ``[p h, (p + 1) h]``,
        ``h = radius / P``) ``c_{degrees[k]}(r) = sum_q cheb[p, q, k] T_q(2 (r - p h) / h - 1)``.
      radius: the table covers ``0 <= r <= radius``.
      log_tail: ``(L, G)``: row ``l`` bounds ``log T'_N`` for the truncation after block ``l`` (``N`` the last
        degree of the first ``l + 1`` blocks of 8) on a uniform grid of ``r`` (running maximum).
      terms: ``N`` of the whole table, its largest degree.
      tol: the accuracy checked on every pair (less the table's own interpolation error).
      table_error: max interpolation error of the ``c_n`` (and of ``self_cheb``) on a grid 4x finer than the nodes.
      order: the Gauss-Hermite order of the fallback beyond ``radius``.
      self_cheb: ``(P, Q)``, ``Phi(u, u) = E[s(|u| Z)^2]`` as a function of ``|u|^2`` on the panels of
        ``[0, radius^2]`` (the squares of the panels of ``|u|``).
    """

    degrees: np.ndarray
    cheb: np.ndarray
    radius: float
    log_tail: np.ndarray
    terms: int
    tol: float
    table_error: float
    order: int
    self_cheb: np.ndarray

    @property
    def blocks(self) -> int:
        """Blocks of 8 degrees in the table."""
        return -(-self.degrees.size // _BLOCK)

    def truncation(self, blocks: int) -> int:
        """The largest degree in the first ``blocks`` blocks."""
        return int(self.degrees[min(blocks * _BLOCK, self.degrees.size) - 1])


def _cheb_points(m):
    return np.cos(np.pi * (np.arange(m) + 0.5) / m)


def _stacked(terms, x, xp):
    """``terms`` (arrays shaped as ``x``) stacked on a new last axis; under jax as one elementwise selection over
    that axis: XLA's CPU backend does not fuse a concatenation with its operands, and a stack of a recurrence's
    terms ran as a kernel per term (36 small kernels a call for the units' bases)."""
    if xp is np:
        return np.stack(terms, axis=-1)
    shape = x.shape + (len(terms),)
    which = jax.lax.broadcasted_iota(jnp.int32, shape, x.ndim)
    out = jnp.broadcast_to(terms[-1][..., None], shape)
    for q in range(len(terms) - 2, -1, -1):
        out = jnp.where(which == q, terms[q][..., None], out)
    return out


def _cheb_values(x, m, xp=np):
    """``T_0..T_{m-1}`` at ``x``, ``(..., m)``."""
    out = [xp.ones_like(x), x]
    for _ in range(m - 2):
        out.append(2.0 * x * out[-1] - out[-2])
    return _stacked(out[:m], x, xp)


def _cheb_derivatives(x, m, xp=np):
    """``T_0'..T_{m-1}'`` at ``x``, ``(..., m)``, by ``T_q' = q U_{q-1}``."""
    out = [xp.zeros_like(x), xp.ones_like(x)]
    u_prev, u = xp.ones_like(x), 2.0 * x
    for q in range(2, m):
        out.append(q * u)
        u_prev, u = u, 2.0 * x * u - u_prev
    return _stacked(out[:m], x, xp)


def _panel_of(r, radius, xp=np):
    """Panel index and local coordinate in ``[-1, 1]`` of each ``r`` (clipped to ``[0, radius]``)."""
    h = radius / _PANELS
    r = xp.clip(r, 0.0, radius)
    idx = xp.clip(xp.floor(r / h), 0, _PANELS - 1).astype(np.int32)
    return idx, 2.0 * (r - idx * h) / h - 1.0


def _square_panels(radius):
    """``|u|^2`` from ``(p h)^2`` to ``((p + 1) h)^2`` for each panel ``p`` of ``|u|``: ``(P,)`` lower and upper
    ends."""
    edges = (np.arange(_PANELS + 1) * (radius / _PANELS)) ** 2
    return edges[:-1], edges[1:]


def _self_panel_of(n, radius, xp=np):
    """Panel (of :func:`_square_panels`) and local coordinate in ``[-1, 1]`` of squared norms ``n``."""
    h = radius / _PANELS
    n = xp.clip(n, 0.0, radius**2)
    idx = xp.clip(xp.floor(xp.sqrt(n) / h), 0, _PANELS - 1).astype(np.int32)
    lo, width = (idx * h) ** 2, (2 * idx + 1) * h * h
    return idx, 2.0 * (n - lo) / width - 1.0


def _kept_degrees(n, odd):
    degrees = np.arange(n + 1)
    return degrees[1::2] if odd is True else degrees[0::2] if odd is False else degrees


@functools.lru_cache(maxsize=None)
def build_table(fn, *, odd=None, tol=1e-12, terms=None, radius=None, order=128, cache_key=None) -> FastTable:
    """Build the fast table of activation ``fn`` (cached per arguments in memory, and on disk under ``cache_key``;
    ~3-6 s to build, milliseconds to load).

    Args:
      fn: jax-traceable elementwise activation (hashable).
      odd: ``True``/``False`` if ``fn`` is odd/even (halves the terms); ``None`` keeps all degrees.
      tol: accuracy bound checked per pair (default ``1e-12``).
      terms: the largest degree ``N`` tabulated (default 399); a call uses the fewest blocks of degrees that
        certify every one of its pairs, all of them where none does. Parallel units of norm 1 must be
        certified within ``terms``.
      radius: largest norm tabulated; ``None`` (default): 5, or 4 or 3 where the table's own interpolation
        error at 5 would leave less than ``tol / 2`` (``table.radius`` says which).
      order: Gauss-Hermite order of the fallback.
      cache_key: a string naming ``fn`` for good (``es.potential`` passes the registry name and parameters of
        its activations); the table is then kept in :func:`table_cache_folder` and read back by later
        processes. ``None`` (any other function) builds it in every process.

    Returns:
      A :class:`FastTable`.

    >>> import jax.numpy as jnp
    >>> table = build_table(jnp.tanh, odd=True)
    >>> table.terms, table.degrees.size, table.radius, table.table_error < 1e-13
    (399, 200, 5.0, True)
    """
    if not (isinstance(tol, float) and 0 < tol < 1):
        raise ValueError(f"fast potential: tol must be a float in (0, 1), got tol={tol!r}")
    if not (radius is None or isinstance(radius, (int, float)) and 0 < radius <= 10):
        raise ValueError(f"fast potential: radius must be in (0, 10], got radius={radius!r}")
    if terms is not None and not (isinstance(terms, int) and 1 <= terms < _MAX_TERMS):
        raise ValueError(f"fast potential: terms must be an integer in [1, {_MAX_TERMS - 1}], got {terms!r}")
    radius = None if radius is None else float(radius)
    path, ident = _cache_file(cache_key, fn, odd=odd, tol=tol, terms=terms, radius=radius, order=order)
    table = _load_table(path, ident) if path is not None else None
    if table is None:
        if radius is not None:
            table = _build_table(fn, odd=odd, tol=tol, terms=terms, radius=radius, order=order)
        else:
            for r in _DEFAULT_RADII:
                try:
                    table = _build_table(fn, odd=odd, tol=tol, terms=terms, radius=r, order=order)
                    break
                except _TableErrorTooLarge:
                    if r == _DEFAULT_RADII[-1]:
                        raise
        if path is not None:
            _save_table(path, ident, table)
    return table


class _TableErrorTooLarge(ValueError):
    """The interpolation error of a table leaves less than half its ``tol`` at this radius."""


def _panel_nodes(width):
    """The interpolation nodes of every panel of ``[0, width]``, ``(P * Q,)``."""
    h = width / _PANELS
    return (np.arange(_PANELS)[:, None] * h + 0.5 * h * (_cheb_points(_DEGREE + 1)[None, :] + 1.0)).ravel()


def _interpolate(values, width, check_x, check_values):
    """Per-panel Chebyshev coefficients of ``values`` (``(P * Q, K)`` at :func:`_panel_nodes`), ``(P, Q, K)``,
    and their largest error against ``check_values`` at ``check_x``."""
    q = _DEGREE + 1
    # Chebyshev interpolation at the first-kind points of each panel (a discrete cosine transform)
    cheb = np.einsum("qm,pmk->pqk", np.linalg.inv(_cheb_values(_cheb_points(q), q)), values.reshape(_PANELS, q, -1))
    idx, t = _panel_of(check_x, width)
    approx = np.einsum("rq,rqk->rk", _cheb_values(t, q), cheb[idx])
    return cheb, float(np.abs(approx - check_values).max())


def _build_table(fn, *, odd, tol, terms, radius, order) -> FastTable:
    terms = _MAX_TERMS - 1 if terms is None else terms
    nodes = _panel_nodes(radius)
    n_nodes = nodes.size
    grid = np.linspace(0.0, radius, _TAIL_GRID)
    hc = _hermite.hermite_coefficients(fn, np.concatenate([nodes, grid]), terms)
    degrees = _kept_degrees(terms, odd)
    check_r = np.linspace(0.0, radius, 4 * n_nodes + 1)
    check = _hermite.hermite_coefficients(fn, check_r, terms)
    cheb, error = _interpolate(hc.c[:n_nodes][:, degrees], radius, check_r, check.c[:, degrees])
    # Phi(u, u) = E[s(|u| Z)^2] as a function of |u|^2 (no square root to differentiate), on the squares of the
    # panels in |u|: the first is [0, h^2], where the function is smooth but not analytic (its Taylor series at 0
    # diverges), and 64 equal panels of [0, radius^2] would leave 1e-9 there
    lo, hi = _square_panels(radius)
    x = 0.5 * (_cheb_points(_DEGREE + 1) + 1.0)
    nu_nodes = (lo[:, None] + (hi - lo)[:, None] * x[None, :]).ravel()
    own = _hermite.hermite_coefficients(fn, np.sqrt(nu_nodes), 0)
    q = _DEGREE + 1
    self_cheb = np.einsum("qm,pm->pq", np.linalg.inv(_cheb_values(_cheb_points(q), q)),
                          own.second_moment.reshape(_PANELS, q))
    # checked where the coefficients are: check.second_moment is E[s(rZ)^2] at |u|^2 = check_r^2
    idx, t = _self_panel_of(check_r**2, radius, np)
    self_error = float(np.abs(np.einsum("rq,rq->r", _cheb_values(t, q), self_cheb[idx]) - check.second_moment).max())
    table_error = max(error + check.eps, self_error + own.eps)
    tail_hc = _slice(hc, slice(n_nodes, n_nodes + _TAIL_GRID))
    blocks = -(-degrees.size // _BLOCK)
    ends = [int(degrees[min((b + 1) * _BLOCK, degrees.size) - 1]) for b in range(blocks)]
    unit = _hermite.tail_bound(_slice(hc, n_nodes + int(np.searchsorted(grid, 1.0))), terms, weighted=True)[0]
    if unit > 0.5 * tol:
        raise ValueError(f"fast potential: {terms} terms leave {unit:.1e} > tol/2 on parallel units of norm 1; "
                         "raise terms or tol, or use method='quadrature'")
    tails = np.stack([np.maximum.accumulate(_hermite.tail_bound(tail_hc, n, weighted=True)) for n in ends])
    # the interpolation error adds at most table_error * sum_n (|c_n(a)| + |c_n(b)| + table_error) to the sum
    extra = 2.0 * table_error * (np.abs(hc.c[n_nodes:][:, degrees]).sum(1).max() + 1.0)
    if extra > 0.5 * tol:
        raise _TableErrorTooLarge(f"fast potential: the table's own error ({extra:.1e}) exceeds tol/2 at "
                                  f"radius={radius}; lower radius or raise tol")
    return FastTable(degrees=degrees, cheb=cheb, radius=radius, log_tail=np.log(tails + 1e-300), terms=terms,
                     tol=float(tol) - extra, table_error=table_error, order=int(order), self_cheb=self_cheb)


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


_ARRAYS = ("degrees", "cheb", "log_tail", "self_cheb")
_SCALARS = ("radius", "terms", "tol", "table_error", "order")


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
                            block=_BLOCK, **args), sort_keys=True)
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
        q = _DEGREE + 1
        if (set(scalars) != set(_SCALARS) or table.cheb.shape != (_PANELS, q, table.degrees.size)
                or table.log_tail.shape != (table.blocks, _TAIL_GRID) or table.self_cheb.shape != (_PANELS, q)):
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
    idx = idx if isinstance(idx, slice) else slice(idx, idx + 1)
    return _hermite.HermiteCoefficients(r=hc.r[idx], c=hc.c[idx], second_moment=hc.second_moment[idx],
                                        slope_moment=hc.slope_moment[idx], eps=hc.eps)


@dataclasses.dataclass(frozen=True)
class _Pairs:
    """Which pairs of two sets of units a group holds: every ``(i, j)`` of ``sets[a].reshape(a_shape)`` against
    ``sets[b].reshape(b_shape)`` broadcast. With ``own`` (a set against itself, ``(n, 1)`` by ``(1, n)``) the
    diagonal ``Phi(u, u)`` comes from the table of its own and takes no part in choosing the truncation. With
    ``a_take`` the ``a`` side is the first ``a_take`` units of its set only: an own group's pairs are then those
    units against the whole set (``(n, 1)`` by ``(1, N)``), its diagonal the first ``n`` of ``(i, i)``."""

    a: int
    b: int
    a_shape: tuple = ()
    b_shape: tuple = ()
    own: bool = False
    a_take: int | None = None

    def side(self, values, which, lead=0):
        """``values`` of set ``a`` (``which = 0``) or ``b`` (``1``) at this group's pairs: ``(*L, n, *B)`` with
        ``lead = len(L)`` leading axes (a degree, a truncation) and trailing batch axes ``B`` (the series' batch,
        laid out minor-most), to ``(*L, *pair_shape, *B)``."""
        shape = self.a_shape if which == 0 else self.b_shape
        if which == 0 and self.a_take is not None:
            values = values[(slice(None),) * lead + (slice(0, self.a_take),)]
        return values.reshape(values.shape[:lead] + shape + values.shape[lead + 1:])

    def diagonal(self):
        """``(n, N)`` boolean identity (ones at ``(i, i)``) of an ``own`` group."""
        return np.eye(self.a_shape[0], self.b_shape[-1], dtype=bool)


@dataclasses.dataclass(frozen=True)
class _Circulant:
    """The distinct pairs of an ``own`` group of ``n`` units, laid out as ``(i, (i + s) mod n)`` for the shifts
    ``s = 1..n//2``: ``(n//2, n)`` pairs, each unordered pair once (twice for the last shift of an even ``n``),
    where the square layout runs every pair twice and the diagonal. Indexing the units this way is a gather with
    constant indices (a kernel per block and side, shared by the group's chains); :meth:`expand` puts the results
    back on ``(n, n)``."""

    a: int
    b: int
    n: int
    own = False
    a_take = None

    def index(self, which):
        """The ``(S, n)`` unit indices of side ``which`` (0: ``i``, 1: ``(i + s) mod n``)."""
        i = np.arange(self.n)[None, :]
        shift = np.arange(1, self.n // 2 + 1)[:, None]
        return np.broadcast_to(i, shift.shape[:1] + (self.n,)) if which == 0 else (i + shift) % self.n

    def side(self, values, which, lead=0):
        """``values`` ``(*L, n, *B)`` at side ``which`` of the pairs: ``(*L, S, n, *B)``."""
        return jnp.take(values, self.index(which), axis=lead, mode="clip")

    def pairs(self, c):
        """The Gram matrix's ``(n, n, *B)`` entries at the pairs, ``(S, n, *B)``."""
        flat = c.reshape((self.n * self.n,) + c.shape[2:])
        return jnp.take(flat, self.index(0) * self.n + self.index(1), axis=0, mode="clip")

    def expand(self, parts):
        """``(Phi, d/d|u|^2, d/du.v, d/d|v|^2)`` on the pairs, ``(S, n, *B)`` each (or ``None``), on the square
        ``(n, n, *B)``: entry ``(i, j)`` is pair ``(i, j)``'s, or pair ``(j, i)``'s with the two norm derivatives
        exchanged; the diagonal is left to the caller."""
        n = self.n
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        shift = (j - i) % n
        flip = shift > n // 2
        src = np.maximum(np.where(flip, n - shift, shift) - 1, 0) * n + np.where(flip, j, i)
        count = (n // 2) * n

        def take(x, idx):
            return jnp.take(x.reshape((count * (x.shape[0] // (n // 2)),) + x.shape[2:]), idx, axis=0, mode="clip")
        phi, d_u, d_c, d_v = parts
        out = [take(phi, src), None, None if d_c is None else take(d_c, src), None]
        if d_u is not None:
            swapped = src + flip * count
            out[1] = take(jnp.concatenate([d_u, d_v]), swapped)
            out[3] = take(jnp.concatenate([d_v, d_u]), swapped)
        return out


@jax.custom_batching.custom_vmap
def _max(x):
    return jnp.max(x)


@_max.def_vmap
def _max_batched(axis_size, in_batched, x):
    # over the batch too: the loop's length and lax.cond's predicate stay one number under vmap, so one branch
    # runs, once
    return jnp.max(x), False


def _ladder(table):
    """The block counts a call may stop at, ending at the whole table."""
    return tuple(sorted({b for b in _LADDER if b < table.blocks} | {table.blocks}))


def _reach(table, n, blocks):
    """``s(r) = r (tol / T'_N(r))^(1 / 2N)`` at ``r = sqrt(n)`` for the truncation ``N`` after each of ``blocks``,
    ``n.shape + (len(blocks),)``: a pair is certified there iff ``|u.v| <= s(|u|) s(|v|)``."""
    r = jnp.sqrt(jnp.maximum(n, 0.0))
    return r[..., None] * _unit_factors(table, r, blocks)


def _unit_factors(table, r, blocks):
    """:func:`_reach_factors` at norms ``r``, ``r.shape + (len(blocks),)``: a row of the table per unit (a gather of
    whole rows; a column per truncation cost a strided gather and a transpose)."""
    g = table.log_tail.shape[-1] - 1
    idx = jnp.clip(jnp.ceil(r * (g / table.radius)).astype(jnp.int32), 0, g)
    return jnp.asarray(_reach_factors(table, blocks), r.dtype)[idx]


@functools.lru_cache(maxsize=None)
def _reach_factors(table, blocks):
    """``(tol / T'_N)^(1 / 2N)`` on the tail grid for each truncation after ``blocks``, ``(G, len(blocks))``: built
    once per table (an exponential per unit and truncation cost a batch of 64 some 40 us a call), capped at
    ``1e30`` (a reach that passes any pair) so that float32 neither overflows nor makes ``0 * inf``."""
    rows = np.array([b - 1 for b in blocks])
    ends = np.array([table.truncation(b) for b in blocks], np.float64)[:, None]
    return np.minimum(np.exp((math.log(table.tol) - table.log_tail[rows]) / (2.0 * ends)), 1e30).T.copy()


def _within(table, norms, reduce=_max):
    """Whether every norm of the call is at most the table's radius (``reduce``: :func:`_max`, over a whole batch
    under ``vmap``; ``jnp.max``, per instance)."""
    return ~reduce(jnp.stack([jnp.any(n > table.radius**2) for n in norms]))


def _plan(table, groups, norms, cs, whole_batch=True):
    """``(within, blocks, certified)``: whether every norm is within the table's radius, how many blocks the call
    runs (the fewest on the ladder that certify every pair, else all), and whether some truncation certified
    them; one set of numbers for a whole batch (``whole_batch=False``: per instance under ``vmap``). A unit's
    pair with itself in an ``own`` group is left out."""
    _max_ = _max if whole_batch else jnp.max
    within = _within(table, norms, _max_)
    ladder = _ladder(table)
    reach = [_reach(table, n, ladder) for n in norms]
    failing = []
    for group, c in zip(groups, cs):
        # |u.v| <= s(|u|) s(|v|): a product per pair and candidate, no logarithm
        ok = jnp.abs(c)[..., None] <= group.side(reach[group.a], 0) * group.side(reach[group.b], 1)
        if group.own:
            ok = ok | group.diagonal()[..., None]
        # a truncation that certifies a pair certifies it at every longer one (the reach grows with N where it
        # is below 1), so the blocks to run are the number of truncations some pair fails
        failing.append(jnp.any(~ok, axis=tuple(range(ok.ndim - 1))))
    step = _max_(functools.reduce(jnp.logical_or, failing).astype(jnp.int32).sum()) if failing else jnp.asarray(0)
    blocks = jnp.asarray(ladder + (table.blocks,), jnp.int32)[step]
    return within, blocks, step < len(ladder)


def _top(x):
    """The largest of an array of non-negative floats, as integers: their bits order as they do (a float maximum
    here goes to a library call costing more than the arithmetic around it)."""
    if x.dtype != jnp.float64:
        return jnp.max(x)
    return jax.lax.bitcast_convert_type(jnp.max(jax.lax.bitcast_convert_type(x, jnp.int64)), x.dtype)


def _instance_blocks(table, groups, norms, cs):
    """The blocks one instance of a batch needs, bounded as :func:`_plan`'s without checking its pairs one by
    one: a pair is certified at a truncation iff ``|rho| <= f(|u|) f(|v|)`` with ``f`` the reach factor of
    :func:`_reach`, which falls with the norm, so each group's largest ``|rho|`` against ``f`` at the largest norm
    on each side certifies every pair of the group. Never shorter than :func:`_plan`'s answer, and the same
    where a group's norms are equal (a unit's own pair left out); a few reductions per instance where checking
    every pair at a few truncations cost a batch of 64 more than its whole series of one block."""
    ladder = _ladder(table)
    roots = [jnp.sqrt(jnp.maximum(n, 0.0)) for n in norms]
    least = [_unit_factors(table, _top(r), ladder) for r in roots]  # (L,): f at each set's largest norm
    inverse = [jnp.where(r > 0, 1.0 / jnp.where(r > 0, r, 1.0), 0.0) for r in roots]
    fail = []
    for group, c in zip(groups, cs):
        rho = jnp.abs(c) * group.side(inverse[group.a], 0) * group.side(inverse[group.b], 1)
        if group.own:
            rho = jnp.where(group.diagonal(), 0.0, rho)
        fail.append(_top(rho) > least[group.a] * least[group.b])
    # a truncation that certifies a group certifies it at every longer one (see _plan)
    step = functools.reduce(jnp.logical_or, fail).astype(jnp.int32).sum()
    return jnp.asarray(ladder + (table.blocks,), jnp.int32)[step]


def _parity(table):
    """``(n_0, s)``: the table's first kept degree and the step between kept degrees (2 with a parity)."""
    deg = table.degrees
    return int(deg[0]), (int(deg[1] - deg[0]) if deg.size > 1 else 1)


@functools.lru_cache(maxsize=None)
def _block_major(table):
    """The table's coefficients block-major, so that a loop iteration slices one block, ``(blocks, P, Q, 8)``, and
    the degree of each, ``(blocks, 8)``, for the rho-derivative's sum ``S(x) = sum_j n_j A_j x^j`` (NumPy, built
    once per table)."""
    k = table.degrees.size
    padded = np.zeros(table.cheb.shape[:2] + (table.blocks * _BLOCK,))
    padded[..., :k] = table.cheb
    padded_deg = np.zeros(table.blocks * _BLOCK)
    padded_deg[:k] = table.degrees
    return (np.moveaxis(padded.reshape(padded.shape[:2] + (table.blocks, _BLOCK)), 2, 0).copy(),
            padded_deg.reshape(table.blocks, _BLOCK))


def _unit_basis(table, n, derivative):
    """Panel index and Chebyshev values (and derivative values in ``r``) of norms ``sqrt(n)``, ``n`` ``(N,)``."""
    r = jnp.sqrt(jnp.maximum(n, 0.0))
    idx, t = _panel_of(r, table.radius, jnp)
    q = _DEGREE + 1
    dbasis = (2.0 * _PANELS / table.radius) * _cheb_derivatives(t, q, jnp) if derivative else None
    return idx, _cheb_values(t, q, jnp), dbasis


def _own(table, n, derivative):
    """``Phi(u, u)`` and its derivative in ``|u|^2 = n`` from ``self_cheb``."""
    idx, t = _self_panel_of(n, table.radius, jnp)
    q = _DEGREE + 1
    block = jnp.asarray(table.self_cheb, n.dtype)[idx]
    value = jnp.sum(_cheb_values(t, q, jnp) * block, -1)
    if not derivative:
        return value, None
    h = table.radius / _PANELS
    dt = 2.0 / ((2 * idx + 1) * h * h)
    return value, dt * jnp.sum(_cheb_derivatives(t, q, jnp) * block, -1)


def _series(table, groups, norms, cs, need, blocks):
    """Every group's ``Phi`` and partials ``(d/d|u|^2, d/du.v, d/d|v|^2)`` (``None`` where not needed) from the
    first ``blocks`` blocks of the table; an ``own`` group's diagonal, ``Phi(u, u)`` and its derivative in
    ``|u|^2``, from the table of its own.

    With ``a = |u|``, ``b = |v|``, ``rho = c / (a b)`` and kept degrees ``n_j = n_0 + s j``:
    ``Phi = rho^n_0 P(x)``, ``P(x) = sum_j c_j(a) c_j(b) x^j``, ``x = rho^s``, by Horner's rule from the highest
    block down, ``S(x) = sum_j n_j A_j x^j`` alongside for the ``rho``-derivative (``P'`` without a parity), and
    the sums of ``c_j'(a) c_j(b) x^j`` and ``c_j(a) c_j'(b) x^j`` for the norm derivatives; the chain rule maps
    them to the Gram triple. The coefficients of a block are computed per unit inside the loop, so a call
    touches only the degrees it uses.

    Shapes: ``norms[s]`` ``(n_s, *B)``, ``cs[i]`` the group's pair shape followed by ``*B``: the unit axes
    first and any batch axes ``B`` last (the batched segments of :func:`_split_series` put the batch there,
    where the Horner steps vectorise along it); the results have the pair shape followed by ``*B``.

    In three steps, so that a batch's segments run only the loop (:func:`_split_series`): :func:`_series_setup`
    (each pair's geometry and each unit's Chebyshev basis), :func:`_series_sums` (the loop over the blocks) and
    :func:`_series_results` (the chain rule, the diagonal).
    """
    setup = _series_setup(table, groups, norms, cs, need)
    sums = _series_sums(table, setup, blocks)
    return _series_results(table, setup, sums, norms, need)


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What :func:`_series_sums` and :func:`_series_results` share: the groups as the loop runs them (a batch's
    sets against themselves as :class:`_Circulant`), the groups as called (``square``), each group's geometry
    ``(a, b, ab, pos, rho, x)``, each set's ``(panel, basis, dbasis)``, the partials each group wants and
    whether its b-side sum runs."""

    groups: tuple
    square: tuple
    geometry: list
    units: list
    wants: list
    runs_b: list
    batched: bool


def _series_setup(table, groups, norms, cs, need):
    """The :class:`_Setup` of a :func:`_series` call."""
    need_norm, need_c = need
    # a batch (trailing axes) runs a set against itself on its distinct pairs only (arithmetic-bound there;
    # for one instance the gathers would cost more kernels than the pairs they save)
    batched = norms[0].ndim > 1
    square = groups
    if batched:
        groups = tuple(_Circulant(g.a, g.b, g.a_shape[0]) if g.own and g.a_take is None and g.a_shape[0] > 2
                       else g for g in groups)
        cs = tuple(g.pairs(c) if isinstance(g, _Circulant) else c for g, c in zip(groups, cs))
    _, step = _parity(table)
    per_set = [any((g.a == s and need_norm[g.a]) or (g.b == s and need_norm[g.b]) for g in groups)
               for s in range(len(norms))]
    units = [_unit_basis(table, n, d) for n, d in zip(norms, per_set)]
    geometry = []
    for g, c in zip(groups, cs):
        a, b = (jnp.sqrt(jnp.maximum(g.side(norms[s], w), 0.0)) for s, w in ((g.a, 0), (g.b, 1)))
        ab = a * b
        pos = ab > 0
        rho = c / jnp.where(pos, ab, 1.0)
        geometry.append((a, b, ab, pos, rho, rho * rho if step == 2 else rho))
    # a group of part of a set against the set gives no b-side norm derivative (fast_gram_partials needs none)
    wants = [(need_norm[g.a], need_c[i], need_norm[g.b] and g.a_take is None) for i, g in enumerate(groups)]
    # a set against itself: the b-side sum at (i, j) is the a-side sum at (j, i) (x is symmetric), so it is
    # not run
    runs_b = [wv and not g.own for g, (_, _, wv) in zip(groups, wants)]
    return _Setup(groups, square, geometry, units, wants, runs_b, batched)


def _series_sums(table, setup, blocks, only=None):
    """The loop of :func:`_series`: each group's sums ``(P, S or P', sum c_j' c_j x^j, sum c_j c_j' x^j)`` (``None``
    where not wanted) over the first ``blocks`` blocks; ``only``, the indices of the groups to run (all by
    default; the others get ``None``)."""
    only = range(len(setup.groups)) if only is None else only
    groups = [setup.groups[i] for i in only]
    xs = [setup.geometry[i][-1] for i in only]
    wants = [setup.wants[i] for i in only]
    runs_b = [setup.runs_b[i] for i in only]
    used = {s for g in groups for s in (g.a, g.b)}
    dtype = xs[0].dtype
    _, step = _parity(table)
    cheb, weights = (jnp.asarray(t, dtype) for t in _block_major(table))
    batched = setup.batched
    # one instance: the degrees last, as the dot leaves them (degree-major cost a transpose kernel per block, a
    # tenth of a GD step); a batch (trailing axes): degree-major, so that each degree's slice is contiguous along
    # the batch, the axis its Horner steps vectorise along
    spec = "n...q,n...qk->kn..." if batched else "n...q,n...qk->n...k"

    def body(i, acc):
        block = cheb[blocks - 1 - i]
        n_j = weights[blocks - 1 - i]
        coeffs = {}
        for s in used:
            idx, basis, dbasis = setup.units[s]
            gathered = block[idx]  # (N, *batch, Q, 8)
            # a batched dot, not multiplies and a sum: XLA's CPU backend hands such a sum to a library call that
            # costs several times its arithmetic (44 against 10 us a block for 640 units), and written out as
            # multiply-adds the sum is fused into, and recomputed by, every pair's Horner step
            coeffs[s] = (jnp.einsum(spec, basis, gathered),
                         None if dbasis is None else jnp.einsum(spec, dbasis, gathered))
        out = []
        for g, x, sums in zip(groups, xs, acc):
            p, dp, pa, pb = sums
            (ca, dca), (cb, dcb) = coeffs[g.a], coeffs[g.b]
            # the block's 8 degrees at once, (8,) + pairs: the products fuse, where a slice per degree was a
            # kernel each
            def at_pairs(c, which):
                return g.side(c, which, 1) if batched else jnp.moveaxis(g.side(c, which), -1, 0)
            cu, cv = at_pairs(ca, 0), at_pairs(cb, 1)
            prod = cu * cv
            du = at_pairs(dca, 0) * cv if pa is not None else None
            dv = cu * at_pairs(dcb, 1) if pb is not None else None
            # with a parity, S's chain reads only the products (not P's partial sums), so XLA can evaluate each
            # chain in a kernel of its own without recomputing another; without, P' (P' <- P' x + P before
            # P <- P x + A_j), whose value at x = 0 is A_1 where S / rho has no value
            for j in range(_BLOCK - 1, -1, -1):
                if dp is not None:
                    dp = dp * x + (n_j[j] * prod[j] if step == 2 else p)
                p = p * x + prod[j]
                if pa is not None:
                    pa = pa * x + du[j]
                if pb is not None:
                    pb = pb * x + dv[j]
            out.append((p, dp, pa, pb))
        return out

    init = []
    for i, (wu, wc, wv), rb in zip(only, wants, runs_b):
        a, b, *_, x = setup.geometry[i]
        zero = jnp.zeros(jnp.broadcast_shapes(a.shape, b.shape, x.shape), dtype)
        init.append((zero, zero if (wu or wc or wv) else None, zero if wu else None, zero if rb else None))
    sums = jax.lax.fori_loop(0, blocks, body, init)
    out = [None] * len(setup.groups)
    for i, s in zip(only, sums):
        out[i] = s
    return out


def _series_results(table, setup, sums, norms, need):
    """:func:`_series`' results from its loop's ``sums`` (one per group of ``setup``)."""
    need_norm, _ = need
    n0, step = _parity(table)
    results = []
    for g, (a, b, ab, pos, rho, x), (wu, wc, wv), (p, dp, pa, pb) in zip(setup.groups, setup.geometry,
                                                                          setup.wants, sums):
        if g.own and wv:
            pb = jnp.swapaxes(pa, 0, 1)
        lead = rho if n0 == 1 else 1.0
        phi = lead * p
        if not (wu or wc or wv):
            results.append([phi, None, None, None])
            continue
        # d Phi / d rho = sum_j n_j A_j rho^(n_j - 1): S(x) for odd degrees, S(x) / rho for even ones (its limit
        # at rho = 0 is 0), P'(x) for all degrees
        if step == 1 or n0 == 1:
            d_rho = dp
        else:
            small = rho == 0
            d_rho = jnp.where(small, 0.0, dp / jnp.where(small, 1.0, rho))
        inv_ab = jnp.where(pos, 1.0 / jnp.where(pos, ab, 1.0), 0.0)
        parts = [phi, None, d_rho * inv_ab if wc else None, None]
        for slot, wanted, r, d_r in ((1, wu, a, pa), (3, wv, b, pb)):
            if wanted:
                safe = jnp.where(r > 0, r, 1.0)
                parts[slot] = jnp.where(r > 0, (lead * d_r - d_rho * rho / safe) / (2.0 * safe), 0.0)
        results.append(parts)
    results = [g.expand(parts) if isinstance(g, _Circulant) else parts for g, parts in zip(setup.groups, results)]
    for g, parts in zip(setup.square, results):
        if g.own:  # Phi(u, u) and d/d|u|^2 (its tangent is dS t_nu; c's tangent there is t_nu too, so d_c = 0)
            eye = g.diagonal()
            eye = eye.reshape(eye.shape + (1,) * (parts[0].ndim - 2))
            value, slope = _own(table, norms[g.a] if g.a_take is None else norms[g.a][:g.a_take], need_norm[g.a])
            parts[0] = jnp.where(eye, value[:, None], parts[0])
            for slot, fill in ((1, None if slope is None else slope[:, None]), (2, 0.0), (3, 0.0)):
                if parts[slot] is not None:
                    parts[slot] = jnp.where(eye, fill, parts[slot])
    return results


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _chunked_quadrature(f, g, order, nu, c, nv):
    """:func:`~earnshaw.potentials.inner.gauss_hermite_rows` on flat ``(n,)`` triples, ``_FALLBACK_CHUNK`` pairs at
    a time (padded with the harmless triple ``(1, 0, 1)``): XLA sizes one temporary arena for a whole program, the
    branch of a ``lax.cond`` not taken included, and a batch's ``pairs x order`` temporaries made every call of
    the series branch pay for allocating tens of megabytes.

    Its own derivative rule (Price's theorem, as the quadrature's): JAX's reverse mode inlines the functions
    inside a loop, custom rules and all, so second derivatives through the loop would be those of the quadrature
    rule (off by its error, 1e-5 for tanh at norm 3.3, and not symmetric), not the theorem's.
    """
    total = nu.size
    chunks = -(-total // _FALLBACK_CHUNK)
    pad = chunks * _FALLBACK_CHUNK - total
    trip = [jnp.pad(t, (0, pad), constant_values=v).reshape(chunks, _FALLBACK_CHUNK)
            for t, v in ((nu, 1.0), (c, 0.0), (nv, 1.0))]
    return jax.lax.map(lambda x: inner.gauss_hermite_rows(f, g, order, *x), trip).reshape(-1)[:total]


_chunked_quadrature.defjvp(functools.partial(inner._price_jvp, _chunked_quadrature))


def _quadrature(fn, order, nu, c, nv, need):
    """``Phi`` and its partials (``None`` where not ``need``) on flat triples by Gauss-Hermite quadrature, the
    partials by Price's theorem (``dPhi/dc = E[s'(U) s'(V)]``, ``dPhi/d|u|^2 = E[s''(U) s(V)] / 2``), each a
    :func:`_chunked_quadrature`, so higher derivatives follow the same theorem."""
    df = inner._derivative(fn)
    ddf = inner._derivative(df)
    terms = ((fn, fn, 1.0), (ddf, fn, 0.5), (df, df, 1.0), (fn, ddf, 0.5))
    return [scale * _chunked_quadrature(f, g, order, nu, c, nv) if wanted else None
            for (f, g, scale), wanted in zip(terms, (True, *need))]


def _fallback(fn, table, groups, norms, cs, need):
    """:func:`_series`'s results by quadrature of ``table.order``, every group's pairs in one call."""
    need_norm, need_c = need
    flat, sizes, shapes = [[], [], []], [], []
    for g, c in zip(groups, cs):
        trip = [g.side(norms[g.a], 0), c, g.side(norms[g.b], 1)]
        shape = jnp.broadcast_shapes(*(t.shape for t in trip))
        for acc, t in zip(flat, trip):
            acc.append(jnp.broadcast_to(t, shape).reshape(-1))
        sizes.append(math.prod(shape))
        shapes.append(shape)
    nu, c, nv = (jnp.concatenate(acc) for acc in flat)
    wanted = (any(need_norm), any(need_c), any(need_norm))
    parts = _quadrature(fn, table.order, nu, c, nv, wanted)
    cuts = np.cumsum(sizes)[:-1]
    pieces = [[None if p is None else q for q in jnp.split(p, cuts)] if p is not None else [None] * len(sizes)
              for p in parts]
    results = []
    for i, (g, shape) in enumerate(zip(groups, shapes)):
        wants = (True, need_norm[g.a], need_c[i], need_norm[g.b])
        results.append([pieces[m][i].reshape(shape) if w else None for m, w in enumerate(wants)])
    return results


def _segments(axis_size):
    """How many runs of the series a batch of ``axis_size`` instances is split into (see :func:`_split_series`)."""
    return max(1, min(_SEGMENTS, axis_size // _SEGMENT_MIN))


def _split_series(table, groups, need, norms, cs):
    """:func:`_series` with the truncation of its own call; under ``vmap``, the batch sorted by the blocks each
    instance needs and run in a few equal segments, each at its own most demanding instance's truncation.

    A batch's loop otherwise runs its most demanding pair's truncation for every instance: of 64 random
    students at ``k = d = 10`` (tanh), 45 need 3 blocks and 2 need 6, so one loop of 6 blocks did twice the
    arithmetic. The results are the same as the instances' own calls (each truncation is certified, and a
    longer one than an instance needs changes it within ``tol``)."""

    def plain(norms, cs):
        return _series(table, groups, norms, cs, need, _plan(table, groups, norms, cs)[1])

    run = jax.custom_batching.custom_vmap(plain)

    @run.def_vmap
    def _run_batched(axis_size, in_batched, norms, cs):
        if not any(jax.tree.leaves(in_batched)):  # under a forward derivative, batched tangents only
            out = plain(norms, cs)  # not run: under the derivative that would call this rule again
            return out, jax.tree.map(lambda _: False, out)
        axes = jax.tree.map(lambda b: 0 if b else None, in_batched)
        batched = [in_batched[0][g.a] or in_batched[0][g.b] or in_batched[1][i] for i, g in enumerate(groups)]
        # the blocks each instance needs for its own pairs; the pairs of unbatched sets (the teacher's own) once
        mine = [i for i, b in enumerate(batched) if b]
        blocks = jax.vmap(lambda n, c: _instance_blocks(table, [groups[i] for i in mine], n, [c[i] for i in mine]),
                          in_axes=axes)(norms, cs)
        if len(mine) < len(groups):
            rest = [i for i, b in enumerate(batched) if not b]
            blocks = jnp.maximum(blocks, _plan(table, [groups[i] for i in rest], norms, [cs[i] for i in rest],
                                               whole_batch=False)[1])
        segments = _segments(axis_size)
        size = -(-axis_size // segments)
        # each instance's rank by (blocks, index): sorted without a sort (64 x 64 comparisons cost less than the
        # two sorts of 64 keys they replace), and its inverse by a scatter
        key = blocks * axis_size + jnp.arange(axis_size, dtype=blocks.dtype)
        where = jnp.sum(key[None, :] < key[:, None], axis=1, dtype=jnp.int32)  # each instance's place
        order = jnp.zeros(segments * size, jnp.int32).at[where].set(jnp.arange(axis_size, dtype=jnp.int32))
        # padded with the most demanding instance, which is in the last segment anyway
        order = jnp.where(jnp.arange(segments * size) < axis_size, order, order[axis_size - 1])
        # the batch as the last (minor-most) axis of every array, of length 1 where unbatched: the Horner steps
        # then run along it, twice as fast as along a minor axis of one instance's 10 units
        flags = [list(in_batched[0]), list(in_batched[1])]
        minor = [[jnp.moveaxis(x, 0, -1) if b else x[..., None] for x, b in zip(xs, bs)]
                 for xs, bs in zip((norms, cs), flags)]
        # each pair's geometry, each unit's basis and, after the segments, the chain rule once for the whole
        # batch: only the loop runs per segment (the rest per segment cost some 40 kernels each)
        setup = _series_setup(table, groups, *minor, need)
        set_batched = flags[0]
        # a group of unbatched sets (the teacher with itself) runs once, in the last segment, the longest (every
        # instance's blocks are at least its own)
        sums = []
        for k in range(segments):
            idx = order[k * size:(k + 1) * size]
            only = [i for i, b in enumerate(batched) if b or k == segments - 1]
            def pick(t):  # the segment's instances of an array with the batch last (length 1 where unbatched)
                return t if t.shape[-1] == 1 else t[..., idx]
            part = dataclasses.replace(
                setup,
                geometry=[tuple(pick(t) for t in geo) if b else geo for geo, b in zip(setup.geometry, batched)],
                units=[(u[0][..., idx], u[1][..., idx, :], None if u[2] is None else u[2][..., idx, :]) if b else u
                       for u, b in zip(setup.units, set_batched)])
            sums.append(_series_sums(table, part, blocks[idx[-1]], only))
        joined = [tuple(None if segs[0] is None else jnp.concatenate(segs, -1)[..., where]
                        for segs in zip(*(piece[i] for piece in sums))) if b else sums[-1][i]
                  for i, b in enumerate(batched)]
        results = _series_results(table, setup, joined, minor[0], need)
        out = [[None if r is None else jnp.moveaxis(r, -1, 0) if b else r[..., 0] for r in parts]
               for parts, b in zip(results, batched)]
        return out, [jax.tree.map(lambda _: b, parts) for parts, b in zip(out, batched)]

    return run(norms, cs)


# compiled as one program even when called eagerly (tests, notebooks): op by op, the Horner chains alone would
# dispatch hundreds of small computations
@functools.partial(jax.jit, static_argnums=(0, 1, 2, 5))
def _evaluate(fn, table, groups, norms, cs, need):
    within = _within(table, norms)

    def fill(results):
        zero = [jnp.zeros(jnp.broadcast_shapes(g.side(norms[g.a], 0).shape, c.shape, g.side(norms[g.b], 1).shape),
                          norms[0].dtype) for g, c in zip(groups, cs)]
        return [[p if p is not None else z for p in parts] for parts, z in zip(results, zero)]
    series = fill(_split_series(table, groups, need, norms, cs))
    # quadrature runs only when some unit of the call (of the whole batch, under vmap) is past the radius, and
    # only those units' pairs take its values: every other pair keeps the series, so a pair's value does not
    # depend on what else is in the call (to the series' tol), nor a seed's on the other seeds of a batch
    quad = jax.lax.cond(within, lambda: [[jnp.zeros_like(p) for p in parts] for parts in series],
                        lambda: fill(_fallback(fn, table, groups, norms, cs, need)))
    r2 = table.radius**2
    out = []
    for g, s_parts, q_parts in zip(groups, series, quad):
        inside = (g.side(norms[g.a], 0) <= r2) & (g.side(norms[g.b], 1) <= r2)
        out.append([jnp.where(inside, a, b) for a, b in zip(s_parts, q_parts)])
    return out


# The partials are computed inside the branch that runs and applied outside it, so reverse mode never
# differentiates the lax.cond: JAX would keep residuals for both branches, the quadrature's zero-filled ones
# included.
@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _potentials(fn, table, groups, norms, cs):
    none = (tuple(False for _ in norms), tuple(False for _ in cs))
    return tuple(parts[0] for parts in _evaluate(fn, table, groups, norms, cs, none))


def _potentials_jvp(fn, table, groups, primals, tangents):
    norms, cs = primals
    t_norms, t_cs = tangents
    need = (tuple(not isinstance(t, SymbolicZero) for t in t_norms),
            tuple(not isinstance(t, SymbolicZero) for t in t_cs))
    results = _evaluate(fn, table, groups, norms, cs, need)
    out, tangent = [], []
    for i, (g, parts) in enumerate(zip(groups, results)):
        phi, d_u, d_c, d_v = parts
        t = jnp.zeros_like(phi)
        if need[0][g.a]:
            t = t + d_u * g.side(t_norms[g.a], 0)
        if need[1][i]:
            t = t + d_c * t_cs[i]
        if need[0][g.b]:
            t = t + d_v * g.side(t_norms[g.b], 1)
        out.append(phi)
        tangent.append(t)
    return tuple(out), tuple(tangent)


_potentials.defjvp(_potentials_jvp, symbolic_zeros=True)


def _pairs_triple(nu, c, nv):
    dtype = jnp.result_type(nu, c, nv, float)
    nu, c, nv = (jnp.asarray(t, dtype) for t in (nu, c, nv))
    shape = jnp.broadcast_shapes(nu.shape, c.shape, nv.shape)
    group = _Pairs(0, 1, nu.shape, nv.shape)
    return group, (nu.reshape(-1), nv.reshape(-1)), (jnp.broadcast_to(c, shape),)


def tier(table: FastTable, nu, c, nv):
    """Which evaluation a call gets: 0, a truncation of the table certified on every pair; 1, the whole table
    (some pair is not certified by any, every norm is at most ``table.radius``); 2, some norm is past the
    radius: those pairs by Gauss-Hermite quadrature of ``table.order``, the others by the series.

    One index for the whole call, a batch under ``vmap`` included (its most demanding instance decides).

    Args:
      table: from :func:`build_table`.
      nu, c, nv: ``|u|^2``, ``u.v``, ``|v|^2``, broadcastable.

    Returns:
      An int32 scalar.

    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     t = build_table(jnp.tanh, odd=True)
    ...     [int(tier(t, *x)) for x in ((1.0, 0.99, 1.0), (6.25, 6.2, 6.25), (36.0, 0.0, 1.0))]
    [0, 1, 2]
    """
    group, norms, cs = _pairs_triple(nu, c, nv)
    within, _, certified = _plan(table, (group,), norms, cs)
    return jnp.where(within, jnp.where(certified, 0, 1), 2).astype(jnp.int32)


def degrees_used(table: FastTable, nu, c, nv):
    """How many of the table's degrees a call on these pairs runs (int32 scalar; the whole table where no
    truncation is certified, whatever the radius).

    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     t = build_table(jnp.tanh, odd=True)
    ...     [int(degrees_used(t, 1.0, x, 1.0)) for x in (0.5, 0.9, 1.0)]
    [16, 48, 64]
    """
    group, norms, cs = _pairs_triple(nu, c, nv)
    return jnp.minimum(_plan(table, (group,), norms, cs)[1] * _BLOCK, table.degrees.size)


def fast_potential_fn(fn, table: FastTable, nu, c, nv):
    """``Phi`` from the shortest certified truncation of the table, from the whole table where none is
    certified but both norms are within ``table.radius``, by Gauss-Hermite quadrature past it (:func:`tier`).

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
    group, norms, cs = _pairs_triple(nu, c, nv)
    return _potentials(fn, table, (group,), norms, cs)[0]


def _gram_groups(sets, blocks):
    """The groups, squared norms and inner products of :func:`fast_grams`' blocks."""
    sets = tuple(jnp.asarray(s) for s in sets)
    dtype = jnp.result_type(*sets, float)
    sets = tuple(s.astype(dtype) for s in sets)
    norms = tuple(jnp.sum(s * s, -1) for s in sets)
    groups, cs = [], []
    for i, j in blocks:
        gram = sets[i] @ sets[j].T
        groups.append(_Pairs(i, j, (sets[i].shape[0], 1), (1, sets[j].shape[0]), own=i == j))
        cs.append(gram)
    return tuple(groups), norms, tuple(cs)


def grams_plan(table: FastTable, sets, blocks):
    """``(tier, degrees)`` of a :func:`fast_grams` call: its evaluation (as :func:`tier`) and how many degrees its
    series runs (as :func:`degrees_used`); two int32 scalars.

    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     t = build_table(jnp.tanh, odd=True)
    ...     u, w = 0.9 * jnp.eye(3, 4), jnp.eye(2, 4)
    ...     [int(x) for x in grams_plan(t, (u, w), ((0, 0), (0, 1), (1, 1)))]   # u_1 = 0.9 w_1: rho = 1
    [0, 64]
    """
    groups, norms, cs = _gram_groups(sets, blocks)
    within, blocks_run, certified = _plan(table, groups, norms, cs)
    return (jnp.where(within, jnp.where(certified, 0, 1), 2).astype(jnp.int32),
            jnp.minimum(blocks_run * _BLOCK, table.degrees.size))


def fast_grams(fn, table: FastTable, sets, blocks):
    """Gram matrices of the potential among sets of units, every one in a single evaluation (one check, one
    loop over the degrees); a block of a set with itself is symmetric, evaluated on its strict upper triangle,
    with ``Phi(u, u)`` from the table of its own.

    Args:
      fn: the activation (for the fallback).
      table: from :func:`build_table`.
      sets: weight matrices ``(n_i, d)`` (no batch axes: ``vmap`` for those).
      blocks: pairs ``(i, j)`` of set indices.

    Returns:
      A tuple of ``(n_i, n_j)`` matrices, one per block. All blocks run the same truncation (the longest any
      pair needs), so an entry can differ from the same pair evaluated alone, within ``tol``.

    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     t = build_table(jnp.tanh, odd=True)
    ...     u, w = 0.3 * jnp.ones((3, 4)), 0.4 * jnp.eye(2, 4)
    ...     K, B = fast_grams(jnp.tanh, t, (u, w), ((0, 0), (0, 1)))
    ...     print(K.shape, B.shape, bool(abs(B[1, 0] - fast_potential_fn(jnp.tanh, t, 0.36, 0.12, 0.16)) < 1e-12))
    (3, 3) (3, 2) True
    """
    groups, norms, cs = _gram_groups(sets, blocks)
    return _potentials(fn, table, groups, norms, cs)


def fast_gram_partials(fn, table: FastTable, U, W):
    """The potential and its partial derivatives in ``|u|^2`` and ``u.v`` between each unit ``u`` of ``U`` and
    every unit ``v`` of ``[U; W]`` (the student's units against all of a network's units), in one evaluation: what
    a hand-written gradient needs, ``nabla_u Phi(u, v) = 2 (dPhi/d|u|^2) u + (dPhi/du.v) v``, with no reverse pass.
    The diagonal ``(i, i)`` holds ``Phi(u, u)``, its derivative in ``|u|^2`` (both arguments moving) and ``0``.

    Args:
      fn: the activation (for the fallback).
      table: from :func:`build_table`.
      U: ``(n, d)``; W: ``(m, d)`` (no batch axes: ``vmap`` for those; under ``vmap`` the pairs run as ``U``
        against itself and ``U`` against ``W``, so that an unbatched ``W``'s coefficients are computed once for the
        whole batch).

    Returns:
      Three ``(n, n + m)`` matrices: ``Phi``, ``dPhi/d|u|^2``, ``dPhi/du.v``. Differentiable in forward mode (its
      ``jacfwd`` gives the second derivatives of the same approximant), not in reverse mode (the series' loop has
      a run-time length); differentiate :func:`fast_grams` for that.

    >>> import jax, jax.numpy as jnp
    >>> with jax.enable_x64(True):
    ...     t = build_table(jnp.tanh, odd=True)
    ...     u, w = 0.3 * jnp.ones((3, 4)), 0.4 * jnp.eye(2, 4)
    ...     G, G_nu, G_c = fast_gram_partials(jnp.tanh, t, u, w)
    ...     d_c = jax.grad(lambda c: fast_potential_fn(jnp.tanh, t, 0.36, c, 0.16))(0.12)
    ...     print(G.shape, bool(abs(G_c[1, 3] - d_c) < 1e-12))
    (3, 5) True
    """
    U, W = jnp.asarray(U), jnp.asarray(W)
    dtype = jnp.result_type(U, W, float)
    U, W = U.astype(dtype), W.astype(dtype)

    def merged(U, W):
        # one instance: one group of U against [U; W] (fewer kernels than two groups: a GD step 30 against 40 us)
        units = jnp.concatenate([U, W])
        n = U.shape[0]
        group = _Pairs(0, 0, (n, 1), (1, units.shape[0]), own=True, a_take=n)
        norms = (jnp.sum(units * units, -1),)
        cs = (units[:n] @ units.T,)
        return tuple(_evaluate(fn, table, (group,), norms, cs, ((True,), (True,)))[0][:3])

    def split(U, W):
        # a batch: U against itself (a circulant of its distinct pairs) and U against W, with W a set of its own,
        # so that an unbatched teacher's coefficients are computed once and not per instance (a batch of 64:
        # 700 against 580 us)
        groups, norms, cs = _gram_groups((U, W), ((0, 0), (0, 1)))
        (K, K_nu, K_c, _), (B, B_nu, B_c, _) = _evaluate(fn, table, groups, norms, cs, ((True, False), (True, True)))
        return tuple(jnp.concatenate(x, axis=1) for x in ((K, B), (K_nu, B_nu), (K_c, B_c)))

    run = jax.custom_batching.custom_vmap(merged)

    @run.def_vmap
    def _batched(axis_size, in_batched, U, W):
        if not any(in_batched):  # under a forward derivative, batched tangents only (as in _split_series)
            return merged(U, W), (False, False, False)
        out = jax.vmap(split, in_axes=tuple(0 if b else None for b in in_batched), axis_size=axis_size)(U, W)
        return out, (True, True, True)

    return run(U, W)
