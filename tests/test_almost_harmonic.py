"""Lemma 13 made concrete (docs/math.md section 3): test values, lambda-harmonicity, realisability, sign patterns."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
import scipy.optimize as so
import scipy.special as sp

import earnshaw as es
from earnshaw.potentials.almost_harmonic import construct
from earnshaw.potentials.realize import fourier_transform

# docs/math.md section 3 test values (lam = 1): (variant, eps) -> quantity -> value
TABLE = {
    ("ball", 0.5): dict(N=4.613277127251e-05, M=8.194021177487e-03, A=0.1158176519400, phi8=0.9066427241106,
                        phi4=0.7079201446161, phi2=0.3607955120974, phi1=0.04260693307347, dphi1=-0.085213866147,
                        d2phi0=-58.780327, dphi0=0.0, ft1=0.723169803358, ft10=0.0104330500301, g1=0.03694305027,
                        rstar=0.12452272, maxslope=3.43003),
    ("ball", 0.2): dict(N=5.023324211662e-07, M=5.237296869803e-04, A=0.04345235420972, phi8=0.9117130723793,
                        phi4=0.7235054642707, phi2=0.3931731599070, phi1=0.01598522778425, dphi1=-0.031970455569,
                        d2phi0=-347.11174, dphi0=0.0, ft1=0.272746310803, ft10=0.00513915605347, g1=0.0225478285,
                        rstar=0.04996593, maxslope=8.12958),
    ("cusp", 0.5): dict(N=2.954003092845, M=1.572160504602, A=0.06658447104189, phi8=0.6963088728793,
                        phi4=0.4508092187214, phi2=0.2074241527513, phi1=0.02449505799759, dphi1=-0.048990115995,
                        d2phi0=11.677371, dphi0=-5.248179454, ft1=0.41691244141, ft10=0.00695656632711,
                        g1=0.02795851387),
}
CASES = sorted(TABLE)


def _pot(variant, eps, d=3):
    return es.potential("almost_harmonic", d=d, eps=eps, lam=1.0, variant=variant)


def _rel(digits_value):
    """Relative tolerance matching the number of significant digits docs/math.md gives."""
    s = f"{abs(digits_value):.15g}".replace(".", "").lstrip("0")
    return max(3 * 10.0 ** (-(len(s) - 1)), 2e-12)


@pytest.mark.parametrize("variant,eps", CASES)
def test_math_table_values(variant, eps):
    t = TABLE[(variant, eps)]
    c = construct(3, eps, 1.0, variant)
    prof = _pot(variant, eps).profile
    got = dict(N=c.N, M=c.M, A=c.A, phi8=float(prof(eps / 8)), phi4=float(prof(eps / 4)), phi2=float(prof(eps / 2)),
               phi1=float(prof(1.0)), dphi1=float(jax.grad(prof)(1.0)), d2phi0=float(jax.grad(jax.grad(prof))(0.0)),
               dphi0=float(jax.grad(prof)(0.0)), ft1=float(c.fourier(1.0)), ft10=float(c.fourier(10.0)),
               g1=float(c.g_jax(1.0)))
    for key, want in t.items():
        if key in got:
            assert got[key] == pytest.approx(want, rel=_rel(want), abs=1e-12), (key, got[key], want)


def test_ball_g_at_zero_and_inside():
    c = construct(3, 0.5, 1.0, "ball")
    assert float(c.g_jax(0.0)) == pytest.approx(11.62362311, rel=1e-9)
    assert float(c.g_jax(0.1)) == pytest.approx(8.670617409, rel=1e-9)
    # the JAX spline equals the quadrature formula off its knots too
    for r in (0.0371, 0.1311, 0.77, 2.3):
        assert float(c.g_jax(r)) == pytest.approx(float(c.g(r)), rel=1e-6)


def test_general_d_tail_constants():
    c3 = construct(3, 0.5, 1.0, "ball")
    # A_3 = A / sqrt(pi/2) exactly; docs/math.md's A_3 = 0.0924091176206 agrees to 1.4e-8 relative.
    assert c3.A_d == pytest.approx(c3.A / math.sqrt(math.pi / 2), rel=1e-13)
    assert c3.A_d == pytest.approx(0.0924091176206, rel=2e-8)
    c7 = construct(7, 0.5, 1.0, "ball")
    # docs/math.md section 3: N = 1.5623303182e-09, A_7 = 5.23422542542e-06. Real-space quad, the table and
    # the Fourier integral (to k = 1e5) all give that N; a Fourier integral cut off too early gives 1.56232991e-09.
    assert c7.N == pytest.approx(1.5623303182e-09, rel=5e-9)
    assert c7.A_d == pytest.approx(5.23422542542e-06, rel=5e-7)
    S7 = 2 * math.pi ** 3.5 / math.gamma(3.5)
    N_quad = S7 * si.quad(lambda s: float(c7.rho(s)) * s ** 6 * math.exp(0) * (2 * math.pi) ** -3.5
                          * s ** -2.5 * sp.kv(2.5, s), 0, 0.25, epsabs=0, epsrel=1e-13)[0]
    assert c7.N == pytest.approx(N_quad, rel=1e-11)
    # the ratio Phi / (r^{-5/2} K_{5/2}(r)) is A_7 for r >= eps/2, and the table meets the tail there
    prof = _pot("ball", 0.5, d=7).profile
    for r in (0.25, 0.4, 1.0, 3.0):
        assert float(prof(r)) / (r ** -2.5 * sp.kv(2.5, r)) == pytest.approx(c7.A_d, rel=1e-12)
    assert float(prof(0.25 - 1e-12)) == pytest.approx(float(prof(0.25)), rel=1e-10)


@pytest.mark.parametrize("variant,eps", CASES)
def test_table_matches_independent_quadrature(variant, eps):
    # docs/math.md section 3's real-space formula, off the grid:
    # U(r) = 1/(2 mu r) int s rho(s) (e^{-mu|r-s|} - e^{-mu(r+s)}) ds
    c = construct(3, eps, 1.0, variant)
    prof = _pot(variant, eps).profile
    R = eps / 4

    def U(r):
        f = lambda s: s * float(c.rho(s)) * (math.exp(-abs(r - s)) - math.exp(-(r + s)))  # noqa: E731
        pts = sorted({r, R} & {x for x in (r, R) if 0 < x < 2 * R})
        return si.quad(f, 0, 2 * R, points=pts or None, epsabs=0, epsrel=1e-13, limit=400)[0] / (2 * r)

    for frac in (0.0371, 0.21, 0.49, 0.77, 0.999):
        r = frac * eps / 2
        assert float(prof(r)) == pytest.approx(U(r) / c.N, rel=1e-10)


@pytest.mark.parametrize("variant,eps,d", [("ball", 0.5, 3), ("ball", 0.2, 3), ("cusp", 0.5, 3), ("ball", 0.5, 7)])
def test_lambda_harmonic_beyond_eps_by_autodiff(variant, eps, d, getkey):
    pot = _pot(variant, eps, d)
    c = construct(d, eps, 1.0, variant)
    lap = jax.jit(lambda x, y: jnp.trace(jax.hessian(lambda z: pot(z, y))(x)))
    for dist in (eps, 1.3 * eps, 1.0, 2.5):
        e = jax.random.normal(getkey(), (d,))
        y = jax.random.normal(getkey(), (d,))
        x = y + dist * e / jnp.linalg.norm(e)
        assert float(lap(x, y)) == pytest.approx(float(pot(x, y)), rel=1e-6)  # lam = 1
    # inside: (Delta - lam) Phi = -rho / N
    for dist in (0.3 * eps / 2, 0.8 * eps / 2):
        y = jnp.zeros(d)
        x = y.at[0].set(dist)
        want = float(pot(x, y)) - float(c.rho(dist)) / c.N
        assert float(lap(x, y)) == pytest.approx(want, rel=1e-6, abs=1e-8 * float(c.rho(0.0 + 1e-9)) / c.N)


@pytest.mark.parametrize("variant,eps", CASES)
def test_fourier_transform_nonnegative_and_matches(variant, eps):
    pot = _pot(variant, eps)
    c = construct(3, eps, 1.0, variant)
    k = np.concatenate([np.linspace(0.0, 5.0, 11), [10.0, 30.0, 60.0]])
    closed = c.fourier(k)
    assert np.all(closed > 0)
    numeric = fourier_transform(pot, k, d=3)   # independent: the sine transform of the tabulated Phi
    np.testing.assert_allclose(numeric, closed, rtol=1e-7, atol=1e-11)
    kk = np.linspace(0.0, 400.0, 4001)
    assert np.all(c.fourier(kk) >= 0)


@pytest.mark.parametrize("variant,eps", CASES)
def test_bounded_and_sign_pattern(variant, eps):
    prof = _pot(variant, eps).profile
    r = jnp.concatenate([jnp.linspace(1e-6, eps, 400), jnp.linspace(eps, 6.0, 200)])
    phi = jax.vmap(prof)(r)
    d1 = jax.vmap(jax.grad(prof))(r)
    d2 = jax.vmap(jax.grad(jax.grad(prof)))(r)
    assert float(prof(0.0)) == 1.0
    assert bool(jnp.all(jnp.abs(phi) <= 1.0)) and bool(jnp.all(phi > 0))
    assert bool(jnp.all(d1 <= 0))
    if variant == "cusp":
        assert bool(jnp.all(d2 >= 0))
    else:
        t = TABLE[(variant, eps)]
        rstar = so.brentq(lambda x: float(jax.grad(jax.grad(prof))(x)), 0.1 * eps, 0.4 * eps, xtol=1e-14)
        assert rstar == pytest.approx(t["rstar"], rel=1e-6)
        assert rstar / eps == pytest.approx(0.249, abs=2e-3)
        assert bool(jnp.all(jnp.where(r < rstar * 0.999, d2 < 0, True)))
        assert bool(jnp.all(jnp.where(r > rstar * 1.001, d2 > 0, True)))
        assert float(jnp.max(jnp.abs(d1))) == pytest.approx(t["maxslope"], rel=1e-4)


@pytest.mark.parametrize("variant,eps", CASES)
def test_smooth_across_the_harmonic_radius(variant, eps):
    prof = _pot(variant, eps).profile
    h = 1e-9
    for f in (prof, jax.grad(prof), jax.grad(jax.grad(prof))):
        assert float(f(eps / 2 - h)) == pytest.approx(float(f(eps / 2 + h)), rel=1e-6)


def _graded_nodes(breaks, n=10):
    """Gauss-Legendre nodes/weights on segments graded geometrically towards each break (numpy)."""
    edges = set()
    for lo, hi in zip(breaks[:-1], breaks[1:]):
        h = hi - lo
        edges |= set(lo + h / 2 * np.concatenate([[0.0], np.geomspace(1e-6, 1.0, 12)]))
        edges |= set(hi - h / 2 * np.geomspace(1e-6, 1.0, 12)) | {hi}
    e = np.array(sorted(edges))
    x, w = np.polynomial.legendre.leggauss(n)
    a, b = e[:-1, None], e[1:, None]
    return (0.5 * (b - a) * x + 0.5 * (a + b)).ravel(), (0.5 * (b - a) * w).ravel()


def _expect_3d_on_axis(act, dist):
    """E[sigma(X, 0) sigma(X, dist e_z)], X ~ N(0, I_3), in cylindrical coordinates (rho, z).

    Product Gauss-Legendre rule on segments graded towards rho = 0 and z in {0, dist} (where the cusp
    variant's g ~ 1/r is singular), the whole sum in one vectorised JAX call.
    """
    rho, wr = _graded_nodes([0.0, 0.5, 25.0])
    z, wz = _graded_nodes([-25.0, 0.0, dist, 25.0])
    P, Z = np.meshgrid(rho, z, indexing="ij")
    pts = jnp.stack([jnp.asarray(P), jnp.zeros_like(P), jnp.asarray(Z)], axis=-1)
    vals = act.fn(pts, jnp.zeros(3)) * act.fn(pts, jnp.array([0.0, 0.0, dist]))
    dens = np.exp(-(P * P + Z * Z) / 2) / (2 * np.pi) ** 1.5 * 2 * np.pi * P
    return float(jnp.sum(jnp.asarray(wr[:, None] * wz[None, :] * dens) * vals))


@pytest.mark.parametrize("variant", ["ball", "cusp"])
def test_activation_realises_the_potential_in_d3(variant):
    pot = _pot(variant, 0.5)
    act = pot.activation
    assert act.kind == "translation"
    # |g|_2^2 = Phi(0) = 1
    c = construct(3, 0.5, 1.0, variant)
    g = jax.jit(c.g_jax)
    R = 0.125
    norm = sum(si.quad(lambda r: 4 * math.pi * r * r * float(g(r)) ** 2, a, b, epsabs=1e-13, epsrel=1e-11,
                       limit=200)[0] for a, b in ((0, R), (R, 1.0), (1.0, 45.0)))
    assert norm == pytest.approx(1.0, rel=1e-7)
    # E[sigma(X, u) sigma(X, v)] = Phi(|u - v|) by quadrature over X
    for dist in (0.2, 0.9):
        # (a product rule: its error, ~3e-4, comes from the kinks on the spheres |x - u| = R it does not follow)
        assert _expect_3d_on_axis(act, dist) == pytest.approx(float(pot.profile(dist)), rel=2e-3)


def test_registration_and_validation():
    pot = es.potential("almost_harmonic", d=3, eps=0.37, lam=2.0)
    assert pot is es.potential("almost_harmonic", d=3, eps=0.37, lam=2.0)
    assert pot.lam == 2.0 and pot.harmonic_radius == pytest.approx(0.185) and pot.value_at_zero == 1.0
    assert pot.bounded and pot.d == 3 and pot.kind == "radial"
    assert "almost_harmonic" in es.POTENTIALS
    assert es.realize(pot) is pot or es.realize(pot).activation is pot.activation
    for kw, word in ((dict(d=3, eps=-0.1), "eps"), (dict(d=3, eps=0.5, lam=0.0), "lam"), (dict(d=0, eps=0.5), "d"),
                     (dict(d=3, eps=0.5, variant="sphere"), "variant"), (dict(d=5, eps=0.5, variant="cusp"), "cusp"),
                     (dict(d=3), "eps"), (dict(eps=0.5), "dimension d")):
        with pytest.raises(ValueError, match=word):
            es.potential("almost_harmonic", **kw)


def test_population_loss_and_self_energy(getkey):
    pot = _pot("ball", 0.5)
    teacher = es.random_teacher(getkey(), d=3, k=3)
    assert float(es.population_loss(pot, teacher, es.Student(a=teacher.b, theta=teacher.w))) == pytest.approx(0, abs=1e-12)
    g = jax.grad(lambda th: es.population_loss(pot, teacher, es.Student(a=teacher.b, theta=th)))(teacher.w + 0.01)
    assert bool(jnp.all(jnp.isfinite(g)))
