r"""Online SGD in the soft committee machine: the batched simulation and its ``d -> infinity`` ODEs.

One fresh sample per step, ``x ~ N(0, I_d)``, label ``y = sum_j b_j s(w_j . x) + sigma xi``; on the loss
``(y_hat - y)^2 / 2`` the weights move as (earnshaw's units: ``lambda_i = theta_i . x``, so ``theta = w / sqrt(d)`` in
the scaling of Saad and Solla (1995) and Goldt et al. (2019))

    theta_i <- theta_i - (lr / d) a_i s'(lambda_i) Delta x,        a_i <- a_i - (lr_a / d) s(lambda_i) Delta,

with ``Delta = y_hat - y``. As ``d -> infinity`` with ``t = steps / d`` the order parameters ``Q, R, a`` follow

    dR_in/dt = -lr a_i E[s'(lambda_i) nu_n Delta],   da_i/dt = -lr_a E[s(lambda_i) Delta],
    dQ_ik/dt = -lr (a_i E[s'(lambda_i) lambda_k Delta] + a_k E[s'(lambda_k) lambda_i Delta])
               + lr^2 a_i a_k (E[s'(lambda_i) s'(lambda_k) Delta^2] + sigma^2 E[s'(lambda_i) s'(lambda_k)]),

whose ``lr``-linear part is the population gradient flow of ``L / 2`` (:func:`earnshaw.order_flow`) and whose
``lr^2`` part needs the four-point averages ``I4 = E[s'(x1) s'(x2) s(x3) s(x4)]``: in closed form for erf (a
Gaussian weight ``exp(-x1^2 - x2^2)`` folds into the covariance) and linear units, by four-dimensional
Gauss-Hermite quadrature for any other activation. The generalisation error is ``eps_g = L / 2``. See
docs/math.md section 10.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher, check_unbiased
from earnshaw.dynamics.flow import _solver
from earnshaw.dynamics.order import (OrderParams, _check, _loss, _over_batch, _save_times, _step_fn,
                                     order_parameters)
from earnshaw.potentials import potential as _potential
from earnshaw.potentials._fastmath import asin
from earnshaw.potentials.inner import gauss_hermite_nodes
from earnshaw.potentials.mixed import check_single
from earnshaw.trajectory import DivergenceError

__all__ = ["online_sgd", "online_ode", "OnlineRun"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class OnlineRun:
    """Online SGD's generalisation error over time: ``ts (S,)`` in units of ``t = steps / d``, ``eps_g (*B, S)``
    (``L / 2``), and the order parameters at the saves (:class:`~earnshaw.OrderParams`, save axis after the batch).

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> start = es.OrderParams(Q=0.5 * jnp.eye(2), R=0.1 * jnp.eye(2), a=jnp.ones(2))
    >>> run = es.online_ode("linear", jnp.eye(2), jnp.ones(2), start, lr=0.2, t1=10.0, n_save=5)
    >>> run.ts.shape, run.params.Q.shape, bool(run.eps_g[-1] < run.eps_g[0])
    ((5,), (5, 2, 2), True)
    """

    ts: jax.Array
    eps_g: jax.Array
    params: OrderParams


def _i4_erf(C):
    """``E[s'(x1) s'(x2) s(x3) s(x4)]`` for ``s = erf`` and ``x ~ N(0, C)``, ``C (4, 4)`` (may be singular)."""
    D = jnp.diag(jnp.array([1.0, 1.0, 0.0, 0.0], C.dtype))
    M = jnp.eye(4, dtype=C.dtype) + 2.0 * D @ C
    Cp = C @ jnp.linalg.inv(M)  # the covariance after the weight exp(-x1^2 - x2^2)
    norm = jax.lax.rsqrt(jnp.linalg.det(M))
    arg = 2.0 * Cp[2, 3] * jax.lax.rsqrt((1.0 + 2.0 * Cp[2, 2]) * (1.0 + 2.0 * Cp[3, 3]))
    return (4.0 / math.pi) * norm * (2.0 / math.pi) * jnp.arcsin(arg)


def _j2_erf(C):
    """``E[s'(x1) s'(x2)]`` for erf, ``C (2, 2)``."""
    return (4.0 / math.pi) * jax.lax.rsqrt(jnp.linalg.det(jnp.eye(2, dtype=C.dtype) + 2.0 * C))


def _gh4(act, order):
    """``E[s'(x1) s'(x2) s(x3) s(x4)]`` and ``E[s'(x1) s'(x2)]`` by Gauss-Hermite over a square root of ``C``."""
    z, w = (jnp.asarray(v) for v in gauss_hermite_nodes(order))
    grid = jnp.stack(jnp.meshgrid(z, z, z, z, indexing="ij"), -1).reshape(-1, 4)
    wts = jnp.prod(jnp.stack(jnp.meshgrid(w, w, w, w, indexing="ij"), -1).reshape(-1, 4), -1)
    s = act.fn
    ds = jax.vmap(jax.grad(lambda x: s(x)))

    def sqrtm(C):
        lam, V = jnp.linalg.eigh(0.5 * (C + C.T))
        return V * jnp.sqrt(jnp.clip(lam, 0.0, None))

    def i4(C):
        X = grid.astype(C.dtype) @ sqrtm(C).T
        return jnp.sum(wts * ds(X[:, 0]) * ds(X[:, 1]) * s(X[:, 2]) * s(X[:, 3]))

    def j2(C):
        X = grid[:, :2].astype(C.dtype) @ sqrtm(C).T
        return jnp.sum(wts * ds(X[:, 0]) * ds(X[:, 1]))

    return i4, j2


def _averages(pot, order):
    if pot.name == "erf":
        return _i4_erf, _j2_erf
    if pot.name == "linear":
        return (lambda C: C[2, 3]), (lambda C: jnp.ones((), C.dtype))
    return _gh4(pot.activation, order)


def _erf_second_moments(G, k):
    """``I4(i, k', p, q) = E[s'(x_i) s'(x_k') s(x_p) s(x_q)]`` for erf, all student pairs ``(i, k')`` and all units
    ``p, q`` at once: ``(k, k, n, n)`` from the joint Gram ``G (n, n)``.

    The weight ``exp(-x_i^2 - x_k'^2) = exp(-x' P'P x)`` (``P`` the two rows ``e_i, e_k'``) turns ``N(0, G)`` into
    ``N(0, G')`` with ``G' = G - G P' (I/2 + P G P')^-1 P G`` (Woodbury) and mass ``det(I + 2 P G P')^(-1/2)``; erf's
    pair average under ``G'`` is its potential. Per pair a 2 x 2 solve instead of a 4 x 4 inverse per quadruple.
    Every quadruple, with XLA's ``arcsin``: the reference :func:`_erf_second_sums` (the ODE's) is tested against.
    """
    ii, kk = jnp.meshgrid(jnp.arange(k), jnp.arange(k), indexing="ij")
    return _erf_pair_moments(G, ii.ravel(), kk.ravel()).reshape(k, k, G.shape[0], G.shape[0])


def _erf_pair_moments(G, ii, kk):
    """``I4(i, k', p, q)`` for erf at the student pairs ``(ii[P], kk[P])``: ``(P, n, n)`` (see above).

    The 2 x 2 solve is written out (a batched ``inv`` and a four-index einsum cost more than the arcsines here)."""
    g11, g12, g22 = G[ii, ii], G[ii, kk], G[kk, kk]  # (P,): P G P'
    c1, c2 = G[ii], G[kk]  # (P, n): the two columns of G P'
    m11, m22 = 0.5 + g11, 0.5 + g22
    det = m11 * m22 - g12 * g12
    outer = lambda u, v: u[:, :, None] * v[:, None, :]  # noqa: E731
    update = (outer(c1, c1 * m22[:, None]) + outer(c2, c2 * m11[:, None])
              - outer(c1, c2 * g12[:, None]) - outer(c2, c1 * g12[:, None]))
    Gp = G - update / det[:, None, None]
    mass = 0.5 * jax.lax.rsqrt(det)  # det(I + 2 P G P') = 4 det(I / 2 + P G P')
    r = jax.lax.rsqrt(1.0 + 2.0 * jnp.diagonal(Gp, axis1=-2, axis2=-1))
    pair = (2.0 / math.pi) * jnp.arcsin(2.0 * Gp * r[..., :, None] * r[..., None, :])
    return (4.0 / math.pi) * mass[:, None, None] * pair


def _erf_second_sums(G, k, coef):
    """``sum_pq c_p c_q I4(i, k', p, q)`` for erf, ``(k, k)``, as :func:`_erf_second_moments` computes each term.

    Only the pairs ``i <= k'`` and ``p <= q`` (the sum is symmetric in both; off-diagonal ``(p, q)`` count twice).
    The Woodbury update is written as ``G' = G - c1 x' - c2 y'`` with ``(x, y) = (c1, c2) (I/2 + P G P')^-1``, and
    the arcsine's argument ``2 G'_pq / sqrt((1 + 2 G'_pp) (1 + 2 G'_qq))`` as
    ``r_p r_q G_pq - (r c1)_p (r x)_q - (r c2)_p (r y)_q`` with ``r = sqrt(2 / (1 + 2 G'_pp))``: four products
    per entry, in one loop over the ``(P, n (n + 1) / 2)`` entries with the gathers fused into it (square blocks of
    ``(p, q)`` cost 20% more arcsines and, on CPU, a kernel launch per block: 1.5x the time at ``k = m = 10``).
    The arcsine is :func:`earnshaw.potentials._fastmath.asin`, ~5x cheaper than XLA's float64 ``arcsin``.
    """
    iu, ku = np.triu_indices(k)
    pp, qq = np.triu_indices(G.shape[0])
    c1, c2 = G[iu], G[ku]  # (P, n): the two columns of G P'
    g12 = G[iu, ku]
    m11, m22 = 0.5 + G[iu, iu], 0.5 + G[ku, ku]
    inv = 1.0 / (m11 * m22 - g12 * g12)  # 1 / det(I / 2 + P G P')
    x = (c1 * m22[:, None] - c2 * g12[:, None]) * inv[:, None]
    y = (c2 * m11[:, None] - c1 * g12[:, None]) * inv[:, None]
    r = math.sqrt(2.0) * jax.lax.rsqrt(1.0 + 2.0 * (jnp.diagonal(G) - c1 * x - c2 * y))  # sqrt(2 / (1 + 2 G'_pp))
    arg = r[:, pp] * r[:, qq] * G[pp, qq] - (r * c1)[:, pp] * (r * x)[:, qq] - (r * c2)[:, pp] * (r * y)[:, qq]
    weights = np.where(pp == qq, 1.0, 2.0) * coef[pp] * coef[qq]
    # mass det(I + 2 P G P')^(-1/2) = sqrt(inv) / 2 times (4/pi) (2/pi) arcsin(2 G'_pq / sqrt(...))
    sums = (4.0 / math.pi**2) * jnp.sqrt(inv) * (asin(arg) @ weights)
    out = jnp.zeros((k, k), G.dtype).at[iu, ku].set(sums)
    return out.at[ku, iu].set(sums)


def _rates(pot, T, b, lr, lr_a, noise, decay, order):
    """The ODE's right-hand side on ``(Q, R, a)``."""
    linear = _step_fn(pot.fn, T, b, "L", "both", None, flow=True)
    i4, j2 = _averages(pot, order)

    def rhs(t, y, args):
        Q, R, a = y
        k, m = Q.shape[0], T.shape[0]
        dQ, dR, da, _, _ = linear(Q, R, a)  # -grad of L = E[Delta^2]: half of it for the loss Delta^2 / 2
        G = jnp.block([[Q, R], [R.T, T]])
        coef = jnp.concatenate([a, -b])
        # sum_pq c_p c_q I4(i, k, p, q) for every student pair (i, k)
        if pot.name == "erf":
            second = _erf_second_sums(G, k, coef)
        else:  # one 4 x 4 covariance per index quadruple
            idx = jnp.asarray(list(itertools.product(range(k), range(k), range(k + m), range(k + m))))
            C = G[idx[:, :, None], idx[:, None, :]]
            vals = jax.vmap(i4)(C).reshape(k, k, k + m, k + m)
            second = jnp.einsum("ikpq,p,q->ik", vals, coef, coef)
        if noise is not None and pot.name == "erf":  # _j2_erf for every pair at once
            qd = 1.0 + 2.0 * jnp.diagonal(Q)
            second = second + noise**2 * (4.0 / math.pi) * jax.lax.rsqrt(qd[:, None] * qd[None, :] - 4.0 * Q * Q)
        elif noise is not None:
            pairs = jnp.asarray(list(itertools.product(range(k), range(k))))
            second = second + noise**2 * jax.vmap(j2)(Q[pairs[:, :, None], pairs[:, None, :]]).reshape(k, k)
        dQ = 0.5 * lr * dQ + lr**2 * (a[:, None] * a[None, :]) * second
        # weight decay shrinks theta by (1 - lr decay / d) per step: -2 lr decay Q, -lr decay R, -lr_a decay a
        # (its products with the gradient step are O(1 / d) over d steps)
        return dQ - 2.0 * lr * decay * Q, 0.5 * lr * dR - lr * decay * R, 0.5 * lr_a * da - lr_a * decay * a

    return rhs


def online_ode(pot, T, b, params: OrderParams, *, lr=0.5, lr_a=None, noise=0.0, decay=0.0, t1=100.0, n_save=101,
               ts=None, rtol=1e-6, atol=1e-9, order=12, max_steps=1_000_000, solver="tsit5") -> OnlineRun:
    """The ``d -> infinity`` ODEs of online SGD (Saad and Solla 1995; Goldt et al. 2019), second layer trained.

    Args:
      pot: an inner-product potential or its name (erf and linear in closed form; others by 4-D Gauss-Hermite
        of ``order`` nodes per axis: ``order^4`` points per average, and slow convergence: for erf at unit
        variances the quadrature is 2e-3 off at 16 nodes, 1e-5 at 24, 2e-8 at 40).
      T: ``(m, m)`` teacher Gram matrix.
      b: ``(m,)`` teacher charges.
      params: start :class:`OrderParams` (``Q (k, k)``, ``R (k, m)``, ``a (k,)``).
      lr: learning rate of the first layer.
      lr_a: learning rate of the second (default ``lr``; 0 keeps ``a`` fixed).
      noise: label noise standard deviation ``sigma``.
      decay: weight decay: each step shrinks ``theta`` by ``1 - lr decay / d`` and ``a`` by ``1 - lr_a decay / d``.
      t1: final time ``t = steps / d``.
      n_save: saves, log-spaced after 0.
      ts: explicit save times instead (increasing, from 0; ``t1`` is then their last), e.g. a simulation's.
      rtol: relative tolerance of the adaptive step (the save times are hit exactly, not stepped to).
      atol: absolute tolerance.
      order: Gauss-Hermite nodes per axis for activations without a closed form.
      max_steps: solver steps allowed.
      solver: a name in :data:`earnshaw.dynamics.flow.SOLVERS` (default ``"tsit5"``) or a diffrax solver
        object. Past the first transient the steps of an explicit solver are held by stability, not accuracy
        (for K = M = 10 at lr = 0.1 the Jacobian's most negative eigenvalue stays between -0.85 and -0.99
        from t = 30 to 10^4 while the order parameters move on time scales of hundreds), so a run costs about
        ``6 t1 |lambda| / 3.5`` right-hand sides with Tsit5; ``diffrax.Bosh3()`` (3 per step, stable to
        ``h |lambda| = 2.5``) used about 1.3x less CPU time there at the default tolerances, with a global
        error near ``rtol`` rather than 10x below it. Implicit solvers pay for a dense Jacobian of the
        four-point sums at every step and were slower.

    Returns:
      :class:`OnlineRun`.

    Raises:
      DivergenceError: the solution left the finite numbers or ``max_steps`` ran out.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> T = jnp.eye(2); b = jnp.ones(2)                 # orthonormal teacher units, unit charges
    >>> start = es.OrderParams(Q=0.5 * jnp.eye(2), R=1e-3 * jnp.ones((2, 2)) + 1e-3 * jnp.eye(2), a=jnp.ones(2))
    >>> run = es.online_ode("erf", T, b, start, lr=0.5, lr_a=0.0, t1=2000.0)
    >>> bool(run.eps_g[-1] < 1e-3 < run.eps_g[0])        # through the plateau to the teacher
    True
    >>> jax.config.update("jax_enable_x64", False)
    """
    pot = _potential(pot)
    check_single("online SGD", pot)
    if pot.kind != "inner" or pot.activation is None:
        raise ValueError(f"online SGD needs an inner-product activation; got {pot!r}")
    _, T, b, params = _check(pot, T, b, params)
    if params.Q.ndim != 2:
        raise ValueError(f"online_ode integrates one problem: Q (k, k), R (k, m), a (k,); got Q {params.Q.shape} "
                         "(for a batch of starts, call it per start, or use order_flow, which takes a batch)")
    lr_a = lr if lr_a is None else lr_a
    for name, v in (("lr", lr), ("lr_a", lr_a), ("noise", noise), ("decay", decay)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {name}={v!r}")
    save = _save_times(float(t1), int(n_save)) if ts is None else np.asarray(ts, np.float64)
    if save.ndim != 1 or save.size < 2 or save[0] != 0.0 or np.any(np.diff(save) <= 0):
        raise ValueError(f"ts must be at least two increasing times starting at 0, got {save}")
    dt = params.Q.dtype
    sol, n_steps = _online_ode(pot, T, b, params, *(jnp.asarray(v, dt) for v in (lr, lr_a, noise, decay)),
                               jnp.asarray(save, dt), noisy=bool(noise), rtol=float(rtol), atol=float(atol),
                               order=int(order), max_steps=int(max_steps), solver=_solver(solver)[0])
    if not bool(jnp.all(jnp.isfinite(sol.eps_g))):
        reached = float(sol.ts[jnp.argmax(~jnp.isfinite(sol.eps_g))])
        raise DivergenceError(f"online_ode: the order parameters diverged or max_steps = {max_steps} ran out "
                              f"before t = {reached:g} (lr = {lr}: too large a learning rate diverges; "
                              f"{int(n_steps)} steps taken)")
    return sol


@functools.partial(jax.jit, static_argnames=("pot", "noisy", "rtol", "atol", "order", "max_steps", "solver"))
def _online_ode(pot, T, b, params, lr, lr_a, noise, decay, save_ts, *, noisy, rtol, atol, order, max_steps, solver):
    import diffrax  # here, not at import: diffrax and its stack take ~1 s to load
    rhs = _rates(pot, T, b, lr, lr_a, noise if noisy else None, decay, order)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(rhs), solver, save_ts[0], save_ts[-1], None,
                              (params.Q, params.R, params.a),
                              saveat=diffrax.SaveAt(ts=save_ts), stepsize_controller=diffrax.PIDController(
                                  rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4), max_steps=max_steps, throw=False,
                              adjoint=diffrax.ForwardMode())
    Qs, Rs, As = sol.ys
    eps = jax.vmap(lambda Q, R, a: 0.5 * _loss(pot.fn, T, b, Q, R, a, "L"))(Qs, Rs, As)
    return OnlineRun(ts=save_ts, eps_g=eps, params=OrderParams(Qs, Rs, As)), sol.stats["num_steps"]


def online_sgd(key, pot, teacher: Teacher, student: Student, *, lr=0.5, lr_a=None, noise=0.0, decay=0.0, t1=10.0,
               n_save=101) -> OnlineRun:
    """Simulate online SGD: one fresh Gaussian sample per step, ``t1 * d`` steps, a batch of seeds in one call.

    Args:
      key: PRNG key (split per seed). pot: an inner-product potential (its activation is used) or its name.
      teacher: :class:`Teacher` ``w (m, d)`` (the same for every seed). student: start, ``(*B, k)`` / ``(*B, k, d)``.
      lr: first-layer learning rate (steps of ``lr / d``).
      lr_a: second-layer learning rate (steps of ``lr_a / d``; default ``lr``, 0 keeps ``a`` fixed).
      noise: label noise standard deviation.
      decay: weight decay, as for :func:`online_ode`.
      t1: final time in units of ``d`` steps. n_save: evenly spaced saves.

    Returns:
      :class:`OnlineRun` with ``eps_g (*B, n_save)`` computed exactly from the order parameters at the saves.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.Teacher(b=jnp.ones(2), w=jnp.eye(2, 200))
    >>> s = es.random_student(jax.random.key(1), d=200, k=2, scale=200**-0.5, batch=4)
    >>> run = es.online_sgd(jax.random.key(2), "erf", t, s, lr=0.5, t1=5.0, n_save=6)
    >>> run.eps_g.shape, bool((run.eps_g[:, -1] < run.eps_g[:, 0]).all())
    ((4, 6), True)
    """
    pot = _potential(pot)
    check_single("online SGD", pot)
    if pot.kind != "inner" or pot.activation is None:
        raise ValueError(f"online SGD needs an inner-product activation; got {pot!r}")
    check_unbiased("online_sgd", teacher, student)
    d = teacher.d
    if teacher.b.ndim != 1:
        raise ValueError(f"online_sgd takes one teacher; got teacher batch {teacher.batch_shape}")
    steps = int(round(t1 * d))
    per = max(1, steps // (n_save - 1))
    lr_a = lr if lr_a is None else lr_a
    batch = student.batch_shape
    keys = jax.random.split(key, int(np.prod(batch))).reshape(batch) if batch else key
    dtype = jnp.result_type(student.theta, float)
    run = _online_program(pot, teacher, student, keys, jnp.asarray(lr / d, dtype), jnp.asarray(lr_a / d, dtype),
                          jnp.asarray(noise, dtype), jnp.asarray(decay, dtype), per=per, n=n_save - 1)
    if not bool(jnp.all(jnp.isfinite(run[0]))):
        raise DivergenceError(f"online_sgd diverged (lr = {lr}, lr_a = {lr_a}): a smaller learning rate is needed")
    ts = jnp.arange(n_save) * per / d
    return OnlineRun(ts=ts.astype(dtype), eps_g=run[0], params=run[1])


@functools.partial(jax.jit, static_argnames=("pot", "per", "n"))
def _online_program(pot, teacher, student, keys, lr, lr_a, noise, decay, *, per, n):
    s = pot.activation.fn
    ds = jax.vmap(jax.grad(lambda z: s(z)))
    T = teacher.w @ teacher.w.T

    def one(student, key):
        def step(carry, key):
            a, th = carry
            kx, kn = jax.random.split(key)
            x = jax.random.normal(kx, (teacher.d,), th.dtype)
            lam = th @ x
            y = teacher.b @ s(teacher.w @ x) + noise * jax.random.normal(kn, (), th.dtype)
            delta = a @ s(lam) - y
            th = (1.0 - lr * decay) * th - lr * (a * ds(lam) * delta)[:, None] * x[None, :]
            a = (1.0 - lr_a * decay) * a - lr_a * s(lam) * delta
            return (a, th), None

        def save(carry, key):
            carry, _ = jax.lax.scan(step, carry, jax.random.split(key, per))
            p, _ = order_parameters(teacher, Student(a=carry[0], theta=carry[1]))
            return carry, (0.5 * _loss(pot.fn, T, teacher.b, p.Q, p.R, p.a, "L"), p)

        p0, _ = order_parameters(teacher, student)
        e0 = 0.5 * _loss(pot.fn, T, teacher.b, p0.Q, p0.R, p0.a, "L")
        _, (eps, ps) = jax.lax.scan(save, (student.a, student.theta), jax.random.split(key, n))
        cat = lambda x0, xs: jnp.concatenate([x0[None], xs])  # noqa: E731
        return cat(e0, eps), OrderParams(cat(p0.Q, ps.Q), cat(p0.R, ps.R), cat(p0.a, ps.a))

    return _over_batch(one, student.a.ndim - 1)(student, keys)
