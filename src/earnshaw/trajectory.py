"""The :class:`Trajectory` every solver returns, and per-seed status codes."""
from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np

from earnshaw._typing import Student

__all__ = ["Trajectory", "STATUS", "DivergenceError", "report_failures"]

#: Status codes, per problem in a batch. ``limit_reached``: stopped at the step limit (or, for the flow,
#: at ``t1``) before meeting the tolerance; ``stalled``: SecondGD's stopping rule; ``collided``: two charges met.
STATUS = {0: "limit_reached", 1: "converged", 2: "diverged", 3: "stalled", 4: "solver_failed", 5: "collided"}
RUNNING, MAX_STEPS, CONVERGED, DIVERGED, STALLED, SOLVER_FAILED, COLLIDED = -1, 0, 1, 2, 3, 4, 5


class DivergenceError(FloatingPointError):
    """A run produced NaN/Inf or blew up; the message names the likely cause.

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> es.gradient_descent("erf", t, s, lr=1e3, max_steps=100)
    Traceback (most recent call last):
    earnshaw.trajectory.DivergenceError: gradient_descent: the run produced NaN/Inf or diverged. Likely cause: step size too large (lr=1000.0)...
    """


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A run of a solver, for one problem or a batch (leading axes ``B``).

    Attributes:
      ts: ``(*B, T)`` save times (gradient-flow time, or step index for discrete methods).
      losses: ``(*B, T)`` objective at the saved points.
      grad_norms: ``(*B, T)`` Euclidean norm of the (trainable part of the) gradient.
      params: :class:`Student` with arrays ``(*B, T, k)`` and ``(*B, T, k, d)``.
      final: :class:`Student` ``(*B, k)``, ``(*B, k, d)``: the end point (last finite point if diverged).
      final_loss, final_grad_norm: ``(*B,)`` at ``final``.
      n_grad_evals: ``(*B,)`` gradient (vector-field) evaluations used.
      n_steps: ``(*B,)`` steps taken.
      status: ``(*B,)`` int codes, see :data:`STATUS`.
      saved: ``(*B, T)`` bool, which save slots hold data (runs may stop early; later slots repeat the end).

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    >>> traj = es.gradient_descent("erf", t, s, lr=0.05, max_steps=200, save_every=20)
    >>> traj.batch_shape, traj.losses.shape, traj.params.theta.shape, traj[1].final.theta.shape
    ((4,), (4, 11), (4, 11, 2, 3), (2, 3))
    >>> list(traj.status_names())
    ['limit_reached', 'limit_reached', 'limit_reached', 'limit_reached']
    """

    ts: jax.Array
    losses: jax.Array
    grad_norms: jax.Array
    params: Student
    final: Student
    final_loss: jax.Array
    final_grad_norm: jax.Array
    n_grad_evals: jax.Array
    n_steps: jax.Array
    status: jax.Array
    saved: jax.Array

    @property
    def batch_shape(self) -> tuple:
        return tuple(self.final_loss.shape)

    def status_names(self):
        """Status codes as names (numpy array of str, batch shape)."""
        return np.vectorize(STATUS.get, otypes=[object])(np.asarray(self.status))

    def __getitem__(self, index):
        """Select problems from a batched trajectory (numpy-style index on the batch axes)."""
        return jax.tree_util.tree_map(lambda x: x[index], self)


#: What a solver does with diverged problems (``on_divergence=``).
ON_DIVERGENCE = ("raise", "warn", "ignore")


def check_on_divergence(on_divergence: str) -> None:
    """Raise a ValueError listing the valid choices if ``on_divergence`` is not one of :data:`ON_DIVERGENCE`."""
    if on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"unknown on_divergence={on_divergence!r}; valid: {', '.join(ON_DIVERGENCE)}")


def report_failures(traj: Trajectory, *, method: str, lr=None, pot=None, on_divergence: str = "raise",
                    optimizer: bool = False):
    """Turn diverged problems into a clear error (single run / all diverged) or a warning (some in a batch).

    Returns ``traj`` unchanged when nothing diverged.
    """
    check_on_divergence(on_divergence)
    status = np.asarray(traj.status).reshape(-1)
    bad = np.flatnonzero(status == DIVERGED)
    if bad.size == 0 or on_divergence == "ignore":
        return traj
    causes = []
    if lr is not None:
        causes.append(f"step size too large (lr={lr}); try a smaller lr")
    if optimizer:
        causes.append("the optimiser's step size too large; try a smaller learning rate")
    if pot is not None and not pot.bounded:
        causes.append(f"the potential {pot!r} is unbounded at r=0, so colliding charges blow up; "
                      "use a bounded potential or stop earlier")
    if not causes:
        causes.append("an unstable integration; tighten rtol/atol or use the implicit solver")
    single = traj.final_loss.ndim == 0
    where = "the run" if single else (
        f"{bad.size} of {status.size} problems (batch indices {bad[:10].tolist()}{'...' if bad.size > 10 else ''})")
    msg = (f"{method}: {where} produced NaN/Inf or diverged. Likely cause: {' or '.join(causes)}. "
           f"{'Its' if single else 'Their'} final parameters are the last finite point, with status 'diverged'.")
    if on_divergence == "raise" and (traj.final_loss.ndim == 0 or bad.size == status.size):
        raise DivergenceError(msg)
    if on_divergence in ("raise", "warn"):
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return traj


