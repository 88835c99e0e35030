r"""Gradient descent for a census: many seeds to a gradient threshold, without paying for the slowest seed.

One batched :func:`earnshaw.gradient_descent` call runs every seed until the last one stops (a ``vmap``
of a ``while_loop`` evaluates the whole batch each step), and the number of steps Safran and Shamir's
rule needs varies tenfold between seeds. So the seeds run in *rounds* of ``round_steps`` steps, each round
on the seeds still running, packed into batches of a fixed ``chunk`` (one compiled program for the whole
census): the work is the sum of the seeds' steps, not their maximum times the batch. GD keeps no state
between steps, so restarting a seed where the last round left it is exactly one long run.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student
from earnshaw.dynamics.descent import gradient_descent
from earnshaw.trajectory import CONVERGED, DIVERGED, MAX_STEPS

__all__ = ["Descent", "descend"]


@dataclasses.dataclass(frozen=True)
class Descent:
    """Where each seed's GD ended, and its loss curve.

    Attributes:
      final: :class:`Student` ``(n, k)``, ``(n, k, d)``. loss: ``(n,)`` objective there.
      unit_grad: ``(n,)`` largest per-unit gradient norm there. steps: ``(n,)`` GD steps taken.
      status: ``(n,)`` codes of :data:`earnshaw.trajectory.STATUS` (``converged`` or ``limit_reached``).
      curve_steps, curve_loss: ``(n, T)`` the saved (step, loss) points of each seed, NaN-padded past its end.
      seed_steps: total seed-steps computed (the work), padding included.
    """

    final: Student
    loss: np.ndarray
    unit_grad: np.ndarray
    steps: np.ndarray
    status: np.ndarray
    curve_steps: np.ndarray
    curve_loss: np.ndarray
    seed_steps: int


def _unit_grad(problem, x):
    from earnshaw.dynamics.loop import unit_norm

    g = jax.vmap(lambda x_: problem.flat_grad(x_) * problem.mask(x_))(x)
    return unit_norm(problem.d)(g)


def descend(problem, student: Student, *, lr: float, gtol: float, max_steps: int, round_steps: int = 1000,
            chunk: int = 128, saves_per_round: int = 10, max_points: int = 200) -> Descent:
    """GD from each start of ``student`` (``(n, k)``, ``(n, k, d)``) until its largest per-unit gradient norm is
    below ``gtol`` or it has taken ``max_steps`` steps.

    Args:
      problem: the :class:`~earnshaw.Problem` (one teacher).
      student: the ``n`` starts.
      lr: GD step size on the problem's objective.
      gtol: the per-unit gradient threshold (``gtol_norm="unit"``).
      max_steps: the step budget of each seed.
      round_steps: steps per round; the seeds still running are re-packed between rounds.
      chunk: seeds per compiled batch (the last batch of a round is padded with copies); rounds with at most
        a sixteenth of it still running (and four rounds of budget left) use batches 16x smaller.
      saves_per_round: loss points saved per round and seed.
      max_points: each curve is thinned to at most this many points (log-spaced in steps, ends kept).

    Returns:
      :class:`Descent`.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.Teacher(b=jnp.ones(2), w=jnp.eye(2))
    >>> s = es.Student(a=jnp.ones((3, 2)), theta=jax.random.normal(jax.random.key(0), (3, 2, 2)))
    >>> out = descend(es.Problem("relu", t, train="theta"), s, lr=0.05, gtol=1e-8, max_steps=20000, round_steps=500)
    >>> bool((out.unit_grad < 1e-8).all()), out.status.tolist()
    (True, [1, 1, 1])
    >>> jax.config.update("jax_enable_x64", False)
    """
    n = student.a.shape[0]
    a, theta = np.asarray(student.a).copy(), np.asarray(student.theta).copy()
    steps = np.zeros(n, np.int64)
    status = np.full(n, MAX_STEPS, np.int64)
    curves = [[] for _ in range(n)]
    running = np.arange(n)
    seed_steps = 0
    save_every = max(1, round_steps // max(1, saves_per_round))
    while running.size:
        # every running seed has taken the same whole rounds: one budget for the round
        budget = int(min(round_steps, max_steps - steps[running[0]]))
        next_running = []
        # A few stragglers would pay for a whole padded chunk each round: once at most a sixteenth of it is
        # still running, with at least four rounds of budget left, they run in batches 16x smaller (one more
        # compiled program, worth it only when the padding would cost more than compiling it).
        size = chunk
        if chunk >= 32 and running.size <= chunk // 16 and max_steps - steps[running[0]] >= 4 * round_steps:
            size = chunk // 16
        for lo in range(0, running.size, size):
            idx = running[lo:lo + size]
            pad = np.concatenate([idx, np.repeat(idx[:1], size - idx.size)]) if idx.size < size else idx
            part = Student(a=jnp.asarray(a[pad]), theta=jnp.asarray(theta[pad]))
            traj = gradient_descent(problem, part, lr=lr, max_steps=budget, save_every=min(save_every, budget),
                                    gtol=gtol, gtol_norm="unit", on_divergence="ignore")
            seed_steps += size * int(np.max(np.asarray(traj.n_steps)))
            fa, ft = np.asarray(traj.final.a), np.asarray(traj.final.theta)
            st, ns = np.asarray(traj.status), np.asarray(traj.n_steps)
            ts, ls, sv = np.asarray(traj.ts), np.asarray(traj.losses), np.asarray(traj.saved)
            for j, i in enumerate(idx):
                a[i], theta[i] = fa[j], ft[j]
                pts = [(steps[i] + t_, l_) for t_, l_, m_ in zip(ts[j], ls[j], sv[j]) if m_]
                if curves[i] and pts and pts[0][0] == curves[i][-1][0]:
                    pts = pts[1:]  # the round's start is the last round's end
                curves[i].extend(pts)
                steps[i] += int(ns[j])
                if st[j] in (CONVERGED, DIVERGED):
                    status[i] = int(st[j])
                elif steps[i] < max_steps:
                    next_running.append(i)
        running = np.array(next_running, dtype=np.int64)
    final = Student(a=jnp.asarray(a), theta=jnp.asarray(theta))
    x = problem.flatten(final)
    loss = np.asarray(jax.vmap(problem.f)(x))
    ug = np.asarray(_unit_grad(problem, x))
    cs, cl = _pack_curves(curves, max_points)
    return Descent(final=final, loss=loss, unit_grad=ug, steps=steps, status=status, curve_steps=cs, curve_loss=cl,
                   seed_steps=seed_steps)


def _pack_curves(curves, max_points):
    """``(steps, loss)`` arrays ``(n, T)``, each curve thinned to ``max_points`` log-spaced points (ends kept)."""
    T = max(1, min(max_points, max(len(c) for c in curves)))
    cs, cl = np.full((len(curves), T), np.nan), np.full((len(curves), T), np.nan)
    for i, c in enumerate(curves):
        if not c:
            continue
        arr = np.asarray(c, dtype=np.float64)
        if len(arr) > T:
            pick = np.unique(np.round(np.geomspace(1, len(arr), T)).astype(int) - 1)
            arr = arr[np.union1d(pick, [0, len(arr) - 1])]
        cs[i, :len(arr)], cl[i, :len(arr)] = arr[:, 0], arr[:, 1]
    return cs, cl
