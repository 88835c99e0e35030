"""es.harmonicity and the Laplacian of a potential (docs/math.md sections 2 and 6), and ``earnshaw harmonic``.

The Gram-triple formula ``Delta_u Phi = 2 d f_p + 4 p f_pp + 4 c f_pc + q f_cc`` is held to the trace of
``jax.hessian`` on explicit vectors, hand-derived Laplacians (linear, quadratic, exp, ``(u.v)^m``, the sign
activation in d = 2, the Gaussian and Yukawa kernels) are checked exactly, and the sphere's Laplace-Beltrami
operator to the trace of the Riemannian Hessian and to the Hermite series of the activation.
"""
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import earnshaw as es
from earnshaw.cli import app
from earnshaw.experiments.harmonic import TABLE_DIMS, harmonic_table, markdown, read_rows
from earnshaw.potentials import hermite
from earnshaw.potentials.harmonic import laplacian


def _hessian_trace(pot, U, V):
    # jitted: op-by-op dispatch of a vmapped Hessian costs seconds
    return jax.jit(jax.vmap(lambda u, v: jnp.trace(jax.hessian(lambda x: pot(x, v))(u))))(U, V)


def test_self_energy_second_derivative_of_the_tables():
    """The self-energy's second derivative goes forward over reverse: the default tanh potential (the Hermite
    tables, whose loop has no reverse mode) failed under grad(grad(.)) in every harmonic table; its values
    against order-300 quadrature's (order 200 is 4e-7 off at |u|^2 = 2.25, order 300 about 1e-9)."""
    from earnshaw.potentials.harmonic import _self_derivatives
    with jax.enable_x64(True):
        p = jnp.array([0.25, 1.0, 2.25])
        fast = _self_derivatives(es.potential("tanh").fn, p)
        ref = _self_derivatives(es.potential("tanh", order=300).fn, p)
        for a, b in zip(fast, ref):
            np.testing.assert_allclose(a, b, atol=1e-8)


@pytest.mark.parametrize("name, kw", [("erf", {}), ("relu", {}), ("polynomial", {"coeffs": (0.3, -1.0, 0.5, 0.2)}),
                                      ("tanh", {})])
@pytest.mark.parametrize("d", [3, 7])
def test_gram_triple_laplacian_is_the_hessian_trace(name, kw, d, getkey):
    pot = es.potential(name, **kw)
    U, V = jax.random.normal(getkey(), (4, d)), jax.random.normal(getkey(), (4, d))  # a.s. not parallel: no kink
    lap, ref = laplacian(pot, U, V), _hessian_trace(pot, U, V)
    assert lap.shape == (4,) and lap.dtype == jnp.float64
    np.testing.assert_allclose(lap, ref, rtol=1e-11, atol=1e-13)


def test_radial_laplacian_is_the_hessian_trace(getkey):
    for pot in (es.potential("gaussian", ell=0.7), es.potential("yukawa", d=3, lam=2.0)):
        d = pot.d or 4
        U, V = jax.random.normal(getkey(), (3, d)), jax.random.normal(getkey(), (3, d))
        np.testing.assert_allclose(laplacian(pot, U, V), _hessian_trace(pot, U, V), rtol=1e-11)


def test_laplacians_by_hand(getkey):
    d = 6
    U, V = jax.random.normal(getkey(), (5, d)), jax.random.normal(getkey(), (5, d))
    q, c = jnp.sum(V * V, -1), jnp.sum(U * V, -1)
    # linear: harmonic; quadratic |u|^2|v|^2 + 2(u.v)^2: (2d + 4)|v|^2; exp: (d + |u + v|^2) Phi
    np.testing.assert_allclose(laplacian(es.potential("linear"), U, V), 0.0, atol=1e-15)
    np.testing.assert_allclose(laplacian(es.potential("quadratic"), U, V), (2 * d + 4) * q, rtol=1e-13)
    exp = es.potential("exp")
    np.testing.assert_allclose(laplacian(exp, U, V), (d + jnp.sum((U + V) ** 2, -1)) * exp(U, V), rtol=1e-12)
    # h_m with |v| = 1: Phi = (u.v)^m, so Delta_u = m (m - 1) (u.v)^(m-2) |v|^2, whatever d and |u|
    Vn = V / jnp.linalg.norm(V, axis=-1, keepdims=True)
    cn = jnp.sum(U * Vn, -1)
    for m in (2, 3, 5):
        np.testing.assert_allclose(laplacian(es.potential("hermite", m=m), U, Vn), m * (m - 1) * cn ** (m - 2),
                                   rtol=1e-12)
    # monomial z^3: Phi = 9 p q c + 6 c^3 (Isserlis); f_p = 9 q c, f_pp = 0, f_pc = 9 q, f_cc = 36 c, so
    # Delta_u = 2 d 9 q c + 4 c 9 q + q 36 c = (18 d + 72) q c
    np.testing.assert_allclose(laplacian(es.potential("monomial", n=3), U, V), (18 * d + 72) * q * c, rtol=1e-12)


