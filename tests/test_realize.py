"""Theorem 3 (realisability): E[sigma(X,u) sigma(X,v)] = Phi, closed forms = numerics, refusals with reasons."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si

import earnshaw as es
from earnshaw.potentials.realize import fourier_transform, radial_kernel


def _expect_1d(act, u, v, points=(), lim=12.0):
    """E[sigma(X, u) sigma(X, v)], X ~ N(0, 1), by scipy quad (sigma evaluated in JAX)."""
    f = jax.jit(lambda x: act.fn(jnp.reshape(x, (1,)), jnp.array([u])) * act.fn(jnp.reshape(x, (1,)), jnp.array([v])))

    def integrand(x):
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi) * float(f(x))

    pts = sorted(p for p in points if -lim < p < lim)
    val, _ = si.quad(integrand, -lim, lim, points=pts or None, limit=400, epsabs=1e-12, epsrel=1e-11)
    return val


def _negative_bump(r):
    return (1.0 - r * r) * jnp.exp(-r * r / 2.0)


@pytest.mark.parametrize("ell", [1.0, 2.0])
def test_gaussian_realised_in_d1_by_quadrature(ell):
    pot = es.realize(es.potential("gaussian", ell=ell), d=1)
    assert pot.activation.kind == "translation" and pot.d == 1
    for u, v in ((0.3, -0.5), (1.2, 0.1), (0.0, 0.0)):
        assert _expect_1d(pot.activation, u, v) == pytest.approx(math.exp(-(u - v) ** 2 / (2 * ell ** 2)), abs=1e-9)


def test_gaussian_realised_in_d3_by_monte_carlo(getkey):
    # ell^2 = 1 < 8: E[sigma^4] is finite (docs/math.md section 1b), so Monte Carlo error bars are valid here.
    pot = es.realize(es.potential("gaussian", ell=1.0), d=3)
    u, v = jnp.array([0.2, -0.1, 0.3]), jnp.array([-0.3, 0.2, 0.0])
    mean, se = es.monte_carlo(getkey(), pot, u, v, 400_000)
    target = math.exp(-float(jnp.sum((u - v) ** 2)) / 2)
    assert abs(mean - target) < 5 * se and se < 0.02


@pytest.mark.parametrize("d", [1, 3])
def test_gaussian_closed_form_constant(d):
    # g = c exp(-|y|^2/ell^2), c^2 = (2/(pi ell^2))^(d/2): sigma(w, w) = (2 pi)^(d/4) exp(|w|^2/4) c
    ell = 1.5
    act = es.realize(es.potential("gaussian", ell=ell), d=d).activation
    w = jnp.full((d,), 0.4)
    c = (2 / (math.pi * ell ** 2)) ** (d / 4)
    expected = (2 * math.pi) ** (d / 4) * math.exp(float(w @ w) / 4) * c
    assert float(act.fn(w, w)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [1, 3])
def test_numeric_path_reproduces_gaussian_closed_form(d):
    pot = es.potential("gaussian", ell=1.0)
    num = es.realize(pot, d=d, method="numeric").activation
    exact = es.realize(pot, d=d).activation
    x = jnp.zeros((300, d))
    w = jnp.linspace(0.0, 6.0, 300)[:, None] * jnp.zeros(d).at[0].set(1.0)
    s_num, s_exact = num.fn(x, w), exact.fn(x, w)
    assert float(jnp.max(jnp.abs(s_num - s_exact))) < 2e-6 * float(s_exact[0])
    # away from x = 0 too (the exp(|x|^2/4) factor is applied exactly)
    x2 = jnp.full((5, d), 0.7)
    np.testing.assert_allclose(num.fn(x2, w[::60]), exact.fn(x2, w[::60]), rtol=0, atol=2e-6 * float(s_exact[0]))


def test_fourier_transform_of_gaussian_in_d1_and_d3():
    k = np.array([0.0, 0.5, 1.0, 2.5])
    for d in (1, 3):
        ft = fourier_transform(es.potential("gaussian"), k, d=d)
        np.testing.assert_allclose(ft, (2 * np.pi) ** (d / 2) * np.exp(-k ** 2 / 2), rtol=1e-10, atol=1e-13)


def test_radial_kernel_limits():
    assert float(radial_kernel(3, 0.0)) == 1.0 and float(radial_kernel(5, 0.0)) == 1.0
    assert float(radial_kernel(1, 2.0)) == pytest.approx(math.cos(2.0), abs=1e-15)
    assert float(radial_kernel(3, 2.0)) == pytest.approx(math.sin(2.0) / 2.0, abs=1e-15)
    assert float(radial_kernel(5, 1e-8)) == pytest.approx(1.0, abs=1e-15)


def test_negative_transform_is_refused_with_where_and_how_negative():
    # FT of (1 - r^2) e^{-r^2/2} in d=3 is (2 pi)^{3/2} (k^2 - 2) e^{-k^2/2}: negative on [0, sqrt 2), min at k=0.
    with pytest.raises(es.NotRealizableError) as info:
        es.realize(_negative_bump, d=3)
    msg = str(info.value)
    assert "negative for k in [0, 1.41" in msg, msg
    most = float(msg.split("most negative value ")[1].split()[0])
    assert most == pytest.approx(-2 * (2 * math.pi) ** 1.5, rel=1e-6)
    assert "k = 0" in msg
    assert isinstance(info.value, ValueError)


def test_same_function_is_realisable_in_d1():
    # in d=1 its transform is sqrt(2 pi) k^2 e^{-k^2/2} >= 0: realisable; check E[sigma sigma] = Phi by quadrature
    pot = es.realize(_negative_bump, d=1)
    # its g = F^-1 sqrt(Phi^) decays only like 1/(2 r^2) (sqrt(Phi^) ~ |k| has a kink at 0), so quadrature
    # over |x| < 30 (exp(|x|^2/4) overflows further out) misses ~2/(3 (30 - |u|)^3) / 4 ~ 1e-5
    for u, v in ((0.0, 0.0), (0.4, -0.3), (1.5, 0.2)):
        r = abs(u - v)
        assert _expect_1d(pot.activation, u, v, lim=30.0) == pytest.approx((1 - r * r) * math.exp(-r * r / 2),
                                                                         abs=2e-5)
    x = jnp.array([[10.0], [50.0]])
    g = pot.activation.fn(x, jnp.zeros((2, 1))) * jnp.exp(-x[:, 0] ** 2 / 4) / (2 * math.pi) ** 0.25
    np.testing.assert_allclose(g * x[:, 0] ** 2, -0.5, rtol=3e-2)


@pytest.mark.parametrize("name,kw", [("coulomb", {"d": 3}), ("coulomb", {"d": 2}), ("yukawa", {"d": 3}),
                                     ("yukawa", {"d": 2, "lam": 2.0})])
def test_unbounded_potentials_are_refused(name, kw):
    with pytest.raises(es.NotRealizableError, match=r"Phi\(0\) = inf .*not integrable"):
        es.realize(es.potential(name, **kw))


def test_coulomb_in_d1_and_non_radial_are_refused():
    with pytest.raises(es.NotRealizableError, match="Phi\\(0\\)"):
        es.realize(es.potential("coulomb", d=1))
    with pytest.raises(ValueError, match="inner-product"):
        es.realize(es.potential("erf"), d=3)
    with pytest.raises(ValueError, match="needs the dimension d"):
        es.realize(es.potential("gaussian"))
    with pytest.raises(ValueError, match="method"):
        es.realize(es.potential("gaussian"), d=2, method="magic")


def test_growing_profile_is_refused():
    with pytest.raises(es.NotRealizableError, match="exceeds"):
        es.realize(lambda r: 1.0 - 2.0 * jnp.exp(-((r - 3.0) ** 2)), d=1)


def test_yukawa_in_d1_is_realised_by_k0():
    # docs/math.md section 1b: e^{-|r|} = 2 G_1 is realised by g = sqrt(2)/pi K_0; so G_1 by K_0/pi.
    pot = es.realize(es.potential("yukawa", d=1, lam=1.0))
    val = _expect_1d(pot.activation, 0.3, -0.5, points=(0.3, -0.5))
    assert val == pytest.approx(math.exp(-0.8) / 2, rel=1e-7)


def test_realised_potential_works_with_losses(getkey):
    pot = es.realize(es.potential("gaussian", ell=1.0), d=2)
    teacher = es.random_teacher(getkey(), d=2, k=3)
    x = jax.random.normal(getkey(), (20_000, 2))
    assert float(es.empirical_loss(pot, teacher, es.Student(a=teacher.b, theta=teacher.w), x)) == 0.0
    student = es.Student(a=teacher.b, theta=teacher.w + 0.3)
    emp = float(es.empirical_loss(pot, teacher, student, x))
    pop = float(es.population_loss(pot, teacher, student))
    assert emp == pytest.approx(pop, rel=0.2)
    assert es.realize(es.potential("gaussian", ell=1.0), d=2) is pot  # cached
