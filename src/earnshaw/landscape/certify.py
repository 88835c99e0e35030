r"""``certify``: a computer-assisted proof, in ball arithmetic, that a true critical point lies near a numerical one.

The objective's value, gradient and Hessian are evaluated with python-flint's ``arb`` balls (every result
is guaranteed to contain the exact value) over the box ``X = x~ + [-r, r]^n`` of the trainable coordinates.
Then:

* **Krawczyk's test** (interval Newton). With ``C`` a floating inverse of the Hessian at ``x~``,
  ``K(X) = x~ - C grad f(x~) + (I - C H(X)) (X - x~)``. If ``K(X)`` lies in the interior of ``X``, the
  gradient has exactly one zero ``x*`` in ``X`` (Krawczyk 1969; Moore 1977).
* **Inertia over the whole box**: with ``Q`` a floating eigenvector basis of the Hessian at ``x~``, the ball
  matrix ``Q^T H(X) Q`` is nearly diagonal. If it is strictly diagonally dominant (and ``Q^T Q`` proves ``Q``
  non-singular), every symmetric matrix in ``H(X)``, the true Hessian at ``x*`` among them, has as many negative
  eigenvalues as that matrix has negative diagonal entries (Sylvester's law of inertia and Gershgorin's
  theorem): 0 makes ``x*`` a strict local minimum, ``q > 0`` a saddle of index ``q``.
* A lower bound on the smallest eigenvalue at ``x*`` (for minima): the largest shift ``s`` tried for which
  ``Q^T (H(X) - s I) Q`` is still diagonally dominant with a positive diagonal.
* The loss over ``X``: an interval that contains ``f(x*)``.

Supported potentials (closed forms on the Gram triple): erf, linear, quadratic, hermite ``m``, relu
(away from parallel or zero units, where it is not twice differentiable). Every term is differentiated over
the Gram triple and pulled back by ball matrix products, and the tests are ball matrix products, so a point with
``n = 400`` trainable coordinates (Safran and Shamir's ``k = 20``) takes seconds.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from earnshaw.landscape.hessian import _hessian_program
from earnshaw.potentials.mixed import check_single
from earnshaw.problem import resolve

try:  # python-flint is a dependency; the import error says which package provides arb
    import flint
    from flint import arb
except ImportError:  # pragma: no cover
    flint = arb = None

__all__ = ["Certificate", "certify", "CERTIFIABLE"]

#: Potentials whose objective certify can evaluate in ball arithmetic.
CERTIFIABLE = ("erf", "linear", "quadratic", "relu", "hermite")


@jax.jit
def _grad_program(problem, student):
    return problem.grad(student)


class _HD:
    """A second-order forward-mode number over arb: value, gradient (n,) and Hessian (n, n) (numpy object arrays)."""

    __slots__ = ("v", "g", "h")

    def __init__(self, v, g, h):
        self.v, self.g, self.h = v, g, h

    @staticmethod
    def const(v, n):
        return _HD(arb(v), np.full(n, arb(0), dtype=object), np.full((n, n), arb(0), dtype=object))

    @staticmethod
    def var(v, i, n):
        x = _HD.const(v, n)
        x.g = x.g.copy()
        x.g[i] = arb(1)
        return x

    def _lift(self, o):
        return o if isinstance(o, _HD) else _HD.const(o, self.g.shape[0])

    def __add__(self, o):
        o = self._lift(o)
        return _HD(self.v + o.v, self.g + o.g, self.h + o.h)

    __radd__ = __add__

    def __neg__(self):
        return _HD(-self.v, -self.g, -self.h)

    def __sub__(self, o):
        return self + (-self._lift(o))

    def __rsub__(self, o):
        return self._lift(o) - self

    def __mul__(self, o):
        if not isinstance(o, _HD):
            o = arb(o)
            return _HD(self.v * o, self.g * o, self.h * o)
        outer = np.outer(self.g, o.g)
        return _HD(self.v * o.v, self.g * o.v + o.g * self.v, self.h * o.v + o.h * self.v + outer + outer.T)

    __rmul__ = __mul__

    def chain(self, f0, f1, f2):
        """``f(self)`` given ``f(v), f'(v), f''(v)``."""
        return _HD(f0, self.g * f1, self.h * f1 + np.outer(self.g, self.g) * f2)

    def __truediv__(self, o):
        o = self._lift(o)
        inv = arb(1) / o.v
        return self * o.chain(inv, -inv * inv, 2 * inv * inv * inv)

    def sqrt(self):
        r = self.v.sqrt()
        return self.chain(r, arb(1) / (2 * r), -arb(1) / (4 * r * self.v))

    def asin(self):
        one_m = arb(1) - self.v * self.v
        d1 = arb(1) / one_m.sqrt()
        return self.chain(self.v.asin(), d1, self.v * d1 * d1 * d1)

    def acos(self):
        one_m = arb(1) - self.v * self.v
        d1 = arb(1) / one_m.sqrt()
        return self.chain(self.v.acos(), -d1, -self.v * d1 * d1 * d1)


