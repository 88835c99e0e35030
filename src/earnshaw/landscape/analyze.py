"""``analyze``: what kind of point a run ended at, in the electron-proton picture."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from earnshaw._typing import Student
from earnshaw.landscape.critical import refine as _refine
from earnshaw.landscape.hessian import laplacians, warn_if_float32
from earnshaw.landscape.matching import match_units
from earnshaw.potentials import MixedPotential
from earnshaw.problem import resolve, vmap_batch

__all__ = ["Report", "analyze", "VERDICTS"]

VERDICTS = ("global minimum", "spurious local minimum", "saddle", "not converged", "escaping")
#: ``"escaping"``: no critical point near; two units merging while their output weights grow in opposite
#: directions (their sum stays finite, each goes to infinity), the loss creeping down along the way.


@dataclasses.dataclass(frozen=True)
class Report:
    """Landscape report for one problem or a batch (numpy arrays, batch axes first).

    Attributes:
      loss: ``(*B,)`` objective value. grad_norm: ``(*B,)`` Euclidean norm of the full gradient.
      eigenvalues: ``(*B, n)`` Hessian spectrum (ascending), ``n = k + k d``. lambda_min: ``(*B,)``.
      in_M: ``(*B,)`` membership of ``M_{f, eps} = {|grad| <= eps, lambda_min >= -eps}``.
      laplacians: ``(*B, k)`` trace of each electron's ``theta_i`` Hessian block.
      match: ``(*B, k)`` teacher unit matched to each student unit. distance: ``(*B, k)`` to it.
      charge_error: ``(*B, k)``. recovered: ``(*B,)`` number of teacher units recovered
        (a student unit within ``match_tol`` in position and charge, sign symmetry for odd activations).
      verdict: ``(*B,)`` one of :data:`VERDICTS`.
      refined: whether Newton polishing ran first; point: the analysed :class:`Student`.
      followed: ``(*B,)`` how far ``follow`` moved a point that was not at a critical point (0 if not moved).
      escape_pair: ``(*B, 2)`` the merging units of an ``"escaping"`` point (``-1`` otherwise);
        escape_distance: ``(*B,)`` their distance ``|theta_i - theta_j|``; escape_weights: ``(*B, 2)`` their
        output weights.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> rep = es.analyze("erf", t, es.Student(a=t.b, theta=t.w))
    >>> str(rep.verdict), int(rep.recovered), rep.fractions()["recovered all units"]
    ('global minimum', 2, 1.0)
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    eigenvalues: np.ndarray
    lambda_min: np.ndarray
    in_M: np.ndarray
    laplacians: np.ndarray
    match: np.ndarray
    distance: np.ndarray
    charge_error: np.ndarray
    recovered: np.ndarray
    verdict: np.ndarray
    k_teacher: int
    refined: bool
    point: Student
    htol: float = 1e-6
    followed: np.ndarray = None
    escape_pair: np.ndarray = None
    escape_distance: np.ndarray = None
    escape_weights: np.ndarray = None

    def fractions(self) -> dict:
        """Fraction of problems per verdict, and of problems that recovered every teacher unit."""
        v = np.asarray(self.verdict).reshape(-1)
        out = {name: float(np.mean(v == name)) for name in VERDICTS}
        out["recovered all units"] = float(np.mean(np.asarray(self.recovered).reshape(-1) == self.k_teacher))
        return out

    def rows(self) -> list:
        """One dict per problem (flattened batch), for tables and Parquet."""
        n = int(np.prod(self.loss.shape)) if self.loss.shape else 1
        flat = lambda x: np.asarray(x).reshape(n, *np.shape(x)[len(self.loss.shape):])  # noqa: E731
        out = []
        for i in range(n):
            row = dict(loss=float(flat(self.loss)[i]), grad_norm=float(flat(self.grad_norm)[i]),
                       lambda_min=float(flat(self.lambda_min)[i]), in_M=bool(flat(self.in_M)[i]),
                       recovered=int(flat(self.recovered)[i]), verdict=str(flat(self.verdict)[i]),
                       max_distance=float(np.max(flat(self.distance)[i])),
                       index=int(np.sum(flat(self.eigenvalues)[i] < -self.htol)))
            if self.followed is not None:
                pair, w = flat(self.escape_pair)[i], flat(self.escape_weights)[i]
                row.update(followed=float(flat(self.followed)[i]), escape_i=int(pair[0]), escape_j=int(pair[1]),
                           escape_distance=float(flat(self.escape_distance)[i]), escape_a_i=float(w[0]),
                           escape_a_j=float(w[1]))
            out.append(row)
        return out


