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

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw import trajectory as _tr
from earnshaw.problem import check_finite_start, compile_options, promote, resolve, vmap_batch
from earnshaw.trajectory import Trajectory, report_failures

__all__ = ["gradient_flow", "SOLVERS", "CONTROLLERS"]

#: ODE solvers by name: the diffrax class's name, and vector-field evaluations per step (FSAL counted once).
SOLVERS = {"tsit5": ("Tsit5", 6), "dopri5": ("Dopri5", 6), "dopri8": ("Dopri8", 12),
           "kvaerno3": ("Kvaerno3", 4), "kvaerno5": ("Kvaerno5", 7), "euler": ("Euler", 1)}
#: Step-size controllers by name (``"pid"`` uses ``rtol``/``atol``; ``"constant"`` steps by ``dt0``).
CONTROLLERS = ("pid", "constant")


def _solver(solver):
    """``(solver object, vector-field evaluations per step)`` from a name or a diffrax solver object."""
    import diffrax  # here, not at import: diffrax and its stack take ~1 s to load
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; valid: {', '.join(SOLVERS)}, or a diffrax solver object")
        cls, stages = SOLVERS[solver]
        return getattr(diffrax, cls)(), stages
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"solver must be a name ({', '.join(SOLVERS)}) or a diffrax solver object, "
                        f"got {type(solver).__name__}")
    for cls, stages in SOLVERS.values():
        if type(solver) is getattr(diffrax, cls):
            return solver, stages
    tableau = getattr(solver, "tableau", None)
    stages = getattr(tableau, "num_stages", 1) - bool(getattr(tableau, "fsal", False))
    return solver, max(int(stages), 1)


def _controller(controller, rtol, atol, fixed):
    import diffrax
    if controller is None:
        controller = "constant" if fixed else "pid"
    if isinstance(controller, str):
        if controller not in CONTROLLERS:
            raise ValueError(f"unknown controller {controller!r}; valid: {', '.join(CONTROLLERS)}, or a diffrax "
                             "step-size controller object")
        return diffrax.ConstantStepSize() if controller == "constant" else diffrax.PIDController(rtol=rtol, atol=atol)
    if not isinstance(controller, diffrax.AbstractStepSizeController):
        raise TypeError(f"controller must be a name ({', '.join(CONTROLLERS)}) or a diffrax step-size controller "
                        f"object, got {type(controller).__name__}")
    return controller


def gradient_flow(*args, t1=1e4, train=None, objective=None, manifold=None, solver="tsit5", controller=None,
                  rtol=1e-8, atol=1e-10, gtol=1e-9, n_save=101, dt0=None, max_steps=100_000, collision_radius=None,
                  grad=None, on_divergence="raise"):
    """Integrate the population gradient flow of the objective from ``student`` up to time ``t1``.

    Call as ``gradient_flow(problem, student, ...)`` or ``gradient_flow(pot, teacher, student, ...)``.

    Args:
      args: ``problem, student`` or ``pot, teacher, student``: a :class:`~earnshaw.Problem` (or a potential
        and a :class:`Teacher`, unbatched or with the student's batch shape), and the start point, whose
        leading axes are a batch of independent problems (one compiled call).
      t1: final time.
      train: ``"both"``, ``"theta"`` or ``"a"``: the variables that move (with a ``problem``, replaces its
        field; None keeps it, as for ``objective``, ``manifold`` and ``grad``).
      objective: ``"L"``, ``"G"``, ``"reduced"`` or a callable (default by boundedness of ``pot``).
      manifold: ``"euclidean"`` or ``"sphere"`` (Riemannian flow: tangent gradient, and each
        ``theta_i`` renormalised at the saves).
      solver: one of :data:`SOLVERS` (``"tsit5"`` explicit adaptive; ``"kvaerno3"``/``"kvaerno5"``
        implicit, for stiff flows: plateaus with tiny Hessian eigenvalues next to large ones), or any
        diffrax solver object (``diffrax.Heun()``, ``diffrax.Kvaerno5(root_finder=...)``).
      controller: ``"pid"`` (default; ``rtol``/``atol``), ``"constant"`` (default for euler; steps of ``dt0``)
        or a diffrax step-size controller object (``diffrax.PIDController(rtol=..., atol=..., dtmax=...)``).
      rtol, atol: the PID controller's tolerances (``euler`` is fixed-step with ``dt0``: exactly GD with lr = dt0).
      gtol: stop when the gradient norm is below this (status ``converged``): from then on the state
        does not move, so the later saves repeat it.
      n_save: number of saved points, log-spaced in time after ``t=0``.
      dt0: initial (or, for a constant controller, fixed) step; None lets diffrax choose.
      max_steps: solver step limit (status ``limit_reached`` if reached before ``t1``).
      collision_radius: stop (status ``collided``) when an electron comes this close to a proton or
        another electron; singular potentials (coulomb, yukawa) end their flow this way.
      grad: ``"auto"`` (a hand-derived gradient where known: erf, relu, the fast tables; else autodiff), ``"autodiff"``
        or ``"closed_form"``; see :mod:`earnshaw.closed_form`.
      on_divergence: ``"raise"``, ``"warn"`` or ``"ignore"``.

    Returns:
      :class:`~earnshaw.trajectory.Trajectory`; ``n_grad_evals`` counts vector-field evaluations
      (stages per step times steps).

    >>> import jax, diffrax, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> traj = es.gradient_flow("erf", t, es.random_student(jax.random.key(1), d=3, k=2), t1=1e3)
    >>> bool(traj.losses[-1] <= traj.losses[0])
    True
    >>> heun = es.gradient_flow(es.Problem("erf", t), es.random_student(jax.random.key(1), d=3, k=2), t1=1e3,
    ...                         solver=diffrax.Heun(), controller=diffrax.PIDController(rtol=1e-6, atol=1e-8))
    >>> bool(abs(heun.final_loss - traj.final_loss) < 1e-4)
    True
    >>> jax.config.update("jax_enable_x64", False)
    """
    import diffrax
    problem, student = resolve("gradient_flow", args, train=train, objective=objective, manifold=manifold,
                               gradient=grad)
    solver_obj, stages = _solver(solver)
    fixed = isinstance(solver_obj, diffrax.Euler)
    if not t1 > 0:
        raise ValueError(f"t1 must be positive, got t1={t1!r}")
    if not (isinstance(n_save, int) and n_save >= 2):
        raise ValueError(f"n_save must be an integer >= 2, got n_save={n_save!r}")
    controller_obj = _controller(controller, float(rtol), float(atol), fixed)
    if isinstance(controller_obj, diffrax.ConstantStepSize) and dt0 is None:
        raise ValueError("a constant step size (solver='euler' or controller='constant') needs dt0 (for euler it "
                         "equals the GD step size)")
    _tr.check_on_divergence(on_divergence)
    check_finite_start(student, "gradient_flow")
    problem, student = promote(problem, student)
    program = _PROGRAMS[min(student.a.ndim - 1, 1)]
    # names travel as static arguments and become objects inside the trace: hashing a string is cheaper per call
    traj = program(problem, student, t1=float(t1), solver=solver, stages=stages,
                   controller=(controller, float(rtol), float(atol)), gtol=float(gtol), n_save=int(n_save), dt0=None if dt0 is None else float(dt0),
                   max_steps=int(max_steps), collision_radius=None if collision_radius is None
                   else float(collision_radius))
    return report_failures(traj, method="gradient_flow", pot=problem.pot, on_divergence=on_divergence)


