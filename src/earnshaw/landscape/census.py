r"""``census``: the distinct critical points a batch of runs ended at, counted modulo the network's symmetries.

Every end point is polished with Newton (:func:`earnshaw.refine`) and classified (:func:`earnshaw.analyze`);
then points that are the same critical point up to a symmetry of the problem are grouped into one family:

* permutations of the student's units (``(a_i, theta_i)`` pairs), always;
* the sign flip ``(a_i, theta_i) -> (-a_i, -theta_i)`` of one unit (its bias ``c_i -> -c_i`` too), for odd
  inner-product activations
  (``sigma(-z) = -sigma(z)`` makes the two units the same function);
* the teacher's own symmetry group, when the caller passes it: maps ``Student -> Student`` that leave the
  loss unchanged, e.g. permuting units and input coordinates together when ``w_j = e_j``.

Two points are in one family when the smallest distance between one and any image of the other under
these symmetries (units matched by the Hungarian algorithm on the flattened ``(a_i, theta_i)``) is below
``tol * (1 + |x|)``. Each family's basin fraction (the share of starts that reached it) carries a
Wilson score interval.

Teacher symmetries given as maps are applied by enumerating each family's orbit (at most 5040 images).
The group of :func:`coordinate_permutations` (all ``d!`` permutations of the input coordinates, with the
units' own permutations) is matched directly instead: summaries that no symmetry changes (sorted entries,
sorted unit and column norms, each moving by at most the distance) rule out most families, and for the rest
colour refinement with individualisation, as in graph-isomorphism tools, finds the unit and coordinate
permutations that map one point's entries (equal to ``tol / 100`` relative) onto the other's.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student
from earnshaw.landscape.analyze import analyze
from earnshaw.landscape.matching import hungarian
from earnshaw.potentials.mixed import check_single
from earnshaw.problem import resolve

__all__ = ["Census", "Family", "census", "symmetric_distance", "coordinate_permutations", "CoordinatePermutations"]


@dataclasses.dataclass(frozen=True)
class Family:
    """One distinct critical point (up to symmetry) and the starts that reached it.

    Attributes:
      point: representative :class:`Student` (``a (k,)``, ``theta (k, d)``): the family's lowest-gradient member.
      loss, grad_norm, lambda_min: at ``point``. index: number of Hessian eigenvalues below ``-htol`` over the
        directions the problem moves in (0 for a minimum). recovered: teacher units recovered at ``point``.
      kind: ``"global minimum"``, ``"spurious local minimum"``, ``"saddle"`` or ``"not converged"``
        (no critical point within Newton's reach: the gradient stayed above ``gtol``).
      seeds: indices (into the flattened batch) of the starts in this family. fraction: ``len(seeds) / n``.
      interval: 95% Wilson score interval of the basin fraction.
    """

    point: Student
    loss: float
    grad_norm: float
    lambda_min: float
    index: int
    recovered: int
    kind: str
    seeds: tuple
    fraction: float
    interval: tuple

    def row(self) -> dict:
        """A flat dict for tables and Parquet."""
        return dict(kind=self.kind, loss=self.loss, grad_norm=self.grad_norm, index=self.index,
                    lambda_min=self.lambda_min, recovered=self.recovered, count=len(self.seeds),
                    fraction=self.fraction, ci_low=self.interval[0], ci_high=self.interval[1])


@dataclasses.dataclass(frozen=True)
class Census:
    """Distinct critical points of a batch of end points, most common first.

    Attributes:
      families: tuple of :class:`Family`. family_of: ``(n,)`` the family index of each start.
      n: number of starts.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.Teacher(b=jnp.ones(2), w=jnp.eye(2))
    >>> zero = es.Student(a=jnp.zeros((2, 2)), theta=jnp.zeros((2, 2, 2)))     # the saddle at 0, twice
    >>> c = es.census("erf", t, zero)
    >>> c.n, [f.kind for f in c.families], c.family_of.tolist(), c.rows()[0]["count"]
    (2, ['saddle'], [0, 0], 2)
    >>> jax.config.update("jax_enable_x64", False)
    """

    families: tuple
    family_of: np.ndarray
    n: int

    def rows(self) -> list:
        """One dict per family (see :meth:`Family.row`)."""
        return [f.row() for f in self.families]

    def __str__(self):
        head = f"{'#':>3} {'kind':<24} {'loss':>11} {'|grad|':>9} {'index':>5} {'lambda_min':>11} " \
               f"{'units':>5} {'count':>6} {'fraction [95% CI]':>24}"
        lines = [head]
        for i, f in enumerate(self.families):
            lines.append(f"{i:>3} {f.kind:<24} {f.loss:>11.4e} {f.grad_norm:>9.1e} {f.index:>5d} {f.lambda_min:>11.3e} "
                         f"{f.recovered:>5d} {len(f.seeds):>6d} {f.fraction:>8.3f} [{f.interval[0]:.3f}, "
                         f"{f.interval[1]:.3f}]")
        return "\n".join(lines)


class CoordinatePermutations(list):
    """The maps of :func:`coordinate_permutations` (a list of ``Student -> Student``), marked so that
    :func:`census` can match points under the whole group at once instead of enumerating orbits."""


def coordinate_permutations(d: int) -> CoordinatePermutations:
    """The teacher symmetries of ``w_j = e_j`` (``m = d``) with equal output weights: permuting the input
    coordinates permutes the teacher's units, so ``theta -> theta[:, perm]`` maps critical points to critical
    points. Returns the ``d - 1`` transpositions ``(0 j)``, which generate the whole symmetric group.

    :func:`census` recognises the result and matches two points under all ``d!`` permutations at once
    (permutation-invariant summaries first, then colour refinement of the unit-coordinate graph), so grouping
    costs about the same at ``d = 20`` as at ``d = 4``.

    >>> len(coordinate_permutations(4))
    3
    """
    maps = CoordinatePermutations()
    for j in range(1, d):
        perm = np.arange(d)
        perm[[0, j]] = perm[[j, 0]]
        maps.append(lambda s, p=perm: Student(a=s.a, theta=s.theta[..., p], bias=s.bias))
    return maps


def _invariants(x: Student, odd: bool) -> tuple:
    """Summaries of ``x`` unchanged by permuting units, input coordinates (and flipping units, ``odd``), each
    1-Lipschitz in the distance up to those symmetries: sorted entries, sorted unit norms, sorted column norms."""
    theta = np.asarray(x.theta)
    entries = np.sort((np.abs(theta) if odd else theta).ravel())
    return entries, np.sort(np.linalg.norm(_units(x), axis=1)), np.sort(np.linalg.norm(theta, axis=0))


def _labels(X, Y, gap):
    """Integer labels of the entries of ``X`` and ``Y`` shared between them: sorted values closer than ``gap``
    get one label (single linkage), so entries equal up to rounding and polishing error compare equal."""
    v = np.concatenate([X.ravel(), Y.ravel()])
    order = np.argsort(v, kind="stable")
    lab = np.empty(v.size, np.int64)
    lab[order] = np.concatenate([[0], np.cumsum(np.diff(v[order]) > gap)])
    return lab[:X.size].reshape(X.shape), lab[X.size:].reshape(Y.shape)


def _refine(LX, LY, rows, cols):
    """Colour refinement of two edge-labelled bipartite graphs (units x coordinates) at once: a unit's new
    colour is its colour and the multiset of (label, coordinate colour) of its row, likewise for coordinates,
    until no class splits. Colours mean the same in both graphs (one table of signatures)."""
    k, d = LX.shape
    while True:
        table = {}
        sig_r = [(rows[i], tuple(sorted(zip(L[i % k], cols[(i // k) * d:(i // k + 1) * d]))))
                 for i, L in ((i, LX if i < k else LY) for i in range(2 * k))]
        new_rows = [table.setdefault(("r",) + s_, len(table)) for s_ in sig_r]
        sig_c = [(cols[j], tuple(sorted(zip(L[:, j % d], new_rows[(j // d) * k:(j // d + 1) * k]))))
                 for j, L in ((j, LX if j < d else LY) for j in range(2 * d))]
        new_cols = [table.setdefault(("c",) + s_, len(table)) for s_ in sig_c]
        if len(set(new_rows)) == len(set(rows)) and len(set(new_cols)) == len(set(cols)):
            return new_rows, new_cols
        rows, cols = new_rows, new_cols


def _isomorphism(LX, LY, rows, cols, budget):
    """Unit and coordinate permutations ``(r, c)`` with ``LY[r][:, c] == LX`` (and the fixed columns' colours
    in ``rows`` equal), by colour refinement and individualisation with backtracking; None if none is found
    within ``budget[0]`` individualisations."""
    k, d = LX.shape
    rows, cols = _refine(LX, LY, rows, cols)
    if sorted(rows[:k]) != sorted(rows[k:]) or sorted(cols[:d]) != sorted(cols[d:]):
        return None
    for side, n, colours in (("r", k, rows), ("c", d, cols)):
        tied = [i for i in range(n) if colours[:n].count(colours[i]) > 1]
        if tied:
            break
    else:  # every class a singleton: the colours are the permutations
        r = [rows[k:].index(c_) for c_ in rows[:k]]
        c = [cols[d:].index(c_) for c_ in cols[:d]]
        return (np.array(r), np.array(c)) if np.array_equal(LY[r][:, c], LX) else None
    i0 = tied[0]
    fresh = max(rows + cols) + 1
    for j in [n + j for j in range(n) if colours[n + j] == colours[i0]]:
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        new = list(colours)
        new[i0] = new[j] = fresh
        found = _isomorphism(LX, LY, new, cols, budget) if side == "r" else _isomorphism(LX, LY, rows, new, budget)
        if found is not None:
            return found
    return None


def _match_units_and_coordinates(x: Student, y: Student, odd: bool, tol: float = 1e-7, budget: int = 50) -> float:
    """Distance from ``x`` to an image of ``y`` under a permutation of units and one of input coordinates (and
    unit flips, ``odd``); ``inf`` when no image is found.

    Entries equal to within ``tol`` get one label (their absolute values for ``odd``); colour refinement of
    the two labelled unit-coordinate graphs with individualisation (the method of graph-isomorphism tools)
    finds the permutations that map one labelling to the other, and the distance is measured on the values."""
    X, Y = _units(x), _units(y)
    d = np.asarray(x.theta).shape[1]
    fold = np.abs if odd else (lambda M: M)
    LX, LY = _labels(fold(X), fold(Y), tol)
    fixed = [c for c in range(X.shape[1]) if not 1 <= c < 1 + d]  # a (and the bias): not permuted
    rows = [hash(tuple(L[i, fixed])) for L in (LX, LY) for i in range(X.shape[0])]
    found = _isomorphism(LX[:, 1:1 + d], LY[:, 1:1 + d], rows, [0] * (2 * d), [budget])
    if found is None:
        return np.inf
    r, c = found
    Yp = Y[r].copy()
    Yp[:, 1:1 + d] = Yp[:, 1:1 + d][:, c]
    diff = np.sum((X - Yp) ** 2, axis=1)
    if odd:
        diff = np.minimum(diff, np.sum((X + Yp) ** 2, axis=1))
    return float(np.sqrt(diff.sum()))


def _unit_matrix(a, theta, bias=None):
    """Units as rows ``(a_i, theta_i[, c_i])``: an odd activation's flip negates the whole row, bias included."""
    cols = [np.asarray(a)[:, None], np.asarray(theta)] + ([] if bias is None else [np.asarray(bias)[:, None]])
    return np.concatenate(cols, axis=1)  # (k, 1 + d [+ 1])


def _units(x: Student):
    return _unit_matrix(x.a, x.theta, x.bias)


def symmetric_distance(x: Student, y: Student, *, odd: bool = False) -> float:
    """Distance between two points up to a permutation of units (and, ``odd``, a sign flip of each unit).

    The units of ``y`` are matched to those of ``x`` by the Hungarian algorithm on their ``(a_i, theta_i)``
    vectors; the result is the Euclidean norm of the matched difference.

    >>> import numpy as np
    >>> x = Student(a=np.array([1.0, 2.0]), theta=np.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> y = Student(a=np.array([-2.0, 1.0]), theta=np.array([[-1.0, 0.0], [0.0, 1.0]]))
    >>> round(symmetric_distance(x, y) ** 2, 9), symmetric_distance(x, y, odd=True)   # 9 + 1 + 1 and 1 + 1 + 1
    (14.0, 0.0)
    """
    X, Y = _units(x), _units(y)
    cost = np.sum((X[:, None, :] - Y[None, :, :]) ** 2, axis=-1)
    if odd:
        cost = np.minimum(cost, np.sum((X[:, None, :] + Y[None, :, :]) ** 2, axis=-1))
    rows, cols = hungarian(cost)
    return float(np.sqrt(max(cost[rows, cols].sum(), 0.0)))


def _key(x: Student, odd: bool) -> bytes:
    """A key equal for points that differ by a permutation of units (and sign flips, ``odd``) only."""
    X = np.round(_units(x), 9) + 0.0  # + 0.0: -0.0 and 0.0 one key
    if odd:  # each unit's sign chosen so its first nonzero entry is positive
        first = np.take_along_axis(X, np.argmax(X != 0, axis=1)[:, None], 1)
        X = X * np.where(first < 0, -1.0, 1.0)
    return X[np.lexsort(X.T[::-1])].tobytes()


def _closure(maps: Sequence[Callable], x: Student, limit: int = 5040, odd: bool = False) -> list:
    """The orbit of ``x`` under the group the ``maps`` generate, modulo permutations of units (and sign flips,
    ``odd``), which the distance already quotients out (breadth first, at most ``limit`` points)."""
    orbit, frontier = [x], [x]
    seen = {_key(x, odd)}
    while frontier and len(orbit) < limit:
        nxt = []
        for p in frontier:
            for g in maps:
                q = g(p)
                key = _key(q, odd)
                if key not in seen:
                    seen.add(key)
                    orbit.append(q)
                    nxt.append(q)
        frontier = nxt
    return orbit


def _near_orbit(x: Student, orbit: list, bound: float, odd: bool) -> bool:
    """Whether some point of ``orbit`` is within ``bound`` of ``x`` up to unit permutations (and sign flips).

    The assignment's cost is at least the sum over ``x``'s units of the cost of its nearest unit, so one
    vectorised lower bound rules out almost all of the orbit; the Hungarian algorithm runs on the rest."""
    X = _units(x)
    Ys = np.stack([_units(y) for y in orbit])  # (m, k, 1 + d [+ 1])
    cost = np.sum((X[None, :, None, :] - Ys[:, None, :, :]) ** 2, -1)  # (m, k, k)
    if odd:
        cost = np.minimum(cost, np.sum((X[None, :, None, :] + Ys[:, None, :, :]) ** 2, -1))
    lower = np.minimum(cost.min(axis=2).sum(1), cost.min(axis=1).sum(1))
    for j in np.flatnonzero(lower <= bound * bound):
        rows, cols = hungarian(cost[j])
        if cost[j][rows, cols].sum() <= bound * bound:
            return True
    return False


def _same(x: Student, held, direct: bool, tol: float, odd: bool) -> bool:
    """Whether ``x`` is within ``tol (1 + |x|)`` of an image of a family's point under the problem's symmetries.

    ``held`` is the family's point when the coordinate group is matched ``direct``-ly, else its orbit (a list)."""
    scale = 1.0 + float(np.linalg.norm(_units(x)))
    if direct:
        # each summary moves by at most the distance modulo the group: a larger gap rules the pair out
        if any(np.linalg.norm(u - v) > tol * scale for u, v in zip(_invariants(x, odd), _invariants(held, odd))):
            return False
        return _match_units_and_coordinates(x, held, odd, tol=0.01 * tol * scale) <= tol * scale
    return _near_orbit(x, held, tol * scale, odd)


def _held(y: Student, symmetries, direct: bool, odd: bool):
    """What :func:`_same` compares against: ``y`` itself (direct matching) or its orbit under ``symmetries``."""
    return y if direct else _closure(symmetries, y, odd=odd) if symmetries else [y]


def _arrays(points: Student) -> tuple:
    return (np.asarray(points.a), np.asarray(points.theta), None if points.bias is None else np.asarray(points.bias))


def _at(a, theta, bias, i) -> Student:
    """The point(s) ``i`` of flattened arrays (a bias only when the points have one)."""
    return Student(a=a[i], theta=theta[i], bias=None if bias is None else bias[i])


@jax.jit
def _loss_grad(problem, x):
    """``(loss, gradient norm over the trainable coordinates)`` of flat points ``x (n, p)``, one program."""
    def single(x_):
        value, g = problem.flat_value_and_grad(x_)
        return value, jnp.linalg.norm(problem.tangent(g * problem.mask(x_), x_))
    return jax.vmap(single)(x)


def census(*args, objective=None, train=None, symmetries: Sequence[Callable] = (), refine: bool = True,
           gtol=1e-9, htol=1e-6, tol=1e-6, loss_tol=1e-8, match_tol=1e-2, analyze_all: bool = True) -> Census:
    """Group end points into distinct critical points modulo the problem's symmetries.

    Call as ``census(problem, points)`` or ``census(pot, teacher, points, ...)``; ``points`` is a batch of
    end points (usually ``traj.final``), any number of leading axes (flattened in the result's ``seeds``).

    Args:
      args: ``problem, points`` or ``pot, teacher, points``; the teacher unbatched.
      objective, train: as for the solvers (with a ``problem``, they replace its fields).
      symmetries: the teacher's own symmetry maps ``Student -> Student`` (generators; the group they
        generate is used), e.g. :func:`coordinate_permutations` for ``w_j = e_j``.
      refine: polish each point with Newton first (recommended: families are told apart to ``tol``).
      gtol, htol, loss_tol, match_tol: as for :func:`earnshaw.analyze` (a point with gradient above ``gtol``
        after polishing is ``"not converged"``; an eigenvalue below ``-htol`` counts in the index).
      tol: two points are one family when their symmetric distance is below ``tol * (1 + |x|)``.
      analyze_all: polish and analyse every point, then group (the default); ``False`` groups the points as
        they are and polishes and analyses one representative per family: for end points already at a
        gradient threshold (e.g. GD to 1e-10), where a Hessian eigendecomposition per point would dominate.

    Returns:
      :class:`Census`.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.Teacher(b=jnp.ones(2), w=jnp.eye(2))
    >>> pts = es.Student(a=jnp.array([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]]),
    ...                  theta=jnp.array([jnp.eye(2), jnp.eye(2)[::-1], -jnp.eye(2)]))
    >>> c = es.census("erf", t, pts)           # permuted and sign-flipped copies of the teacher: one family
    >>> len(c.families), c.families[0].kind, c.families[0].seeds
    (1, 'global minimum', (0, 1, 2))
    >>> jax.config.update("jax_enable_x64", False)
    """
    problem, points = resolve("census", args, objective=objective, train=train)
    # its symmetry group permutes all units, which per-unit activations break
    check_single("census", problem.pot)
    if problem.teacher.b.ndim != 1:
        raise ValueError(f"census takes one teacher (unbatched); got teacher batch shape {problem.batch_shape}")
    if points.a.ndim < 2:
        raise ValueError(f"census takes a batch of points (leading axes); got points.a of shape {points.a.shape}")
    k, d = points.k, points.d
    flat = Student(a=points.a.reshape(-1, k), theta=points.theta.reshape(-1, k, d),
                   bias=None if points.bias is None else points.bias.reshape(-1, k))
    options = dict(refine=refine, gtol=gtol, htol=htol, loss_tol=loss_tol, match_tol=match_tol)
    pot = problem.pot
    odd = bool(pot.activation is not None and pot.activation.odd and pot.kind == "inner")
    if analyze_all:
        report = analyze(problem, flat, **options)
        a, theta, bias = _arrays(report.point)
        gn, loss = np.asarray(report.grad_norm), np.asarray(report.loss)
    else:
        report = None
        a, theta, bias = _arrays(flat)
        loss, gn = (np.asarray(v) for v in _loss_grad(problem.for_student(flat), problem.flatten(flat)))
    n = a.shape[0]
    reps, orbits, members = [], [], []
    family_of = np.full(n, -1, dtype=np.int64)
    # Zero loss (to loss_tol, bounded potentials) is one family: with more student than teacher units the
    # global minima are not isolated (a unit split in two along a teacher unit), so no distance could group them.
    energy = float(np.asarray(problem.teacher_energy())) if pot.bounded else 0.0
    at_zero = (loss <= loss_tol * energy) if pot.bounded else np.zeros(n, bool)
    zero_family = -1
    # the whole group S_d of coordinate permutations is matched directly (summaries, then colour refinement),
    # not by enumerating orbits, which at d = 20 are thousands of points per family
    direct = isinstance(symmetries, CoordinatePermutations)
    # lowest gradient first: each family's representative is its best-polished member
    for i in np.argsort(gn, kind="stable"):
        if at_zero[i]:
            if zero_family < 0:
                reps.append(i)
                orbits.append(None)
                members.append([])
                zero_family = len(reps) - 1
            members[zero_family].append(int(i))
            family_of[i] = zero_family
            continue
        x = _at(a, theta, bias, i)
        found = next((f for f, held in enumerate(orbits) if held is not None and
                      abs(loss[i] - loss[reps[f]]) <= tol * (1.0 + abs(loss[i])) + 1e-12 and  # else: different points
                      _same(x, held, direct, tol, odd)), -1)
        if found < 0:
            reps.append(i)
            orbits.append(_held(x, symmetries, direct, odd))
            members.append([])
            found = len(reps) - 1
        members[found].append(int(i))
        family_of[i] = found
    order = sorted(range(len(reps)), key=lambda f: (-len(members[f]), loss[reps[f]]))
    if report is None:  # one representative per family, polished and analysed in one batch
        idx = np.array([reps[f] for f in order])
        report = analyze(problem, _at(a, theta, bias, idx), **options)
        at = {f: j for j, f in enumerate(order)}
        a, theta, bias = _arrays(report.point)
        loss, gn = np.asarray(report.loss), np.asarray(report.grad_norm)
        reps = {f: at[f] for f in order}
        # End points short of a critical point (a small Hessian eigenvalue leaves them 1e-6 away at a gradient
        # threshold) can miss their family's representative by more than tol; polished, they agree to rounding.
        # So the polished representatives are grouped once more and their families merged.
        kept = []
        for f in order:
            xf = _at(a, theta, bias, reps[f])
            if pot.bounded and f != zero_family and loss[reps[f]] <= loss_tol * energy:  # polished to zero loss
                if zero_family < 0:
                    zero_family = f
                    kept.append(f)
                    continue
                target = zero_family
            else:
                target = next((g for g in kept if g != zero_family and f != zero_family and
                               abs(loss[reps[f]] - loss[reps[g]]) <= tol * (1.0 + abs(loss[reps[f]])) + 1e-12 and
                               _same(xf, _held(_at(a, theta, bias, reps[g]), symmetries, direct, odd), direct, tol, odd)), None)
            if target is None:
                kept.append(f)
            else:
                members[target].extend(members[f])
                family_of[members[f]] = target
        order = sorted(kept, key=lambda f: (-len(members[f]), loss[reps[f]]))
    renumber = {f: j for j, f in enumerate(order)}
    from scipy.stats import binomtest  # scipy.stats costs ~0.4 s to import: every CLI call would pay it

    families = []
    for f in order:
        r = reps[f]
        count = len(members[f])
        ci = binomtest(count, n).proportion_ci(confidence_level=0.95, method="wilson")
        eig = np.asarray(report.eigenvalues[r])
        families.append(Family(point=_at(a, theta, bias, r), loss=float(loss[r]), grad_norm=float(gn[r]),
                               lambda_min=float(eig[0]), index=int(np.sum(eig < -htol)),
                               recovered=int(report.recovered[r]), kind=str(report.verdict[r]),
                               seeds=tuple(sorted(members[f])), fraction=count / n,
                               interval=(float(ci.low), float(ci.high))))
    return Census(families=tuple(families), family_of=np.array([renumber[f] for f in family_of]), n=n)
