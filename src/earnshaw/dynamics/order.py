r"""Population dynamics on the order parameters: a cost that does not grow with the input dimension.

For an inner-product potential the loss depends on the student and the teacher only through the Gram
matrices ``Q = Theta Theta^T (k, k)``, ``R = Theta W^T (k, m)``, ``T = W W^T (m, m)`` and the output weights:
``L = a' Phi(Q) a - 2 a' Phi(Q, R, T) b + b' Phi(T) b`` with ``Phi`` applied to each Gram triple. Write
``Lt(Q, R, a)`` for that function with every entry of ``Q`` independent, and ``A = dLt/dQ + (dLt/dQ)^T``,
``B = dLt/dR``. Then ``dL/dTheta = A Theta + B W``, and one gradient step ``Theta <- Theta - lr (A Theta + B W)``
maps the order parameters exactly to

    Q <- Q - lr (A Q + B R^T + Q A^T + R B^T) + lr^2 (A Q A^T + A R B^T + B R^T A^T + B T B^T),
    R <- R - lr (A R + B T),          a <- a - lr dL/da,

so population GD costs ``O(k^3 + k^2 m + k m^2)`` per step in any dimension, ``d -> infinity`` included (the
initial overlaps, e.g. ``R`` of order ``1 / sqrt(d)``, carry the dimension). The gradient flow drops the
``lr^2`` terms. See docs/math.md section 9.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher, check_unbiased
from earnshaw.potentials import inner as _inner
from earnshaw.potentials import potential as _potential
from earnshaw.potentials._fastmath import asin
from earnshaw.problem import compile_options
from earnshaw.potentials.mixed import check_single

__all__ = ["OrderParams", "order_parameters", "student_from_order", "order_loss", "order_gd", "order_flow",
           "OrderTrajectory"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class OrderParams:
    """The student's order parameters: ``Q (*B, k, k)``, ``R (*B, k, m)`` and the output weights ``a (*B, k)``.

    ``Q = Theta Theta^T`` (the students' overlaps), ``R = Theta W^T`` (with the teacher's units).

    >>> import jax.numpy as jnp, earnshaw as es
    >>> p = es.OrderParams(Q=jnp.eye(2), R=jnp.zeros((2, 3)), a=jnp.ones(2))   # k = 2 students, m = 3 teachers
    >>> p.R.shape
    (2, 3)
    """

    Q: jax.Array
    R: jax.Array
    a: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class OrderTrajectory:
    """A run on the order parameters, for one problem or a batch (leading axes ``B``): ``ts (*B, S)`` steps (GD)
    or times (flow), ``losses (*B, S)``, ``params``: :class:`OrderParams` with a save axis ``S`` after the batch
    axes (``Q (*B, S, k, k)``); ``final``: the last one (``Q (*B, k, k)``)."""

    ts: jax.Array
    losses: jax.Array
    params: OrderParams
    final: OrderParams


def order_parameters(teacher: Teacher, student: Student):
    """``(OrderParams(Q, R, a), T)`` of a student and a teacher (any batch axes).

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=5, k=2); s = es.random_student(jax.random.key(1), d=5, k=3)
    >>> p, T = es.order_parameters(t, s)
    >>> p.Q.shape, p.R.shape, T.shape
    ((3, 3), (3, 2), (2, 2))
    """
    check_unbiased("order_parameters", teacher, student)
    th, w = jnp.asarray(student.theta), jnp.asarray(teacher.w)
    Q = jnp.einsum("...id,...jd->...ij", th, th)
    R = jnp.einsum("...id,...jd->...ij", th, w)
    T = jnp.einsum("...id,...jd->...ij", w, w)
    return OrderParams(Q=Q, R=R, a=jnp.asarray(student.a)), T


def student_from_order(params: OrderParams, T, b, d: int):
    """A teacher and a student in ``R^d`` with the given order parameters (``d >= k + m``).

    The joint Gram matrix ``[[T, R^T], [R, Q]]`` is factored (eigendecomposition, so a singular one works) into
    ``k + m`` vectors, which are embedded in the first coordinates of ``R^d``.

    Returns:
      ``(Teacher(b, w (m, d)), Student(a, theta (k, d)))``.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=5, k=2); s = es.random_student(jax.random.key(1), d=5, k=3)
    >>> p, T = es.order_parameters(t, s)
    >>> t2, s2 = es.student_from_order(p, T, t.b, d=8)
    >>> bool(jnp.allclose(es.order_parameters(t2, s2)[0].Q, p.Q, atol=1e-5)), s2.theta.shape
    (True, (3, 8))
    """
    Q, R, a = (np.asarray(x, np.float64) for x in (params.Q, params.R, params.a))
    T = np.asarray(T, np.float64)
    k, m = Q.shape[-1], T.shape[-1]
    if Q.ndim != 2:
        raise ValueError(f"student_from_order takes one problem; got Q of shape {Q.shape}")
    if d < k + m:
        raise ValueError(f"a student of k = {k} units against m = {m} teacher units needs d >= k + m = {k + m}, "
                         f"got d = {d}")
    G = np.block([[T, R.T], [R, Q]])
    lam, V = np.linalg.eigh(0.5 * (G + G.T))
    if lam[0] < -1e-8 * max(1.0, abs(lam[-1])):
        raise ValueError(f"the order parameters are not a Gram matrix: [[T, R^T], [R, Q]] has eigenvalue {lam[0]:.3g}")
    X = V * np.sqrt(np.clip(lam, 0.0, None))  # rows: the k + m vectors in R^(k + m)
    X = np.concatenate([X, np.zeros((k + m, d - k - m))], axis=1)
    dtype = jnp.result_type(float)
    return (Teacher(b=jnp.asarray(b, dtype), w=jnp.asarray(X[:m], dtype)),
            Student(a=jnp.asarray(a, dtype), theta=jnp.asarray(X[m:], dtype)))


def _save_times(t1, n_save):
    """0, then ``n_save - 1`` log-spaced times ending exactly at ``t1`` (diffrax refuses a save past ``t1``)."""
    ts = np.concatenate([[0.0], np.geomspace(min(1e-2, t1 / 10), t1, n_save - 1)])
    ts[-1] = t1
    return ts


def _pair(fn, nu, c, nv):
    return fn(nu[:, None], c, nv[None, :])


def order_loss(pot, T, b, params: OrderParams, objective: str = "L"):
    """The population loss from the order parameters alone: ``L`` (eq. 1) or ``G = L + |a|^2``, ``(*B,)`` for
    params with batch axes ``B`` (``Q (*B, k, k)``; ``T (m, m)``, ``b (m,)`` shared).

    >>> import jax, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=5, k=2); s = es.random_student(jax.random.key(1), d=5, k=3)
    >>> p, T = es.order_parameters(t, s)
    >>> bool(abs(es.order_loss("erf", T, t.b, p) - es.population_loss("erf", t, s)) < 1e-5)
    True
    """
    pot, T, b, params = _check(pot, T, b, params)
    loss = _over_batch(functools.partial(_loss, pot.fn, T, b, objective=objective), params.Q.ndim - 2)
    return loss(params.Q, params.R, params.a)


def _loss(fn, T, b, Q, R, a, objective):
    qd, td = jnp.diagonal(Q), jnp.diagonal(T)
    K = _pair(fn, qd, Q, qd)
    B = _pair(fn, qd, R, td)
    W = _pair(fn, td, T, td)
    L = a @ K @ a - 2.0 * a @ B @ b + b @ W @ b
    return L + a @ a if objective == "G" else L


def _erf_grads(T, b, objective):
    """erf's ``(A, B, dL/da)`` in closed form (no reverse pass), as :mod:`earnshaw.closed_form` writes the weights'
    gradient ``dL/dtheta_i = 2 a_i [sum_j a_j C_ij (theta_j - E_ij theta_i) - sum_n b_n C'_in (w_n - E'_in theta_i)]``
    with ``C = (4/pi) r_i r_j / sqrt(1 - s^2)``, ``s = 2 c r_i r_j``, ``E = 2 c r_i^2``, ``r = (1 + 2 |u|^2)^(-1/2)``
    and ``c`` the entry of ``Q`` (``R`` for ``C'``, ``E'``). The teacher's ``r`` is computed once, outside any loop."""
    rq = jax.lax.rsqrt(1.0 + 2.0 * jnp.diagonal(T))

    def parts(c, r_row, r_col):
        s = 2.0 * c * r_row[:, None] * r_col[None, :]
        C = (4.0 / np.pi) * r_row[:, None] * r_col[None, :] * jax.lax.rsqrt(1.0 - s * s)
        return (2.0 / np.pi) * asin(s), C, 2.0 * c * (r_row * r_row)[:, None]

    def grads(Q, R, a):
        rp = jax.lax.rsqrt(1.0 + 2.0 * jnp.diagonal(Q))
        K, CK, EK = parts(Q, rp, rp)
        B, CB, EB = parts(R, rp, rq)
        MK = 2.0 * a[:, None] * CK * a[None, :]
        MB = 2.0 * a[:, None] * CB * b[None, :]
        A = MK - jnp.diag(jnp.sum(MK * EK, -1) - jnp.sum(MB * EB, -1))
        ga = 2.0 * (K @ a - B @ b)
        return A, -MB, ga + 2.0 * a if objective == "G" else ga

    return grads