def _dot(xs, ys):
    out = xs[0] * ys[0]
    for x, y in zip(xs[1:], ys[1:]):
        out = out + x * y
    return out


def _phi(name, params, nu, c, nv):
    """The potential on the Gram triple, in _HD (or arb) arithmetic."""
    if name == "linear":
        return c
    if name == "quadratic":
        return nu * nv + 2 * (c * c)
    if name == "erf":
        return (2 * c / ((1 + 2 * nu) * (1 + 2 * nv)).sqrt()).asin() * (arb(2) / arb.pi())
    if name == "relu":
        prod = nu * nv
        s = (prod - c * c).sqrt()
        alpha = (c / prod.sqrt()).acos()
        return (s + (arb.pi() - alpha) * c) * (arb(1) / (2 * arb.pi()))
    if name.startswith("hermite"):
        m = dict(params)["m"]
        out = None
        for k in range(m // 2 + 1):
            coef = arb(math.factorial(m)) / arb(math.factorial(k) ** 2 * math.factorial(m - 2 * k) * 4**k)
            term = coef * _power(c, m - 2 * k) * _power((nu - 1) * (nv - 1), k) if (m - 2 * k or k) else coef
            out = term if out is None else out + term
        return out
    raise ValueError(f"certify cannot evaluate the potential {name!r}; certifiable: {', '.join(CERTIFIABLE)}")


def _phi_self(name, params, nu):
    """``Phi(u, u)`` from ``|u|^2``: relu's angle formula is not differentiable at ``u = v``, its value ``|u|^2 / 2`` is."""
    if name == "relu":
        return nu * arb(0.5)
    return _phi(name, params, nu, nu, nu)


def _power(x, p):
    out = None
    for _ in range(p):
        out = x if out is None else out * x
    return 1 if out is None else out


def _pull(term, jac, quads, idx, grad, hess):
    """Scatter a term computed over a few intermediate variables ``z`` into the whole gradient and Hessian.

    ``term`` is an :class:`_HD` over ``z``; ``jac`` (len(z), len(idx)) holds ``dz / dy`` over the local
    coordinates ``y = x[idx]`` as arb balls; ``quads`` lists, for each ``z_q`` that is a quadratic form of ``y``,
    its constant second derivative as ``(q, rows, cols, coefficient)``. The chain rule
    ``H_y = J^T H_z J + sum_q (dF / dz_q) d^2 z_q / dy^2`` runs as one small arb matrix product."""
    J = flint.arb_mat(jac.tolist())
    Jt = J.transpose()
    g = Jt * flint.arb_mat([[v] for v in term.g])
    h = np.array((Jt * flint.arb_mat(term.h.tolist()) * J).tolist(), dtype=object)
    for q, rows, cols, coef in quads:
        h[rows, cols] = h[rows, cols] + term.g[q] * coef
    grad[idx] = grad[idx] + np.array([g[i, 0] for i in range(len(idx))], dtype=object)
    block = np.ix_(idx, idx)
    hess[block] = hess[block] + h
    return term.v


def _objective(problem, xs, k, d):
    """Value, gradient and Hessian of the objective at the arb vector ``xs`` (balls: enclosures over the box).

    Every term of the loss is a function of a unit's (or a pair's) output weights and of the Gram triple
    ``(|u|^2, u.v, |v|^2)``. Each is differentiated in :class:`_HD` over those three to five intermediate
    variables and pulled back to the unit's or pair's ``1 + d`` or ``2 (1 + d)`` coordinates by the chain rule in
    arb matrix products (:func:`_pull`), so the cost is a few small matrix products per term: about a second
    for ``k = d = 20`` (420 coordinates) instead of minutes with forward differentiation over the coordinates."""
    n = k * (d + 1)
    pot, obj = problem.pot, problem.objective
    name = pot.name if not pot.name.startswith("hermite") else "hermite"
    params = pot.params
    b = [arb(float(v)) for v in np.asarray(problem.teacher.b)]
    w = [[arb(float(v)) for v in row] for row in np.asarray(problem.teacher.w)]
    w2 = [_dot(row, row) for row in w]
    value = arb(0)
    grad = np.full(n, arb(0), dtype=object)
    hess = np.full((n, n), arb(0), dtype=object)
    zero = arb(0)

    def coords(i):
        return [i] + [k + i * d + c for c in range(d)]

    for i in range(k):
        idx = coords(i)
        th = xs[k + i * d:k + (i + 1) * d]
        diag = np.arange(1, d + 1)
        # z = (a_i, |u|^2, u.w_1, ..., u.w_m): the self term and every teacher term of unit i at once
        m = len(b)
        z = [_HD.var(xs[i], 0, 2 + m), _HD.var(_dot(th, th), 1, 2 + m)] + \
            [_HD.var(_dot(th, w[j]), 2 + j, 2 + m) for j in range(m)]
        a_i, sq_i = z[0], z[1]
        term = _HD.const(0, 2 + m)
        if obj != "reduced":
            term = term + a_i * a_i * _phi_self(name, params, sq_i)
        for j in range(m):
            term = term - 2 * b[j] * (a_i * _phi(name, params, sq_i, z[2 + j], _HD.const(w2[j], 2 + m)))
        if obj == "G":
            term = term + a_i * a_i
        jac = np.full((2 + m, 1 + d), zero, dtype=object)
        jac[0, 0] = arb(1)
        jac[1, 1:] = [2 * t for t in th]
        for j in range(m):
            jac[2 + j, 1:] = w[j]
        value = value + _pull(term, jac, [(1, diag, diag, 2)], idx, grad, hess)
        for j in range(i + 1, k):
            idx = coords(i) + coords(j)
            tj = xs[k + j * d:k + (j + 1) * d]
            # z = (a_i, a_j, |u|^2, u.v, |v|^2)
            z = [_HD.var(v, p, 5) for p, v in enumerate([xs[i], xs[j], _dot(th, th), _dot(th, tj), _dot(tj, tj)])]
            term = 2 * (z[0] * z[1]) * _phi(name, params, z[2], z[3], z[4])
            jac = np.full((5, 2 * (1 + d)), zero, dtype=object)
            jac[0, 0], jac[1, 1 + d] = arb(1), arb(1)
            jac[2, 1:1 + d] = [2 * t for t in th]
            jac[3, 1:1 + d], jac[3, 2 + d:] = tj, th
            jac[4, 2 + d:] = [2 * t for t in tj]
            quads = [(2, diag, diag, 2), (3, diag, diag + 1 + d, 1), (3, diag + 1 + d, diag, 1),
                     (4, diag + 1 + d, diag + 1 + d, 2)]
            value = value + _pull(term, jac, quads, idx, grad, hess)
    if obj != "reduced":
        for i in range(len(b)):
            value = value + b[i] * b[i] * _phi_self(name, params, w2[i])
            for j in range(i + 1, len(b)):
                value = value + 2 * b[i] * b[j] * _phi(name, params, w2[i], _dot(w[i], w[j]), w2[j])
    return _HD(value, grad, hess)


def _dominant_signs(B):
    """Signs of the diagonal of the ball matrix ``B`` if every matrix in it is strictly diagonally dominant, else None.

    Such a symmetric matrix has as many negative eigenvalues as negative diagonal entries (Gershgorin's discs
    stay off 0 along the path that shrinks the off-diagonal part to zero)."""
    n = B.nrows()
    rows = B.tolist()
    signs = []
    for i in range(n):
        off = sum((abs(rows[i][j]) for j in range(n) if j != i), arb(0))
        margin = abs(rows[i][i]) - off
        if not margin > 0:
            return None
        signs.append(bool(rows[i][i] > 0))
    return signs


def _inertia(J, Q, G, shift=0.0):
    """Signs of the eigenvalues of every symmetric matrix in ``J - shift I`` (arb_mat), or None if not constant.

    ``Q`` (arb_mat) is a floating eigenvector basis of the Hessian at the centre and ``G = Q^T Q`` its Gram
    matrix in balls. By Sylvester's law of inertia ``A`` and ``Q^T A Q`` have the same inertia when ``Q`` is
    non-singular (``G`` diagonally dominant), and ``Q^T A Q`` is nearly diagonal, so Gershgorin's theorem
    decides its signs: three ``n x n`` ball matrix products instead of an ``O(n^3)`` factorisation in Python."""
    B = Q.transpose() * J * Q
    if shift:
        B = B - G * arb(shift)
    return _dominant_signs(B)


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The outcome of :func:`certify`.

    Attributes:
      certified: whether the proof went through.
      kind: ``"strict local minimum"``, ``"saddle"`` or ``None`` (not certified).
      index: number of negative Hessian eigenvalues at the true critical point (certified), or None.
      radius: half-width ``r`` of the box ``x~ + [-r, r]^n`` (trainable coordinates) that holds exactly one
        critical point.
      center: the numerical point ``x~`` (flat, trainable coordinates).
      loss_interval: ``(lo, hi)`` containing the loss at the true critical point.
      lambda_min_lower: a certified lower bound on the smallest Hessian eigenvalue (minima), else None.
      reason: why it could not certify, or ``""``.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.Teacher(b=jnp.array([1.0, -0.5]), w=jnp.array([[1.0, 0.0], [0.3, 0.8]]))
    >>> off = es.certify("erf", t, es.Student(a=t.b + 0.01, theta=t.w))     # not a critical point
    >>> off.certified, off.kind, "Krawczyk" in off.reason
    (False, None, True)
    >>> jax.config.update("jax_enable_x64", False)
    """

    certified: bool
    kind: object
    index: object
    radius: float
    center: np.ndarray
    loss_interval: tuple
    lambda_min_lower: object
    reason: str


def certify(*args, radius=None, prec: int = 106, shifts: int = 3) -> Certificate:
    """Prove that a true critical point lies within ``radius`` of ``student`` and classify it, in ball arithmetic.

    Call as ``certify(problem, student)`` or ``certify(pot, teacher, student)``; one point, unbatched, and
    best a Newton-polished one (:func:`earnshaw.refine`).

    Args:
      args: ``problem, student`` or ``pot, teacher, student``; the potential one of :data:`CERTIFIABLE`.
      radius: the box half-width to try; default: radii from ``10 |Newton step|`` up by ``sqrt(10)`` to
        ``1e-4 (1 + |x|)``, stopping at the first that fails for a reason other than the step's size.
      prec: arb working precision in bits.
      shifts: how many shifts to try when bounding the smallest eigenvalue of a minimum.

    Returns:
      :class:`Certificate`, with ``certified=False`` and the reason when the proof fails (not near a critical
        point, Hessian singular or sign-indefinite over the box, or the potential not twice differentiable there).

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.Teacher(b=jnp.array([1.0, -0.5]), w=jnp.array([[1.0, 0.0], [0.3, 0.8]]))
    >>> cert = es.certify("erf", t, es.Student(a=t.b, theta=t.w))      # the global minimum itself
    >>> cert.certified, cert.kind, cert.index, cert.loss_interval[0] <= 0.0 <= cert.loss_interval[1]
    (True, 'strict local minimum', 0, True)
    >>> jax.config.update("jax_enable_x64", False)
    """
    if arb is None:  # pragma: no cover
        raise ImportError("certify needs python-flint (pip install python-flint)")
    problem, student = resolve("certify", args)
    check_single("certify", problem.pot)
    if not problem.plain:
        raise ValueError("certify's interval arithmetic covers bias-free units under N(0, I) inputs; use "
                         "analyze for biased units or input_mean/input_cov")
    if student.a.ndim != 1 or problem.teacher.b.ndim != 1:
        raise ValueError(f"certify takes one point and one teacher; got student batch {student.batch_shape} and "
                         f"teacher batch {problem.batch_shape}")
    if problem.manifold != "euclidean":
        raise ValueError("certify proves critical points in R^n; got manifold='sphere'")
    if not isinstance(problem.objective, str):
        raise ValueError("certify evaluates the named objectives L, G and reduced, not a callable")
    base = problem.pot.name if not problem.pot.name.startswith("hermite") else "hermite"
    if problem.pot.kind != "inner" or base not in CERTIFIABLE:
        raise ValueError(f"certify cannot evaluate the potential {problem.pot!r}; certifiable: "
                         f"{', '.join(CERTIFIABLE)}")
    k, d = student.k, student.d
    x = np.asarray(problem.flatten(student), dtype=np.float64)
    free = np.flatnonzero(np.asarray(problem.mask(x)) > 0)
    H = np.asarray(_hessian_program(problem, student))  # over the trainable coordinates, compiled
    g = np.asarray(problem.flatten(_grad_program(problem, student)))[free]
    try:
        C = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return _fail(x[free], radius or 0.0, "the Hessian is singular at the point (a degenerate critical point)")
    step = float(np.max(np.abs(C @ g)))
    scale = 1.0 + float(np.max(np.abs(x)))
    if radius is not None:
        radii = [float(radius)]
    else:  # from above the Newton step's size up to 1e-4 relative: the smallest box that works is the sharpest
        start = max(10 * step, 1e-14 * scale)
        radii = [start * 10.0 ** (p / 2) for p in range(40) if start * 10.0 ** (p / 2) <= 1e-4 * scale]
        radii = radii or [1e-4 * scale]
    old = flint.ctx.prec
    flint.ctx.prec = prec
    try:
        reason = "no radius tried"
        mid = _objective(problem, [arb(float(v)) for v in x], k, d)  # the centre's balls: the same for every radius
        for r in radii:
            ok, reason, cert, worst = _try(problem, x, free, C, r, k, d, shifts, H, mid)
            if ok:
                return cert
            # A box barely larger than the Newton step fails by the step itself (|K - x| ~ |C grad f|); past
            # that, failures come from the Hessian's variation over the box, which only grows with r: near a
            # kink (a unit nearly parallel to another) the radii that work end early, so stop at the first.
            if worst > 2 * step:
                return _fail(x[free], r, reason)
        return _fail(x[free], radii[-1] if radii else 0.0, reason)
    finally:
        flint.ctx.prec = old


def _fail(center, r, reason):
    return Certificate(False, None, None, float(r), center, (math.nan, math.nan), None, reason)


def _box(x, free, r):
    xs = [arb(float(v)) for v in x]
    for i in free:
        xs[i] = arb(float(x[i]), float(r))
    return xs


def _try(problem, x, free, C, r, k, d, shifts, H_float, mid):
    nf = len(free)
    box = _objective(problem, _box(x, free, r), k, d)
    F = mid.g[free]
    Jo = box.h[np.ix_(free, free)]
    if not all(v.is_finite() for v in Jo.ravel()) or not all(v.is_finite() for v in F):
        return (False, f"the objective is not twice differentiable on the box of radius {r:.1e} (arb: not finite)",
                None, math.inf)
    J = flint.arb_mat(Jo.tolist())
    Ca = flint.arb_mat(C.tolist())
    M = flint.arb_mat(nf, nf)
    for i in range(nf):
        M[i, i] = arb(1)
    M = M - Ca * J
    dev = flint.arb_mat([[arb(0, float(r))] for _ in range(nf)])
    K = M * dev - Ca * flint.arb_mat([[v] for v in F])  # K(X) - x~
    ball = arb(0, float(r))
    Kv = [K[i, 0] for i in range(nf)]
    if not all(ball.contains_interior(v) for v in Kv):
        worst = max(float(abs(v).upper()) for v in Kv)
        return False, (f"Krawczyk's test failed at radius {r:.1e} (|K - x| <= {worst:.1e}): no isolated critical point "
                       "certified there"), None, worst
    lam, vecs = np.linalg.eigh(0.5 * (H_float + H_float.T))
    Q = flint.arb_mat(vecs.tolist())
    G = Q.transpose() * Q
    if _dominant_signs(G) is None:  # pragma: no cover - an orthogonal matrix in floating point always passes
        return False, "the floating eigenvector basis is not provably non-singular", None, math.inf
    signs = _inertia(J, Q, G)
    if signs is None:
        return False, f"the Hessian's inertia is not constant over the box of radius {r:.1e}", None, math.inf
    index = int(sum(1 for s_ in signs if not s_))
    lam_lower = None
    if index == 0:
        for frac in [0.999, 0.99, 0.9, 0.5][:max(shifts, 1)] + [0.0]:
            s = float(lam[0]) * frac
            sg = _inertia(J, Q, G, s)
            if sg is not None and all(sg):
                lam_lower = s
                break
    loss = box.v
    cert = Certificate(True, "strict local minimum" if index == 0 else "saddle", index, float(r), x[free],
                       (float(loss.lower()), float(loss.upper())), lam_lower, "")
    return True, "", cert, 0.0
