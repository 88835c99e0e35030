r"""Population gradient flow ``dx/dt = -grad f(x)`` integrated with diffrax.

Explicit adaptive Runge-Kutta (Tsit5) by default, or the implicit Kvaerno5 for stiff
landscapes; a PID step-size controller. The flow stops when the gradient norm falls below
``gtol``: the vector field is zero there, so the state stays put and the controller's steps
grow to ``t1`` within a few steps (cheaper to compile than an ``Event`` on the gradient norm,
which evaluates the gradient twice more in the program). Singular potentials stop on
an ``Event`` when two charges meet. Under vmap each problem of a batch stops on its own, and
failures are reported per problem (``throw=False``).
"""
from __future__ import annotations

import functools

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from earnshaw import trajectory as _tr
from earnshaw._typing import Student
from earnshaw.dynamics import problem as P
from earnshaw.dynamics.closed_form import check_gradient, flat_gradient, flat_value_and_gradient
from earnshaw.potentials import potential as _potential
from earnshaw.trajectory import Trajectory, report_failures

__all__ = ["gradient_flow", "SOLVERS"]

#: ODE solvers by name, and vector-field evaluations per step (FSAL counted once).
SOLVERS = {"tsit5": (diffrax.Tsit5, 6), "dopri5": (diffrax.Dopri5, 6), "dopri8": (diffrax.Dopri8, 12),
           "kvaerno3": (diffrax.Kvaerno3, 4), "kvaerno5": (diffrax.Kvaerno5, 7), "euler": (diffrax.Euler, 1)}


def gradient_flow(pot, teacher, student, t1=1e4, *, train="both", objective=None, manifold="euclidean",
                  solver="tsit5", rtol=1e-8, atol=1e-10, gtol=1e-9, n_save=101, dt0=None, max_steps=100_000,
                  collision_radius=None, grad="auto", on_divergence="raise"):
    """Integrate the population gradient flow of ``objective`` from ``student`` up to time ``t1``.

    Args:
      pot: potential or name.
      teacher: :class:`Teacher`, unbatched or with the student's batch shape.
      student: start point; leading axes are a batch of independent problems (one compiled call).
      t1: final time.
      train: ``"both"``, ``"theta"`` or ``"a"``: the variables that move.
      objective: ``"L"``, ``"G"`` or ``"reduced"`` (default by boundedness of ``pot``).
      manifold: ``"euclidean"`` or ``"sphere"`` (Riemannian flow: tangent gradient, and each
        ``theta_i`` renormalised at the saves).
      solver: one of :data:`SOLVERS` (``"tsit5"`` explicit adaptive; ``"kvaerno3"``/``"kvaerno5"``
        implicit, for stiff flows: plateaus with tiny Hessian eigenvalues next to large ones).
      rtol, atol: PID controller tolerances (``euler`` is fixed-step with ``dt0``: exactly GD with lr = dt0).
      gtol: stop when the gradient norm is below this (status ``converged``): from then on the state
        does not move, so the later saves repeat it.
      n_save: number of saved points, log-spaced in time after ``t=0``.
      dt0: initial (or, for euler, fixed) step; None lets diffrax choose.
      max_steps: solver step limit (status ``limit_reached`` if reached before ``t1``).
      collision_radius: stop (status ``collided``) when an electron comes this close to a proton or
        another electron; singular potentials (coulomb, yukawa) end their flow this way.
      grad: ``"auto"`` (a hand-derived gradient where known, e.g. erf; else autodiff), ``"autodiff"``
        or ``"closed_form"``; see :mod:`earnshaw.dynamics.closed_form`.

    Returns:
      :class:`~earnshaw.trajectory.Trajectory`; ``n_grad_evals`` counts vector-field evaluations
      (stages per step times steps).

    >>> import jax, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> traj = es.gradient_flow("erf", t, es.random_student(jax.random.key(1), d=3, k=2), t1=1e3)
    >>> bool(traj.losses[-1] <= traj.losses[0])
    True
    >>> jax.config.update("jax_enable_x64", False)
    """
    pot = _potential(pot)
    P.check_options(train, manifold)
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; valid: {', '.join(SOLVERS)}")
    if not t1 > 0:
        raise ValueError(f"t1 must be positive, got t1={t1!r}")
    if not (isinstance(n_save, int) and n_save >= 2):
        raise ValueError(f"n_save must be an integer >= 2, got n_save={n_save!r}")
    if solver == "euler" and dt0 is None:
        raise ValueError("solver='euler' is fixed-step: pass dt0 (it equals the GD step size)")
    objective = P.default_objective(pot) if objective is None else objective
    check_gradient(pot, objective, grad)
    _tr.check_on_divergence(on_divergence)
    nb, teacher_batched = P.batch_axes(student, teacher)
    student, teacher = P.promote(student, teacher)
    fn = _compiled(pot, nb, teacher_batched, student.k, student.d, float(t1), train, objective, manifold, solver,
                   float(rtol), float(atol), float(gtol), int(n_save), None if dt0 is None else float(dt0),
                   int(max_steps), None if collision_radius is None else float(collision_radius), grad)
    traj = fn(student, teacher)
    return report_failures(traj, method="gradient_flow", pot=pot, on_divergence=on_divergence)


