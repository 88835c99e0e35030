r"""The plateau of online SGD in the soft committee machine (Saad and Solla 1995; Goldt et al. 2019).

A student started with tiny overlaps with the teacher (``R`` of order ``1 / sqrt(d)``) first learns the
teacher's symmetric average, and sits on a plateau near the *symmetric fixed point* (every student unit the
same mixture of teacher units) before the symmetry breaks and each unit specialises. This module draws the
generalisation error against ``t = steps / d`` from the ODEs (:func:`earnshaw.online_ode`), locates the
symmetric fixed point with Newton (:func:`earnshaw.refine`) on a realisation of the plateau state and reports
its height and Hessian index, and measures the plateau's length against ``d`` and the learning rate.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from earnshaw.dynamics.online import online_ode
from earnshaw.dynamics.order import OrderParams, student_from_order
from earnshaw.landscape.analyze import analyze
from earnshaw.landscape.critical import refine
from earnshaw.problem import Problem

__all__ = ["PlateauPoint", "plateau_start", "plateau_curve", "symmetric_fixed_point", "plateau_length",
           "plateau_figure"]


@dataclasses.dataclass(frozen=True)
class PlateauPoint:
    """The symmetric fixed point found from a plateau state.

    Attributes:
      height: its generalisation error ``eps_g = L / 2`` (a fixed point of the gradient flow: the ``lr -> 0``
        plateau). ode_height: ``eps_g`` of the ODE's plateau state at ``t_plateau`` (higher at finite ``lr``: the
        ``lr^2`` terms hold the student above the fixed point). grad_norm: the gradient norm after Newton.
      index: Hessian eigenvalues below ``-htol`` over the trained variables. lambda_min: the smallest.
      overlaps: ``R (K, M)`` there (every row nearly the same: the units have not specialised).
    """

    height: float
    ode_height: float
    t_plateau: float
    grad_norm: float
    index: int
    lambda_min: float
    overlaps: np.ndarray


def plateau_start(K: int, M: int, d: float, *, q0: float = 0.5, a0: float = 1.0, seed: int = 0):
    """Order parameters of a random start in dimension ``d`` (any ``d``, ``inf`` allowed through ``R``'s scale):
    ``Q = q0 I``, ``R`` with entries ``~ N(0, q0 / d)`` (the overlaps of random vectors), ``a = a0``, teacher
    ``T = I``, ``b = 1``. Returns ``(OrderParams, T, b)``.

    >>> p, T, b = plateau_start(2, 2, d=1e4)
    >>> p.R.shape, float(abs(p.R).max()) < 0.05
    ((2, 2), True)
    """
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(K, M)) * math.sqrt(q0 / d)
    return (OrderParams(Q=jnp.asarray(q0 * np.eye(K)), R=jnp.asarray(R), a=jnp.full(K, a0)),
            jnp.eye(M), jnp.ones(M))


def plateau_curve(K: int, M: int, *, d=1e4, lr=0.5, lr_a=0.0, t1=2000.0, n_save=200, pot="erf", seed=0):
    """``(ts, eps_g)`` of the ODE from :func:`plateau_start` (second layer fixed by default; ``lr_a`` trains it)."""
    p, T, b = plateau_start(K, M, d, seed=seed)
    run = online_ode(pot, T, b, p, lr=lr, lr_a=lr_a, t1=t1, n_save=n_save)
    return np.asarray(run.ts), np.asarray(run.eps_g), run


def symmetric_fixed_point(K: int, M: int, *, d=1e4, lr=0.5, lr_a=0.0, t_plateau=None, pot="erf", htol=1e-6,
                          seed=0) -> PlateauPoint:
    """Newton from the plateau state: the symmetric fixed point, its height and Hessian index.

    The state at the middle of the plateau (default: where ``eps_g`` has fallen least per unit of log-time)
    is realised as weights in ``R^(K + M)`` and polished with Newton on the population loss over the trained
    variables (``theta``, and ``a`` when ``lr_a > 0``).
    """
    ts, eps, run = plateau_curve(K, M, d=d, lr=lr, lr_a=lr_a, pot=pot, seed=seed)
    if t_plateau is None:
        slope = np.abs(np.gradient(eps, np.log(np.maximum(ts, 1e-3))))
        # on the way down, before convergence: the flattest stretch in log-time is the plateau
        inner = (ts > ts[-1] * 1e-3) & (eps < 0.95 * eps[0]) & (eps > 0.01 * eps[0])
        i = int(np.argmin(np.where(inner, slope, np.inf)))
    else:
        i = int(np.searchsorted(ts, t_plateau))
    state = OrderParams(Q=run.params.Q[i], R=run.params.R[i], a=run.params.a[i])
    teacher, student = student_from_order(state, jnp.eye(M), jnp.ones(M), d=K + M)
    problem = Problem(pot, teacher, train="both" if lr_a > 0 else "theta")
    point, gn = refine(problem, student, max_steps=100, radius=1.0)
    rep = analyze(problem, point, htol=htol)
    R = np.asarray(point.theta @ teacher.w.T)
    return PlateauPoint(height=float(rep.loss) / 2, ode_height=float(eps[i]), t_plateau=float(ts[i]),
                        grad_norm=float(gn), index=int(np.sum(rep.eigenvalues < -htol)),
                        lambda_min=float(rep.lambda_min), overlaps=R)


def plateau_length(K: int, M: int, *, d=1e4, lr=0.5, lr_a=0.0, t1=20_000.0, pot="erf", seed=0, level=None):
    """Time ``t`` at which ``eps_g`` first falls below ``level`` (default: half the symmetric fixed point's
    height): the plateau's end, as a function of ``d`` (through the initial overlaps) and the learning rate."""
    if level is None:
        level = 0.5 * symmetric_fixed_point(K, M, d=d, lr=lr, lr_a=lr_a, pot=pot, seed=seed).height
    ts, eps, _ = plateau_curve(K, M, d=d, lr=lr, lr_a=lr_a, t1=t1, n_save=400, pot=pot, seed=seed)
    below = np.flatnonzero(eps < level)
    return float(ts[below[0]]) if below.size else math.inf


def plateau_figure(curves: dict):
    """``curves``: ``{label: (ts, eps_g)}`` -> a log-log figure of the generalisation error against ``t``."""
    import matplotlib  # lazy: figures only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (ts, eps) in curves.items():
        keep = ts > 0
        ax.loglog(ts[keep], np.maximum(eps[keep], 1e-16), label=label)
    ax.set_xlabel("t = steps / d")
    ax.set_ylabel("generalisation error  eps_g")
    ax.set_title("online SGD, erf soft committee machine (ODE)")
    ax.legend()
    fig.tight_layout()
    return fig
