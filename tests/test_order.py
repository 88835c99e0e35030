"""Order-parameter dynamics: exactly the population dynamics of the weights, at a cost free of d."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es


@pytest.mark.parametrize("pot,objective,train", [("erf", "L", "both"), ("erf", "G", "theta"), ("relu", "L", "a"),
                                                 ("tanh", "L", "both")])
def test_order_gd_equals_direct_gd_along_the_whole_trajectory(pot, objective, train):
    """Small initial overlaps (a plateau for erf); student wider than the teacher. tanh by order-32 quadrature:
    both sides evaluate the same potential, so its order does not enter the comparison, only the run time."""
    if pot == "tanh":
        pot = es.potential("tanh", order=32)
    d = 8
    t = es.random_teacher(jax.random.key(0), d=d, k=2, scale=d**-0.5)
    s = es.random_student(jax.random.key(1), d=d, k=3, scale=0.1 * d**-0.5, a_scale=0.1)
    p, T = es.order_parameters(t, s)
    op = es.order_gd(pot, T, t.b, p, lr=0.05, max_steps=2000, save_every=200, objective=objective, train=train)
    direct = es.gradient_descent(pot, t, s, lr=0.05, max_steps=2000, save_every=200, objective=objective,
                                 train=train)
    np.testing.assert_allclose(op.ts, direct.ts)
    np.testing.assert_allclose(op.losses, direct.losses, rtol=1e-10, atol=1e-12)
    q = es.order_parameters(t, direct.params)[0]
    for mine, theirs in ((op.params.Q, q.Q), (op.params.R, q.R), (op.params.a, q.a)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-11)
    assert float(op.losses[-1]) < float(op.losses[0])


def test_order_flow_equals_the_weight_flow():
    t = es.random_teacher(jax.random.key(2), d=6, k=2)
    s = es.random_student(jax.random.key(3), d=6, k=2)
    p, T = es.order_parameters(t, s)
    op = es.order_flow("erf", T, t.b, p, t1=30.0, n_save=5, rtol=1e-10, atol=1e-12)
    direct = es.gradient_flow("erf", t, s, t1=30.0, n_save=5, gtol=0.0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(op.ts, direct.ts)
    np.testing.assert_allclose(op.losses, direct.losses, rtol=1e-7, atol=1e-9)


def test_conversion_both_ways_and_the_loss():
    t = es.random_teacher(jax.random.key(4), d=7, k=2)
    s = es.random_student(jax.random.key(5), d=7, k=3)
    p, T = es.order_parameters(t, s)
    t2, s2 = es.student_from_order(p, T, t.b, d=12)
    p2, T2 = es.order_parameters(t2, s2)
    for x, y in ((p2.Q, p.Q), (p2.R, p.R), (T2, T), (p2.a, p.a)):
        np.testing.assert_allclose(x, y, atol=1e-12)
    # the loss is a function of the order parameters alone, and equal for the two realisations
    assert float(es.order_loss("erf", T, t.b, p)) == pytest.approx(float(es.population_loss("erf", t, s)), abs=1e-13)
    assert float(es.population_loss("erf", t2, s2)) == pytest.approx(float(es.population_loss("erf", t, s)), abs=1e-12)
    with pytest.raises(ValueError, match="d >= k \\+ m = 5"):
        es.student_from_order(p, T, t.b, d=4)
    bad = es.OrderParams(Q=-jnp.eye(3), R=p.R, a=p.a)
    with pytest.raises(ValueError, match="not a Gram matrix"):
        es.student_from_order(bad, T, t.b, d=8)


def test_order_dynamics_refuse_what_they_cannot_do():
    t = es.random_teacher(jax.random.key(4), d=3, k=2)
    s = es.random_student(jax.random.key(5), d=3, k=2)
    p, T = es.order_parameters(t, s)
    with pytest.raises(ValueError, match="inner-product potential"):
        es.order_gd(es.potential("gaussian"), T, t.b, p)
    with pytest.raises(ValueError, match="must be Q \\(\\*B, k, k\\)"):
        es.order_gd("erf", T, t.b[:1], p)
    with pytest.raises(ValueError, match="same batch axes B.*got Q \\(4, 2, 2\\), R \\(3, 2, 2\\)"):
        es.order_gd("erf", T, t.b, es.OrderParams(Q=jnp.stack([p.Q] * 4), R=jnp.stack([p.R] * 3),
                                                  a=jnp.stack([p.a] * 4)))


def test_a_batch_of_order_parameter_runs_is_the_batch_of_weight_runs():
    """A (2, 3) batch of starts in one call of order_gd / order_flow: each entry equals direct GD (the weights'
    batched run) and the flow of that start alone."""
    d = 6
    t = es.random_teacher(jax.random.key(6), d=d, k=2, scale=d**-0.5)
    s = es.random_student(jax.random.key(7), d=d, k=3, batch=(2, 3), scale=0.5 * d**-0.5)
    p, T = es.order_parameters(t, s)
    op = es.order_gd("erf", T, t.b, p, lr=0.05, max_steps=600, save_every=100)
    direct = es.gradient_descent("erf", t, s, lr=0.05, max_steps=600, save_every=100)
    assert op.losses.shape == (2, 3, 7) and op.params.Q.shape == (2, 3, 7, 3, 3) and op.final.a.shape == (2, 3, 3)
    np.testing.assert_allclose(es.order_loss("erf", T, t.b, p), es.population_loss("erf", t, s), rtol=1e-12)
    np.testing.assert_allclose(op.ts, direct.ts)
    np.testing.assert_allclose(op.losses, direct.losses, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(op.final.R, es.order_parameters(t, direct.final)[0].R, rtol=1e-9, atol=1e-11)
    assert len({round(float(x), 6) for x in op.losses[..., -1].ravel()}) == 6  # six different runs
    flow = es.order_flow("erf", T, t.b, p, t1=20.0, n_save=4, rtol=1e-10, atol=1e-12)
    alone = es.order_flow("erf", T, t.b, jax.tree.map(lambda x: x[1, 2], p), t1=20.0, n_save=4, rtol=1e-10,
                          atol=1e-12)
    assert flow.losses.shape == (2, 3, 4) and flow.ts.shape == (2, 3, 4)
    np.testing.assert_allclose(flow.losses[1, 2], alone.losses, rtol=1e-12, atol=1e-14)


def test_order_gd_equals_direct_gd_through_the_plateau_from_overlaps_of_d_to_infinity():
    """Overlaps of a start in d = 10^6 (R ~ 1e-3), realised in d = k + m = 4: both dynamics cross the same
    plateau (a stretch where the loss barely moves) and agree to 1e-10 all along."""
    from earnshaw.experiments.plateau import plateau_start, symmetric_height

    p, T, b = plateau_start(2, 2, d=1e6)
    t, s = es.student_from_order(p, T, b, d=4)
    op = es.order_gd("erf", T, b, p, lr=0.05, max_steps=4000, save_every=20, train="theta")
    direct = es.gradient_descent("erf", t, s, lr=0.05, max_steps=4000, save_every=20, train="theta")
    L = np.asarray(op.losses)
    # 1e-10 relative; 1e-13 absolute where L (a difference of O(1) terms) is down at its rounding level
    np.testing.assert_allclose(L, direct.losses, rtol=1e-10, atol=1e-13)
    q = es.order_parameters(t, direct.params)[0]
    for mine, theirs in ((op.params.Q, q.Q), (op.params.R, q.R)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-11)
    # the plateau: 10 saves (200 steps) in a row over which the loss changes by under 5% (it fell 96% in the
    # first 10), at the symmetric fixed point's loss (found independently, section 10), before it falls to 0
    flat = [i for i in range(len(L) - 10) if L[i] > 1e-3 and np.ptp(L[i:i + 10]) < 0.05 * L[i]]
    assert flat and L[flat[0]] == pytest.approx(2 * symmetric_height(2, tau=1.0), rel=0.05), (L[::10], flat[:3])
    assert L[-1] < 1e-10


@pytest.mark.parametrize("objective", ["L", "G"])
def test_erf_closed_form_order_gradient_equals_autodiff(objective):
    """The hand-derived (A, B, dL/da) for erf (order_gd, order_flow and online_ode use it) against jax.grad."""
    from earnshaw.dynamics.order import _erf_grads, _loss
    from earnshaw.potentials import inner

    rng = np.random.default_rng(7)
    for k, m in ((3, 2), (1, 4), (6, 6)):
        X = rng.normal(size=(k + m, k + m + 3)) * 0.6
        G = X @ X.T
        Q, R, T = (jnp.asarray(x) for x in (G[:k, :k], G[:k, k:], G[k:, k:]))
        a, b = jnp.asarray(rng.normal(size=k)), jnp.asarray(rng.normal(size=m))
        A, B, ga = jax.jit(lambda *x: _erf_grads(*x[:2], objective)(*x[2:]))(T, b, Q, R, a)
        gQ, gR, gA = jax.jit(jax.grad(lambda *x: _loss(inner.erf, *x, objective), argnums=(2, 3, 4)))(T, b, Q, R, a)
        np.testing.assert_allclose(A, gQ + gQ.T, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(B, gR, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ga, gA, rtol=1e-12, atol=1e-14)