def test_radial_ratios_by_hand():
    r = np.linspace(0.3, 6.0, 20)
    for d in (1, 2, 3, 5, 10):
        gauss = es.harmonicity("gaussian", d=d, distances=r)   # Delta e^{-r^2/2} = (r^2 - d) e^{-r^2/2}
        np.testing.assert_allclose(gauss.ratio[0], r * r - d, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(gauss.holds[0], r > math.sqrt(d))
        assert gauss.distance_from[0] == r[r > math.sqrt(d)].min()
    for d in (2, 3, 5, 11):
        yuk = es.harmonicity("yukawa", d=d, params={"lam": 2.0}, distances=r)   # lambda-harmonic, lambda = 2
        np.testing.assert_allclose(yuk.ratio[0], 2.0, rtol=1e-10)
        assert yuk.fraction[0] == 1.0 and yuk.fraction_harmonic[0] == 0.0
        coul = es.harmonicity("coulomb", d=d, distances=r)
        assert coul.fraction_harmonic[0] == 1.0 and coul.fraction[0] == 0.0


def test_almost_harmonic_is_lambda_harmonic_beyond_its_radius():
    pot = es.potential("almost_harmonic", d=3, eps=0.5, lam=1.0)
    rep = es.harmonicity(pot, d=3)
    out = rep.distance >= pot.harmonic_radius
    np.testing.assert_allclose(rep.ratio[0, out], 1.0, rtol=1e-7)
    assert rep.holds[0, out].all() and not rep.holds[0, rep.distance < 0.2].any()   # Delta Phi < 0 < Phi inside
    assert 0.2 < rep.distance_from[0] <= pot.harmonic_radius


def test_sign_activation_is_harmonic_in_the_plane_only():
    # Phi = (2/pi) arcsin(rho) is homogeneous of degree 0 in u: Delta_u = (2 - d) (2/pi) rho / (|u|^2 sqrt(1 - rho^2))
    rep = es.harmonicity("sign", d=(2, 3, 7))
    assert rep.fraction_harmonic.tolist() == [1.0, 0.0, 0.0] and rep.fraction.tolist() == [0.0, 0.0, 0.0]
    nu, _, al = np.meshgrid(rep.norms, rep.norms, rep.angles, indexing="ij")
    rho = np.cos(al)
    for i, d in enumerate((3, 7)):
        expect = (2 - d) * (2 / np.pi) * rho / (nu * nu * np.sqrt(1 - rho * rho))
        np.testing.assert_allclose(rep.laplacian[i + 1], expect, rtol=1e-10)
    sphere = es.harmonicity("sign", d=(2, 3), manifold="sphere")   # Appendix F: harmonic on the circle
    assert sphere.fraction_harmonic.tolist() == [1.0, 0.0]


def test_report_summaries():
    rep = es.harmonicity("relu", d=(3, 50), norms=(0.5, 1.0), angles=np.radians([30.0, 60.0, 120.0]))
    assert rep.phi.shape == rep.laplacian.shape == rep.holds.shape == (2, 2, 2, 3)
    assert rep.fraction.tolist() == [1.0, 1.0] and rep.angles_held(0) == [(30.0, 120.0)]
    # relu: Phi(theta, theta) = |theta|^2 / 2, so self_lam = Delta |theta|^2 / (2 |theta|^2) = d / |theta|^2
    np.testing.assert_allclose(rep.self_lam, [[12.0, 3.0], [200.0, 50.0]], rtol=1e-12)
    row = rep.rows()[1]
    assert row["d"] == 50 and row["points"] == 12 and row["angles_held"] == "30-120"
    assert row["lam_min"] == rep.lam_range[1, 0] and row["lam_min"] > 0
    gelu = es.harmonicity("gelu", d=(2, 50))
    # random directions concentrate near 90 degrees as d grows; gelu holds below about 90 degrees
    assert gelu.fraction[0] == gelu.fraction[1] and gelu.fraction_random[1] > gelu.fraction_random[0]
    assert abs(gelu.fraction_random[0] - gelu.fraction[0]) < 1e-12   # d = 2: angles are uniform


def test_self_energy_threshold_is_the_laplacian_of_phi_on_the_diagonal():
    # self_lam = Delta_theta[Phi(theta, theta)] / (2 Phi(theta, theta)) (docs/math.md section 2), and for a smooth
    # activation Delta_theta[Phi(theta, theta)] = 2 Delta_1 Phi(theta, theta) + 2 E|grad_theta sigma|^2
    d, norm = 5, 0.8
    theta = norm * jnp.ones(d) / math.sqrt(d)
    pot = es.potential("erf")
    rep = es.harmonicity(pot, d=d, norms=[norm], angles=[0.5])
    diag = jnp.trace(jax.jit(jax.hessian(lambda t: pot(t, t)))(theta))
    np.testing.assert_allclose(rep.self_lam[0, 0], diag / (2 * pot(theta, theta)), rtol=1e-12)
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / np.sqrt(2 * np.pi)
    ds = 2 / np.sqrt(np.pi) * np.exp(-((norm * z) ** 2))            # erf'; |X|^2 = Z_1^2 + chi^2_(d-1)
    grad_sq = np.sum(w * ds**2 * (z**2 + d - 1))
    np.testing.assert_allclose(diag, 2 * laplacian(pot, theta, theta) + 2 * grad_sq, rtol=1e-12)


def test_sphere_laplacian_is_the_riemannian_hessian_trace(getkey):
    pot, d = es.potential("erf"), 5
    u = jax.random.normal(getkey(), (d,))
    v = jax.random.normal(getkey(), (d,))
    u, v = u / jnp.linalg.norm(u), v / jnp.linalg.norm(v)
    f = lambda x: pot(x, v)  # noqa: E731
    P = jnp.eye(d) - jnp.outer(u, u)
    riem = P @ (jax.jit(jax.hessian(f))(u) - jnp.dot(u, jax.grad(f)(u)) * jnp.eye(d)) @ P   # docs/math.md section 6
    np.testing.assert_allclose(laplacian(pot, 3.0 * u, v, manifold="sphere"), jnp.trace(riem), rtol=1e-12)


def test_sphere_laplacian_from_the_hermite_series():
    rho = np.cos(np.radians([10.0, 50.0, 80.0, 130.0, 170.0]))
    dims = (3, 8)
    # Theorem 30's (theta . w)^l: the single Hermite term h_l
    for m in (3, 4):
        rep = es.harmonicity(f"hermite{m}", d=dims, manifold="sphere", angles=np.arccos(rho))
        w = np.zeros(m + 1)
        w[m] = 1.0
        for i, d in enumerate(dims):
            expect = m * (m - 1) * rho ** (m - 2) - m * (m + d - 2) * rho**m
            np.testing.assert_allclose(rep.laplacian[i], expect, rtol=1e-12)
            np.testing.assert_allclose(hermite.sphere_laplacian(jnp.asarray(w), jnp.asarray(rho), d), expect,
                                       rtol=1e-12)
    # tanh: Phi(rho) = sum c_n^2 rho^n on unit vectors (docs/math.md section 1d), quadrature on the other side
    hc = hermite.hermite_coefficients(jnp.tanh, 1.0, 120)
    c = jnp.asarray(hc.c[0])
    rho = np.append(rho, np.cos(0.05))
    rep = es.harmonicity("tanh", d=dims, params={"order": 80}, manifold="sphere", angles=np.arccos(rho))
    np.testing.assert_allclose(rep.phi[0], hermite.series(c, c, jnp.asarray(rho)), atol=1e-10)
    for i, d in enumerate(dims):
        np.testing.assert_allclose(rep.laplacian[i], hermite.sphere_laplacian(c * c, jnp.asarray(rho), d),
                                   atol=1e-9)
    # at rho -> 1 every activation's sphere potential has the wrong sign: Delta_S Phi(1) = -(d-1) sum n c_n^2 < 0
    assert not rep.holds[:, -1].any()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="valid names: .*erf"):
        es.harmonicity("nope", d=3)
    for bad in (0, 1, 2.5, True, (), (3, -1), "3"):
        with pytest.raises(ValueError, match="d must be an integer >= 2"):
            es.harmonicity("erf", d=bad)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        es.harmonicity("gaussian", d=0)
    with pytest.raises(ValueError, match="lives in d=3"):
        es.harmonicity(es.potential("yukawa", d=3), d=(3, 4))
    with pytest.raises(ValueError, match="manifold"):
        es.harmonicity("erf", d=3, manifold="torus")
    with pytest.raises(ValueError, match="radial"):
        es.harmonicity("gaussian", d=3, manifold="sphere")
    with pytest.raises(ValueError, match="angles"):
        es.harmonicity("erf", d=3, angles=[0.5, 4.0])
    with pytest.raises(ValueError, match="norms"):
        es.harmonicity("erf", d=3, norms=[-1.0])
    with pytest.raises(ValueError, match="distances="):
        es.harmonicity("gaussian", d=3, norms=[1.0])
    with pytest.raises(ValueError, match="on the sphere the norms are 1"):
        es.harmonicity("erf", d=3, manifold="sphere", norms=[2.0])
    with pytest.raises(ValueError, match="monomial needs"):
        es.harmonicity("monomial", d=3)
    with pytest.raises(TypeError, match="Potential, an Activation or a potential name"):
        es.harmonicity(3.0, d=3)


