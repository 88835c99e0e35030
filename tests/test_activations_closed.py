"""Closed-form potentials of the common activations: against adaptive quadrature, Monte Carlo and finite
differences (abs, leaky ReLU, relu^2 as the order-2 arc-cosine kernel, normal CDF, sin, cos, gauss, exp)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si

import earnshaw as es

NEW = ["abs", "relu2", "normal_cdf", "sin", "cos", "gauss", "exp", "leaky_relu"]


def _pot(name):
    return es.potential(name, slope=0.2) if name == "leaky_relu" else es.potential(name)


# the activations written again in plain Python: the reference shares no code with earnshaw's
REFERENCE = {"abs": abs, "relu2": lambda z: max(z, 0.0) ** 2,
             "normal_cdf": lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))), "sin": math.sin, "cos": math.cos, "gauss": lambda z: math.exp(-0.5 * z * z), "exp": math.exp,
             "leaky_relu": lambda z: z if z > 0 else 0.2 * z}


def _adaptive(name, u, v):
    """E[s(U) s(V)] by scipy's adaptive 2-D quadrature: U = |u| Z1, V = beta Z1 + gamma Z2 (an independent route)."""
    u, v = np.asarray(u, float), np.asarray(v, float)
    nu = math.sqrt(u @ u)
    beta = (u @ v) / nu
    gamma = math.sqrt(max(v @ v - beta * beta, 0.0))
    f = REFERENCE[name]
    dens = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    val, err = si.dblquad(lambda z2, z1: f(nu * z1) * f(beta * z1 + gamma * z2) * dens(z1) * dens(z2),
                          -9.0, 9.0, -9.0, 9.0, epsabs=1e-10, epsrel=1e-10)
    return val


@pytest.mark.parametrize("name", NEW)
def test_closed_form_against_adaptive_quadrature_and_monte_carlo(name, getkey):
    pot = _pot(name)
    assert pot.activation is not None and name in es.POTENTIALS
    u = jnp.array([0.7, -0.2, 0.4])
    v = jnp.array([0.1, 0.5, -0.6])
    exact = float(pot(u, v))
    assert exact == pytest.approx(_adaptive(name, u, v), abs=1e-7, rel=1e-7)
    z = np.linspace(-3, 3, 7)  # and the reference is the same function as earnshaw's activation
    np.testing.assert_allclose([REFERENCE[name](x) for x in z], np.asarray(pot.activation(jnp.asarray(z))), rtol=1e-12,
                               atol=1e-15)
    mean, se = es.monte_carlo(getkey(), pot, u, v, 400_000)
    assert abs(exact - mean) < 4 * se + 1e-12
    # symmetric, and the self-value is E[s(U)^2] > 0
    assert float(pot(v, u)) == pytest.approx(exact, abs=1e-14)
    assert float(pot(u, u)) > 0


@pytest.mark.parametrize("name", NEW)
def test_gradients_against_finite_differences(name):
    pot = _pot(name)
    u = jnp.array([0.6, -0.3, 0.5, 0.1])
    v = jnp.array([-0.2, 0.4, 0.3, -0.7])
    g = np.asarray(jax.grad(lambda x: pot(x, v))(u))
    h = 1e-6
    fd = np.array([(float(pot(u.at[j].add(h), v)) - float(pot(u.at[j].add(-h), v))) / (2 * h) for j in range(4)])
    np.testing.assert_allclose(g, fd, atol=1e-8)
    # finite at the degenerate points (u parallel to v, u = 0) where angle formulas have a kink
    assert np.isfinite(np.asarray(jax.grad(lambda x: pot(x, v))(2.0 * v))).all()
    assert np.isfinite(np.asarray(jax.grad(lambda x: pot(x, v))(jnp.zeros(4)))).all()


@pytest.mark.parametrize("name", ["normal_cdf", "sin", "cos", "gauss", "exp"])
def test_smooth_closed_forms_equal_gauss_hermite(name):
    closed = _pot(name)
    quad = es.potential(es.custom(closed.activation.fn, "q-" + name), order=80)
    for scale in (0.3, 0.8):
        u = scale * jnp.array([0.9, -0.4, 0.2])
        v = scale * jnp.array([-0.3, 0.8, 0.5])
        assert float(quad(u, v)) == pytest.approx(float(closed(u, v)), abs=1e-10)


def test_relu_family_identities():
    """abs = relu(z) + relu(-z); leaky relu with slope 0 is relu and with slope 1 the identity; relu2 on a unit
    vector with itself is E[relu(Z)^4] = 3/2."""
    u, v = jnp.array([0.5, -1.0, 0.3]), jnp.array([0.2, 0.4, -0.9])
    relu = es.potential("relu")
    assert float(es.potential("abs")(u, v)) == pytest.approx(2 * (float(relu(u, v)) + float(relu(u, -v))), abs=1e-14)
    assert float(es.potential("leaky_relu", slope=0.0)(u, v)) == pytest.approx(float(relu(u, v)), abs=1e-14)
    assert float(es.potential("leaky_relu", slope=1.0)(u, v)) == pytest.approx(float(u @ v), abs=1e-13)
    assert es.activation("leaky_relu", slope=1.0).odd and not es.activation("leaky_relu").odd
    e = jnp.array([1.0, 0.0, 0.0])
    assert float(es.potential("relu2")(e, e)) == pytest.approx(1.5, abs=1e-14)


def test_new_activations_train_and_bad_parameters_are_named():
    t = es.random_teacher(jax.random.key(0), d=3, k=2, scale=0.5)
    s = es.random_student(jax.random.key(1), d=3, k=2, scale=0.5, batch=4)
    for name in ("normal_cdf", "abs"):  # a smooth one and one with a kink
        traj = es.gradient_descent(name, t, s, lr=0.05, max_steps=200)
        assert bool((traj.final_loss < traj.losses[:, 0]).all())
    with pytest.raises(ValueError, match="finite number slope"):
        es.activation("leaky_relu", slope="steep")
    with pytest.raises(ValueError, match="takes only slope"):
        es.activation("leaky_relu", alpha=0.1)