@functools.lru_cache(maxsize=None)
def _compiled(pot, nb, teacher_batched, k, d, t1, train, objective, manifold, solver, rtol, atol, gtol, n_save,
              dt0, max_steps, collision_radius, grad_mode):
    solver_cls, stages = SOLVERS[solver]
    start = t1 if n_save == 2 else min(1e-2, t1 / 10)
    save_ts = np.concatenate([[0.0], np.geomspace(start, t1, n_save - 1)])

    def single(student: Student, teacher):
        x0 = P.flatten(student)
        mask = P.train_mask(k, d, train, x0.dtype)
        gf = flat_gradient(pot, teacher, k, d, objective, grad_mode)
        # value and gradient at the saves in one evaluation (erf: from the same Gram matrices)
        vgf = flat_value_and_gradient(pot, teacher, k, d, objective, grad_mode)

        def grad(x):
            return P.tangent(gf(x) * mask, x, k, d, manifold)

        def vf(t, x, args):
            g = grad(x)
            if gtol > 0:
                # The stopping rule, in the field itself: below gtol the field is zero, the state stops and
                # the controller's steps grow to t1 within a few steps. An Event on the gradient norm would
                # compile two more copies of the gradient (0.3-0.4 s) to get the same end point.
                g = jnp.where(jnp.linalg.norm(g) < gtol, jnp.zeros_like(g), g)
            return -g

        def min_distance(x):
            th = P.unflatten(x, k, d).theta
            d_ep = jnp.linalg.norm(th[:, None] - teacher.w[None], axis=-1).min()
            d_ee = jnp.linalg.norm(th[:, None] - th[None], axis=-1) + jnp.where(jnp.eye(k), jnp.inf, 0.0)
            return jnp.minimum(d_ep, d_ee.min())

        def collided(t, x, args, **kwargs):
            return min_distance(x) < collision_radius

        # singular potentials must stop inside the step where two charges meet: an event
        event = None if collision_radius is None else diffrax.Event(collided)
        # only the two ends: no dense interpolation in the solver loop (cheaper to compile and run)
        saveat = (diffrax.SaveAt(t0=True, t1=True) if n_save == 2
                  else diffrax.SaveAt(ts=jnp.asarray(save_ts, x0.dtype), t1=True))
        controller = (diffrax.ConstantStepSize() if solver == "euler"
                      else diffrax.PIDController(rtol=rtol, atol=atol))
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf), solver_cls(), t0=0.0, t1=t1, dt0=dt0, y0=x0,
            saveat=saveat,
            stepsize_controller=controller, event=event, max_steps=max_steps, throw=False,
            adjoint=diffrax.ForwardMode())  # a plain while loop: no reverse-mode checkpointing to compile
        ys, ts = sol.ys, sol.ts
        if n_save == 2:  # [start, end] + the end again: the layout of the ts saves below
            ys, ts = jnp.concatenate([ys, ys[-1:]]), jnp.concatenate([ts, ts[-1:]])
        # Saves the solve did not reach (early stop, step limit, blow-up) are inf/NaN in diffrax:
        # the end point is the last finite save (the t1 save when the solve finished).
        finite = jnp.isfinite(ts) & jnp.all(jnp.isfinite(ys), axis=-1)
        last = jnp.max(jnp.where(finite, jnp.arange(ts.shape[0]), 0))
        final, t_end = ys[last], ts[last]
        saved = finite[:-1]
        ys = jnp.where(saved[:, None], ys[:-1], final[None])
        ts = jnp.where(saved, ts[:-1], t_end)
        # the saves and the end point in one loop: one unbatched copy of the value and gradient in the program
        # (vmapped, XLA compiles batched Gram products ~1 s slower)
        xs = jnp.concatenate([ys, final[None]])

        def evaluate(x):
            x = P.project(x, k, d, manifold)
            val, g = vgf(x)
            return x, val, jnp.linalg.norm(P.tangent(g * mask, x, k, d, manifold))

        xs, vals, gns = jax.lax.map(evaluate, xs)
        ys, final, vals, gns, fval, fgn = xs[:-1], xs[-1], vals[:-1], gns[:-1], vals[-1], gns[-1]
        res = sol.result
        blew_up = jnp.any(jnp.isfinite(ts) & ~jnp.all(jnp.isfinite(ys), axis=-1)) | ~jnp.isfinite(fval)
        # the only event is the collision one (it also fires at a start point already inside the radius)
        status = jnp.where(res == diffrax.RESULTS.event_occurred, _tr.COLLIDED,
                           jnp.where(res == diffrax.RESULTS.successful,
                                     jnp.where(fgn < gtol, _tr.CONVERGED, _tr.MAX_STEPS),
                                     jnp.where(res == diffrax.RESULTS.max_steps_reached, _tr.MAX_STEPS,
                                               _tr.SOLVER_FAILED)))
        # a step-size collapse with non-finite values is a divergence, not a convergence failure
        status = jnp.where(blew_up | ((status == _tr.SOLVER_FAILED) & (fgn > 1e6)), _tr.DIVERGED, status)
        nsteps = sol.stats["num_steps"]
        return Trajectory(ts=ts, losses=vals, grad_norms=gns, params=P.unflatten(ys, k, d),
                          final=P.unflatten(final, k, d), final_loss=fval, final_grad_norm=fgn,
                          n_grad_evals=(nsteps * stages + 1).astype(jnp.int32),
                          n_steps=nsteps.astype(jnp.int32), status=status.astype(jnp.int32),
                          saved=saved)

    fn = single
    for _ in range(nb):
        fn = jax.vmap(fn, in_axes=(0, 0 if teacher_batched else None))
    return jax.jit(fn, compiler_options=P.compile_options(nb))
