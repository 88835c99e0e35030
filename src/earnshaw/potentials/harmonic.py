r"""Where a potential is harmonic-like: its Laplacian in the first argument, exactly, over a grid.

The paper's positive results rest on one property of ``Phi``: at every pair of distinct charges the Laplacian
in the moving one is ``Delta_u Phi(u, v) = lam Phi(u, v)`` with one ``lam`` (``lam = 0``: harmonic, Theorem 9;
``lam > 0``: lambda-harmonic, Theorem 11 and Lemma 14). This module computes ``Delta_u Phi`` exactly (no finite
differences) and reports, on a grid, the *local ratio* ``lam(u, v) = Delta_u Phi / Phi`` and where it has the
sign those arguments need (docs/math.md section 2, "Where a potential is harmonic-like"):

==============  ===============================================================================================
inner-product   ``Phi = f(p, c, q)``, ``p = |u|^2``, ``c = u.v``, ``q = |v|^2``:
                ``Delta_u Phi = 2 d f_p + 4 p f_pp + 4 c f_pc + q f_cc``
radial          ``Phi = phi(r)``, ``r = |u - v|``: ``Delta_u Phi = phi'' + (d - 1) phi' / r``
unit sphere     ``Phi = f(1, rho, 1)`` on ``S^(d-1)``: ``Delta_S Phi = (1 - rho^2) f_cc - (d - 1) rho f_c``
                (the trace of the Riemannian Hessian of docs/math.md section 6); for an activation with Hermite
                coefficients ``c_n`` this is ``sum_n c_n^2 [n (n-1) rho^(n-2) - n (n + d - 2) rho^n]``
                (:func:`earnshaw.potentials.hermite.sphere_laplacian`)
==============  ===============================================================================================

The derivatives of ``f`` (or ``phi``) come from JAX's automatic differentiation of the potential's own function:
closed forms exactly, quadrature potentials through Price's theorem (so they carry the quadrature's error).
Every formula is affine in ``d``, so one evaluation of the derivatives serves every dimension.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw.activations import Activation
from earnshaw.potentials import RADIAL_BUILDERS, potential
from earnshaw.potentials._potential import Potential

__all__ = ["Harmonicity", "harmonicity", "laplacian", "DEFAULT_NORMS", "DEFAULT_N_ANGLES", "DEFAULT_DISTANCES",
           "MANIFOLDS"]

#: Norms of ``u`` and ``v`` on the default grid of an inner-product potential.
DEFAULT_NORMS = (0.25, 0.5, 1.0, 1.5, 2.0)
#: Angles on the default grid: the midpoints of this many equal cells of ``[0, pi]`` (so never 0, pi/2 or pi,
#: where closed forms with angles have kinks or ``Phi`` vanishes by symmetry).
DEFAULT_N_ANGLES = 36
#: Distances on the default grid of a radial potential (geometric, 0.05 to 10).
DEFAULT_DISTANCES = tuple(float(x) for x in np.geomspace(0.05, 10.0, 64))
#: ``"euclidean"``: ``Delta_u`` in ``R^d``; ``"sphere"``: the Laplace-Beltrami operator on ``S^(d-1)``, unit vectors.
MANIFOLDS = ("euclidean", "sphere")


# ------------------------------------------------------------------------------------------- derivatives

@functools.partial(jax.jit, static_argnums=0)
def _inner_derivatives(fn, p, c, q):
    """``(f, f_p, f_c, f_pp, f_pc, f_cc)`` of ``fn(p, c, q)`` at flat arrays ``p, c, q`` (each ``(n,)``)."""
    def one(p, c, q):
        f = fn(p, c, q)
        fp, fc = jax.grad(fn, argnums=(0, 1))(p, c, q)
        (fpp, fpc), (_, fcc) = jax.hessian(fn, argnums=(0, 1))(p, c, q)
        return f, fp, fc, fpp, fpc, fcc
    return jax.vmap(one)(p, c, q)


@functools.partial(jax.jit, static_argnums=0)
def _self_derivatives(fn, p):
    """``(g, g', g'')`` of ``g(p) = fn(p, p, p) = Phi(theta, theta)``, ``|theta|^2 = p`` (``(n,)``)."""
    def g(x):
        return fn(x, x, x)
    # forward over reverse, as jax.hessian: the Hermite tables' loop of run-time length has no reverse mode
    return jax.vmap(lambda x: (g(x), jax.grad(g)(x), jax.jacfwd(jax.grad(g))(x)))(p)


@functools.partial(jax.jit, static_argnums=0)
def _radial_derivatives(fn, r):
    """``(phi, phi', phi'')`` of ``fn(r)`` at ``r`` (``(n,)``)."""
    return jax.vmap(lambda x: (fn(x), jax.grad(fn)(x), jax.jacfwd(jax.grad(fn))(x)))(r)


def _inner_laplacian(der, p, c, q, d, manifold):
    """``(Delta Phi, scale)`` from the derivatives; ``scale`` sums the terms' absolute values (the size of the
    cancellation a zero Laplacian comes from). Works on numpy and jax arrays alike."""
    _, fp, fc, fpp, fpc, fcc = der
    if manifold == "sphere":
        terms = ((1.0 - c * c) * fcc, -(d - 1) * c * fc)
    else:
        terms = (2.0 * d * fp, 4.0 * p * fpp, 4.0 * c * fpc, q * fcc)
    return sum(terms), sum(abs(t) for t in terms)


def _radial_laplacian(der, r, d):
    _, d1, d2 = der
    terms = (d2, (d - 1) * d1 / r)
    return sum(terms), sum(abs(t) for t in terms)


def _check_manifold(manifold):
    if manifold not in MANIFOLDS:
        raise ValueError(f"manifold must be one of {', '.join(MANIFOLDS)}, got {manifold!r}")


def laplacian(pot: Potential, u, v, *, manifold: str = "euclidean"):
    r"""The Laplacian of ``Phi(u, v)`` in ``u``, from the potential's own function (no finite differences).

    Inner-product potentials use ``Delta_u Phi = 2 d f_p + 4 p f_pp + 4 c f_pc + q f_cc`` of the Gram triple;
    radial ones ``phi'' + (d - 1) phi' / r``; on the unit sphere (``manifold="sphere"``, inner-product
    potentials; ``u`` and ``v`` are normalised first) the Laplace-Beltrami operator
    ``(1 - rho^2) f_cc - (d - 1) rho f_c`` (docs/math.md sections 2 and 6). The dtype follows the inputs.

    Args:
      pot: a :class:`~earnshaw.potentials.Potential`.
      u: ``(..., d)``, the argument differentiated.
      v: ``(..., d)``; leading axes broadcast with ``u``'s.
      manifold: ``"euclidean"`` or ``"sphere"``.

    Returns:
      ``Delta_u Phi(u, v)``, shape ``(...)``.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> from earnshaw.potentials.harmonic import laplacian
    >>> u, v = jnp.array([1.0, 0.5, -0.3]), jnp.array([0.2, -0.7, 0.9])
    >>> float(laplacian(es.potential("linear"), u, v))                   # Delta_u (u . v) = 0
    0.0
    >>> round(float(laplacian(es.potential("quadratic"), u, v)), 4)      # (2 d + 4) |v|^2 = 10 * 1.34
    13.4
    >>> pot = es.potential("erf")
    >>> hess = jnp.trace(jax.hessian(lambda x: pot(x, v))(u))
    >>> bool(jnp.allclose(laplacian(pot, u, v), hess, rtol=1e-5))
    True
    """
    _check_manifold(manifold)
    if not isinstance(pot, Potential):
        raise TypeError(f"laplacian takes a Potential (es.potential(...)), got {type(pot).__name__}")
    u, v = jnp.asarray(u), jnp.asarray(v)
    if not jnp.issubdtype(u.dtype, jnp.floating):
        u = u.astype(jnp.result_type(float))
    u, v = jnp.broadcast_arrays(u, v.astype(u.dtype))
    if u.ndim < 1:
        raise ValueError(f"u and v need a last axis of weights (shape (..., d)), got shape {u.shape}")
    d = u.shape[-1]
    if pot.kind == "radial":
        if manifold == "sphere":
            raise ValueError(f"{pot!r} is radial: the sphere Laplacian is for inner-product potentials")
        if pot.d is not None and pot.d != d:
            raise ValueError(f"{pot!r} lives in d={pot.d}, but u has shape {u.shape} (d={d})")
        r = jnp.sqrt(jnp.sum((u - v) ** 2, -1)).reshape(-1)
        lap, _ = _radial_laplacian(_radial_derivatives(pot.fn, r), r, d)
        return lap.reshape(u.shape[:-1])
    if manifold == "sphere":
        u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
        v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    p, c, q = (jnp.sum(a * b, -1).reshape(-1) for a, b in ((u, u), (u, v), (v, v)))
    lap, _ = _inner_laplacian(_inner_derivatives(pot.fn, p, c, q), p, c, q, d, manifold)
    return lap.reshape(u.shape[:-1])


# ------------------------------------------------------------------------------------------- the report

def _runs(mask, values):
    """Maximal runs of consecutive ``True`` in ``mask`` as ``[(values[start], values[end]), ...]``."""
    out, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((round(float(values[start]), 6), round(float(values[i - 1]), 6)))
            start = None
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Harmonicity:
    r"""Where a potential is harmonic-like, per dimension, on a grid (from :func:`harmonicity`).

    Every grid point is one of: *harmonic* (``|Delta_u Phi|`` at most ``rtol`` times the sum of the absolute
    values of its terms), *lambda-harmonic-like* (``holds``: not harmonic, and ``Delta_u Phi`` has the strict sign
    of ``Phi``, i.e. the local ratio ``lam = Delta_u Phi / Phi`` is positive), or neither (``lam < 0``, or
    ``Phi = 0`` with a non-zero Laplacian).

    Attributes:
      name: the potential, as its ``repr`` (radial ones built per dimension: the first).
      kind: ``"inner"`` or ``"radial"``.
      manifold: ``"euclidean"`` or ``"sphere"``.
      d: the dimensions, ``(D,)``.
      norms: the norms of ``u`` and of ``v``, ``(U,)`` (``(1,)`` on the sphere; empty for radial potentials).
      angles: the angles between ``u`` and ``v`` in radians, ``(A,)`` (empty for radial potentials).
      distance: ``|u - v|`` at each grid point: ``(U, U, A)`` for inner-product potentials (axes: ``|u|``,
        ``|v|``, angle), ``(A,)`` on the sphere, ``(R,)`` for radial ones. ``G`` below is this shape.
      phi: ``Phi`` on the grid, ``(D, *G)``.
      laplacian: ``Delta_u Phi`` (Laplace-Beltrami on the sphere), ``(D, *G)``.
      harmonic: ``(D, *G)`` booleans.
      holds: ``(D, *G)`` booleans, ``lam > 0``.
      self_lam: ``Delta_theta[Phi(theta, theta)] / (2 Phi(theta, theta))`` at ``|theta|`` in ``norms``,
        ``(D, U)``: with one common ratio ``lam`` on every pair, a lone electron's Laplacian at a critical
        point is negative iff ``lam > self_lam`` (docs/math.md section 2); ``(D, 1)`` zeros for radial potentials,
        whose ``Phi(theta, theta)`` is constant; ``(D, 0)`` on the sphere.
      rtol: the tolerance of ``harmonic``.

    >>> import earnshaw as es
    >>> rep = es.harmonicity("gaussian", d=(2, 3), distances=(0.5, 1.0, 1.5, 2.0))
    >>> rep.fraction.tolist(), rep.distance_from.tolist()        # lam = r^2 - d > 0 for r > sqrt(d)
    ([0.5, 0.25], [1.5, 2.0])
    """

    name: str
    kind: str
    manifold: str
    d: np.ndarray
    norms: np.ndarray
    angles: np.ndarray
    distance: np.ndarray
    phi: np.ndarray
    laplacian: np.ndarray
    harmonic: np.ndarray
    holds: np.ndarray
    self_lam: np.ndarray
    rtol: float

    def __repr__(self):
        return (f"Harmonicity({self.name}, manifold={self.manifold!r}, d={self.d.tolist()}, "
                f"fraction={np.round(self.fraction, 3).tolist()})")

    @property
    def ratio(self) -> np.ndarray:
        """The local ratio ``lam = Delta_u Phi / Phi``, ``(D, *G)`` (``nan`` where ``Phi = 0``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.phi != 0, self.laplacian / np.where(self.phi != 0, self.phi, 1.0), np.nan)

    def _flat(self, x):
        return x.reshape(x.shape[0], -1)

    @property
    def fraction(self) -> np.ndarray:
        """Fraction of the grid where ``lam > 0`` (``holds``), per dimension, ``(D,)``."""
        return self._flat(self.holds).mean(1)

    @property
    def fraction_harmonic(self) -> np.ndarray:
        """Fraction of the grid where the potential is harmonic, ``(D,)``."""
        return self._flat(self.harmonic).mean(1)

    @property
    def fraction_random(self) -> np.ndarray:
        """``holds`` averaged over a uniformly random direction of ``v`` relative to ``u``, ``(D,)``.

        Each angle is weighted by the density of the angle between two random directions in ``R^d``,
        ``sin(alpha)^(d-2)``, then the norm pairs are averaged. ``nan`` for radial potentials."""
        if self.kind == "radial":
            return np.full(self.d.shape, np.nan)
        out = []
        for i, d in enumerate(self.d):
            w = np.sin(self.angles) ** (int(d) - 2)
            w = w / w.sum()
            out.append(float((self.holds[i] * w).sum(-1).mean()))
        return np.asarray(out)

    @property
    def lam_range(self) -> np.ndarray:
        """``(min, max)`` of the ratio over the points where it is positive, ``(D, 2)`` (``nan`` if none)."""
        ratio = self._flat(self.ratio)
        held = self._flat(self.holds)
        out = np.full((self.d.size, 2), np.nan)
        for i in range(self.d.size):
            if held[i].any():
                out[i] = ratio[i, held[i]].min(), ratio[i, held[i]].max()
        return out

    @property
    def distance_from(self) -> np.ndarray:
        """The smallest grid distance ``r*`` such that ``lam > 0`` at every grid point with ``|u - v| >= r*``,
        ``(D,)``; ``inf`` when the farthest point fails."""
        dist = self.distance.reshape(-1)
        out = []
        for held in self._flat(self.holds):
            if held.all():
                out.append(float(dist.min()))
                continue
            beyond = dist[dist > dist[~held].max()]     # every point beyond the farthest failing one holds
            out.append(float(beyond.min()) if beyond.size else math.inf)
        return np.asarray(out)

    def angles_held(self, i: int = 0):
        """Runs of grid angles (degrees) at which ``lam > 0`` for every norm pair, in dimension ``d[i]``:
        ``[(first, last), ...]``; ``[]`` for radial potentials."""
        if self.kind == "radial":
            return []
        held = self.holds[i].reshape(-1, self.angles.size).all(0)
        return _runs(held, np.degrees(self.angles))

    def rows(self):
        """One dict per dimension (the JSON/CSV rows of ``earnshaw harmonic``)."""
        lr, frac, fh, fr, dfrom = self.lam_range, self.fraction, self.fraction_harmonic, self.fraction_random, \
            self.distance_from
        out = []
        for i, d in enumerate(self.d):
            runs = self.angles_held(i)
            out.append(dict(potential=self.name, kind=self.kind, manifold=self.manifold, d=int(d),
                            points=int(self.holds[i].size), fraction=float(frac[i]),
                            fraction_harmonic=float(fh[i]), fraction_random=float(fr[i]),
                            lam_min=float(lr[i, 0]), lam_max=float(lr[i, 1]), distance_from=float(dfrom[i]),
                            angles_held=" ".join(f"{a:g}" if a == b else f"{a:g}-{b:g}" for a, b in runs),
                            self_lam_min=float(self.self_lam[i].min()) if self.self_lam[i].size else float("nan"),
                            self_lam_max=float(self.self_lam[i].max()) if self.self_lam[i].size else float("nan")))
        return out


def _dims(d, minimum):
    ds = (d,) if isinstance(d, (int, np.integer)) and not isinstance(d, bool) else d
    try:
        ds = tuple(ds)
    except TypeError:
        raise ValueError(f"harmonicity: d must be an integer >= {minimum} or a sequence of them, got d={d!r}") \
            from None
    bad = [x for x in ds if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < minimum]
    if not ds or bad:
        raise ValueError(f"harmonicity: d must be an integer >= {minimum} or a non-empty sequence of them "
                         f"(got d={d!r}{'; bad: ' + repr(bad) if bad else ''})")
    return tuple(int(x) for x in ds)


def _grid(values, name, *, low, high=math.inf):
    x = np.asarray(values, np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)) or np.any(x <= low) or np.any(x > high):
        raise ValueError(f"harmonicity: {name} must be a non-empty sequence of finite numbers in ({low}, {high}], "
                         f"got {values!r}")
    return x


def _per_dimension(pot, ds, params):
    """One potential per dimension: the name of a radial potential is built in each ``d``."""
    params = dict(params or {})
    if isinstance(pot, str):
        name = pot.lower()
        if name in RADIAL_BUILDERS:
            if "d" in params:
                raise ValueError("harmonicity: pass the dimensions as d=, not in params")
            return [potential(name, d=d, **params) for d in ds]
        pot = potential(name, **params)
    elif isinstance(pot, Activation):
        pot = potential(pot, **params)
    elif params:
        raise ValueError("harmonicity: params= is for potentials given by name or activation")
    if not isinstance(pot, Potential):
        raise TypeError(f"harmonicity takes a Potential, an Activation or a potential name, got {type(pot).__name__}")
    if pot.d is not None and any(d != pot.d for d in ds):
        raise ValueError(f"{pot!r} lives in d={pot.d}, not in d={[d for d in ds if d != pot.d]}; pass its name "
                         f"(e.g. harmonicity({pot.name!r}, d=...)) to build it in each dimension")
    return [pot] * len(ds)


def harmonicity(pot, d, *, params=None, norms=None, angles=None, distances=None, manifold: str = "euclidean",
                rtol: float = 1e-9) -> Harmonicity:
    r"""Where ``Phi`` is harmonic-like: the sign of ``Delta_u Phi(u, v)`` against ``Phi(u, v)`` on a grid.

    The paper's Theorems 9 and 11 need, at every pair of distinct charges, ``Delta_u Phi = lam Phi`` with one
    ``lam`` (``0``: harmonic; ``> 0``: lambda-harmonic). For any potential, the local ratio
    ``lam(u, v) = Delta_u Phi / Phi`` tells where that can hold: a positive ratio is the sign Theorem 11's
    computation needs; where it varies, no single ``lam`` fits (docs/math.md section 2). The Laplacian is exact
    (automatic derivatives of the potential's own function, float64 inside), evaluated on

    * inner-product potentials: ``|u|, |v|`` in ``norms`` and the angle between them in ``angles``
      (``Delta_u Phi = 2 d f_p + 4 p f_pp + 4 c f_pc + q f_cc`` of ``Phi = f(|u|^2, u.v, |v|^2)``);
    * radial potentials: ``|u - v|`` in ``distances`` (``phi'' + (d - 1) phi' / r``);
    * ``manifold="sphere"``: unit ``u, v`` at the ``angles`` (the Laplace-Beltrami operator of ``S^(d-1)``,
      ``(1 - rho^2) f_cc - (d - 1) rho f_c``), inner-product potentials only.

    Args:
      pot: a :class:`~earnshaw.potentials.Potential`, an :class:`~earnshaw.activations.Activation` (e.g.
        :func:`earnshaw.custom`), or a name for :func:`earnshaw.potential`; a radial
        potential that lives in one dimension (``coulomb``, ``yukawa``, ``almost_harmonic``) is then built in
        each ``d``.
      d: the dimension, an integer (``>= 2``; ``>= 1`` for radial potentials), or a sequence of them.
      params: parameters for :func:`earnshaw.potential` when ``pot`` is a name or an activation
        (e.g. ``{"lam": 2.0}``, ``{"order": 200}``).
      norms: ``(U,)`` norms of ``u`` and ``v`` (default :data:`DEFAULT_NORMS`; fixed to 1 on the sphere).
      angles: ``(A,)`` angles in radians in ``(0, pi)`` (default: :data:`DEFAULT_N_ANGLES` cell midpoints).
      distances: ``(R,)`` positive distances for radial potentials (default :data:`DEFAULT_DISTANCES`).
      manifold: ``"euclidean"`` or ``"sphere"``.
      rtol: a point is harmonic when ``|Delta_u Phi|`` is at most ``rtol`` times the sum of its terms' sizes.

    Returns:
      A :class:`Harmonicity`: ``phi``, ``laplacian``, ``holds``, ``harmonic`` of shape ``(D, *G)`` (``G`` =
      ``(U, U, A)``, ``(A,)`` on the sphere, ``(R,)`` radial), and the summaries ``fraction``, ``lam_range``,
      ``distance_from``, ``angles_held``, ``rows()``.

    Raises:
      ValueError: unknown potential name (listing the valid ones), a bad ``d``, grid or manifold.

    >>> import earnshaw as es
    >>> rep = es.harmonicity("relu", d=(3, 50))
    >>> rep.fraction.tolist()                      # relu: Delta_u Phi > 0 < Phi on the whole grid
    [1.0, 1.0]
    >>> float(es.harmonicity("erf", d=3).fraction[0])   # erf: the ratio is negative everywhere
    0.0
    >>> es.harmonicity("yukawa", d=(2, 5)).lam_range.round(9).tolist()   # lambda-harmonic, lam = 1
    [[1.0, 1.0], [1.0, 1.0]]
    >>> es.harmonicity("sign", d=2, manifold="sphere").fraction_harmonic.tolist()  # the paper's Appendix F
    [1.0]
    """
    _check_manifold(manifold)
    if not (isinstance(rtol, (int, float)) and not isinstance(rtol, bool) and 0 <= rtol < 1):
        raise ValueError(f"harmonicity: rtol must be a number in [0, 1), got rtol={rtol!r}")
    radial_name = isinstance(pot, str) and pot.lower() in RADIAL_BUILDERS
    minimum = 1 if radial_name or (isinstance(pot, Potential) and pot.kind == "radial") else 2
    ds = _dims(d, minimum)
    pots = _per_dimension(pot, ds, params)
    kind = pots[0].kind
    if kind == "inner" and min(ds) < 2:
        raise ValueError(f"harmonicity: an inner-product potential needs d >= 2 (angles live in a plane), "
                         f"got d={d!r}")
    if kind == "radial" and manifold == "sphere":
        raise ValueError(f"{pots[0]!r} is radial: manifold='sphere' is for inner-product potentials")
    if kind == "inner" and not pots[0].smooth:
        warnings.warn(f"{pots[0]!r} is not smooth and has no closed form: its Laplacian comes from quadrature of "
                      "derivatives that miss the kinks", stacklevel=2)
    empty = np.zeros(0)
    with jax.enable_x64(True):
        if kind == "radial":
            if norms is not None or angles is not None:
                raise ValueError("harmonicity: a radial potential takes distances=, not norms= or angles=")
            r = _grid(DEFAULT_DISTANCES if distances is None else distances, "distances", low=0.0)
            phi, lap, scale = [], [], []
            for p_, dd in zip(pots, ds):
                der = [np.asarray(x) for x in _radial_derivatives(p_.fn, jnp.asarray(r))]
                la, sc = _radial_laplacian(der, r, dd)
                phi.append(der[0])
                lap.append(la)
                scale.append(sc)
            phi, lap, scale = np.stack(phi), np.stack(lap), np.stack(scale)
            grid_norms, grid_angles, dist = empty, empty, r
            self_lam = np.zeros((len(ds), 1))  # Phi(theta, theta) is constant: no self-energy term
        else:
            if distances is not None:
                raise ValueError("harmonicity: an inner-product potential takes norms= and angles=, not distances=")
            a = (np.pi * (np.arange(DEFAULT_N_ANGLES) + 0.5) / DEFAULT_N_ANGLES if angles is None
                 else _grid(angles, "angles", low=0.0, high=math.pi))
            if manifold == "sphere":
                if norms is not None and not np.allclose(np.asarray(norms, float), 1.0):
                    raise ValueError(f"harmonicity: on the sphere the norms are 1, got norms={norms!r}")
                n = np.ones(1)
            else:
                n = _grid(DEFAULT_NORMS if norms is None else norms, "norms", low=0.0)
            nu, nv, al = np.meshgrid(n, n, a, indexing="ij")
            p, q, c = nu * nu, nv * nv, nu * nv * np.cos(al)
            der = [np.asarray(x).reshape(p.shape)
                   for x in _inner_derivatives(pots[0].fn, *(jnp.asarray(x.reshape(-1)) for x in (p, c, q)))]
            lap, scale = zip(*(_inner_laplacian(der, p, c, q, dd, manifold) for dd in ds))
            phi = np.broadcast_to(der[0], (len(ds),) + p.shape).copy()
            lap, scale = np.stack(lap), np.stack(scale)
            dist = np.sqrt(np.maximum(p + q - 2.0 * c, 0.0))
            if manifold == "sphere":
                phi, lap, scale, dist = phi[:, 0, 0], lap[:, 0, 0], scale[:, 0, 0], dist[0, 0]
                self_lam = np.zeros((len(ds), 0))
            else:
                g, g1, g2 = (np.asarray(x) for x in _self_derivatives(pots[0].fn, jnp.asarray(n * n)))
                with np.errstate(divide="ignore", invalid="ignore"):
                    self_lam = np.stack([(2.0 * dd * g1 + 4.0 * n * n * g2) / (2.0 * g) for dd in ds])
            grid_norms, grid_angles = n, a
    harmonic = np.abs(lap) <= rtol * scale
    holds = ~harmonic & (lap * phi > 0)
    return Harmonicity(name=repr(pots[0]), kind=kind, manifold=manifold, d=np.asarray(ds), norms=grid_norms,
                       angles=grid_angles, distance=dist, phi=phi, laplacian=lap, harmonic=harmonic, holds=holds,
                       self_lam=self_lam, rtol=float(rtol))
