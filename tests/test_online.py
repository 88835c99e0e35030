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


def test_simulation_agrees_with_the_ode_within_its_fluctuations():
    d, seeds = 1000, 8
    b = jnp.array([1.0, 1.0])
    t = es.Teacher(b=b, w=jnp.eye(2, d))
    theta0 = jax.random.normal(jax.random.key(5), (2, d)) * (0.5 / d) ** 0.5
    s = es.Student(a=jnp.ones((seeds, 2)), theta=jnp.broadcast_to(theta0, (seeds, 2, d)))
    sim = es.online_sgd(jax.random.key(1), "erf", t, s, lr=0.5, lr_a=0.5, t1=10.0, n_save=6)
    p, T = es.order_parameters(t, es.Student(a=jnp.ones(2), theta=theta0))
    ode = es.online_ode("erf", T, b, p, lr=0.5, lr_a=0.5, ts=np.asarray(sim.ts))
    mean, sem = np.asarray(sim.eps_g).mean(0), np.asarray(sim.eps_g).std(0) / np.sqrt(seeds)
    ode_eps = np.asarray(ode.eps_g)
    assert mean[0] == pytest.approx(ode_eps[0], rel=1e-12)
    assert np.all(np.abs(mean - ode_eps) <= 0.05 * ode_eps + 4 * sem), (mean, ode_eps, sem)
    assert ode_eps[-1] < 0.2 * ode_eps[0]  # learning happened: the comparison is not of two constants


def test_online_inputs_are_checked():
    T, b = jnp.eye(2), jnp.ones(2)
    start = es.OrderParams(Q=jnp.eye(2), R=jnp.zeros((2, 2)), a=jnp.ones(2))
    with pytest.raises(ValueError, match="inner-product activation"):
        es.online_ode(es.potential("gaussian"), T, b, start)
    with pytest.raises(ValueError, match="increasing times starting at 0"):
        es.online_ode("erf", T, b, start, ts=[1.0, 2.0])


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
