r"""Discrete dynamics: GD (Algorithm 4), perturbed GD, Hessian descent (Algorithm 1),
SecondGD (Algorithm 2) and node-wise descent (Algorithm 3).

Each method is an ``update`` rule ``(i, x, state, value, grad) -> (x_new, state, flag)``
on the flat parameter vector (see :mod:`earnshaw.dynamics.problem`), run by one
driver: a ``lax.scan`` over save points whose body is a ``lax.while_loop`` over
steps, so runs stop early (converged, stalled, diverged) and a batch of problems
is one ``vmap`` of the whole run, compiled once.

Corrections to the paper (MATH.md sections 5 and 8): the Hessian step is
``x - alpha |lambda_min| sgn(grad . v) v`` (the printed sign goes uphill); SecondGD's
threshold uses ``alpha^2 gamma^3 / 3`` (Lemma 19 with the 1/2 of Taylor's term) and
returns ``x_T`` at the iteration limit.
"""
from __future__ import annotations

import functools
import inspect
import math

import jax
import jax.numpy as jnp

from earnshaw import trajectory as _tr
from earnshaw._typing import Student, Teacher
from earnshaw.dynamics import problem as P
from earnshaw.dynamics.closed_form import check_gradient, flat_gradient, flat_value_and_gradient
from earnshaw.landscape.hessian import flat_hessian
from earnshaw.potentials import potential as _potential
from earnshaw.trajectory import Trajectory, report_failures

__all__ = ["gradient_descent", "perturbed_gd", "hessian_descent", "second_gd", "nodewise_descent"]

_BLOWUP = 1e12


def _hd_direction(f, x, g, mask, k, d, manifold, hess=None):
    """Smallest eigenpair of the (masked, Riemannian) Hessian and the corrected HD step direction.

    ``hess``: ``x -> H(x)`` (default ``jax.hessian(f)``), e.g. :func:`earnshaw.landscape.hessian.flat_hessian`.
    """
    H = (jax.hessian(f) if hess is None else hess)(x)
    H = P.riemannian_hessian(H, g, x, k, d, manifold)
    frozen = 1.0 - mask
    big = jnp.max(jnp.abs(H)) * 10.0 + 1.0
    H = H * mask[:, None] * mask[None, :] + jnp.diag(frozen * big)
    lam, vecs = jnp.linalg.eigh(0.5 * (H + H.T))
    v = vecs[:, 0]
    s = jnp.where(jnp.dot(g, v) < 0, -1.0, 1.0)
    return lam[0], s * v


def _run(f, x0, update, state0, *, mask, k, d, manifold, max_steps, save_every, tol, needs_value=True,
         grad_fn=None, value_grad_fn=None, stall=None):
    """Drive ``update`` from ``x0``; returns the per-save records and the end state.

    Methods that do not look at the objective's value (GD, perturbed GD) evaluate only the
    gradient per step (the value's arcsin is the costly half of erf's loss in float64); their
    value is computed at the save points, and divergence is caught from the gradient.
    ``stall``: SecondGD's rule, status ``stalled`` (and the step rejected) when the new value is not
    below the old one by at least ``stall``.
    """
    n_chunks = -(-max_steps // save_every)
    vg = jax.value_and_grad(f) if value_grad_fn is None else value_grad_fn
    gf = jax.grad(f) if grad_fn is None else grad_fn

    def evaluate(x):
        if needs_value:
            val, g = vg(x)
        else:
            val, g = jnp.zeros((), x.dtype), gf(x)
        return val, P.tangent(g * mask, x, k, d, manifold)

    def finite(val, g, ref_val, ref_gn):
        gn = jnp.linalg.norm(g)
        ok = jnp.isfinite(val) & jnp.all(jnp.isfinite(g)) & (gn <= _BLOWUP * (1.0 + ref_gn))
        return ok & (jnp.abs(val) <= _BLOWUP * (1.0 + jnp.abs(ref_val)))

    # The start point is evaluated by the loop body itself (its first pass, ``fresh``), so the program
    # holds one copy of the objective and gradient, not two (0.3-0.5 s less to compile with a Hessian).
    zero = jnp.zeros((), x0.dtype)
    carry0 = dict(i=jnp.zeros((), jnp.int32), x=x0, val=zero, g=jnp.zeros_like(x0), state=state0,
                  status=jnp.asarray(_tr.RUNNING), nev=jnp.ones((), jnp.int32), gn0=zero, fresh=jnp.asarray(True))

    def body(c):
        fresh = c["fresh"]
        # The step is computed on the fresh pass too and discarded (a lax.cond around it measured 0.3-0.5 s
        # more compile in node-wise descent's nested loops); an infinite gradient sends SecondGD down its
        # cheap (GD) branch there.
        g_in = jnp.where(fresh, jnp.inf, c["g"])
        x_upd, state, flag = update(c["i"], c["x"], c["state"], c["val"], g_in)
        x_new = jnp.where(fresh, c["x"], P.project(x_upd, k, d, manifold))
        val, g = evaluate(x_new)
        gn = jnp.linalg.norm(g)
        gn0 = jnp.where(fresh, gn, c["gn0"])
        if stall is not None:
            flag = jnp.where((flag == _tr.RUNNING) & (val >= c["val"] - stall), _tr.STALLED, flag)
        ok = finite(val, g, jnp.where(fresh, 0.0, c["val"]), jnp.where(fresh, 0.0, gn0))
        flag = jnp.where(fresh, _tr.RUNNING, flag)
        accept = (ok & (flag == _tr.RUNNING)) | fresh
        status = jnp.where(~ok, _tr.DIVERGED, jnp.where(flag != _tr.RUNNING, flag,
                                                         jnp.where(gn < tol, _tr.CONVERGED, _tr.RUNNING)))
        pick = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
        keep = lambda new, old: jnp.where(fresh, old, pick(new, old))  # noqa: E731
        return dict(i=c["i"] + ~fresh, x=pick(x_new, c["x"]), val=pick(val, c["val"]), g=pick(g, c["g"]),
                    state=jax.tree_util.tree_map(keep, state, c["state"]), status=status,
                    nev=c["nev"] + ~fresh, gn0=gn0, fresh=jnp.asarray(False))

    def value(c):
        return c["val"] if needs_value else f(c["x"])

    def chunk(c, _):
        record = (c["x"], value(c), jnp.linalg.norm(c["g"]), c["i"], c["status"] == _tr.RUNNING)
        # chunk 0 only evaluates the start point (its record is dropped); the others take save_every steps
        stop_at = jnp.where(c["fresh"], 0, jnp.minimum(c["i"] + save_every, max_steps))
        c = jax.lax.while_loop(lambda c: c["fresh"] | ((c["i"] < stop_at) & (c["status"] == _tr.RUNNING)), body, c)
        return c, record

    end, records = jax.lax.scan(chunk, carry0, None, length=n_chunks + 1)
    xs, vals, gns, its, alive = (r[1:] for r in records)
    end = dict(end, val=value(end))
    # a run that blew up between saves: its value at the last finite point
    status = jnp.where(end["status"] == _tr.RUNNING, _tr.MAX_STEPS, end["status"])
    status = jnp.where(jnp.isfinite(end["val"]), status, _tr.DIVERGED)
    # the end point is the last record; earlier records taken after the run stopped repeat it
    xs = jnp.concatenate([xs, end["x"][None]])
    vals = jnp.concatenate([vals, end["val"][None]])
    gns = jnp.concatenate([gns, jnp.linalg.norm(end["g"])[None]])
    its = jnp.concatenate([its, end["i"][None]])
    saved = jnp.concatenate([jnp.ones((1,), bool), alive[1:], jnp.ones((1,), bool)])
    return xs, vals, gns, its, saved, end, status


def _trajectory(xs, vals, gns, its, saved, end, status, k, d):
    params = P.unflatten(xs, k, d)
    return Trajectory(ts=its.astype(vals.dtype), losses=vals, grad_norms=gns, params=params,
                      final=P.unflatten(end["x"], k, d), final_loss=end["val"],
                      final_grad_norm=jnp.linalg.norm(end["g"]), n_grad_evals=end["nev"], n_steps=end["i"],
                      status=status, saved=saved)


def _solve(method, pot, teacher, student, lr, *, steps, train, objective, manifold, save_every, tol,
           options, key=None, on_divergence="raise"):
    """Validate, batch (vmap) and run one discrete method; ``options`` is a hashable tuple of extras."""
    pot = _potential(pot)
    P.check_options(train, manifold)
    objective = P.default_objective(pot) if objective is None else objective
    check_gradient(pot, objective, dict(options).get("grad", "auto"))
    _tr.check_on_divergence(on_divergence)
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got steps={steps!r}")
    save_every = max(1, int(save_every if save_every is not None else max(1, steps // 100)))
    nb, teacher_batched = P.batch_axes(student, teacher)
    student, teacher = P.promote(student, teacher)
    lr = jnp.asarray(lr, student.a.dtype)
    if lr.ndim not in (0, nb) or (lr.ndim and lr.shape != student.a.shape[:-1]):
        raise ValueError(f"lr must be a scalar or have the batch shape {student.a.shape[:-1]}, got {lr.shape}")
    if key is None:
        key = jax.random.key(0)
        keyed = False
    else:
        keyed = True
    batch = student.a.shape[:-1]
    keys = jax.random.split(key, math.prod(batch)).reshape(batch) if nb else key
    if method == "nodewise_descent":
        fn = _compiled_nodewise(pot, nb, teacher_batched, lr.ndim > 0, student.k, student.d, objective, options)
    else:
        fn = _compiled(method, pot, nb, teacher_batched, lr.ndim > 0, keyed, student.k, student.d, steps, train,
                       objective, manifold, save_every, float(tol), options)
    traj = fn(student, teacher, lr, keys)
    return report_failures(traj, method=method, lr=None if method == "nodewise_descent" else float(jnp.max(lr)),
                           pot=pot, on_divergence=on_divergence)


@functools.lru_cache(maxsize=None)
def _compiled(method, pot, nb, teacher_batched, lr_batched, keyed, k, d, steps, train, objective, manifold,
              save_every, tol, options):
    opts = dict(options)

    def single(student: Student, teacher: Teacher, lr, key):
        x0 = P.flatten(student)
        mask = P.train_mask(k, d, train, x0.dtype)
        f = P.make_objective(pot, teacher, k, d, objective)
        first_order = method in ("gradient_descent", "perturbed_gd")
        grad_fn = flat_gradient(pot, teacher, k, d, objective, opts.get("grad", "auto")) if first_order else None
        # second-order methods need the value per step: erf's from the closed-form gradient's Gram matrices
        vg = None if first_order else flat_value_and_gradient(pot, teacher, k, d, objective)
        hess = flat_hessian(pot, teacher, k, d, objective)  # forward mode over erf's closed-form gradient
        update, state0, stall = _METHODS[method](f, lr, mask, k, d, manifold, dict(opts, hess=hess), key)
        out = _run(f, x0, update, state0, mask=mask, k=k, d=d, manifold=manifold, max_steps=steps,
                   save_every=save_every, tol=tol, needs_value=not first_order, grad_fn=grad_fn,
                   value_grad_fn=vg, stall=stall)
        return _trajectory(*out, k, d)

    fn = single
    for _ in range(nb):
        fn = jax.vmap(fn, in_axes=(0, 0 if teacher_batched else None, 0 if lr_batched else None, 0))
    return jax.jit(fn, compiler_options=P.compile_options(nb))


# --- update rules ------------------------------------------------------------------------------------------


def _gd(f, lr, mask, k, d, manifold, opts, key):
    def update(i, x, state, val, g):
        return x - lr * g, state, jnp.asarray(_tr.RUNNING)
    return update, (), None


def _perturbed(f, lr, mask, k, d, manifold, opts, key):
    g_thres, radius, t_thres = opts["g_thres"], opts["radius"], opts["t_thres"]

    def update(i, x, state, val, g):
        key, last = state
        key, sub = jax.random.split(key)
        u = jax.random.normal(sub, x.shape, x.dtype) * mask
        r = radius * jax.random.uniform(jax.random.fold_in(sub, 1), (), x.dtype) ** (1.0 / max(x.size, 1))
        noise = r * u / jnp.maximum(jnp.linalg.norm(u), 1e-30)
        kick = (jnp.linalg.norm(g) <= g_thres) & (i - last >= t_thres)
        x_new = jnp.where(kick, x + noise, x - lr * g)
        return x_new, (key, jnp.where(kick, i, last)), jnp.asarray(_tr.RUNNING)
    return update, (key, jnp.asarray(-(10**9), jnp.int32)), None


def _hessian(f, lr, mask, k, d, manifold, opts, key):
    gamma = opts["gamma"]

    def update(i, x, state, val, g):
        lam, v = _hd_direction(f, x, g, mask, k, d, manifold, opts.get("hess"))
        done = lam >= -gamma
        return x - lr * jnp.abs(lam) * v, state, jnp.where(done, _tr.CONVERGED, _tr.RUNNING)
    return update, (), None


def _second(f, lr, mask, k, d, manifold, opts, key):
    eta, gamma = opts["eta"], opts["gamma"]
    thr = jnp.minimum(lr * eta**2 / 2.0, lr**2 * gamma**3 / 3.0)

    def update(i, x, state, val, g):
        big = jnp.linalg.norm(g) >= eta
        x_gd = x - lr * g

        def hd(_):
            lam, v = _hd_direction(f, x, g, mask, k, d, manifold, opts.get("hess"))
            return x - lr * jnp.abs(lam) * v

        x_new = jax.lax.cond(big, lambda _: x_gd, hd, None)
        return x_new, state, jnp.asarray(_tr.RUNNING)
    # the stopping rule f(x_new) >= f(x) - thr is checked by _run on the value it computes anyway
    return update, (), thr


_METHODS = {"gradient_descent": _gd, "perturbed_gd": _perturbed, "hessian_descent": _hessian,
            "second_gd": _second}


# --- node-wise (Algorithm 3) ---------------------------------------------------------------------------------


def _node_objective(pot, cross, objective, full):
    """The objective as a function of unit ``i``'s ``z = (a_i, theta_i)`` alone, up to a constant.

    For the built-in objectives only the terms that involve unit ``i`` are kept,
    ``a^2 (Phi(theta, theta) + reg) + 2 a cross(theta)`` with
    ``cross(theta) = sum_j a_j Phi(theta, theta_j) - sum_j b_j Phi(theta, w_j)`` over the other units
    (``"reduced"`` drops the self term): a program a fraction of the size of the full objective's,
    and the dropped constant only sharpens SecondGD's value differences. ``full``
    (``z -> objective``) serves a custom objective.
    """
    if objective not in ("L", "G", "reduced"):
        return full
    reg = 1.0 if objective == "G" else 0.0

    def f(z):
        a, th = z[0], z[1:]
        own = reg if objective == "reduced" else pot(th, th) + reg  # Phi(theta, theta) is inf for coulomb
        return a * a * own + 2.0 * a * cross(th)
    return f


def _node(pot, teacher, lr, k, d, objective, opts, key, i, x_full):
    """Algorithm 3's step for unit ``i`` (traced): its start, then SecondGD on ``(a_i, theta_i)`` alone.

    Units ``< i`` keep their values, units ``> i`` are inactive (``a_j = 0``). Returns the new flat
    parameters, the gradient evaluations used and whether SecondGD ran out of ``node_steps``.
    """
    eta, gamma, steps = opts["eta"], opts["gamma"], opts["node_steps"]
    reg = 1.0 if objective == "G" else 0.0
    init_theta = opts["init_theta"]
    fobj = P.make_objective(pot, teacher, k, d, objective)
    sub_mask = jnp.ones(d + 1, x_full.dtype)
    s = P.unflatten(x_full, k, d)
    active = jnp.arange(k) < i
    a_fixed = jnp.where(active, s.a, 0.0)
    # inactive units' theta are placeholders: keep them off unit i, where a singular potential
    # (coulomb) is infinite and 0 * inf would be NaN
    others = lambda th: jnp.where(active[:, None], s.theta, jax.lax.stop_gradient(th) + 1.0)  # noqa: E731
    node_key = jax.random.split(key, k)[i]

    def cross(th):
        return jnp.sum(a_fixed * pot(th, others(th))) - jnp.sum(teacher.b * pot(th, teacher.w))

    def a_opt(th):
        """Lemma 16/22: the optimal a_i for theta_i given the frozen nodes (natural sign), and the
        drop of the objective it gives, ``num^2 / den``."""
        num = -cross(th)
        den = pot(th, th) + reg
        safe = jnp.where(den > 0, den, 1.0)
        return jnp.where(den > 0, num / safe, 0.0), jnp.where(den > 0, num**2 / safe, 0.0)

    if init_theta == "zero":
        th_i = jnp.zeros(d, x_full.dtype)
    elif init_theta == "random":
        th_i = opts["init_scale"] * jax.random.normal(node_key, (d,), x_full.dtype)
    else:  # "best_of" (Lemma 26): theta = 0 and n_starts - 1 draws of N(0, init_scale^2 I); the
        # start whose optimal a_i lowers the objective most, i.e. the lowest single-node optimal loss
        cand = opts["init_scale"] * jax.random.normal(node_key, (opts["n_starts"], d), x_full.dtype)
        cand = cand.at[0].set(0.0)
        th_i = cand[jnp.argmax(jax.vmap(lambda th: a_opt(th)[1])(cand))]
    a_i = a_opt(th_i)[0]

    def embed(z):
        return P.flatten(Student(a=a_fixed.at[i].set(z[0]), theta=s.theta.at[i].set(z[1:])))

    f_i = _node_objective(pot, cross, objective, lambda z: fobj(embed(z)))
    z0 = jnp.concatenate([a_i[None], th_i])
    # the unit being learned moves in R^d (Algorithm 3 is stated there)
    update, st, stall = _second(f_i, lr, sub_mask, 1, d, "euclidean", dict(eta=eta, gamma=gamma), None)
    out = _run(f_i, z0, update, st, mask=sub_mask, k=1, d=d, manifold="euclidean", max_steps=steps,
               save_every=steps, tol=0.0, stall=stall)
    end, node_status = out[5], out[6]
    return embed(end["x"]), end["nev"], node_status == _tr.MAX_STEPS


def _nodewise_finish(pot, teacher, xs, nev, limit, k, d, objective, opts):
    """The Trajectory of node-wise descent from its ``(k + 1, n)`` saved points (start, after each unit)."""
    fobj = P.make_objective(pot, teacher, k, d, objective)
    if opts["resolve_a"]:  # one more saved point: the learned theta with every a re-solved
        from earnshaw.loss import optimal_a
        s = P.unflatten(xs[-1], k, d)
        reg = 1.0 if objective == "G" else 0.0
        xs = jnp.concatenate([xs, P.flatten(Student(a=optimal_a(pot, s.theta, teacher, reg=reg),
                                                    theta=s.theta))[None]])
    n_saved = xs.shape[0]
    # the saved points' values and gradients in one loop: one unbatched copy of the objective in the
    # program (vmapped, XLA compiles batched Gram products ~1 s slower)
    vals, gs = jax.lax.map(jax.value_and_grad(fobj), xs)
    g, gns = gs[-1], jnp.linalg.norm(gs, axis=-1)
    ok = jnp.isfinite(vals[-1])
    end = dict(x=xs[-1], val=vals[-1], g=g, nev=nev + n_saved, i=jnp.asarray(k, jnp.int32))
    # converged: every node's SecondGD stopped by its rule; limit_reached: some node ran out of node_steps
    status = jnp.where(ok, jnp.where(limit, _tr.MAX_STEPS, _tr.CONVERGED), _tr.DIVERGED)
    return _trajectory(xs, vals, gns, jnp.arange(n_saved), jnp.ones(n_saved, bool), end, status, k, d)


@functools.lru_cache(maxsize=None)
def _compiled_nodewise(pot, nb, teacher_batched, lr_batched, k, d, objective, options):
    """Algorithm 3 as two cached programs, one unit's step (called ``k`` times, ``i`` traced) and the
    finish: one program with the ``k`` steps in a loop took 2.2-2.8 s to compile; these take less each."""
    opts = dict(options)
    t_ax, l_ax = (0 if teacher_batched else None), (0 if lr_batched else None)

    def node(teacher, lr, key, i, x_full):
        return _node(pot, teacher, lr, k, d, objective, opts, key, i, x_full)

    def finish(teacher, xs, nev, limit):
        return _nodewise_finish(pot, teacher, jnp.stack(xs), nev, limit, k, d, objective, opts)

    for _ in range(nb):
        node = jax.vmap(node, in_axes=(t_ax, l_ax, 0, None, 0))
        finish = jax.vmap(finish, in_axes=(t_ax, 0, 0, 0))
    node, finish = (jax.jit(fn, compiler_options=P.compile_options(nb)) for fn in (node, finish))

    def run(student: Student, teacher: Teacher, lr, keys):
        # before any node: every a_j = 0
        x = P.flatten(Student(a=jnp.zeros_like(student.a), theta=student.theta))
        xs, nev, limit = [x], 0, False
        for i in range(k):  # k is small; one compiled step serves every unit
            x, n_i, lim_i = node(teacher, lr, keys, jnp.asarray(i, jnp.int32), x)
            xs, nev, limit = xs + [x], nev + n_i, limit | lim_i
        return finish(teacher, tuple(xs), nev, limit)

    return run


# --- public API ----------------------------------------------------------------------------------------------

# Args shared by the solvers' docstrings; each docstring lists those in its own signature, in order.
_ARG_DOCS = {
    "pot": "potential or name.",
    "teacher": ":class:`Teacher`, unbatched or with the student's batch shape.",
    "student": ":class:`Student` start point; leading axes are a batch of independent problems.",
    "key": "PRNG key of the kicks (split per problem).",
    "lr": "step size, scalar or one per problem (batch shape).",
    "steps": "maximum number of steps (status ``limit_reached`` when they run out).",
    "g_thres": "gradient norm below which a kick may happen.",
    "radius": "radius of the ball the kick is drawn from (uniformly).",
    "t_thres": "fewest steps between two kicks.",
    "gamma": ("curvature threshold: ``lambda_min < -gamma`` is negative curvature (Hessian descent steps\n"
              "        along it and stops once there is none; SecondGD takes a Hessian step)."),
    "eta": "gradient threshold: a gradient step when ``|grad| >= eta``.",
    "train": '``"both"``, ``"theta"`` (fixed charges, Appendix F) or ``"a"``.',
    "objective": ('``"L"`` (eq. 1), ``"G"`` (``L + |a|^2``) or ``"reduced"`` (eq. 2); default\n'
                  '        ``"L"`` for bounded potentials and ``"reduced"`` for unbounded ones.'),
    "manifold": '``"euclidean"`` or ``"sphere"`` (each ``theta_i`` projected to the unit sphere).',
    "save_every": "steps between saved points (default ``steps // 100``).",
    "tol": "stop (status ``converged``) when the gradient norm falls below ``tol``.",
    "grad": ('``"auto"`` uses a hand-derived gradient where one is known (the built-in erf potential,\n'
             '        see :mod:`earnshaw.dynamics.closed_form`) and autodiff otherwise; ``"autodiff"`` or\n'
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


def gradient_descent(pot, teacher, student, lr=1e-2, steps=10_000, *, train="both", objective=None,
                     manifold="euclidean", save_every=None, tol=0.0, grad="auto", on_divergence="raise"):
    """Gradient descent with projection (Algorithm 4): ``x <- Pi_M(x - lr grad f(x))``.
    {args}
    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    >>> traj = es.gradient_descent("erf", t, s, lr=0.05, steps=200)
    >>> traj.final.theta.shape, bool((traj.final_loss <= traj.losses[:, 0]).all())
    ((4, 2, 3), True)
    """
    return _solve("gradient_descent", pot, teacher, student, lr, steps=steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, tol=tol, options=(("grad", grad),),
                  on_divergence=on_divergence)


def perturbed_gd(pot, teacher, student, key, lr=1e-2, steps=10_000, *, g_thres=1e-3, radius=1e-2, t_thres=100,
                 train="both", objective=None, manifold="euclidean", save_every=None, tol=0.0, grad="auto",
                 on_divergence="raise"):
    """Perturbed gradient descent: GD, plus a uniform kick of radius ``radius`` whenever the
    gradient norm is below ``g_thres`` and no kick happened in the last ``t_thres`` steps
    (Jin et al., 2017), which escapes strict saddles. ``key`` seeds the kicks (split per problem).
    {args}
    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    >>> traj = es.perturbed_gd("erf", t, s, jax.random.key(2), lr=0.05, steps=300)
    >>> traj.final.theta.shape, bool((traj.final_loss < traj.losses[:, 0]).all())
    ((4, 2, 3), True)
    """
    return _solve("perturbed_gd", pot, teacher, student, lr, steps=steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, tol=tol, key=key, on_divergence=on_divergence,
                  options=(("g_thres", float(g_thres)), ("radius", float(radius)), ("t_thres", int(t_thres)),
                           ("grad", grad)))


def hessian_descent(pot, teacher, student, lr=1e-2, steps=1_000, *, gamma=1e-6, train="both", objective=None,
                    manifold="euclidean", save_every=None, on_divergence="raise"):
    """Hessian descent (Algorithm 1, sign corrected): ``x <- x - lr |lambda_min| sgn(grad . v) v``
    with ``(lambda_min, v)`` the smallest eigenpair of the Hessian (Riemannian on spheres); stops
    (``converged``) once ``lambda_min >= -gamma``.
    {args}
    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> z = es.Student(a=jnp.zeros(2), theta=jnp.zeros((2, 3)))  # gradient 0 here (erf is odd) ...
    >>> bool(es.spectrum("erf", t, z)[0] < -0.5)                  # ... and a negative curvature: a saddle
    True
    >>> traj = es.hessian_descent("erf", t, z, lr=0.1, steps=100)
    >>> bool(traj.final_loss < traj.losses[0] - 0.05)              # it leaves the saddle downhill
    True
    """
    return _solve("hessian_descent", pot, teacher, student, lr, steps=steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, tol=0.0, on_divergence=on_divergence,
                  options=(("gamma", float(gamma)),))


def second_gd(pot, teacher, student, lr=1e-2, steps=10_000, *, eta=1e-4, gamma=1e-4, train="both",
              objective=None, manifold="euclidean", save_every=None, on_divergence="raise"):
    """SecondGD (Algorithm 2): a gradient step when ``|grad| >= eta``, else a Hessian step; it
    returns the previous point (status ``stalled``) as soon as a step decreases the objective by less
    than ``min(lr eta^2 / 2, lr^2 gamma^3 / 3)``, which under Lemmas 18/19 certifies membership of
    ``M_{f, max(eta, gamma)}``; at the iteration limit it returns ``x_T`` (status ``limit_reached``).
    {args}
    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> s = es.random_student(jax.random.key(1), d=3, k=2)
    >>> traj = es.second_gd("erf", t, s, lr=0.1, steps=5000, eta=1e-2, gamma=1e-2)
    >>> str(traj.status_names()), bool(traj.final_grad_norm < 1e-2), int(traj.n_steps) < 5000
    ('stalled', True, True)
    """
    return _solve("second_gd", pot, teacher, student, lr, steps=steps, train=train, objective=objective,
                  manifold=manifold, save_every=save_every, tol=0.0, on_divergence=on_divergence,
                  options=(("eta", float(eta)), ("gamma", float(gamma))))


def nodewise_descent(pot, teacher, student=None, lr=1e-2, node_steps=10_000, *, k=None, eta=1e-6, gamma=1e-6,
                     objective="L", init_theta=None, init_scale=0.1, n_starts=64, key=None, resolve_a=False,
                     on_divergence="raise"):
    """Node-wise descent (Algorithm 3): learn one unit at a time with SecondGD.

    Unit ``i`` starts at ``theta_i = 0`` (``init_theta="zero"``, the paper's choice, right for
    translation-invariant potentials), at ``N(0, init_scale^2 I)`` (``"random"``, needed when
    ``Phi(0, 0) = 0``, e.g. odd inner-product activations), or at the best of ``n_starts`` candidates
    (``"best_of"``: ``theta = 0`` and ``n_starts - 1`` draws of ``N(0, init_scale^2 I)``; the one with
    the lowest single-node optimal loss, i.e. the largest drop of the objective at optimal ``a_i``:
    the search over starts of Lemma 26, MATH.md section 5's option), with the optimal ``a_i`` of
    Lemma 16/22 given the units already learned; units after ``i`` are inactive (``a_j = 0``). Then
    SecondGD runs on ``(a_i, theta_i)`` alone. ``resolve_a`` re-solves every ``a`` for the learned
    ``theta`` at the end.

    Args:
      pot, teacher: as for :func:`gradient_descent`.
      student: provides the shapes (and batch shape); its values are not used. If None, ``k``
        gives the number of units and the problem is unbatched.
      lr: SecondGD step size. node_steps: SecondGD iteration limit per unit.
      eta, gamma: SecondGD thresholds. objective: ``"L"`` (default, Theorem 17) or ``"G"``.
      init_theta, init_scale, n_starts: the start of each unit, see above.
      key: PRNG key for ``init_theta="random"`` and ``"best_of"`` (split per problem and per unit).

    Returns:
      :class:`Trajectory` whose ``T = k + 1`` saved points are the state before any unit and after
      each unit (``ts`` counts units), plus, with ``resolve_a``, a last point ``T = k + 2`` with the
      same ``theta`` and every ``a`` re-solved (``losses[..., -2]`` is the loss before re-solving).
      ``status`` is ``converged`` when every unit's SecondGD stopped by its rule (Algorithm 2's
      certificate), ``limit_reached`` when some unit used all ``node_steps``, ``diverged`` if not finite.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> traj = es.nodewise_descent("erf", t, k=2, lr=0.05, node_steps=2000, key=jax.random.key(3))
    >>> traj.losses.shape, bool((jnp.diff(traj.losses) <= 0).all())  # start, after unit 1, after unit 2
    ((3,), True)
    """
    pot = _potential(pot)
    if student is None:
        if k is None:
            raise ValueError("nodewise_descent needs a student (for shapes) or k")
        student = Student(a=jnp.zeros(teacher.b.shape[:-1] + (k,), teacher.w.dtype),
                          theta=jnp.zeros(teacher.w.shape[:-2] + (k, teacher.d), teacher.w.dtype))
    if init_theta is None:
        init_theta = "zero" if pot.kind == "radial" else "random"
    if init_theta not in ("zero", "random", "best_of"):
        raise ValueError(f"init_theta must be 'zero', 'random' or 'best_of', got {init_theta!r}")
    if init_theta in ("random", "best_of") and key is None:
        raise ValueError(f"init_theta={init_theta!r} needs an explicit PRNG key (key=jax.random.key(seed))")
    if not (isinstance(n_starts, int) and n_starts >= 1):
        raise ValueError(f"n_starts must be a positive integer, got n_starts={n_starts!r}")
    return _solve("nodewise_descent", pot, teacher, student, lr, steps=1, train="both", objective=objective,
                  manifold="euclidean", save_every=1, tol=0.0, key=key, on_divergence=on_divergence,
                  options=(("eta", float(eta)), ("gamma", float(gamma)), ("node_steps", int(node_steps)),
                           ("init_theta", init_theta), ("init_scale", float(init_scale)),
                           ("n_starts", int(n_starts) if init_theta == "best_of" else 1),
                           ("resolve_a", bool(resolve_a))))


for _fn in (gradient_descent, perturbed_gd, hessian_descent, second_gd):
    _fn.__doc__ = _fn.__doc__.replace("{args}", _doc_args(_fn))
