"""``analyze``: what kind of point a run ended at, in the electron-proton picture."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from earnshaw._typing import Student
from earnshaw.landscape.critical import refine as _refine
from earnshaw.landscape.hessian import laplacians, warn_if_float32
from earnshaw.landscape.matching import match_units
from earnshaw.problem import resolve, vmap_batch

__all__ = ["Report", "analyze", "VERDICTS"]

VERDICTS = ("global minimum", "spurious local minimum", "saddle", "not converged")


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
            out.append(dict(loss=float(flat(self.loss)[i]), grad_norm=float(flat(self.grad_norm)[i]),
                            lambda_min=float(flat(self.lambda_min)[i]), in_M=bool(flat(self.in_M)[i]),
                            recovered=int(flat(self.recovered)[i]), verdict=str(flat(self.verdict)[i]),
                            max_distance=float(np.max(flat(self.distance)[i]))))
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


def analyze(*args, objective=None, train=None, manifold=None, refine: bool = False, gtol=1e-6, htol=1e-6, eps=1e-3,
            loss_tol=1e-8, match_tol=1e-2) -> Report:
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
    lam_min = eig[..., 0]
    odd = bool(pot.activation is not None and pot.activation.odd and pot.kind == "inner")
    sw, tw = unit_positions(student.theta, student.bias, teacher.bias), unit_positions(teacher.w, teacher.bias,
                                                                                      student.bias)
    idx, dist, cerr = match_units(sw, student.a, tw, teacher.b, odd=odd)
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
    return Report(loss=loss, grad_norm=gn, eigenvalues=eig, lambda_min=lam_min,
                  in_M=(gn <= eps) & (lam_min >= -eps), laplacians=lap, match=idx, distance=dist,
                  charge_error=cerr, recovered=recovered, verdict=verdict, k_teacher=teacher.k, refined=refine,
                  point=student)
