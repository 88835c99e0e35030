"""Online SGD: the simulation against its d -> infinity ODEs, the four-point averages, the small-lr limit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw.dynamics.online import _gh4, _i4_erf


def _cov(vectors):
    X = jnp.asarray(vectors)
    return X @ X.T


def test_erf_four_point_average_equals_quadrature_also_for_singular_covariances():
    i4, j2 = _gh4(es.activation("erf"), 40)  # 4-D Gauss-Hermite converges slowly: 1.2e-5 off at 24 nodes, 2e-8 at 40
    rng = np.random.default_rng(0)
    for _ in range(3):
        C = _cov(rng.normal(size=(4, 4)) * 0.5)
        assert float(_i4_erf(C)) == pytest.approx(float(i4(C)), abs=1e-6)
    v = rng.normal(size=(3, 4)) * 0.5
    for rows in ([0, 0, 1, 2], [0, 1, 2, 2], [0, 0, 1, 1]):  # x1 = x2 (i = k) and x3 = x4 (p = q)
        C = _cov(v[rows])  # variances up to 1.6: the quadrature is within 1e-5 at 40 nodes, closer at 50
        assert float(_i4_erf(C)) == pytest.approx(float(i4(C)), abs=1e-5)


def test_small_learning_rate_limit_is_the_population_gradient_flow():
    """dQ/dt = (lr / 2) (-grad L terms) + lr^2 (...): in the time tau = lr t / 2 the ODE tends to the gradient flow
    of L as lr -> 0, and the lr^2 terms are visible at lr = 1."""
    T, b = jnp.eye(2), jnp.array([1.0, 0.7])
    start = es.OrderParams(Q=jnp.array([[0.6, 0.1], [0.1, 0.4]]), R=jnp.array([[0.3, 0.1], [0.0, 0.2]]),
                           a=jnp.array([0.8, 0.5]))
    flow = es.order_flow("erf", T, b, start, t1=4.0, n_save=2)
    lr = 1e-3
    small = es.online_ode("erf", T, b, start, lr=lr, ts=[0.0, 2 * 4.0 / lr])
    assert float(small.eps_g[-1]) == pytest.approx(0.5 * float(flow.losses[-1]), rel=5e-3)
    big = es.online_ode("erf", T, b, start, lr=1.0, ts=[0.0, 2 * 4.0])
    assert abs(float(big.eps_g[-1]) - 0.5 * float(flow.losses[-1])) > 1e-3


def _sim_against_ode(d, seeds, *, K=2, M=2, t1=10.0, **opts):
    """Simulation mean and standard error over seeds, and the ODE at the same times from the same start."""
    from earnshaw.experiments.plateau import plateau_start

    p, T, b = plateau_start(K, M, d=d, q0=0.5, seed=3)
    t, s = es.student_from_order(p, T, b, d=d)
    batch = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (seeds, *x.shape)), s)
    sim = es.online_sgd(jax.random.key(1), "erf", t, batch, t1=t1, n_save=6, **opts)
    ode = es.online_ode("erf", T, b, p, ts=np.asarray(sim.ts), **opts)
    e = np.asarray(sim.eps_g)
    return e.mean(0), e.std(0, ddof=1) / np.sqrt(seeds), np.asarray(ode.eps_g)


def _assert_within_fluctuations(mean, sem, ode_eps):
    assert mean[0] == pytest.approx(ode_eps[0], rel=1e-10)  # the same start
    # the ODE is the d -> infinity mean: what is left at finite d is O(1/d) next to the O(1/sqrt(d)) spread
    assert np.all(np.abs(mean - ode_eps) <= 0.05 * ode_eps + 4 * sem), (mean, ode_eps, sem)
    assert ode_eps[-1] < 0.3 * ode_eps[0]  # learning happened: the comparison is not of two constants


def test_simulation_agrees_with_the_ode_within_its_fluctuations():
    """Both layers trained at different rates, K = 3 students for M = 2 teachers, label noise, weight decay; at
    d = 500 (5,000 steps; d = 1000 leaves the same margins at twice the time, d = 10^4 runs with -m slow)."""
    mean, sem, ode_eps = _sim_against_ode(500, 8, K=3, M=2, lr=0.5, lr_a=0.3, noise=0.2, decay=0.05)
    _assert_within_fluctuations(mean, sem, ode_eps)
    # the noise and the decay matter at this precision: the ODE without them is outside the band
    from earnshaw.experiments.plateau import plateau_start

    p, T, b = plateau_start(3, 2, d=500, q0=0.5, seed=3)
    clean = np.asarray(es.online_ode("erf", T, b, p, lr=0.5, lr_a=0.3, ts=np.linspace(0.0, 10.0, 6)).eps_g)
    assert np.max(np.abs(mean - clean) - 4 * sem) > 0


@pytest.mark.slow
def test_simulation_agrees_with_the_ode_at_d_10000():
    mean, sem, ode_eps = _sim_against_ode(10_000, 8, lr=0.5, lr_a=0.5, t1=10.0)
    _assert_within_fluctuations(mean, sem, ode_eps)


def test_weight_decay_alone_shrinks_the_overlaps_at_the_ode_rate():
    """With the teacher's charges 0 there is no signal: theta and a only decay, Q ~ exp(-2 lr decay t) exactly,
    up to the lr^2 noise term which vanishes with the error."""
    T, b = jnp.eye(2), jnp.zeros(2)
    start = es.OrderParams(Q=jnp.eye(2), R=0.1 * jnp.eye(2), a=jnp.zeros(2))
    run = es.online_ode("erf", T, b, start, lr=0.4, lr_a=0.2, decay=0.5, ts=[0.0, 1.0, 3.0])
    np.testing.assert_allclose(np.asarray(run.params.Q)[:, 0, 0], np.exp(-2 * 0.4 * 0.5 * np.array([0, 1, 3.0])),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(run.params.R)[:, 0, 0], 0.1 * np.exp(-0.4 * 0.5 * np.array([0, 1, 3.0])),
                               rtol=1e-6)


def test_online_inputs_are_checked():
    T, b = jnp.eye(2), jnp.ones(2)
    start = es.OrderParams(Q=jnp.eye(2), R=jnp.zeros((2, 2)), a=jnp.ones(2))
    with pytest.raises(ValueError, match="inner-product activation"):
        es.online_ode(es.potential("gaussian"), T, b, start)
    with pytest.raises(ValueError, match="increasing times starting at 0"):
        es.online_ode("erf", T, b, start, ts=[1.0, 2.0])
    with pytest.raises(ValueError, match="decay must be a finite number >= 0"):
        es.online_ode("erf", T, b, start, decay=-1.0)
    with pytest.raises(ValueError, match="must be Q \\(\\*B, k, k\\)"):
        es.online_ode("erf", T, b[:1], start)
    with pytest.raises(ValueError, match="integrates one problem"):
        es.online_ode("erf", T, b, jax.tree.map(lambda x: jnp.stack([x, x]), start))
    with pytest.raises(es.DivergenceError, match="max_steps = 3 ran out"):  # not a silent truncated curve
        es.online_ode("erf", T, b, start, t1=50.0, max_steps=3)


def test_erf_second_moments_for_all_pairs_equal_the_per_quadruple_formula():
    from earnshaw.dynamics.online import _erf_second_moments

    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 6)) * 0.6  # k = 3 student and m = 2 teacher vectors
    G = jnp.asarray(X @ X.T)
    fast = np.asarray(_erf_second_moments(G, 3))
    for i in range(3):
        for k in range(3):
            for p in range(5):
                for q in range(5):
                    idx = [i, k, p, q]
                    assert fast[i, k, p, q] == pytest.approx(float(_i4_erf(G[np.ix_(idx, idx)])), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("k,m", [(4, 5), (1, 9)])
def test_erf_second_sums_by_triangles_equal_the_sum_of_all_quadruples(k, m):
    """The right-hand side's sum_pq c_p c_q I4(i, k', p, q) (pairs i <= k' and p <= q, fast asin) against the
    plain sum over every quadruple of _erf_second_moments (XLA's arcsin)."""
    from earnshaw.dynamics.online import _erf_second_moments, _erf_second_sums

    n = k + m
    rng = np.random.default_rng(k * 10 + m)
    X = rng.normal(size=(n, n + 2)) * 0.6
    G, coef = jnp.asarray(X @ X.T), jnp.asarray(rng.normal(size=n))
    ref = jnp.einsum("ikpq,p,q->ik", _erf_second_moments(G, k), coef, coef)
    np.testing.assert_allclose(_erf_second_sums(G, k, coef), ref, rtol=1e-12, atol=1e-13)


@pytest.fixture(scope="module")
def plateau_reference():
    """K = 4 students, M = 3 teachers, both layers and label noise, through the plateau to t = 300, at
    rtol = 1e-11: the reference the default tolerances are held to."""
    from earnshaw.experiments.plateau import plateau_start

    p, T, b = plateau_start(4, 3, d=1e3, seed=2)
    opts = dict(lr=0.5, lr_a=0.2, noise=0.1, n_save=30, t1=300.0)
    ref = es.online_ode("erf", T, b, p, rtol=1e-11, atol=1e-14, **opts)
    assert float(ref.eps_g[-1]) < 0.01 * float(ref.eps_g[0])  # it learned: not a comparison of constants
    return (T, b, p), opts, ref


def _assert_within(run, ref, tol):
    for mine, theirs in ((run.eps_g, ref.eps_g), (run.params.Q, ref.params.Q), (run.params.R, ref.params.R),
                         (run.params.a, ref.params.a)):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=tol * float(jnp.abs(theirs).max()))


def test_ode_at_default_tolerances_is_within_them_of_a_tight_reference(plateau_reference):
    """Regression guard for the right-hand side and the solver: Tsit5 at rtol = 1e-6 (its steps are held by
    stability here, so it lands 10x closer than that: 5e-8 of each quantity's scale when this was written)."""
    (T, b, p), opts, ref = plateau_reference
    _assert_within(es.online_ode("erf", T, b, p, **opts), ref, 1e-6)


def test_ode_takes_a_diffrax_solver(plateau_reference):
    """Bosh3 (3 right-hand sides a step, 1.25x faster on stiff runs) stays within a few rtol (4e-6 when this
    was written)."""
    import diffrax

    (T, b, p), opts, ref = plateau_reference
    _assert_within(es.online_ode("erf", T, b, p, solver=diffrax.Bosh3(), **opts), ref, 1e-5)
    with pytest.raises(ValueError, match="unknown solver"):
        es.online_ode("erf", T, b, p, solver="rk4", **opts)