def _step_fn(fn, T, b, objective, train, lr, flow: bool):
    if fn is _inner.erf and objective in ("L", "G"):
        grads = _erf_grads(T, b, objective)
    else:
        def grads(Q, R, a):
            gQ, gR, ga = jax.grad(_loss, argnums=(3, 4, 5))(fn, T, b, Q, R, a, objective)
            return gQ + gQ.T, gR, ga

    def rates(Q, R, a):
        """``(dQ, dR, da)`` of one step (GD) or the flow's vector field, without the lr^2 terms, and ``(M, M G)``.

        With ``M = [A B]`` (``k x (k + m)``) and the joint Gram ``G = [[Q R], [R' T]]``, ``dL/dTheta = M [Theta; W]``
        and ``M G = [A Q + B R', A R + B T]``: one product of ``(k, k + m)`` by ``(k + m, k + m)`` gives both
        first-order moves (eleven separate ``k x k`` products cost more than their arithmetic at small ``k``)."""
        A, B, ga = grads(Q, R, a)
        k = Q.shape[0]
        M = jnp.concatenate([A, B], 1)
        MG = M @ jnp.block([[Q, R], [R.T, T]])
        move_theta = train in ("both", "theta")
        dQ = -(MG[:, :k] + MG[:, :k].T) if move_theta else jnp.zeros_like(Q)
        dR = -MG[:, k:] if move_theta else jnp.zeros_like(R)
        da = -ga if train in ("both", "a") else jnp.zeros_like(a)
        return dQ, dR, da, M, MG

    if flow:
        return rates

    def step(Q, R, a):
        dQ, dR, da, M, MG = rates(Q, R, a)
        if train in ("both", "theta"):
            # the lr^2 term of (Theta - lr D)(Theta - lr D)^T, D = M [Theta; W]: M G M'
            dQ = dQ + lr * (MG @ M.T)
        return Q + lr * dQ, R + lr * dR, a + lr * da

    return step


