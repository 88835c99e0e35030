"""Potentials: closed form = quadrature = Monte Carlo, docs/math.md values, gradients, Laplacians, errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp

import earnshaw as es
from earnshaw.potentials import inner
from earnshaw.potentials._bessel import kv

U = jnp.array([1.0, 0.5, -0.3])
V = jnp.array([0.2, -0.7, 0.9])

MATH_VALUES = {  # docs/math.md section 1a
    "linear": -0.42, "erf": -0.1466078163, "sign": -0.2029581269, "step": 0.1992604683,
    "relu": 0.1188317507, "tanh": -0.1290374337, "sigmoid_pm1": -0.0652423610,
}


@pytest.mark.parametrize("name", sorted(MATH_VALUES))
def test_math_reference_values(name):
    assert float(es.potential(name)(U, V)) == pytest.approx(MATH_VALUES[name], abs=1e-10)


def test_tanh_at_larger_norms_needs_higher_order():
    # docs/math.md section 1a: tanh at (3u, 2v) = -0.1828158515; error 5e-5 at n=80, 1.6e-8 at n=320.
    assert float(es.potential("tanh", order=300)(3 * U, 2 * V)) == pytest.approx(-0.1828158515, abs=1e-7)


@pytest.mark.parametrize("name", ["linear", "erf", "sign", "step", "relu", "quadratic", "hermite2", "hermite3",
                                  "tanh"])
@pytest.mark.parametrize("d", [2, 5])
def test_closed_form_matches_monte_carlo(name, d, getkey):
    pot = es.potential(name)
    for _ in range(2):
        u = jax.random.normal(getkey(), (d,)) / math.sqrt(d) * 1.2
        v = jax.random.normal(getkey(), (d,)) / math.sqrt(d) * 1.2
        mean, se = es.monte_carlo(getkey(), pot, u, v, 1_000_000)
        assert abs(float(pot(u, v)) - mean) < 4 * se + 1e-12, (name, float(pot(u, v)), mean, se)


@pytest.mark.parametrize("name", ["erf", "linear", "quadratic", "hermite3", "hermite4"])
def test_quadrature_matches_closed_form(name, getkey):
    closed = es.potential(name)
    act = es.activation(name)
    quad = es.potential(es.custom(act.fn, "q-" + name))  # same function, forced through Gauss-Hermite
    for scale in (0.3, 1.0, 1.5):
        u = scale * jax.random.normal(getkey(), (4,)) / 2
        v = scale * jax.random.normal(getkey(), (4,)) / 2
        assert abs(float(quad(u, v)) - float(closed(u, v))) < 1e-10
        # derivatives through Price's theorem equal autodiff of the closed form
        g_q = jax.grad(lambda x: quad(x, v))(u)
        g_c = jax.grad(lambda x: closed(x, v))(u)
        np.testing.assert_allclose(g_q, g_c, atol=1e-9)


def test_hermite_is_rho_power_on_unit_vectors(getkey):
    u = jax.random.normal(getkey(), (5,)); u = u / jnp.linalg.norm(u)
    v = jax.random.normal(getkey(), (5,)); v = v / jnp.linalg.norm(v)
    for m in range(1, 6):
        assert float(es.potential("hermite", m=m)(u, v)) == pytest.approx(float(u @ v) ** m, abs=1e-13)


def test_zero_vectors_give_zero_for_angle_potentials():
    z = jnp.zeros(3)
    for name in ("sign", "step", "relu"):
        pot = es.potential(name)
        assert float(pot(z, V)) == 0.0
        g = jax.grad(lambda x: pot(x, V))(z)
        assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize("name", ["erf", "relu", "sign", "step", "tanh", "linear", "hermite3", "gaussian"])
def test_gradient_finite_at_parallel_and_equal(name):
    pot = es.potential(name)
    for u, v in ((U, U), (U, 2.0 * U), (U, -U)):
        g = jax.grad(lambda x: pot(x, v))(u)
        assert bool(jnp.all(jnp.isfinite(g))), (name, g)
    # self-energy gradient d/dtheta Phi(theta, theta)
    g = jax.grad(lambda x: pot(x, x))(U)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_relu_self_energy_gradient_is_theta():
    # Phi_relu(theta, theta) = |theta|^2 / 2, so its gradient is theta
    np.testing.assert_allclose(jax.grad(lambda x: es.potential("relu")(x, x))(U), U, atol=1e-12)


def _fd_grad(f, x, h=1e-6):
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x); e[i] = h
        out[i] = (f(jnp.asarray(x + e)) - f(jnp.asarray(x - e))) / (2 * h)
    return out


@pytest.mark.parametrize("name,kw", [("erf", {}), ("relu", {}), ("sign", {}), ("step", {}), ("tanh", {"order": 240}),
                                     ("sigmoid_pm1", {"order": 200}), ("quadratic", {}), ("hermite", {"m": 3}),
                                     ("gaussian", {}), ("coulomb", {"d": 3}), ("yukawa", {"d": 3}),
                                     ("yukawa", {"d": 4, "lam": 2.0}), ("coulomb", {"d": 2})])
def test_gradient_matches_finite_differences(name, kw, getkey):
    d = kw.get("d", 3)
    pot = es.potential(name, **kw)
    u = jax.random.normal(getkey(), (d,))
    v = jax.random.normal(getkey(), (d,))
    f = lambda x: float(pot(x, v))  # noqa: E731
    g = np.asarray(jax.grad(lambda x: pot(x, v))(u))
    fd = _fd_grad(f, u)
    assert np.linalg.norm(g - fd) / np.linalg.norm(fd) < 1e-6


@pytest.mark.parametrize("name,kw", [("erf", {}), ("tanh", {}), ("relu", {}), ("gaussian", {})])
def test_symmetry_and_jacfwd_equals_jacrev(name, kw, getkey):
    pot = es.potential(name, **kw)
    u, v = jax.random.normal(getkey(), (3,)), jax.random.normal(getkey(), (3,))
    assert float(pot(u, v)) == pytest.approx(float(pot(v, u)), abs=1e-14)
    f = lambda x: pot(x, v)  # noqa: E731
    np.testing.assert_allclose(jax.jacfwd(f)(u), jax.jacrev(f)(u), atol=1e-12)
    H = jax.hessian(f)(u)
    np.testing.assert_allclose(H, H.T, atol=1e-10)


def test_gram_and_batching(getkey):
    pot = es.potential("erf")
    A = jax.random.normal(getkey(), (7, 4, 3))
    Bm = jax.random.normal(getkey(), (7, 5, 3))
    G = pot.gram(A, Bm)
    assert G.shape == (7, 4, 5)
    assert float(G[3, 2, 4]) == pytest.approx(float(pot(A[3, 2], Bm[3, 4])), abs=1e-14)
    assert pot(A[:, 0], Bm[:, 0]).shape == (7,)
    np.testing.assert_allclose(jax.jit(pot.gram)(A, Bm), G, atol=1e-14)
    Gv = jax.vmap(pot.gram)(A, Bm)
    np.testing.assert_allclose(Gv, G, atol=1e-14)


def test_bessel_k_against_scipy():
    x = np.logspace(-6, 2, 60)
    for nu in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5):
        np.testing.assert_allclose(np.asarray(kv(nu, x)), sp.kv(nu, x), rtol=1e-12)


def _radial_laplacian(pot, x, y):
    return jnp.trace(jax.hessian(lambda z: pot(z, y))(x))


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5])
def test_yukawa_is_lambda_harmonic(d, getkey):
    lam = 1.7
    pot = es.potential("yukawa", d=d, lam=lam)
    for _ in range(3):
        x, y = jax.random.normal(getkey(), (d,)), jax.random.normal(getkey(), (d,))
        lap = float(_radial_laplacian(pot, x, y))
        assert lap == pytest.approx(lam * float(pot(x, y)), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("d", [2, 3, 4, 6])
def test_coulomb_is_harmonic(d, getkey):
    pot = es.potential("coulomb", d=d)
    for _ in range(3):
        x, y = jax.random.normal(getkey(), (d,)), jax.random.normal(getkey(), (d,))
        H = jax.hessian(lambda z: pot(z, y))(x)
        assert abs(float(jnp.trace(H))) < 1e-10 * float(jnp.max(jnp.abs(H)))


def test_yukawa_flux_normalisation():
    # -|S^{d-1}| r^{d-1} G'(r) -> 1 as r -> 0: the Green's function of (lam - Delta)
    for d in (2, 3, 5):
        pot = es.potential("yukawa", d=d, lam=1.0)
        r = 1e-5
        dG = jax.grad(lambda t: pot.profile(t))(r)
        area = 2 * math.pi ** (d / 2) / math.gamma(d / 2)
        assert -area * r ** (d - 1) * float(dG) == pytest.approx(1.0, rel=1e-4)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="valid names:.*erf.*relu"):
        es.potential("softmaxx")
    with pytest.raises(ValueError, match="valid names:.*sigmoid_pm1"):
        es.activation("sigmoid01")  # "sigmoid" (logistic) is a name since issue 16
    with pytest.raises(ValueError, match="needs the dimension d"):
        es.potential("coulomb")
    with pytest.raises(ValueError, match="lam must be a positive"):
        es.potential("yukawa", d=3, lam=-1.0)
    with pytest.raises(ValueError, match="no parameter lamda; valid: d, lam"):
        es.potential("yukawa", d=3, lamda=2.0)
    with pytest.raises(ValueError, match="needs d and eps.*-p d=3 -p eps=0.5"):
        es.potential("almost_harmonic")


def test_cli_potential_prints_values_and_rejects_bad_input():
    from typer.testing import CliRunner

    from earnshaw.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["potential", "erf"])
    # Phi_erf at 60 degrees between unit vectors: (2/pi) arcsin(2 cos60 / 3)
    assert res.exit_code == 0 and f"{(2 / math.pi) * math.asin(1 / 3):.10g}"[:8] in res.output, res.output
    res = runner.invoke(app, ["potential", "coulomb", "-p", "d=3"])
    assert res.exit_code == 0 and "harmonic" in res.output and "not realisable" in res.output, res.output
    bad = runner.invoke(app, ["potential", "erf", "--dim", "1"])
    assert bad.exit_code == 2 and "--dim must be >= 2" in bad.output
    bad = runner.invoke(app, ["potential", "yukawa", "-p", "d=3", "-p", "lamda=2"])
    assert bad.exit_code == 2 and "valid: d, lam" in bad.output
    bad = runner.invoke(app, ["potential", "softmaxx"])
    assert bad.exit_code == 2 and "valid names" in bad.output


def test_shape_mismatch_names_arguments():
    with pytest.raises(ValueError, match="u has shape"):
        es.potential("erf")(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="lives in d=3"):
        es.potential("coulomb", d=3)(jnp.ones(2), jnp.ones(2))


def test_potentials_are_cached_and_jit_compatible():
    assert es.potential("erf") is es.potential("erf")
    assert es.potential("yukawa", d=3, lam=1.0) is es.potential("yukawa", lam=1.0, d=3)
    f = jax.jit(lambda u, v: es.potential("relu")(u, v))
    assert float(f(U, V)) == pytest.approx(MATH_VALUES["relu"], abs=1e-10)


def test_gauss_hermite_nodes_validate_order():
    with pytest.raises(ValueError, match="order"):
        inner.gauss_hermite_nodes(400)
