r"""Discrete dynamics: GD (Algorithm 4) and any optax optimiser, perturbed GD, Hessian descent
(Algorithm 1) and SecondGD (Algorithm 2). Node-wise descent (Algorithm 3) is in
:mod:`earnshaw.dynamics.nodewise`.

Every solver is called as ``solver(problem, student, ...)`` or ``solver(pot, teacher, student, ...)``
(``perturbed_gd`` takes its PRNG key first), with every option after the student keyword-only. The
update rules (:mod:`earnshaw.dynamics.rules`) run in one driving loop (:mod:`earnshaw.dynamics.loop`),
compiled once per kind of problem by ``jax.jit``; a batch of problems (leading axes of the student,
and of the teacher or ``lr`` where given) is one ``vmap`` of the whole run.

Corrections to the paper (docs/math.md sections 5 and 8): the Hessian step is
``x - alpha |lambda_min| sgn(grad . v) v`` (the printed sign goes uphill); SecondGD's
threshold uses ``alpha^2 gamma^3 / 3`` (Lemma 19 with the 1/2 of Taylor's term) and
returns ``x_T`` at the iteration limit.
"""
from __future__ import annotations

import inspect

import jax
import optax

from earnshaw import trajectory as _tr
from earnshaw.dynamics import rules
from earnshaw.dynamics.loop import drive, flat_of, trajectory, unit_norm
from earnshaw.problem import (check_finite_start, check_lr, compile_options, promote, resolve, split_keys,
                              vmap_batch)
from earnshaw.trajectory import report_failures

__all__ = ["gradient_descent", "optimize", "perturbed_gd", "hessian_descent", "second_gd"]

_FIRST_ORDER = ("gradient_descent", "perturbed_gd", "optimize")


def _single(problem, student, lr, key, *, method, max_steps, save_every, gtol, gtol_norm, options, optimizer):
    """One problem's run, traced inside the jitted program."""
    opts = dict(options)
    x0 = problem.flatten(student)
    flat = flat_of(problem, x0)
    stall = None
    if method == "gradient_descent":
        update, state0 = rules.from_optax(optax.sgd(lr), x0)
    elif method == "optimize":
        update, state0 = rules.from_optax(optimizer, x0)
    elif method == "perturbed_gd":
        opt = rules.perturbed_sgd(lr, key, g_thres=opts["g_thres"], radius=opts["radius"], t_thres=opts["t_thres"],
                                  mask=flat.mask)
        update, state0 = rules.from_optax(opt, x0)
    elif method == "hessian_descent":
        update, state0, stall = rules.hessian_step(flat, lr, opts["gamma"])
    else:
        update, state0, stall = rules.second_step(flat, lr, opts["eta"], opts["gamma"])
    out = drive(flat, x0, update, state0, max_steps=max_steps, save_every=save_every, gtol=gtol,
                needs_value=method not in _FIRST_ORDER, stall=stall,
                gnorm=unit_norm(problem.d) if gtol_norm == "unit" else None)
    return trajectory(problem.unflatten, *out)


def _program(problem, student, lr, keys, *, method, max_steps, save_every, gtol, gtol_norm, options, optimizer):
    def single(p, s, lr_, key):
        return _single(p, s, lr_, key, method=method, max_steps=max_steps, save_every=save_every, gtol=gtol,
                       gtol_norm=gtol_norm, options=options, optimizer=optimizer)
    in_axes = (0 if problem.teacher.b.ndim > 1 else None, 0, 0 if lr.ndim else None, 0)
    return vmap_batch(single, student.a.ndim - 1, in_axes)(problem, student, lr, keys)


_STATIC = ("method", "max_steps", "save_every", "gtol", "gtol_norm", "options", "optimizer")
#: What ``gtol`` bounds: the gradient's Euclidean norm, or its largest per-unit norm (Safran and Shamir's rule).
GTOL_NORMS = ("full", "unit")
# one unbatched problem is a chain of tiny products: Eigen's thread pool off (compile_options)
_PROGRAMS = {batched: jax.jit(_program, static_argnames=_STATIC, compiler_options=compile_options(batched))
             for batched in (0, 1)}