def _check(pot, T, b, params):
    pot = _potential(pot)
    check_single("order-parameter dynamics", pot)
    if pot.kind != "inner":
        raise ValueError(f"order-parameter dynamics need an inner-product potential; got {pot!r}")
    Q, R, a = (jnp.asarray(x) for x in (params.Q, params.R, params.a))
    k, m = (Q.shape[-1] if Q.ndim else 0), (jnp.shape(T)[-1] if jnp.ndim(T) else 0)
    batch = Q.shape[:-2]
    if (Q.ndim < 2 or Q.shape[-2:] != (k, k) or R.shape != batch + (k, m) or a.shape != batch + (k,)
            or jnp.shape(T) != (m, m) or jnp.shape(b) != (m,)):
        raise ValueError(f"order parameters must be Q (*B, k, k), R (*B, k, m), a (*B, k) with the same batch axes B, "
                         f"T (m, m), b (m,); got Q {Q.shape}, R {R.shape}, a {a.shape}, T {jnp.shape(T)}, "
                         f"b {jnp.shape(b)}")
    return pot, jnp.asarray(T, Q.dtype), jnp.asarray(b, Q.dtype), OrderParams(Q, R, a)


def _over_batch(fn, n_axes: int):
    """``fn`` vmapped over ``n_axes`` leading batch axes of every argument (``n_axes = 0``: ``fn`` itself)."""
    for _ in range(n_axes):
        fn = jax.vmap(fn)
    return fn