def test_a_custom_activation_goes_through_quadrature():
    # es.potential(custom) integrates by Gauss-Hermite; sin's closed form is Phi = e^{-(p+q)/2} sinh c
    grid = dict(d=4, norms=[0.5, 1.0], angles=[0.4, 2.0])
    custom = es.harmonicity(es.custom(jnp.sin, "my_sin", odd=True), params={"order": 40}, **grid)
    np.testing.assert_allclose(custom.laplacian, es.harmonicity("sin", **grid).laplacian, atol=1e-10)


def test_cli_table_matches_the_function(tmp_path):
    args = ["harmonic", "-a", "relu,gelu,gaussian", "--d", "3,10", "--quiet"]
    res = CliRunner().invoke(app, [*args, "--json", "--save", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [(r["name"], r["d"]) for r in rows] == [(n, d) for n in ("relu", "gelu", "gaussian") for d in (3, 10)]
    for name in ("gelu", "gaussian"):
        rep = es.harmonicity(name, d=(3, 10))
        got = [r for r in rows if r["name"] == name]
        assert [r["fraction"] for r in got] == rep.fraction.tolist()
        assert [r["lam_min"] for r in got] == rep.lam_range[:, 0].tolist()
        assert [r["distance_from"] for r in got] == rep.distance_from.tolist()
    assert json.loads((tmp_path / "harmonic.json").read_text())[2]["fraction"] == rows[2]["fraction"]
    assert (tmp_path / "harmonic.csv").read_text().splitlines()[0].startswith("name,potential,kind")
    md = CliRunner().invoke(app, [*args, "--markdown"])
    assert md.exit_code == 0 and md.output == markdown(harmonic_table(["relu", "gelu", "gaussian"], (3, 10)),
                                                       (3, 10)) + "\n"
    gelu = es.harmonicity("gelu", d=(3, 10)).fraction
    assert f"| gelu | {100 * gelu[0]:.0f}% | {100 * gelu[1]:.0f}% |" in md.output
    table = CliRunner().invoke(app, ["harmonic", "-a", "linear,relu", "--d", "2,5", "--quiet"])
    assert table.exit_code == 0 and "Δ=0" in table.output and "100%" in table.output


def test_cli_rejects_bad_input():
    runner = CliRunner()
    res = runner.invoke(app, ["harmonic", "-a", "erf,nope"])
    assert res.exit_code == 2 and "nope" in res.output and "valid names" in res.output
    res = runner.invoke(app, ["harmonic", "-a", "erf", "--d", "3,1"])
    assert res.exit_code == 2 and "--d must be" in res.output
    res = runner.invoke(app, ["harmonic", "-a", "gaussian", "--manifold", "sphere"])
    assert res.exit_code == 2 and "nothing to compute" in res.output


def test_the_report_shows_the_committed_rows_and_they_are_current():
    root = Path(__file__).resolve().parents[1]
    report = (root / "docs" / "reports" / "harmonic.md").read_text(encoding="utf-8")
    for stem in ("harmonic", "harmonic-sphere"):
        rows = read_rows(root / "docs" / "reports" / "harmonic" / f"{stem}.json")
        assert {r["d"] for r in rows} == set(range(2, 51))
        table = markdown([r for r in rows if r["d"] in TABLE_DIMS], TABLE_DIMS)
        assert table.split("\n\n")[0] in report, stem
        if stem == "harmonic":
            assert table.split("\n\n")[1] in report
    rows = read_rows(root / "docs" / "reports" / "harmonic" / "harmonic.json")
    for name in ("relu", "gelu", "gaussian"):
        rep = es.harmonicity(name, d=(3, 50))
        got = [r for r in rows if r["name"] == name and r["d"] in (3, 50)]
        np.testing.assert_allclose([r["fraction"] for r in got], rep.fraction, rtol=0, atol=1e-12)
        np.testing.assert_allclose([r["lam_min"] for r in got], rep.lam_range[:, 0], rtol=1e-9)