def _solve(method, args, *, lr=None, max_steps, save_every, gtol, gtol_norm="full", options=(), key=None,
           optimizer=None, on_divergence="raise", train=None, objective=None, manifold=None, grad=None):
    """Validate, batch and run one discrete method."""
    if gtol_norm not in GTOL_NORMS:
        raise ValueError(f"unknown gtol_norm={gtol_norm!r}; valid: {', '.join(GTOL_NORMS)}")
    problem, student = resolve(method, args, train=train, objective=objective, manifold=manifold, gradient=grad)
    _tr.check_on_divergence(on_divergence)
    if not (isinstance(max_steps, int) and not isinstance(max_steps, bool) and max_steps >= 1):
        raise ValueError(f"max_steps must be a positive integer, got max_steps={max_steps!r}")
    save_every = max(1, int(save_every if save_every is not None else max(1, max_steps // 100)))
    check_finite_start(student, method)
    problem, student = promote(problem, student)
    lr = check_lr(0.0 if lr is None else lr, student)
    keys = split_keys(jax.random.key(0) if key is None else key, student.batch_shape)
    program = _PROGRAMS[min(student.a.ndim - 1, 1)]
    traj = program(problem, student, lr, keys, method=method, max_steps=max_steps, save_every=save_every,
                   gtol=float(gtol), gtol_norm=gtol_norm, options=options, optimizer=optimizer)
    step = None if method == "optimize" else float(jax.numpy.max(lr))
    return report_failures(traj, method=method, lr=step, pot=problem.pot, on_divergence=on_divergence,
                           optimizer=method == "optimize")


# Args shared by the solvers' docstrings; each docstring lists those in its own signature, in order.
_ARG_DOCS = {
    "args": ("``problem, student`` or ``pot, teacher, student``: a :class:`~earnshaw.Problem` (or a potential\n"
             "        or its name and a :class:`Teacher`, unbatched or with the student's batch shape) and the\n"
             "        :class:`Student` start point, whose leading axes are a batch of independent problems."),
    "key": "PRNG key (first, as in JAX), split per problem.",
    "optimizer": "an ``optax.GradientTransformation`` (e.g. ``optax.adam(1e-3)``), the same for every problem.",
    "lr": "step size, scalar or one per problem (batch shape).",
    "max_steps": "maximum number of steps (status ``limit_reached`` when they run out).",
    "g_thres": "gradient norm below which a kick may happen.",
    "radius": "radius of the ball the kick is drawn from (uniformly).",
    "t_thres": "fewest steps between two kicks.",
    "gamma": ("curvature threshold: ``lambda_min < -gamma`` is negative curvature (Hessian descent steps\n"
              "        along it and stops once there is none; SecondGD takes a Hessian step)."),
    "eta": "gradient threshold: a gradient step when ``|grad| >= eta``.",
    "train": ('``"both"``, ``"theta"`` (fixed charges, Appendix F) or ``"a"``; with a ``problem``, replaces\n'
              "        its field (None keeps it), as do ``objective``, ``manifold`` and ``grad``."),
    "objective": ('``"L"`` (eq. 1), ``"G"`` (``L + |a|^2``), ``"reduced"`` (eq. 2) or a callable\n'
                  '        ``f(pot, teacher, student)``; default ``"L"`` for bounded potentials, ``"reduced"`` else.'),
    "manifold": '``"euclidean"`` or ``"sphere"`` (each ``theta_i`` projected to the unit sphere).',
    "save_every": "steps between saved points (default ``max_steps // 100``).",
    "gtol": "stop (status ``converged``) when the gradient norm falls below ``gtol``.",
    "gtol_norm": ('``"full"`` (the gradient\'s Euclidean norm) or ``"unit"`` (its largest per-unit norm\n'
                  "        ``max_i |(dF/da_i, dF/dtheta_i)|``, Safran and Shamir's stopping rule): what ``gtol`` bounds."),
    "grad": ('``"auto"`` uses a hand-derived gradient where one is known (the built-in erf and relu\n'
             '        potentials and the fast tables, see :mod:`earnshaw.closed_form`) and autodiff otherwise;\n'
             '        ``"autodiff"`` or\n'
             '        ``"closed_form"`` force one.'),
    "on_divergence": '``"raise"`` (a single run, or every problem of a batch), ``"warn"`` or ``"ignore"``.',
}


def _doc_args(fn) -> str:
    """The Args/Returns block of ``fn``'s docstring: an entry for each parameter in its signature."""
    lines = ["", "    Args:"]
    for name in inspect.signature(fn).parameters:
        if name not in _ARG_DOCS:
            raise KeyError(f"no Args entry for {fn.__name__}({name}=...)")
        lines.append(f"      {name}: {_ARG_DOCS[name]}")
    lines += ["", "    Returns:", "      :class:`~earnshaw.trajectory.Trajectory` (batch axes first).", ""]
    return "\n".join(lines)


def gradient_descent(*args, lr=1e-2, max_steps=10_000, train=None, objective=None, manifold=None, save_every=None,
                     gtol=0.0, gtol_norm="full", grad=None, on_divergence="raise"):
    """Gradient descent with projection (Algorithm 4): ``x <- Pi_M(x - lr grad f(x))``, i.e. ``optax.sgd``.
    {args}
    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    >>> traj = es.gradient_descent("erf", t, s, lr=0.05, max_steps=200)
    >>> traj.final.theta.shape, bool((traj.final_loss <= traj.losses[:, 0]).all())
    ((4, 2, 3), True)
    """
    return _solve("gradient_descent", args, lr=lr, max_steps=max_steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, gtol=gtol, gtol_norm=gtol_norm, grad=grad,
                  on_divergence=on_divergence)


def optimize(*args, optimizer, max_steps=10_000, train=None, objective=None, manifold=None, save_every=None,
             gtol=0.0, gtol_norm="full", grad=None, on_divergence="raise"):
    """Any optax optimiser on the population objective, in the same batched, divergence-checked loop as GD.

    Steps are ``x <- Pi_M(x + optimizer.update(grad f(x)))`` on the flat vector ``[a, theta]``
    (masked by ``train``; tangent on spheres). Each new optimiser object compiles a new program.
    {args}
    >>> import jax, optax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    >>> traj = es.optimize("erf", t, s, optimizer=optax.adam(1e-2), max_steps=500)
    >>> bool((traj.final_loss < traj.losses[:, 0]).all())
    True
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), "
                        f"got {type(optimizer).__name__}")
    return _solve("optimize", args, optimizer=optimizer, max_steps=max_steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, gtol=gtol, gtol_norm=gtol_norm, grad=grad,
                  on_divergence=on_divergence)


def perturbed_gd(key, *args, lr=1e-2, max_steps=10_000, g_thres=1e-3, radius=1e-2, t_thres=100, train=None,
                 objective=None, manifold=None, save_every=None, gtol=0.0, gtol_norm="full", grad=None,
                 on_divergence="raise"):
    """Perturbed gradient descent: GD, plus a uniform kick of radius ``radius`` whenever the
    gradient norm is below ``g_thres`` and no kick happened in the last ``t_thres`` steps
    (Jin et al., 2017), which escapes strict saddles (:func:`earnshaw.dynamics.rules.perturbed_sgd`).
    {args}
    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    >>> traj = es.perturbed_gd(jax.random.key(2), "erf", t, s, lr=0.05, max_steps=300)
    >>> traj.final.theta.shape, bool((traj.final_loss < traj.losses[:, 0]).all())
    ((4, 2, 3), True)
    """
    if key is None or not hasattr(key, "dtype"):
        raise TypeError(f"perturbed_gd takes its PRNG key first (perturbed_gd(key, problem, student, ...)), "
                        f"got {type(key).__name__}")
    return _solve("perturbed_gd", args, lr=lr, max_steps=max_steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, gtol=gtol, gtol_norm=gtol_norm, key=key, grad=grad,
                  on_divergence=on_divergence,
                  options=(("g_thres", float(g_thres)), ("radius", float(radius)), ("t_thres", int(t_thres))))


def hessian_descent(*args, lr=1e-2, max_steps=1_000, gamma=1e-6, train=None, objective=None, manifold=None,
                    save_every=None, on_divergence="raise"):
    """Hessian descent (Algorithm 1, sign corrected): ``x <- x - lr |lambda_min| sgn(grad . v) v``
    with ``(lambda_min, v)`` the smallest eigenpair of the Hessian (Riemannian on spheres); stops
    (``converged``) once ``lambda_min >= -gamma``.
    {args}
    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> z = es.Student(a=jnp.zeros(2), theta=jnp.zeros((2, 3)))  # gradient 0 here (erf is odd) ...
    >>> bool(es.spectrum("erf", t, z)[0] < -0.5)                  # ... and a negative curvature: a saddle
    True
    >>> traj = es.hessian_descent("erf", t, z, lr=0.1, max_steps=100)
    >>> bool(traj.final_loss < traj.losses[0] - 0.05)              # it leaves the saddle downhill
    True
    """
    return _solve("hessian_descent", args, lr=lr, max_steps=max_steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, gtol=0.0, on_divergence=on_divergence,
                  options=(("gamma", float(gamma)),))


def second_gd(*args, lr=1e-2, max_steps=10_000, eta=1e-4, gamma=1e-4, train=None, objective=None, manifold=None,
              save_every=None, on_divergence="raise"):
    """SecondGD (Algorithm 2): a gradient step when ``|grad| >= eta``, else a Hessian step; it
    returns the previous point (status ``stalled``) as soon as a step decreases the objective by less
    than ``min(lr eta^2 / 2, lr^2 gamma^3 / 3)``, which under Lemmas 18/19 certifies membership of
    ``M_{f, max(eta, gamma)}``; at the iteration limit it returns ``x_T`` (status ``limit_reached``).
    {args}
    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> traj = es.second_gd("erf", t, s, lr=0.1, max_steps=5000, eta=1e-2, gamma=1e-2)
    >>> str(traj.status_names()), bool(traj.final_grad_norm < 1e-2), int(traj.n_steps) < 5000
    ('stalled', True, True)
    """
    return _solve("second_gd", args, lr=lr, max_steps=max_steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, gtol=0.0, on_divergence=on_divergence,
                  options=(("eta", float(eta)), ("gamma", float(gamma))))


for _fn in (gradient_descent, optimize, perturbed_gd, hessian_descent, second_gd):
    _fn.__doc__ = _fn.__doc__.replace("{args}", _doc_args(_fn))