def order_gd(pot, T, b, params: OrderParams, *, lr=1e-2, max_steps=10_000, save_every=None, objective="L",
             train="both") -> OrderTrajectory:
    """Population gradient descent on the order parameters: exactly GD on the weights, in ``O(k^3)`` per step.

    Args:
      pot: an inner-product potential or its name.
      T: ``(m, m)`` teacher Gram matrix.
      b: ``(m,)`` the teacher's charges.
      params: start :class:`OrderParams`, one problem (``Q (k, k)``) or a batch (``Q (*B, k, k)``, ``R (*B, k, m)``,
        ``a (*B, k)``; the teacher ``T``, ``b`` shared), run as one compiled program.
      lr: step size.
      max_steps: number of steps.
      save_every: steps between saves (default ``max_steps // 100``).
      objective: ``"L"`` or ``"G"``.
      train: ``"both"``, ``"theta"`` or ``"a"``.

    Returns:
      :class:`OrderTrajectory` (``ts`` in steps), with the batch axes of ``params``.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=6, k=2); s = es.random_student(jax.random.key(1), d=6, k=2)
    >>> p, T = es.order_parameters(t, s)
    >>> op = es.order_gd("erf", T, t.b, p, lr=0.05, max_steps=300)
    >>> direct = es.gradient_descent("erf", t, s, lr=0.05, max_steps=300)
    >>> bool(jnp.allclose(op.final.Q, es.order_parameters(t, direct.final)[0].Q, atol=1e-10))
    True
    >>> seeds = es.random_student(jax.random.key(2), d=6, k=2, batch=100)   # 100 starts, one program
    >>> runs = es.order_gd("erf", T, t.b, es.order_parameters(t, seeds)[0], lr=0.05, max_steps=300)
    >>> runs.losses.shape, runs.final.Q.shape
    ((100, 101), (100, 2, 2))
    >>> jax.config.update("jax_enable_x64", False)
    """
    pot, T, b, params = _check(pot, T, b, params)
    if not (isinstance(max_steps, int) and max_steps >= 1):
        raise ValueError(f"max_steps must be a positive integer, got max_steps={max_steps!r}")
    save_every = max(1, int(save_every if save_every is not None else max(1, max_steps // 100)))
    return _order_gd(pot, T, b, params, jnp.asarray(lr, params.Q.dtype), max_steps=max_steps,
                     save_every=save_every, objective=objective, train=train, batch_axes=params.Q.ndim - 2)


# one problem is a chain of tiny products: Eigen's thread pool off (compile_options)
@functools.partial(jax.jit, static_argnames=("pot", "max_steps", "save_every", "objective", "train", "batch_axes"),
                   compiler_options=compile_options(0))
def _order_gd(pot, T, b, params, lr, *, batch_axes, **opts):
    return _over_batch(lambda p: _order_gd_one(pot, T, b, p, lr, **opts), batch_axes)(params)


def _order_gd_one(pot, T, b, params, lr, *, max_steps, save_every, objective, train):
    step = _step_fn(pot.fn, T, b, objective, train, lr, flow=False)
    n_chunks = -(-max_steps // save_every)

    def chunk(carry, i):
        Q, R, a = carry
        n = jnp.minimum(save_every, max_steps - i * save_every)
        Q, R, a = jax.lax.fori_loop(0, n, lambda _, c: step(*c), (Q, R, a))
        return (Q, R, a), (Q, R, a, _loss(pot.fn, T, b, Q, R, a, objective))

    start = (params.Q, params.R, params.a)
    end, (Qs, Rs, As, Ls) = jax.lax.scan(chunk, start, jnp.arange(n_chunks))
    L0 = _loss(pot.fn, T, b, *start, objective)
    ts = jnp.concatenate([jnp.zeros(1), jnp.minimum((jnp.arange(n_chunks) + 1) * save_every, max_steps)])
    cat = lambda x0, xs: jnp.concatenate([x0[None], xs])  # noqa: E731
    saved = OrderParams(Q=cat(params.Q, Qs), R=cat(params.R, Rs), a=cat(params.a, As))
    return OrderTrajectory(ts=ts.astype(Ls.dtype), losses=cat(L0, Ls), params=saved, final=OrderParams(*end))


def order_flow(pot, T, b, params: OrderParams, *, t1=1e3, n_save=101, rtol=1e-8, atol=1e-10, objective="L",
               train="both", max_steps=100_000) -> OrderTrajectory:
    """The population gradient flow on the order parameters (diffrax Tsit5, PID controller), saves log-spaced.

    ``params`` is one problem or a batch (leading axes ``B``, as for :func:`order_gd`), integrated in one compiled
    program (the batch steps together, each problem with its own error control). Returns
    :class:`OrderTrajectory` with the batch axes of ``params``; saves that a problem did not reach within
    ``max_steps`` solver steps hold ``inf``.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> jax.config.update("jax_enable_x64", True)
    >>> t = es.random_teacher(jax.random.key(0), d=6, k=2); s = es.random_student(jax.random.key(1), d=6, k=2)
    >>> p, T = es.order_parameters(t, s)
    >>> op = es.order_flow("erf", T, t.b, p, t1=50.0)
    >>> direct = es.gradient_flow("erf", t, s, t1=50.0, gtol=0.0)
    >>> bool(abs(op.losses[-1] - direct.final_loss) < 1e-7)
    True
    >>> jax.config.update("jax_enable_x64", False)
    """
    pot, T, b, params = _check(pot, T, b, params)
    return _order_flow(pot, T, b, params, t1=float(t1), n_save=int(n_save), rtol=float(rtol), atol=float(atol),
                       objective=objective, train=train, max_steps=int(max_steps), batch_axes=params.Q.ndim - 2)


@functools.partial(jax.jit, static_argnames=("pot", "t1", "n_save", "rtol", "atol", "objective", "train",
                                             "max_steps", "batch_axes"))
def _order_flow(pot, T, b, params, *, batch_axes, **opts):
    return _over_batch(lambda p: _order_flow_one(pot, T, b, p, **opts), batch_axes)(params)


def _order_flow_one(pot, T, b, params, *, t1, n_save, rtol, atol, objective, train, max_steps):
    import diffrax  # here, not at import: diffrax and its stack take ~1 s to load
    rates = _step_fn(pot.fn, T, b, objective, train, None, flow=True)

    def vf(t, y, args):
        return rates(*y)[:3]

    save_ts = _save_times(t1, n_save)
    y0 = (params.Q, params.R, params.a)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), diffrax.Tsit5(), 0.0, t1, None, y0,
                              saveat=diffrax.SaveAt(ts=jnp.asarray(save_ts, params.Q.dtype)),
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
                              throw=False, adjoint=diffrax.ForwardMode())
    Qs, Rs, As = sol.ys
    losses = jax.vmap(lambda Q, R, a: _loss(pot.fn, T, b, Q, R, a, objective))(Qs, Rs, As)
    return OrderTrajectory(ts=sol.ts, losses=losses, params=OrderParams(Qs, Rs, As),
                           final=OrderParams(Qs[-1], Rs[-1], As[-1]))
