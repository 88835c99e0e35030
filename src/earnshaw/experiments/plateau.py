r"""The plateau of online SGD in the soft committee machine (Saad and Solla 1995; Goldt et al. 2019).

A student started with tiny overlaps with the teacher (``R`` of order ``1 / sqrt(d)``) first learns the
teacher's symmetric average, and sits on a plateau near the *symmetric fixed point* (every student unit the
same mixture of teacher units) before the symmetry breaks and each unit specialises. This module draws the
generalisation error against ``t = steps / d`` from the ODEs (:func:`earnshaw.online_ode`), locates the
symmetric fixed point with Newton (:func:`earnshaw.refine`) on a realisation of the plateau state and reports
its height and Hessian index, and measures the plateau's length against ``d`` and the learning rate.
:func:`symmetric_height` is the same fixed point found independently, by minimising the loss over the one
free parameter of the symmetric family (every student unit ``alpha`` times the sum of the teacher units).
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from earnshaw.dynamics.online import OnlineRun, online_ode
from earnshaw.dynamics.order import OrderParams, student_from_order
from earnshaw.landscape.analyze import analyze
from earnshaw.landscape.critical import refine
from earnshaw.problem import Problem

__all__ = ["PlateauPoint", "plateau_start", "plateau_curve", "find_plateau", "fixed_point_of_run",
           "symmetric_fixed_point", "plateau_length", "escape_time", "symmetric_height", "plateau_figure"]


@dataclasses.dataclass(frozen=True)
class PlateauPoint:
    """The symmetric fixed point found from a plateau state.

    Attributes:
      height: its generalisation error ``eps_g = L / 2`` (a fixed point of the gradient flow: the ``lr -> 0``
        plateau).
      ode_height: ``eps_g`` of the ODE's plateau state at ``t_plateau`` (higher at finite ``lr``: the
        ``lr^2`` terms hold the student above the fixed point).
      t_plateau: the time of that state.
      grad_norm: the gradient norm after Newton.
      index: Hessian eigenvalues below ``-htol`` over the trained variables.
      lambda_min: the smallest.
      overlaps: ``R (K, M)`` there (every row nearly the same: the units have not specialised).
      a: the output weights there ``(K,)``.
    """

    height: float
    ode_height: float
    t_plateau: float
    grad_norm: float
    index: int
    lambda_min: float
    overlaps: np.ndarray
    a: np.ndarray

    @property
    def spread(self) -> float:
        """How far the units are from one mixture: the largest spread of a column of ``R`` (0 when symmetric)."""
        return float(np.max(np.ptp(self.overlaps, axis=0)))


def plateau_start(K: int, M: int, d: float, *, q0: float = 0.5, a0: float = 1.0, tau: float = 1.0, seed: int = 0):
    """Order parameters of a random start in dimension ``d`` (any ``d``, ``inf`` allowed through ``R``'s scale):
    ``Q = q0 I``, ``R`` with entries ``~ N(0, q0 tau / d)`` (the overlaps of random vectors), ``a = a0``, teacher
    ``T = tau I`` (``tau = 1/2`` is the literature's ``g(x) = erf(x / sqrt 2)`` with unit teacher vectors),
    ``b = 1``.

    Returns:
      ``(OrderParams, T (M, M), b (M,))``.

    >>> p, T, b = plateau_start(2, 2, d=1e4)
    >>> p.R.shape, float(abs(p.R).max()) < 0.05
    ((2, 2), True)
    """
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(K, M)) * math.sqrt(q0 * tau / d)
    return (OrderParams(Q=jnp.asarray(q0 * np.eye(K)), R=jnp.asarray(R), a=jnp.full(K, float(a0))),
            jnp.asarray(tau * np.eye(M)), jnp.ones(M))


def plateau_curve(K: int, M: int, *, d=1e4, lr=0.5, lr_a=0.0, t1=2000.0, n_save=200, pot="erf", seed=0,
                  tau=1.0, q0=0.5, noise=0.0, decay=0.0):
    """``(ts, eps_g, run)`` of the ODE from :func:`plateau_start` (second layer fixed by default; ``lr_a`` trains
    it); ``run`` is the :class:`~earnshaw.OnlineRun`.

    >>> ts, eps, run = plateau_curve(2, 2, t1=50.0, n_save=20)
    >>> ts.shape, bool(eps[-1] < eps[0])
    ((20,), True)
    """
    p, T, b = plateau_start(K, M, d, seed=seed, tau=tau, q0=q0)
    run = online_ode(pot, T, b, p, lr=lr, lr_a=lr_a, noise=noise, decay=decay, t1=t1, n_save=n_save)
    return np.asarray(run.ts), np.asarray(run.eps_g), run


def find_plateau(ts, eps) -> int:
    """Index of the plateau state: the flattest point in log-time on the way down (``eps`` between 1% and 95%
    of its start, after the first thousandth of the run).

    >>> import numpy as np
    >>> ts = np.geomspace(1e-2, 1e3, 200); eps = 0.5 / (1 + ts) ** 2 + 0.1 / (1 + (ts / 100) ** 4)
    >>> 1 < float(ts[find_plateau(ts, eps)]) < 100
    True
    """
    ts, eps = np.asarray(ts), np.asarray(eps)
    slope = np.abs(np.gradient(eps, np.log(np.maximum(ts, 1e-3))))
    inner = (ts > ts[-1] * 1e-3) & (eps < 0.95 * eps[0]) & (eps > 0.01 * eps[0])
    if not inner.any():
        raise ValueError("no plateau: eps_g never fell to 95% of its start (run longer, t1)")
    return int(np.argmin(np.where(inner, slope, np.inf)))


def fixed_point_of_run(pot, T, b, run: OnlineRun, *, train="theta", index=None, htol=1e-6) -> PlateauPoint:
    """Newton (:func:`earnshaw.refine`) from the state ``index`` of an ODE run (default :func:`find_plateau`),
    realised as weights in ``R^(K + M)``, on the population loss over ``train``; height and Hessian index.

    >>> import jax
    >>> from earnshaw.experiments import plateau as P
    >>> jax.config.update("jax_enable_x64", True)
    >>> _, _, run = P.plateau_curve(2, 2, t1=300.0)
    >>> fp = P.fixed_point_of_run("erf", jax.numpy.eye(2), jax.numpy.ones(2), run)
    >>> round(fp.height, 4), fp.index
    (0.0319, 1)
    >>> jax.config.update("jax_enable_x64", False)
    """
    eps = np.asarray(run.eps_g)
    i = find_plateau(run.ts, eps) if index is None else int(index)
    state = OrderParams(Q=run.params.Q[i], R=run.params.R[i], a=run.params.a[i])
    K, M = state.R.shape
    teacher, student = student_from_order(state, T, b, d=K + M)
    problem = Problem(pot, teacher, train=train)
    point, gn = refine(problem, student, max_steps=100, radius=1.0)
    rep = analyze(problem, point, htol=htol)
    return PlateauPoint(height=float(rep.loss) / 2, ode_height=float(eps[i]), t_plateau=float(run.ts[i]),
                        grad_norm=float(gn), index=int(np.sum(np.asarray(rep.eigenvalues) < -htol)),
                        lambda_min=float(rep.lambda_min), overlaps=np.asarray(point.theta @ teacher.w.T),
                        a=np.asarray(point.a))


def symmetric_fixed_point(K: int, M: int, *, d=1e4, lr=0.5, lr_a=0.0, t_plateau=None, pot="erf", htol=1e-6,
                          seed=0, tau=1.0) -> PlateauPoint:
    """Newton from the plateau state of :func:`plateau_curve`: the symmetric fixed point, its height and index
    (over ``theta``, and ``a`` too when ``lr_a > 0``).

    >>> import jax
    >>> jax.config.update("jax_enable_x64", True)
    >>> fp = symmetric_fixed_point(2, 2, tau=0.5)          # the literature's units
    >>> round(fp.height, 5), round(symmetric_height(2, tau=0.5), 5)
    (0.01161, 0.01161)
    >>> jax.config.update("jax_enable_x64", False)
    """
    ts, eps, run = plateau_curve(K, M, d=d, lr=lr, lr_a=lr_a, pot=pot, seed=seed, tau=tau)
    i = None if t_plateau is None else int(np.searchsorted(ts, t_plateau))
    _, T, b = plateau_start(K, M, d, tau=tau)
    return fixed_point_of_run(pot, T, b, run, train="both" if lr_a > 0 else "theta", index=i, htol=htol)


def escape_time(ts, eps, level, after: float = 0.0) -> float:
    """First time after ``after`` at which ``eps`` is below ``level`` (``inf`` if never): the plateau's end.

    >>> escape_time([0.0, 1.0, 2.0, 3.0], [1.0, 0.5, 0.5, 0.1], level=0.2)
    3.0
    """
    ts, eps = np.asarray(ts), np.asarray(eps)
    below = np.flatnonzero((eps < level) & (ts >= after))
    return float(ts[below[0]]) if below.size else math.inf


def plateau_length(K: int, M: int, *, d=1e4, lr=0.5, lr_a=0.0, t1=20_000.0, pot="erf", seed=0, level=None,
                   tau=1.0):
    """Time ``t`` at which ``eps_g`` first falls below ``level`` (default: half the symmetric fixed point's
    height): the plateau's end, as a function of ``d`` (through the initial overlaps) and the learning rate.

    >>> t_small_d = plateau_length(2, 2, d=1e3, t1=3000.0, level=0.015)
    >>> t_big_d = plateau_length(2, 2, d=1e5, t1=3000.0, level=0.015)
    >>> bool(t_small_d < t_big_d < float("inf"))
    True
    """
    if level is None:
        level = 0.5 * symmetric_fixed_point(K, M, d=d, lr=lr, lr_a=lr_a, pot=pot, seed=seed, tau=tau).height
    ts, eps, _ = plateau_curve(K, M, d=d, lr=lr, lr_a=lr_a, t1=t1, n_save=400, pot=pot, seed=seed, tau=tau)
    return escape_time(ts, eps, level)


def symmetric_height(K: int, *, tau: float = 1.0) -> float:
    """The height ``eps_g = L / 2`` of the symmetric fixed point for erf, ``K = M``, ``T = tau I``, ``b = a = 1``,
    found without the dynamics: every student unit is ``alpha`` times the sum of the teacher units, and the
    loss of that one-parameter family (closed-form erf potentials) is minimised over ``alpha > 0`` (scipy).
    A critical point of the symmetric family is one of the full loss (the symmetry maps gradients to
    themselves). For ``tau = 1/2`` this is ``(K / pi) (pi / 6 - K arcsin(1 / (2 K)))``.

    >>> round(symmetric_height(2, tau=0.5), 6), round(2 / math.pi * (math.pi / 6 - 2 * math.asin(0.25)), 6)
    (0.011611, 0.011611)
    """
    from scipy.optimize import minimize_scalar

    def phi(uu, uv, vv):  # E[erf(u.x) erf(v.x)]
        return (2 / math.pi) * math.asin(2 * uv / math.sqrt((1 + 2 * uu) * (1 + 2 * vv)))

    def eps(alpha):
        qq, qr = alpha**2 * K * tau, alpha * tau  # |theta|^2 and theta . w_n
        return 0.5 * (K**2 * phi(qq, qq, qq) - 2 * K**2 * phi(qq, qr, tau) + K * phi(tau, tau, tau))

    res = minimize_scalar(eps, bounds=(1e-6, 10.0), method="bounded", options={"xatol": 1e-12})
    return float(res.fun)


def plateau_figure(curves: dict, *, title="online SGD, erf soft committee machine", floor=1e-12, bands=None,
                   levels=None):
    """A log-log figure of the generalisation error against ``t = steps / d``.

    Args:
      curves: ``{label: (ts, eps_g)}``, ODE curves (lines).
      title: the axes' title.
      floor: errors below it (rounding of ``L / 2`` near 0) are drawn at it.
      bands: ``{label: (ts, mean, sem)}`` simulation means with a band of two standard errors (markers).
      levels: ``{label: height}`` fixed-point heights drawn as dotted horizontal lines.

    >>> import numpy as np
    >>> fig = plateau_figure({"K = M = 2": (np.geomspace(1e-2, 1e2, 50), np.geomspace(1, 1e-3, 50))})
    >>> fig.axes[0].get_xlabel()
    't = steps / d'
    """
    import matplotlib  # lazy: figures only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = {}
    for label, (ts, eps) in curves.items():
        ts, eps = np.asarray(ts), np.asarray(eps)
        keep = ts > 0
        (line,) = ax.loglog(ts[keep], np.maximum(eps[keep], floor), lw=1.6, label=label)
        colors[label] = line.get_color()
    for label, (ts, mean, sem) in (bands or {}).items():
        ts, mean, sem = (np.asarray(x) for x in (ts, mean, sem))
        keep = ts > 0
        c = colors.get(label)
        ax.fill_between(ts[keep], np.maximum(mean - 2 * sem, floor)[keep], np.maximum(mean + 2 * sem, floor)[keep],
                        color=c, alpha=0.2, lw=0)
        ax.plot(ts[keep], np.maximum(mean, floor)[keep], "o", ms=2.5, color=c)
    for label, h in (levels or {}).items():
        ax.axhline(h, ls=":", lw=1.0, color=colors.get(label, "grey"))
    ax.set_xlabel("t = steps / d")
    ax.set_ylabel(r"generalisation error $\varepsilon_g$")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig
