r"""Node-wise descent (Algorithm 3): learn one unit at a time with SecondGD.

Two compiled programs: one unit's step (called ``k`` times with the unit index traced) and the
finish; one program with the ``k`` steps in a loop took 2.2-2.8 s to compile, these take less each.
Each unit's SecondGD runs on that unit's own terms of the objective (``_node_objective``), through the
same driving loop as the other solvers (:mod:`earnshaw.dynamics.loop`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from earnshaw import trajectory as _tr
from earnshaw._typing import Student
from earnshaw.dynamics.loop import drive, euclidean, trajectory
from earnshaw.dynamics.rules import second_step
from earnshaw.loss import optimal_a
from earnshaw.potentials.mixed import check_single
from earnshaw.problem import check_lr, compile_options, promote, resolve, split_keys, vmap_batch
from earnshaw.trajectory import report_failures

__all__ = ["nodewise_descent"]


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


def _node(problem, lr, k, opts, key, i, x_full):
    """Algorithm 3's step for unit ``i`` (traced): its start, then SecondGD on ``(a_i, theta_i)`` alone.

    Units ``< i`` keep their values, units ``> i`` are inactive (``a_j = 0``). Returns the new flat
    parameters, the gradient evaluations used and whether SecondGD ran out of ``max_steps``.
    """
    eta, gamma, steps = opts["eta"], opts["gamma"], opts["max_steps"]
    pot, teacher, objective, d = problem.pot, problem.teacher, problem.objective, problem.d
    reg = 1.0 if objective == "G" else 0.0
    init_theta = opts["init_theta"]
    s = problem.unflatten(x_full)
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
        return problem.flatten(Student(a=a_fixed.at[i].set(z[0]), theta=s.theta.at[i].set(z[1:])))

    f_i = _node_objective(pot, cross, objective, lambda z: problem.f(embed(z)))
    z0 = jnp.concatenate([a_i[None], th_i])
    # the unit being learned moves in R^d (Algorithm 3 is stated there)
    flat = euclidean(f_i, z0)
    update, st, stall = second_step(flat, lr, eta, gamma)
    out = drive(flat, z0, update, st, max_steps=steps, save_every=steps, gtol=0.0, stall=stall)
    end, node_status = out[5], out[6]
    return embed(end["x"]), end["nev"], node_status == _tr.MAX_STEPS


def _nodewise_finish(problem, xs, nev, limit, k, opts):
    """The Trajectory of node-wise descent from its ``(k + 1, n)`` saved points (start, after each unit)."""
    fobj = problem.f
    if opts["resolve_a"]:  # one more saved point: the learned theta with every a re-solved
        s = problem.unflatten(xs[-1])
        reg = 1.0 if problem.objective == "G" else 0.0
        xs = jnp.concatenate([xs, problem.flatten(Student(a=optimal_a(problem.pot, problem.teacher, s.theta, reg=reg),
                                                          theta=s.theta))[None]])
    n_saved = xs.shape[0]
    # the saved points' values and gradients in one loop: one unbatched copy of the objective in the
    # program (vmapped, XLA compiles batched Gram products ~1 s slower)
    vals, gs = jax.lax.map(jax.value_and_grad(fobj), xs)
    g, gns = gs[-1], jnp.linalg.norm(gs, axis=-1)
    ok = jnp.isfinite(vals[-1])
    end = dict(x=xs[-1], val=vals[-1], g=g, nev=nev + n_saved, i=jnp.asarray(k, jnp.int32))
    # converged: every node's SecondGD stopped by its rule; limit_reached: some node ran out of max_steps
    status = jnp.where(ok, jnp.where(limit, _tr.MAX_STEPS, _tr.CONVERGED), _tr.DIVERGED)
    return trajectory(problem.unflatten, xs, vals, gns, jnp.arange(n_saved), jnp.ones(n_saved, bool), end, status)


def _axes(problem, lr):
    return (0 if problem.teacher.b.ndim > 1 else None), (0 if lr.ndim > 0 else None)


def _node_program(problem, lr, keys, i, x, *, k, options):
    t_ax, l_ax = _axes(problem, lr)
    fn = lambda p, lr_, key, x_: _node(p, lr_, k, dict(options), key, i, x_)  # noqa: E731
    return vmap_batch(fn, x.ndim - 1, (t_ax, l_ax, 0, 0))(problem, lr, keys, x)


def _finish_program(problem, xs, nev, limit, *, k, options):
    t_ax = 0 if problem.teacher.b.ndim > 1 else None
    fn = lambda p, xs_, n_, l_: _nodewise_finish(p, jnp.stack(xs_), n_, l_, k, dict(options))  # noqa: E731
    return vmap_batch(fn, nev.ndim, (t_ax, 0, 0, 0))(problem, xs, nev, limit)


# one unbatched problem is a chain of tiny products: Eigen's thread pool off (compile_options)
_STATIC = ("k", "options")
_PROGRAMS = {batched: (jax.jit(_node_program, static_argnames=_STATIC, compiler_options=compile_options(batched)),
                       jax.jit(_finish_program, static_argnames=_STATIC, compiler_options=compile_options(batched)))
             for batched in (0, 1)}


def _run_nodewise(problem, student, lr, keys, options):
    k = student.k
    node, finish = _PROGRAMS[min(student.a.ndim - 1, 1)]
    # before any node: every a_j = 0
    x = problem.flatten(Student(a=jnp.zeros_like(student.a), theta=student.theta))
    xs, nev, limit = [x], 0, False
    for i in range(k):  # k is small; one compiled step serves every unit
        x, n_i, lim_i = node(problem, lr, keys, jnp.asarray(i, jnp.int32), x, k=k, options=options)
        xs, nev, limit = xs + [x], nev + n_i, limit | lim_i
    return finish(problem, tuple(xs), nev, limit, k=k, options=options)


def nodewise_descent(key, *args, k=None, lr=1e-2, max_steps=10_000, eta=1e-6, gamma=1e-6, objective="L",
                     init_theta=None, init_scale=0.1, n_starts=64, resolve_a=False, on_divergence="raise"):
    """Node-wise descent (Algorithm 3): learn one unit at a time with SecondGD.

    Call as ``nodewise_descent(key, problem[, student], ...)`` or ``nodewise_descent(key, pot, teacher[,
    student], ...)``. Unit ``i`` starts at ``theta_i = 0`` (``init_theta="zero"``, the paper's choice, right
    for translation-invariant potentials), at ``N(0, init_scale^2 I)`` (``"random"``, needed when
    ``Phi(0, 0) = 0``, e.g. odd inner-product activations), or at the best of ``n_starts`` candidates
    (``"best_of"``: ``theta = 0`` and ``n_starts - 1`` draws of ``N(0, init_scale^2 I)``; the one with
    the lowest single-node optimal loss, i.e. the largest drop of the objective at optimal ``a_i``:
    the search over starts of Lemma 26, docs/math.md section 5), with the optimal ``a_i`` of
    Lemma 16/22 given the units already learned; units after ``i`` are inactive (``a_j = 0``). Then
    SecondGD runs on ``(a_i, theta_i)`` alone. ``resolve_a`` re-solves every ``a`` for the learned
    ``theta`` at the end.

    Args:
      key: PRNG key for ``init_theta="random"`` and ``"best_of"`` (split per problem and per unit); may be
        None for ``"zero"``.
      args: ``problem`` or ``pot, teacher``, then optionally the ``student``, which provides the shapes (and
        batch shape); its values are not used. Without one, ``k`` gives the number of units.
      k: number of units when no student is given.
      lr: SecondGD step size. max_steps: SecondGD iteration limit per unit.
      eta, gamma: SecondGD thresholds. objective: ``"L"`` (default, Theorem 17) or ``"G"``.
      init_theta, init_scale, n_starts: the start of each unit, see above.
      resolve_a: re-solve every ``a`` at the end (one more saved point).
      on_divergence: ``"raise"``, ``"warn"`` or ``"ignore"``.

    Returns:
      :class:`Trajectory` whose ``T = k + 1`` saved points are the state before any unit and after
      each unit (``ts`` counts units), plus, with ``resolve_a``, a last point ``T = k + 2`` with the
      same ``theta`` and every ``a`` re-solved (``losses[..., -2]`` is the loss before re-solving).
      ``status`` is ``converged`` when every unit's SecondGD stopped by its rule (Algorithm 2's
      certificate), ``limit_reached`` when some unit used all ``max_steps``, ``diverged`` if not finite.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> traj = es.nodewise_descent(jax.random.key(3), "erf", t, k=2, lr=0.05, max_steps=2000)
    >>> traj.losses.shape, bool((jnp.diff(traj.losses) <= 0).all())  # start, after unit 1, after unit 2
    ((3,), True)
    """
    problem, student = resolve("nodewise_descent", args, objective=objective, need_student=False)
    teacher = problem.teacher
    check_single("nodewise_descent", problem.pot)
    if not problem.plain:
        # its per-unit objective works on Phi(theta_i, .) of bias-free units under N(0, I) inputs
        raise ValueError("nodewise_descent works on bias-free units under N(0, I) inputs; with biases or "
                         "input_mean/input_cov use gradient_descent, gradient_flow or the other solvers")
    if student is None:
        if k is None:
            raise ValueError("nodewise_descent needs a student (for shapes) or k")
        student = Student(a=jnp.zeros(teacher.b.shape[:-1] + (k,), teacher.w.dtype),
                          theta=jnp.zeros(teacher.w.shape[:-2] + (k, teacher.d), teacher.w.dtype))
    if init_theta is None:
        init_theta = "zero" if problem.pot.kind == "radial" else "random"
    if init_theta not in ("zero", "random", "best_of"):
        raise ValueError(f"init_theta must be 'zero', 'random' or 'best_of', got {init_theta!r}")
    if init_theta in ("random", "best_of") and key is None:
        raise ValueError(f"init_theta={init_theta!r} needs an explicit PRNG key (key=jax.random.key(seed))")
    if not (isinstance(n_starts, int) and n_starts >= 1):
        raise ValueError(f"n_starts must be a positive integer, got n_starts={n_starts!r}")
    if not (isinstance(max_steps, int) and max_steps >= 1):
        raise ValueError(f"max_steps must be a positive integer, got max_steps={max_steps!r}")
    _tr.check_on_divergence(on_divergence)
    problem, student = promote(problem, student)
    lr = check_lr(lr, student)
    keys = split_keys(jax.random.key(0) if key is None else key, student.batch_shape)
    options = (("eta", float(eta)), ("gamma", float(gamma)), ("max_steps", int(max_steps)),
               ("init_theta", init_theta), ("init_scale", float(init_scale)),
               ("n_starts", int(n_starts) if init_theta == "best_of" else 1), ("resolve_a", bool(resolve_a)))
    traj = _run_nodewise(problem, student, lr, keys, options)
    return report_failures(traj, method="nodewise_descent", pot=problem.pot, on_divergence=on_divergence)