def unit_positions(weights, bias, other_bias):
    """Units as points ``(w_j, c_j)`` in ``R^(d+1)`` when either side has biases (zeros for a side without),
    so matching compares biases too and an odd activation's flip ``(a, w, c) -> (-a, -w, -c)`` flips them."""
    weights = np.asarray(weights, float)
    if bias is None and other_bias is None:
        return weights
    c = np.zeros(weights.shape[:-1]) if bias is None else np.asarray(bias, float)
    c = np.broadcast_to(c, weights.shape[:-1])
    return np.concatenate([weights, c[..., None]], axis=-1)


@jax.jit
def _numbers(problem, x):
    """The numbers of a report in one compiled program (jit caches it per kind of problem):
    ``x -> (loss, gradient norm, spectrum, Laplacians, E[f^2] of the teacher)``."""

    def single(p, x):
        H = p.flat_hessian(x)
        value, grad = p.flat_value_and_grad(x)
        eig = p.free_eigh(H, grad, x)[0]
        gn = jax.numpy.linalg.norm(p.tangent(grad * p.mask(x), x))
        scale = p.teacher_energy() if p.pot.bounded else jax.numpy.zeros((), x.dtype)
        return value, gn, eig, laplacians(H, x.shape[-1] // p.unit_size, p.d), scale

    return vmap_batch(single, x.ndim - 1, (0 if problem.teacher.b.ndim > 1 else None, 0))(problem, x)


def _escaping(a, theta, *, odd=False, merge=0.1, cancel=0.5):
    """Per point, the pair of units that merges while its output weights grow apart, or ``-1``.

    A pair qualifies when ``|theta_i - s theta_j| <= merge * max(|theta_i|, |theta_j|)`` and its output weights
    point in opposite directions and mostly cancel, ``a_i (s a_j) < 0`` and
    ``|a_i + s a_j| <= cancel (|a_i| + |a_j|)`` (``s = 1``, or ``s = -1`` too for odd activations, where
    ``(a, theta)`` and ``(-a, -theta)`` are one unit): the pair then computes a finite difference of the
    activation, which only reaches its limit (a derivative) as the units meet and the weights go to infinity.
    Among several, the closest. Returns ``(pair (N, 2), distance (N,), weights (N, 2))`` for flat
    ``a (N, k)``, ``theta (N, k, d)``; ``weights`` are ``(a_i, s a_j)``."""
    N, k = a.shape
    pair = np.full((N, 2), -1, np.int64)
    dist = np.full(N, np.nan)
    weights = np.full((N, 2), np.nan)
    upper = np.triu(np.ones((k, k), bool), 1)
    for n in range(N):
        norm = np.linalg.norm(theta[n], axis=-1)
        size = np.maximum(norm[:, None], norm[None])
        best = (np.inf, None)
        for s in ((1.0, -1.0) if odd else (1.0,)):
            D = np.linalg.norm(theta[n][:, None] - s * theta[n][None], axis=-1)
            ai, aj = a[n][:, None], s * a[n][None]
            ok = upper & (D <= merge * size) & (ai * aj < 0) & (np.abs(ai + aj) <= cancel * (np.abs(ai) + np.abs(aj)))
            if ok.any():
                i, j = np.unravel_index(np.argmin(np.where(ok, D, np.inf)), D.shape)
                if D[i, j] < best[0]:
                    best = (D[i, j], (i, j, s))
        if best[1] is not None:
            i, j, s = best[1]
            pair[n], dist[n], weights[n] = (i, j), best[0], (a[n][i], s * a[n][j])
    return pair, dist, weights


def _follow(problem, student, gn, gtol, *, radius=2.0):
    """Newton from the points with gradient above ``gtol``, further than :func:`refine`'s default reach:
    a plateau point sits near a saddle whose flat directions (Hessian eigenvalues ~1e-6 next to ones ~10) a
    pseudo-inverse with a larger cut-off leaves alone. Returns the points and how far each moved."""
    flat = Student(a=np.asarray(student.a).reshape(-1, student.k),
                   theta=np.asarray(student.theta).reshape(-1, student.k, student.d))
    todo = np.flatnonzero(np.asarray(gn).reshape(-1) > gtol)
    moved = np.zeros(flat.a.shape[0])
    if todo.size:
        sub = Student(a=jax.numpy.asarray(flat.a[todo]), theta=jax.numpy.asarray(flat.theta[todo]))
        best, best_gn = sub, None
        for rcond in (1e-12, 1e-6):  # exact Newton first; then leave near-flat directions alone
            cand, cgn = _refine(problem, sub, max_steps=50, trust=0.1, radius=radius, rcond=rcond)
            if best_gn is None:
                best, best_gn = cand, np.asarray(cgn)
            else:
                better = np.asarray(cgn) < best_gn
                best = Student(a=np.where(better[:, None], cand.a, best.a),
                               theta=np.where(better[:, None, None], cand.theta, best.theta))
                best_gn = np.where(better, np.asarray(cgn), best_gn)
        new_a, new_t = np.array(flat.a), np.array(flat.theta)
        new_a[todo], new_t[todo] = np.asarray(best.a), np.asarray(best.theta)
        moved[todo] = np.sqrt(np.sum((new_a[todo] - flat.a[todo]) ** 2, -1) +
                              np.sum((new_t[todo] - flat.theta[todo]) ** 2, (-2, -1)))
        flat = Student(a=new_a, theta=new_t)
    shape = student.a.shape
    out = Student(a=jax.numpy.asarray(flat.a.reshape(shape)),
                  theta=jax.numpy.asarray(flat.theta.reshape(shape + (student.d,))))
    return out, moved.reshape(shape[:-1])


def analyze(*args, objective=None, train=None, manifold=None, refine: bool = False, gtol=1e-6, htol=1e-6, eps=1e-3,
            loss_tol=1e-8, match_tol=1e-2, follow: bool = False) -> Report:
    """Classify the point ``student``: loss, gradient, Hessian spectrum, matching, verdict.

    Call as ``analyze(problem, student)`` or ``analyze(pot, teacher, student, ...)``. The gradient and
    the Hessian are over the variables the problem trains (``train="theta"``: the usual soft committee
    machine with fixed output weights), on the manifold it lives on.

    Args:
      args: ``problem, student`` or ``pot, teacher, student`` (``student`` usually ``traj.final``); batch
        axes allowed.
      objective, train, manifold: as for the solvers (with a ``problem``, they replace its fields).
      refine: polish with Newton (:func:`earnshaw.refine`) before analysing.
      gtol: a point with gradient norm above ``gtol`` is ``"not converged"``.
      htol: ``lambda_min < -htol`` makes a converged point a ``"saddle"``.
      eps: the ``epsilon`` of ``M_{f, eps}``.
      loss_tol: loss at most ``loss_tol * E[f^2]`` counts as a global minimum (bounded potentials);
        for unbounded potentials recovering every teacher unit does.
      match_tol: relative tolerance on positions and charges for a recovered unit.
      follow: explain every point: one whose gradient is above ``gtol`` is followed by Newton (up to 50 steps,
        distance 2, flat directions left alone) to the critical point it sits near (a plateau's saddle,
        reported with its index); one that reaches none and has two units merging while their output weights
        grow apart (opposite, mostly cancelling output weights; see :data:`VERDICTS`) is ``"escaping"``, with the
        pair as
        evidence; only the rest are ``"not converged"``. Euclidean problems.

    Returns:
      :class:`Report`.

    >>> import jax, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> str(es.analyze("erf", t, es.Student(a=t.b, theta=t.w)).verdict)
    'global minimum'
    >>> relu = es.Problem("relu", t, train="theta")      # output weights fixed at the student's a
    >>> rep = es.analyze(relu, es.Student(a=t.b, theta=t.w))
    >>> rep.eigenvalues.shape, str(rep.verdict)          # the spectrum over theta alone: k d = 6
    ((6,), 'global minimum')
    >>> jax.config.update("jax_enable_x64", False)
    """
    problem, student = resolve("analyze", args, objective=objective, train=train, manifold=manifold)
    if refine:
        student, _ = _refine(problem, student)
    pot, teacher = problem.pot, problem.teacher
    x = problem.flatten(student)
    warn_if_float32(x, "analyze")
    loss, gn, eig, lap, scale = map(np.asarray, _numbers(problem, x))
    moved = np.zeros(np.shape(loss))
    if follow and np.any(gn > gtol):
        student, moved = _follow(problem, student, gn, gtol)
        x = problem.flatten(student)
        loss, gn, eig, lap, scale = map(np.asarray, _numbers(problem, x))
    lam_min = eig[..., 0]
    if isinstance(pot, MixedPotential):  # a student unit stands for a teacher unit of its own activation
        unit_odd, allowed = np.asarray(pot.odd[0]), (np.asarray(pot.groups["student"])[:, None]
                                                     == np.asarray(pot.groups["teacher"])[None, :])
        odd = bool(unit_odd.all())
    else:
        odd = bool(pot.activation is not None and pot.activation.odd and pot.kind == "inner")
        unit_odd, allowed = odd, None
    sw, tw = unit_positions(student.theta, student.bias, teacher.bias), unit_positions(teacher.w, teacher.bias,
                                                                                      student.bias)
    idx, dist, cerr = match_units(sw, student.a, tw, teacher.b, odd=unit_odd, allowed=allowed)
    wn = np.linalg.norm(tw, axis=-1)
    bn = np.abs(np.asarray(teacher.b))
    safe_idx = np.maximum(idx, 0)
    w_at = np.take_along_axis(np.broadcast_to(wn, idx.shape[:-1] + wn.shape[-1:]), safe_idx, -1)
    b_at = np.take_along_axis(np.broadcast_to(bn, idx.shape[:-1] + bn.shape[-1:]), safe_idx, -1)
    ok = (idx >= 0) & (dist <= match_tol * (1 + w_at)) & (cerr <= match_tol * (1 + b_at))
    recovered = ok.sum(-1)
    if pot.bounded:
        global_min = loss <= loss_tol * np.maximum(scale, 1e-300)
    else:
        global_min = recovered == teacher.k
    converged = gn <= gtol
    verdict = np.where(~converged, VERDICTS[3],
                       np.where(global_min, VERDICTS[0], np.where(lam_min < -htol, VERDICTS[2], VERDICTS[1])))
    shape = np.shape(loss)
    pair, edist, ew = (np.full(shape + (2,), -1), np.full(shape, np.nan), np.full(shape + (2,), np.nan))
    if follow and np.any(~converged):
        p_, d_, w_ = _escaping(np.asarray(student.a).reshape(-1, student.k),
                               np.asarray(student.theta).reshape(-1, student.k, student.d), odd=odd)
        esc = (p_[:, 0] >= 0).reshape(shape) & ~converged
        pair = np.where(esc[..., None], p_.reshape(shape + (2,)), -1)
        edist = np.where(esc, d_.reshape(shape), np.nan)
        ew = np.where(esc[..., None], w_.reshape(shape + (2,)), np.nan)
        verdict = np.where(esc, VERDICTS[4], verdict)
    return Report(loss=loss, grad_norm=gn, eigenvalues=eig, lambda_min=lam_min,
                  in_M=(gn <= eps) & (lam_min >= -eps), laplacians=lap, match=idx, distance=dist,
                  charge_error=cerr, recovered=recovered, verdict=verdict, k_teacher=teacher.k, refined=refine,
                  point=student, htol=htol, followed=moved, escape_pair=pair, escape_distance=edist, escape_weights=ew)