def _single(problem, student, *, t1, solver, stages, controller, gtol, n_save, dt0, max_steps, collision_radius):
    import diffrax
    solver = _solver(solver)[0]
    controller = _controller(controller[0], controller[1], controller[2], isinstance(solver, diffrax.Euler))
    start = t1 if n_save == 2 else min(1e-2, t1 / 10)
    save_ts = np.concatenate([[0.0], np.geomspace(start, t1, n_save - 1)])
    x0 = problem.flatten(student)
    k = student.a.shape[-1]
    mask = problem.mask(x0)
    teacher = problem.teacher

    def grad(x):
        return problem.tangent(problem.flat_grad(x) * mask, x)

    def vf(t, x, args):
        g = grad(x)
        if gtol > 0:
            # The stopping rule, in the field itself: below gtol the field is zero, the state stops and
            # the controller's steps grow to t1 within a few steps. An Event on the gradient norm would
            # compile two more copies of the gradient (0.3-0.4 s) to get the same end point.
            g = jnp.where(jnp.linalg.norm(g) < gtol, jnp.zeros_like(g), g)
        return -g

    def min_distance(x):
        th = problem.unflatten(x).theta
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
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vf), solver, t0=0.0, t1=t1, dt0=dt0, y0=x0,
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

    value_and_grad = problem.value_and_grad_fn()

    def evaluate(x):
        x = problem.project(x)
        val, g = value_and_grad(x)
        return x, val, jnp.linalg.norm(problem.tangent(g * mask, x))

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
    return Trajectory(ts=ts, losses=vals, grad_norms=gns, params=problem.unflatten(ys),
                      final=problem.unflatten(final), final_loss=fval, final_grad_norm=fgn,
                      n_grad_evals=(nsteps * stages + 1).astype(jnp.int32),
                      n_steps=nsteps.astype(jnp.int32), status=status.astype(jnp.int32),
                      saved=saved)


def _program(problem, student, *, t1, solver, stages, controller, gtol, n_save, dt0, max_steps, collision_radius):
    fn = functools.partial(_single, t1=t1, solver=solver, stages=stages, controller=controller, gtol=gtol,
                           n_save=n_save, dt0=dt0, max_steps=max_steps, collision_radius=collision_radius)
    return vmap_batch(fn, student.a.ndim - 1, (0 if problem.teacher.b.ndim > 1 else None, 0))(problem, student)


_STATIC = ("t1", "solver", "stages", "controller", "gtol", "n_save", "dt0", "max_steps", "collision_radius")
# one unbatched problem is a chain of tiny products: Eigen's thread pool off (compile_options)
_PROGRAMS = {batched: jax.jit(_program, static_argnames=_STATIC, compiler_options=compile_options(batched))
             for batched in (0, 1)}
